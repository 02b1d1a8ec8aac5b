r"""Several correlated symbols on one clock: BTC-USD, ETH-USD, USDT-USD, BTC-ETH, BTC-USD-PERP.

- **BTC-USD** is the synthetic BTC market of :mod:`trapsim.market.process`.
- **ETH-USD** loads on BTC's base log returns and adds an ETH market of its own
  (calibrated from Binance ETH/USDT, :data:`ETH_PARAMS`, its volatility scaled by
  :math:`\sqrt{1-\rho^2}`):

  .. math:: \ln E_t = \ln E_0 + \beta\,(\ln B_t - \ln B_0) + (\ln I_t - \ln I_0),
            \qquad \beta = \rho\,\sigma_E / \sigma_B,

  so its volatility is the calibrated ETH one and its 1-minute return
  correlation with BTC is :data:`RHO_1M` (0.741 between the 2025 Binance files:
  ``../shared/REALISM.md`` gives 0.74); fat tails, clustering and seasonality
  come with both parts (a one-factor model, as in the market model of Sharpe
  1963, "A simplified model for portfolio analysis", Management Science 9).
- **USDT-USD** is pinned at 1: ``1 + x + w`` with ``x`` an Ornstein-Uhlenbeck
  deviation (sd :data:`USDT_OU_SD`, mean reversion :data:`USDT_OU_TIMESCALE_S`)
  and ``w`` white noise (sd :data:`USDT_NOISE_SD`), fitted to the USDT/USD rate
  implied by Binance.US BTC/USD ÷ BTC/USDT in the calm week of 2023-03-01…07
  (sd 1.8 bps; autocorrelation 0.41 at 1 minute, 0.19 at 4 hours).
- **BTC-ETH** is ``BTC-USD / ETH-USD`` at every tick (the cross rate, ETH per BTC).
- **BTC-USD-PERP** is spot times ``exp(basis)``, the basis an OU process around
  :data:`BASIS_MEAN` (perpetuals trade at a small premium in bull markets), and
  pays **funding** every 8 hours (00:00, 08:00, 16:00 UTC) at Binance's rate
  ``premium + clamp(interest − premium, ±0.05 %)`` with the interest 0.01 % and
  the premium the mean basis over the 8 hours (Binance Futures, "Introduction
  to Binance Futures Funding Rates").

Volumes: BTC and ETH from their markets (base units); USDT-USD, BTC-ETH and the
perpetual as fixed shares of BTC's (:data:`VOLUME_SHARE`, in their base units).
Regime codes are BTC's: the regime is the market's.

Every stream is independent of how the run is cut into chunks.
"""

from __future__ import annotations

import math
from importlib.resources import files
from typing import NamedTuple

import numba
import numpy as np

from trapsim.core.errors import ConfigError
from trapsim.core.seeding import rng_for
from trapsim.core.time import HOUR_NS
from trapsim.market.base import BaseChunk
from trapsim.market.params import DEFAULT_PARAMS, MarketParams, load_params
from trapsim.market.process import SECONDS_PER_YEAR, SyntheticMarket, base_variance_per_s

SYMBOLS = ("BTC-USD", "ETH-USD", "USDT-USD", "BTC-ETH", "BTC-USD-PERP")
"""The symbols a multi-asset run can hold, primary markets first."""
ETH_PARAMS: MarketParams = load_params(files("trapsim.market") / "eth_default.yaml")
"""ETH-USD market parameters, the calibration of the 2025 Binance ETH/USDT file."""
RHO_1M = 0.741
"""Correlation of BTC and ETH 1-minute log returns (Binance 2025-05-20…08-18)."""
USDT_OU_SD = 1.14e-4
USDT_OU_TIMESCALE_S = 5 * 3600.0
USDT_NOISE_SD = 1.4e-4
BASIS_MEAN = 3e-4
"""Mean log basis of the perpetual over spot (3 bps)."""
BASIS_SD = 5e-4
BASIS_TIMESCALE_S = 4 * 3600.0
FUNDING_INTERVAL_NS = 8 * HOUR_NS
FUNDING_INTEREST = 1e-4
"""Binance's interest component per 8 hours (0.01 %)."""
FUNDING_CLAMP = 5e-4
VOLUME_SHARE = {"USDT-USD": 2e4, "BTC-ETH": 0.05, "BTC-USD-PERP": 3.0}
"""Volume per unit of BTC-USD volume: USDT traded (≈ 20,000 USDT a BTC), BTC traded on the
cross, BTC traded on the perpetual (perpetuals out-trade spot several times)."""


