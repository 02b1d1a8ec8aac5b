"""Price sources with priorities, and the feed manager that fails over between them.

A source yields ``(ts, price, volume)`` (``ts`` the wall time it arrived, ns UTC)
until it ends or fails. :class:`FeedManager` runs several at once: it restarts a
source that fails or ends (a venue that closed its stream is reconnected, a
replay starts over), waiting 0.5 s doubling up to :data:`MAX_RETRY_S`, calls it stale after
``stale_s`` without a price, names the primary (the highest-priority source that
is up and fresh), feeds every price to a :class:`~trapsim.feeds.consensus.Consensus`
and publishes the consensus unless the :class:`~trapsim.feeds.consensus.CircuitBreaker`
has halted it. Changes of state are logged as JSON lines (``source_down``,
``source_up``, ``source_stale``, ``failover``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

from trapsim.core.errors import ConfigError
from trapsim.core.time import NS, iso
from trapsim.feeds.binance import BinanceSpotAdapter, Quote, Trade
from trapsim.feeds.consensus import CircuitBreaker, Consensus

if TYPE_CHECKING:
    import numpy as np

    from trapsim.service.config import RunConfig

log = logging.getLogger("trapsim.feeds")

MAX_RETRY_S = 30.0
"""Longest wait before restarting a failed source, seconds."""


class Source(Protocol):
    """A named price source of one symbol."""

    name: str
    priority: float

    def prices(self) -> AsyncIterator[tuple[int, float, float]]:
        """``(arrival ns UTC, price, volume)`` until the source ends; raises on failure."""


@dataclass
class BinanceSource:
    """Binance spot trades (price, quantity) and best-quote mids (volume 0) of one symbol."""

    adapter: BinanceSpotAdapter
    name: str = "binance-ws"
    priority: float = 3.0

    async def prices(self) -> AsyncIterator[tuple[int, float, float]]:
        async for event in self.adapter.events():
            if isinstance(event, Trade):
                yield event.recv_ns, event.price, event.qty
            elif isinstance(event, Quote):
                yield event.recv_ns, 0.5 * (event.bid + event.ask), 0.0


def burst(speed: float) -> int:
    """Ticks sent at once at ``speed`` market seconds per wall second: about ten sends a
    second."""
    return max(1, round(speed / 10))


async def _paced(chunks: AsyncIterator[tuple[np.ndarray, np.ndarray]],
                 speed: float) -> AsyncIterator[tuple[int, float, float]]:
    """``(arrival ns, price, volume)`` of each tick of ``chunks`` (1 market second apart) at
    ``speed`` market seconds per wall second, sent in bursts of :func:`burst` ticks."""
    step = burst(speed)
    t0, sent = time.monotonic(), 0
    async for price, volume in chunks:
        for lo in range(0, len(price), step):
            prices = price[lo:lo + step].tolist()
            for p, v in zip(prices, volume[lo:lo + step].tolist(), strict=True):
                yield time.time_ns(), p, v
            sent += len(prices)
            await asyncio.sleep(max(0.0, t0 + sent / speed - time.monotonic()))


@dataclass
class CandleReplaySource:
    """A candle file replayed as 1-second ticks (:class:`~trapsim.feeds.replay.ReplayMarket`)
    at ``speed`` market seconds per wall second."""

    path: Path
    speed: float = 1.0
    seed: int = 0
    name: str = "replay"
    priority: float = 2.0
    symbol: str = "BTC-USD"

    async def prices(self) -> AsyncIterator[tuple[int, float, float]]:
        from trapsim.feeds.replay import ReplayMarket

        if not self.speed > 0:
            raise ConfigError(f"replay speed must be > 0, got {self.speed}")
        # Reading the file is slow work: off the event loop, which serves the other sources.
        market = await asyncio.to_thread(ReplayMarket, self.path, seed=self.seed,
                                         symbol=self.symbol)
        step = burst(self.speed)

        async def chunks():
            while (chunk := market.next_chunk(step)) is not None and len(chunk):
                yield chunk.price, chunk.volume

        async for tick in _paced(chunks(), self.speed):
            yield tick


@dataclass
class SyntheticSource:
    """The synthetic market with its traps and chaos (a run's
    :class:`~trapsim.service.simulation.Simulation`, headline symbol) at ``speed`` market
    seconds per wall second."""

    cfg: RunConfig
    speed: float = 1.0
    name: str = "synthetic"
    priority: float = 1.0

    async def prices(self) -> AsyncIterator[tuple[int, float, float]]:
        from trapsim.service.simulation import Simulation

        # The simulation's steps are made off the event loop, which serves the other sources.
        sim = await asyncio.to_thread(Simulation, self.cfg)
        steps = sim.batches()
        symbol = self.cfg.symbol

        async def chunks():
            while (step := await asyncio.to_thread(next, steps, None)) is not None:
                yield step.ticks[symbol].price, step.ticks[symbol].volume

        async for tick in _paced(chunks(), self.speed):
            yield tick


class Published(NamedTuple):
    """What the manager publishes: the consensus and who carried it."""

    ts: int
    price: float
    confidence: float
    primary: str | None
    used: tuple[str, ...]


@dataclass
class _Health:
    state: str = "starting"  # starting, up, stale, down
    last_ns: int = 0
    errors: int = 0
    last_error: str | None = None
    retry_s: float = field(default=0.5)


class FeedManager:
    """Runs price sources together, with failover, consensus and a circuit breaker.

    Parameters
    ----------
    sources : sequence of Source
        Distinct names.
    stale_s : float, default 30
        A source without a price for this long is stale (not primary, not averaged).
    breaker : CircuitBreaker, optional
        Default: a 20 % move within 60 s halts publishing for 300 s.
    consensus : Consensus, optional
        Default: :class:`Consensus` of the sources' priorities with ``stale_s``.

    Raises
    ------
    ConfigError
        On no sources, duplicate names, or ``stale_s <= 0``.
    """

    def __init__(self, sources: Sequence[Source], *, stale_s: float = 30.0,
                 breaker: CircuitBreaker | None = None,
                 consensus: Consensus | None = None) -> None:
        names = [s.name for s in sources]
        if not sources or len(set(names)) != len(names):
            raise ConfigError(f"need one or more sources with distinct names, got {names}")
        if not stale_s > 0:
            raise ConfigError(f"stale_s must be > 0, got {stale_s}")
        self.sources = sorted(sources, key=lambda s: -s.priority)
        self.stale_ns = int(stale_s * NS)
        self.breaker = breaker or CircuitBreaker()
        self.consensus = consensus or Consensus({s.name: s.priority for s in sources},
                                                stale_s=stale_s)
        self.health = {s.name: _Health() for s in self.sources}
        self.primary: str | None = None
        self.failovers = 0

    def status(self) -> dict:
        """Per source: state, last price time (ISO), errors and the last error; and the primary."""
        return {
            "primary": self.primary,
            "sources": {s.name: {"state": h.state, "priority": s.priority,
                                 "last": iso(h.last_ns) if h.last_ns else None,
                                 "errors": h.errors, "last_error": h.last_error}
                        for s in self.sources if (h := self.health[s.name])},
        }

    async def run(self) -> AsyncIterator[Published]:
        """Published consensus prices, as long as the caller reads."""
        queue: asyncio.Queue = asyncio.Queue(maxsize=10_000)
        tasks = [asyncio.create_task(self._pump(s, queue)) for s in self.sources]
        try:
            while True:
                try:
                    name, ts, price, volume = await asyncio.wait_for(queue.get(), 1.0)
                except TimeoutError:
                    self._review(time.time_ns())
                    continue
                self._review(ts)
                c = self.consensus.update(name, ts, price, volume)
                if self.breaker.allow(ts, c.price):
                    yield Published(ts, c.price, c.confidence, self.primary, c.used)
        finally:
            # Cancel until done: on Python 3.11 asyncio.wait_for (here and in the Binance
            # adapter) can swallow a cancellation that lands as its result arrives (gh-86296).
            while pending := [t for t in tasks if not t.done()]:
                for t in pending:
                    t.cancel()
                await asyncio.wait(pending, timeout=1.0)
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _pump(self, source: Source, queue: asyncio.Queue) -> None:
        """Feed one source's prices to the queue; restart it with backoff when it fails."""
        h = self.health[source.name]
        while True:
            try:
                async for ts, price, volume in source.prices():
                    if h.state != "up":
                        h.state, h.retry_s = "up", 0.5
                        _event("source_up", source=source.name)
                    h.last_ns = ts
                    await queue.put((source.name, ts, price, volume))
                h.last_error = "ended"  # a venue closed the stream, a replay reached its end
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of a source means failover
                h.errors += 1
                h.last_error = f"{type(exc).__name__}: {exc}"
            h.state = "down"
            _event("source_down", source=source.name, error=h.last_error, retry_s=h.retry_s)
            self._review(time.time_ns())
            await asyncio.sleep(h.retry_s)
            h.retry_s = min(2 * h.retry_s, MAX_RETRY_S)

    def _review(self, now: int) -> None:
        """Mark stale sources and pick the primary."""
        for s in self.sources:
            h = self.health[s.name]
            if h.state == "up" and now - h.last_ns > self.stale_ns:
                h.state = "stale"
                _event("source_stale", source=s.name, last=iso(h.last_ns))
            elif h.state == "stale" and now - h.last_ns <= self.stale_ns:
                h.state = "up"
        primary = next((s.name for s in self.sources if self.health[s.name].state == "up"), None)
        if primary != self.primary:
            if self.primary is not None:
                self.failovers += 1
            _event("failover", **{"from": self.primary, "to": primary})
            self.primary = primary


def _event(name: str, **fields) -> None:
    log.warning(json.dumps({"event": name, "ts": iso(time.time_ns()), **fields}))
