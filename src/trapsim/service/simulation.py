"""The path engine of one symbol: market source → trap injection → quotes, in batches.

The same batches feed a paced run and a flat-out run, so both give the same
ticks bit for bit: live mode is batch mode sliced by a clock (DESIGN.md §1).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from trapsim.core.allocator import keep_freed_blocks
from trapsim.core.schemas import TickBatch
from trapsim.core.time import NS
from trapsim.market.base import BaseChunk, Market
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.process import SyntheticMarket
from trapsim.market.spread import SpreadModel
from trapsim.scenarios.chaos import ChaosInjector
from trapsim.scenarios.injector import TrapInjector
from trapsim.scenarios.traps import final_prices
from trapsim.service.config import RunConfig

CHUNK = 36_000
"""Ticks generated per step (10 h of market time); fixed so output never depends on pacing."""


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


def open_market(cfg: RunConfig) -> Market:
    """The base market of a run: the replayed file, or the synthetic process."""
    if cfg.replay is not None:
        from trapsim.feeds.replay import ReplayMarket

        return ReplayMarket(cfg.replay, seed=cfg.seed, symbol=cfg.symbol)
    return SyntheticMarket(
        cfg.market or DEFAULT_PARAMS,
        seed=cfg.seed,
        start_ts=cfg.start_ns,
        volatility=cfg.volatility,
        symbol=cfg.symbol,
    )


class Simulation:
    """Final ticks and trap labels of one run, in market-time order.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.

    Notes
    -----
    Each step pulls :data:`CHUNK` base ticks, lets the injector place every trap
    whose span starts before ``buffer end − max_span`` (so a trap always has its
    whole span in the buffer), and releases the ticks before that point: no later
    trap can change them. A duration limit or the end of a replayed file ends
    the stream; traps that would run past the end are not injected.
    """

    def __init__(self, cfg: RunConfig) -> None:
        keep_freed_blocks()  # the two-thread pipeline's arrays, see trapsim.core.allocator
        self.cfg = cfg
        self.symbol = cfg.symbol
        self.market = open_market(cfg)
        self.start_ts = int(getattr(self.market, "start_ts", cfg.start_ns))
        self.regime_names = tuple(self.market.regime_names)
        self.injector = TrapInjector(
            symbol=cfg.symbol, frequency=cfg.frequency, seed=cfg.seed, start_ts=self.start_ts
        )
        self.spread = SpreadModel(cfg.market or DEFAULT_PARAMS, seed=cfg.seed, symbol=cfg.symbol)
        self.chaos = None if cfg.scenario is None else ChaosInjector(
            cfg.scenario, symbol=cfg.symbol, start_ts=self.start_ts, seed=cfg.seed)
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
            extra = 0 if cfg.replay is not None else -(-self.injector.max_span_ns // NS)
            self._limit = self.total_ticks + extra

    def batches(self) -> Iterator[tuple[TickBatch, list[dict]]]:
        """Yield ``(ticks, labels)``: final ticks, and the labels injected in this step.

        A label may reach past the ticks yielded with it; its ticks follow.
        """
        buf = _Buffer.empty()
        lookback = self.injector.lookback_ns
        span = self.injector.max_span_ns
        limit = self._limit
        released = self.start_ts  # ticks before this time have been yielded
        # The base market and the quotes depend only on their own state, so one
        # worker thread makes the next base chunk, then quotes the step just
        # injected, while this thread injects (the kernels release the GIL). A
        # step is yielded once the next one is injected; the ticks are the same.
        with ThreadPoolExecutor(1, thread_name_prefix="trapsim-market") as worker:
            pending = self._pull(worker, 0)
            self.injector.prime()  # while the first chunk is made
            quoting = None  # the step being quoted
            produced = 0
            done = False
            first = True
            while not done:
                chunk = pending.result() if pending is not None else None
                if chunk is not None and len(chunk):
                    if self.chaos is not None:
                        chunk = self.chaos.apply(chunk)
                    buf.extend(chunk)
                    produced += len(chunk)
                done = chunk is None or len(chunk) < CHUNK or produced == limit
                pending = None if done else self._pull(worker, produced)
                if not len(buf.ts):
                    break
                upto = int(buf.ts[-1]) + NS if done else int(buf.ts[-1]) - span
                labels = self.injector.inject(buf.ts, buf.price, buf.overlay, buf.volume, upto)
                if first and self.chaos is not None:
                    # Chaos labels are known from the start; ids count every label yielded.
                    labels = [lb for lb in self.chaos.labels()
                              if self.end_ts is None or lb["start_ts"] < self.end_ts] + labels
                first = False
                for label in labels:
                    label["id"] = self._next_id
                    self._next_id += 1
                lo = int(np.searchsorted(buf.ts, released))
                cut = upto if self.end_ts is None else min(upto, self.end_ts)
                hi = int(np.searchsorted(buf.ts, cut))
                if quoting is not None:
                    yield quoting.result()
                    quoting = None
                if hi > lo or labels:
                    quoting = worker.submit(self._final, *buf.slice(lo, hi), labels)
                released = max(released, upto)
                # Keep the injector's look-back; released ticks before it are gone for good.
                buf.drop_before(min(int(np.searchsorted(buf.ts, upto - lookback)), hi))
            if quoting is not None:
                yield quoting.result()

    def _pull(self, worker: ThreadPoolExecutor, produced: int) -> Future | None:
        """Start making the next base chunk after ``produced`` ticks; None past the limit."""
        want = CHUNK if self._limit is None else min(CHUNK, self._limit - produced)
        return worker.submit(self.market.next_chunk, want) if want > 0 else None

    def _final(self, ts: np.ndarray, price: np.ndarray, volume: np.ndarray,
               regime: np.ndarray, labels: list[dict]) -> tuple[TickBatch, list[dict]]:
        bid, ask = self.spread.quotes(ts, price, volume)
        return TickBatch(self.symbol, ts, price, bid, ask, volume, regime,
                         self.regime_names), labels