SPREAD_BPS = {"BTC-USD": (2.0, 1.0, 5.0), "ETH-USD": (3.5, 2.0, 8.0),
              "USDT-USD": (0.5, 0.1, 2.0), "BTC-ETH": (8.0, 5.0, 15.0),
              "BTC-USD-PERP": (2.0, 1.0, 5.0)}
"""(typical, min, max) quoted spread of each symbol, bps: the seed's ranges (the perpetual as
BTC spot)."""


def quote_params(symbol: str) -> MarketParams:
    """Parameters of a symbol's quotes and book: its spread range, and as references its own
    volatility level and mean volume (:class:`~trapsim.market.spread.SpreadModel`).

    Raises
    ------
    ConfigError
        For a symbol not in :data:`SYMBOLS`.
    """
    if symbol not in SYMBOLS:
        raise ConfigError(f"unknown symbol {symbol!r}; symbols: {', '.join(SYMBOLS)}")
    base = ETH_PARAMS if symbol in ("ETH-USD", "BTC-ETH") else DEFAULT_PARAMS
    typical, lo, hi = SPREAD_BPS[symbol]
    update: dict = {"spread": base.spread.model_copy(
        update={"base_bps": typical, "min_bps": lo, "max_bps": hi})}
    share = VOLUME_SHARE.get(symbol)
    if share is not None:  # a share of BTC-USD's volume
        update["volume"] = base.volume.model_copy(
            update={"mean_per_minute": DEFAULT_PARAMS.volume.mean_per_minute * share})
    if symbol == "USDT-USD":
        # Its 1-second moves: white noise twice over, plus the OU's innovation.
        per_s = math.sqrt(2 * USDT_NOISE_SD**2 + 2 * USDT_OU_SD**2 / USDT_OU_TIMESCALE_S)
        ann = per_s * math.sqrt(SECONDS_PER_YEAR)
        update["regimes"] = base.regimes.model_copy(
            update={"ann_vol": [ann] * len(base.regimes.ann_vol)})
    return base.model_copy(update=update)


class Funding(NamedTuple):
    """One funding event of the perpetual."""

    ts: int  # ns UTC
    symbol: str
    rate: float  # per 8 hours, as a fraction (longs pay shorts when > 0)
    mark_price: float


@numba.njit(cache=True, nogil=True)
def _ou(x0, a, b, eps, out):
    """``out[i] = a·x + b·eps[i]`` carried from ``x0``; returns the last value."""
    x = x0
    for i in range(eps.shape[0]):
        x = a * x + b * eps[i]
        out[i] = x
    return x


