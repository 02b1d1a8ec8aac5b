"""Projected candles of chaos phases: what a scenario would do to the market from now.

:func:`project` draws a fresh path of the run's market model (the multi-asset model
of :mod:`trapsim.market.multi`, the run's parameters and volatility) for the
coming hours, applies the phases to it from its first tick with the same
:class:`~trapsim.scenarios.chaos.ChaosInjector` a run uses (ETH-USD with its
loading on BTC-USD, the perpetual's basis, BTC-ETH from its legs, as in
:mod:`trapsim.service.simulation`), and scales every symbol so that the path starts
at its current price. The same path without the phases is the baseline: the
difference is the scenario's effect, the rest is the market's own noise. Traps are
not injected, and a ``feed_disruption`` changes what subscribers receive, not the
market, so it leaves the projection equal to the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trapsim.market.base import BaseChunk
from trapsim.market.multi import VOLUME_SHARE, MultiAssetMarket
from trapsim.market.ohlcv import candles
from trapsim.market.params import DEFAULT_PARAMS, MarketParams
from trapsim.scenarios.chaos import MARKET_SYMBOLS, ChaosInjector, Scenario

PERP = "BTC-USD-PERP"


@dataclass(frozen=True, slots=True)
class Projection:
    """One symbol's projection.

    ``baseline`` and ``projected`` are candles (:func:`trapsim.market.ohlcv.candles`:
    ``ts`` int64 ns open times, ``open``, ``high``, ``low``, ``close``, ``volume``);
    ``peak_move`` is the largest relative difference of a projected tick from the
    baseline's (signed, a fraction) and ``peak_ts`` its time (ns).
    """

    symbol: str
    baseline: dict[str, np.ndarray]
    projected: dict[str, np.ndarray]
    peak_move: float
    peak_ts: int


def project(phases, *, symbols: tuple[str, ...], prices: dict[str, float], start_ts: int,
            seconds: int, interval_ns: int, seed: int, volatility: float = 1.0,
            btc_params: MarketParams | None = None) -> dict[str, Projection]:
    """Project ``phases`` (chaos phase models, all starting at ``start_ts``) over the symbols.

    Parameters
    ----------
    phases : sequence of chaos phase models
        Already checked against the run (:meth:`trapsim.service.simulation.Simulation.
        check_phase`); their ``at`` is ignored.
    symbols : tuple of str
        The run's symbols (those with no market of their own follow their legs).
    prices : dict of str to float
        Each symbol's current price: its projection starts there.
    start_ts : int
        Time of the first projected tick, ns UTC.
    seconds : int
        1-second ticks projected (> 0).
    interval_ns : int
        Candle length, ns.
    seed : int
        Seed of the fresh market path (same seed, same projection).
    volatility : float, default 1.0
        The run's volatility scale.
    btc_params : MarketParams, optional
        The run's BTC-USD model (default :data:`~trapsim.market.params.DEFAULT_PARAMS`).

    Returns
    -------
    dict of str to Projection
        By symbol, in the order of ``symbols``.
    """
    own = tuple(s for s in (*MARKET_SYMBOLS, PERP) if s in symbols)
    market = MultiAssetMarket(own, seed=seed, start_ts=start_ts, volatility=volatility,
                              btc_params=btc_params or DEFAULT_PARAMS)
    chunks, _ = market.next_chunks(seconds)
    ref = chunks["BTC-USD"]
    if PERP in chunks:  # the perpetual's phases act on its basis factor over spot
        perp = chunks[PERP]
        chunks[PERP] = BaseChunk(perp.ts, perp.price / ref.price, perp.volume, perp.regime)
    scenario = Scenario(name="projection", max_deviation=0.99, timeout_hours=1e9,
                        phases=tuple(p.model_copy(update={"at": "0s"}) for p in phases))
    moved = {}
    for s, chunk in chunks.items():
        beta = market.beta if s == "ETH-USD" else 1.0
        chaos = ChaosInjector(scenario, symbol=s, start_ts=start_ts, seed=seed, beta=beta)
        moved[s] = chaos.apply(chunk, ref)
    out = {}
    base, proj = _final(chunks, symbols), _final(moved, symbols)
    for s in symbols:
        (b, bv), (p, pv) = base[s], proj[s]
        scale = prices[s] / b[0]
        rel = p / b - 1.0
        i = int(np.argmax(np.abs(rel)))
        out[s] = Projection(s, candles(ref.ts, b * scale, bv, interval_ns),
                            candles(ref.ts, p * scale, pv, interval_ns), float(rel[i]),
                            int(ref.ts[i]))
    return out


def _final(chunks: dict[str, BaseChunk], symbols) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(price, volume) of every symbol from the lanes, as the run's final step makes them."""
    btc = chunks["BTC-USD"]
    out = {s: (c.price, c.volume) for s, c in chunks.items()}
    if PERP in chunks:
        out[PERP] = (btc.price * chunks[PERP].price, btc.volume * VOLUME_SHARE[PERP])
    if "BTC-ETH" in symbols:
        out["BTC-ETH"] = (btc.price / chunks["ETH-USD"].price,
                          btc.volume * VOLUME_SHARE["BTC-ETH"])
    return out

