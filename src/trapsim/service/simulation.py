"""The path engine of a run: market source → chaos → trap injection → quotes, in batches.

The same batches feed a paced run and a flat-out run, so both give the same
ticks bit for bit: live mode is batch mode sliced by a clock (DESIGN.md §1).

Symbols with a market of their own (BTC-USD, ETH-USD, USDT-USD) each get their
chaos phases and, for BTC-USD and ETH-USD, their own traps; the perpetual's basis
gets the phases aimed at it (a ``gradual_divergence``, a ``price_shock`` of the
perpetual). BTC-ETH and BTC-USD-PERP are then made from the final legs, so the
cross rate is ``BTC-USD / ETH-USD`` at every tick and the perpetual is the final
spot times its basis: a trap or a crash on BTC-USD shows in both.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from trapsim.core.allocator import keep_freed_blocks
from trapsim.core.schemas import TickBatch
from trapsim.core.time import NS
from trapsim.market.base import BaseChunk
from trapsim.market.multi import VOLUME_SHARE, Funding, MultiAssetMarket, quote_params
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.spread import SpreadModel
from trapsim.scenarios.chaos import MARKET_SYMBOLS, ChaosInjector, check_symbols
from trapsim.scenarios.feed_faults import feed_fault_labels
from trapsim.scenarios.injector import TrapInjector
from trapsim.scenarios.traps import final_prices
from trapsim.service.config import RunConfig

CHUNK = 36_000
"""Ticks generated per step (10 h of market time); fixed so output never depends on pacing."""
TRAP_SYMBOLS = ("BTC-USD", "ETH-USD")
"""Symbols that get traps of their own (the cross and the perpetual inherit BTC's and ETH's)."""
PERP = "BTC-USD-PERP"


class Step(NamedTuple):
    """What one step of a run releases."""

    ticks: dict[str, TickBatch]
    """Final ticks per symbol (the run's symbols, in order), all on the same times."""
    labels: list[dict]
    """Labels placed in this step; a label may reach past these ticks, its ticks follow."""
    funding: list[Funding]
    """Funding events of the perpetual at these ticks."""


@dataclass(slots=True)
class _Buffer:
    """Base ticks not yet final plus the history the injector looks back on."""

    ts: np.ndarray
    price: np.ndarray
    overlay: np.ndarray
    volume: np.ndarray
    regime: np.ndarray

    @classmethod
    def empty(cls) -> _Buffer:
        f = np.empty(0)
        return cls(np.empty(0, np.int64), f, f, f, np.empty(0, np.int8))

    def extend(self, chunk: BaseChunk) -> None:
        self.ts = np.concatenate([self.ts, chunk.ts])
        self.price = np.concatenate([self.price, chunk.price])
        self.overlay = np.concatenate([self.overlay, np.zeros(len(chunk))])
        self.volume = np.concatenate([self.volume, chunk.volume])
        self.regime = np.concatenate([self.regime, chunk.regime])

    def slice(self, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        """Copies of ticks ``lo:hi``: times, final prices, volumes and regimes."""
        return (self.ts[lo:hi].copy(), final_prices(self.price[lo:hi], self.overlay[lo:hi]),
                self.volume[lo:hi].copy(), self.regime[lo:hi].copy())

    def drop_before(self, i: int) -> None:
        for name in ("ts", "price", "overlay", "volume", "regime"):
            setattr(self, name, getattr(self, name)[i:])


@dataclass(slots=True)
class _Lane:
    """One market of the run: its buffer, its chaos phases and its traps."""

    symbol: str
    buf: _Buffer
    chaos: ChaosInjector | None
    injector: TrapInjector | None


class Simulation:
    """Final ticks and labels of one run, in market-time order.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Raises
    ------
    ConfigError
        If the scenario needs a symbol the run does not have.

    Notes
    -----
    Each step pulls :data:`CHUNK` base ticks of every market, applies the
    chaos phases, lets each injector place every trap whose span starts before
    ``buffer end − max_span`` (so a trap always has its whole span in the
    buffer), and releases the ticks before that point: no later trap can change
    them. A duration limit or the end of a replayed file ends the stream; traps
    that would run past the end are not injected.
    """

    def __init__(self, cfg: RunConfig) -> None:
        keep_freed_blocks()  # the two-thread pipeline's arrays, see trapsim.core.allocator
        self.cfg = cfg
        self.symbols = cfg.symbols
        if cfg.scenario is not None:
            check_symbols(cfg.scenario, self.symbols)
        btc_params = cfg.market or DEFAULT_PARAMS
        if cfg.replay is not None:
            from trapsim.feeds.replay import ReplayMarket

            self.market = ReplayMarket(cfg.replay, seed=cfg.seed, symbol=cfg.symbol)
            own = ("BTC-USD",)
        else:
            own = tuple(s for s in (*MARKET_SYMBOLS, PERP) if s in self.symbols)
            self.market = MultiAssetMarket(own, seed=cfg.seed, start_ts=cfg.start_ns,
                                           volatility=cfg.volatility, btc_params=btc_params)
        self.start_ts = int(getattr(self.market, "start_ts", cfg.start_ns))
        self.regime_names = tuple(self.market.regime_names)
        self.lanes = [self._lane(symbol) for symbol in own]
        injectors = [lane.injector for lane in self.lanes if lane.injector is not None]
        self._span = max(inj.max_span_ns for inj in injectors)
        self._lookback = max(inj.lookback_ns for inj in injectors)
        self.spreads = {
            s: SpreadModel(btc_params if s == "BTC-USD" else quote_params(s), seed=cfg.seed,
                           symbol=s) for s in self.symbols}
        self._funding: list[Funding] = []  # made, not yet released
        self._next_id = 0
        self.total_ticks = None if cfg.duration is None else int(round(cfg.duration * 3600))
        if cfg.replay is not None:
            n = self.market.n_ticks
            self.total_ticks = n if self.total_ticks is None else min(n, self.total_ticks)
        # Synthetic runs also simulate past their end, so traps near the end still
        # complete; ticks outside [start, end) are never yielded.
        self.end_ts = None if self.total_ticks is None else self.start_ts + self.total_ticks * NS
        self._limit = None
        if self.total_ticks is not None:
            extra = 0 if cfg.replay is not None else -(-self._span // NS)
            self._limit = self.total_ticks + extra

    def _lane(self, symbol: str) -> _Lane:
        cfg = self.cfg
        chaos = None
        if cfg.scenario is not None:
            beta = self.market.beta if symbol == "ETH-USD" else 1.0
            chaos = ChaosInjector(cfg.scenario, symbol=symbol, start_ts=self.start_ts,
                                  seed=cfg.seed, beta=beta)
            chaos = chaos if chaos.phases else None
        injector = None
        if symbol in TRAP_SYMBOLS:
            injector = TrapInjector(symbol=symbol, frequency=cfg.frequency, seed=cfg.seed,
                                    start_ts=self.start_ts)
        return _Lane(symbol, _Buffer.empty(), chaos, injector)

    def chaos_labels(self) -> list[dict]:
        """The scenario's chaos and feed-fault labels (``id`` not set), known from the start."""
        labels = [lb for lane in self.lanes if lane.chaos is not None
                  for lb in lane.chaos.labels()]
        labels += feed_fault_labels(self.cfg.scenario, self.symbols, self.start_ts)
        labels = [lb for lb in labels if self.end_ts is None or lb["start_ts"] < self.end_ts]
        return sorted(labels, key=lambda lb: lb["start_ts"])

    def batches(self) -> Iterator[Step]:
        """Yield the run's :class:`Step` s in market-time order."""
        btc = self.lanes[0].buf
        limit = self._limit
        released = self.start_ts  # ticks before this time have been yielded
        # The base market and the quotes depend only on their own state, so one
        # worker thread makes the next base chunk, then quotes the step just
        # injected, while this thread injects (the kernels release the GIL). A
        # step is yielded once the next one is injected; the ticks are the same.
        with ThreadPoolExecutor(1, thread_name_prefix="trapsim-market") as worker:
            pending = self._pull(worker, 0)
            for lane in self.lanes:
                if lane.injector is not None:
                    lane.injector.prime()  # while the first chunk is made
            quoting = None  # the step being quoted
            produced = 0
            done = False
            labels = self.chaos_labels()
            while not done:
                n = self._take(pending.result()) if pending is not None else 0
                produced += n
                done = n < CHUNK or produced == limit
                pending = None if done else self._pull(worker, produced)
                if not len(btc.ts):
                    break
                upto = int(btc.ts[-1]) + NS if done else int(btc.ts[-1]) - self._span
                for lane in self.lanes:
                    if lane.injector is not None:
                        b = lane.buf
                        labels += lane.injector.inject(b.ts, b.price, b.overlay, b.volume, upto)
                for label in labels:
                    label["id"] = self._next_id
                    self._next_id += 1
                lo = int(np.searchsorted(btc.ts, released))
                cut = upto if self.end_ts is None else min(upto, self.end_ts)
                hi = int(np.searchsorted(btc.ts, cut))
                funding = [f for f in self._funding if f.ts < cut]
                self._funding = self._funding[len(funding):]
                if quoting is not None:
                    yield quoting.result()
                    quoting = None
                if hi > lo or labels:
                    parts = {lane.symbol: lane.buf.slice(lo, hi) for lane in self.lanes}
                    quoting = worker.submit(self._final, parts, labels, funding)
                labels = []
                released = max(released, upto)
                # Keep the injector's look-back; released ticks before it are gone for good.
                keep = min(int(np.searchsorted(btc.ts, upto - self._lookback)), hi)
                for lane in self.lanes:
                    lane.buf.drop_before(keep)
            if quoting is not None:
                yield quoting.result()

    def _pull(self, worker: ThreadPoolExecutor, produced: int) -> Future | None:
        """Start making the next base chunks after ``produced`` ticks; None past the limit."""
        want = CHUNK if self._limit is None else min(CHUNK, self._limit - produced)
        if want <= 0:
            return None
        if isinstance(self.market, MultiAssetMarket):
            return worker.submit(self.market.next_chunks, want)
        return worker.submit(lambda: ({"BTC-USD": self.market.next_chunk(want)}, []))

    def _take(self, made: tuple[dict[str, BaseChunk | None], list[Funding]]) -> int:
        """Put new base chunks, with their chaos, into the lanes; returns their length."""
        chunks, funding = made
        ref = chunks["BTC-USD"]
        if ref is None or not len(ref):  # a replay's end
            return 0
        if PERP in chunks:  # the perpetual's lane holds its basis factor over spot
            perp = chunks[PERP]
            chunks[PERP] = BaseChunk(perp.ts, perp.price / ref.price, perp.volume, perp.regime)
        for lane in self.lanes:
            chunk = chunks[lane.symbol]
            if lane.chaos is not None:
                chunk = lane.chaos.apply(chunk, ref)
            lane.buf.extend(chunk)
        self._funding += funding
        return len(ref)

    def _final(self, parts: dict[str, tuple[np.ndarray, ...]], labels: list[dict],
               funding: list[Funding]) -> Step:
        ts, btc, btc_volume, regime = parts["BTC-USD"]
        prices = {s: p[1] for s, p in parts.items()}
        volumes = {s: p[2] for s, p in parts.items()}
        if PERP in parts:
            prices[PERP] = btc * prices[PERP]
        if "BTC-ETH" in self.symbols:
            prices["BTC-ETH"] = btc / prices["ETH-USD"]
        for s in ("BTC-ETH", PERP):
            volumes[s] = btc_volume * VOLUME_SHARE[s]
        ticks = {}
        for s in self.symbols:
            bid, ask = self.spreads[s].quotes(ts, prices[s], volumes[s])
            ticks[s] = TickBatch(s, ts, prices[s], bid, ask, volumes[s], regime,
                                 self.regime_names)
        if funding:  # marked at the perpetual's quoted price, traps and chaos included
            perp = ticks[PERP]
            at = np.searchsorted(perp.ts, [f.ts for f in funding])
            funding = [f._replace(mark_price=float(perp.price[i])) for f, i in zip(
                funding, at, strict=True)]
        return Step(ticks, labels, funding)