class MultiAssetMarket:
    """Base ticks of several symbols on one 1-second clock (this module's model).

    Parameters
    ----------
    symbols : sequence of str
        A subset of :data:`SYMBOLS`, no repeats.
    seed : int
    start_ts : int
        Time of the first tick, ns UTC.
    volatility : float, default 1.0
        Scale on every volatility (as :class:`SyntheticMarket`).
    btc_params, eth_params : MarketParams, optional
        Default :data:`~trapsim.market.params.DEFAULT_PARAMS` and :data:`ETH_PARAMS`.

    Raises
    ------
    ConfigError
        On an unknown or repeated symbol.
    """

    def __init__(self, symbols, *, seed: int, start_ts: int, volatility: float = 1.0,
                 btc_params: MarketParams = DEFAULT_PARAMS,
                 eth_params: MarketParams = ETH_PARAMS) -> None:
        symbols = tuple(symbols)
        unknown = [s for s in symbols if s not in SYMBOLS]
        if not symbols or unknown or len(set(symbols)) != len(symbols):
            raise ConfigError(f"symbols must be distinct names from {', '.join(SYMBOLS)}, "
                              f"got {', '.join(symbols) or 'none'}")
        self.symbols = symbols
        self.start_ts = int(start_ts)
        self._btc = SyntheticMarket(btc_params, seed=seed, start_ts=start_ts,
                                    volatility=volatility, symbol="BTC-USD")
        self.regime_names = self._btc.regime_names
        need_eth = any(s in symbols for s in ("ETH-USD", "BTC-ETH"))
        self._eth = None
        if need_eth:
            self._eth = SyntheticMarket(eth_params, seed=seed, start_ts=start_ts,
                                        volatility=volatility * math.sqrt(1 - RHO_1M**2),
                                        symbol="ETH-USD")
            # ETH's loading on BTC's log returns.
            self.beta = RHO_1M * math.sqrt(
                base_variance_per_s(eth_params) / base_variance_per_s(btc_params))
            self._btc0 = math.log(btc_params.initial_price)
        self._usdt_rng = rng_for(seed, "market/USDT-USD")
        self._usdt_x = USDT_OU_SD * self._usdt_rng.standard_normal()
        self._basis_rng = rng_for(seed, "market/BTC-USD-PERP")
        self._basis_dev = BASIS_SD * self._basis_rng.standard_normal()  # basis − BASIS_MEAN
        self._basis_sum = 0.0
        self._basis_n = 0
        self._next_funding = (self.start_ts // FUNDING_INTERVAL_NS + 1) * FUNDING_INTERVAL_NS

    def next_chunks(self, n: int) -> tuple[dict[str, BaseChunk], list[Funding]]:
        """The next ``n`` ticks of every symbol, and the perpetual's funding events in them.

        Raises
        ------
        ConfigError
            If ``n`` is not a positive integer.
        """
        btc = self._btc.next_chunk(n)
        out = {"BTC-USD": btc}
        if self._eth is not None:
            idio = self._eth.next_chunk(n)
            # The ETH market of its own starts at ETH's price: add BTC's move since the start.
            lp = np.log(idio.price) + self.beta * (np.log(btc.price) - self._btc0)
            out["ETH-USD"] = BaseChunk(btc.ts, np.exp(lp), idio.volume, btc.regime)
            if "BTC-ETH" in self.symbols:
                out["BTC-ETH"] = BaseChunk(btc.ts, btc.price / out["ETH-USD"].price,
                                           btc.volume * VOLUME_SHARE["BTC-ETH"], btc.regime)
        funding: list[Funding] = []
        if "USDT-USD" in self.symbols:
            out["USDT-USD"] = BaseChunk(btc.ts, self._usdt(n),
                                        btc.volume * VOLUME_SHARE["USDT-USD"], btc.regime)
        if "BTC-USD-PERP" in self.symbols:
            basis = self._basis_path(n)
            perp = btc.price * np.exp(basis)
            out["BTC-USD-PERP"] = BaseChunk(btc.ts, perp,
                                            btc.volume * VOLUME_SHARE["BTC-USD-PERP"],
                                            btc.regime)
            funding = self._funding(btc.ts, basis, perp)
        return {s: out[s] for s in self.symbols}, funding

    def _usdt(self, n: int) -> np.ndarray:
        a = math.exp(-1.0 / USDT_OU_TIMESCALE_S)
        eps = self._usdt_rng.standard_normal((n, 2))
        x = np.empty(n)
        self._usdt_x = _ou(self._usdt_x, a, USDT_OU_SD * math.sqrt(1 - a * a), eps[:, 0], x)
        return 1.0 + x + USDT_NOISE_SD * eps[:, 1]

    def _basis_path(self, n: int) -> np.ndarray:
        a = math.exp(-1.0 / BASIS_TIMESCALE_S)
        dev = np.empty(n)
        self._basis_dev = _ou(self._basis_dev, a, BASIS_SD * math.sqrt(1 - a * a),
                              self._basis_rng.standard_normal(n), dev)
        return BASIS_MEAN + dev

    def _funding(self, ts: np.ndarray, basis: np.ndarray, perp: np.ndarray) -> list[Funding]:
        """Funding at every 8-hour mark in ``ts``: the premium is the mean basis since the last."""
        events = []
        lo = 0
        while True:
            i = int(np.searchsorted(ts, self._next_funding))
            if i >= len(ts):
                break
            self._basis_sum += float(basis[lo:i].sum())
            self._basis_n += i - lo
            premium = self._basis_sum / max(self._basis_n, 1)
            rate = premium + min(max(FUNDING_INTEREST - premium, -FUNDING_CLAMP), FUNDING_CLAMP)
            events.append(Funding(int(ts[i]), "BTC-USD-PERP", rate, float(perp[i])))
            self._basis_sum, self._basis_n, lo = 0.0, 0, i
            self._next_funding += FUNDING_INTERVAL_NS
        self._basis_sum += float(basis[lo:].sum())
        self._basis_n += len(ts) - lo
        return events
