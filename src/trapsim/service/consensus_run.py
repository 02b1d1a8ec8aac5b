"""``trapsim run --source …``: live price sources with failover, consensus and a circuit
breaker, published into a run directory.

Sources (highest priority first): ``binance-ws`` (Binance spot websocket, priority 3),
``replay:FILE`` (a candle file, priority 2) and ``synthetic`` (the run's simulated
market with its traps and chaos, priority 1). The two last run at ``1 / --sleep``
market seconds per wall second. :class:`~trapsim.feeds.sources.FeedManager` fails over
between them and publishes the consensus; the run writes ``consensus.parquet``
(:data:`~trapsim.core.schemas.CONSENSUS`), ``stats.json`` (published prices, failovers,
breaker trips, each source's state) and ``sources.yaml``, and logs every change of
state as a JSON line. It stops after ``--duration`` hours of market time at that pace
(``duration × 3600 × sleep`` wall seconds), or on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pyarrow as pa
from rich.console import Console

from trapsim.core.errors import ConfigError
from trapsim.core.schemas import CONSENSUS, TS
from trapsim.feeds.binance import BinanceSpotAdapter
from trapsim.feeds.consensus import CircuitBreaker
from trapsim.feeds.sources import (
    BinanceSource,
    CandleReplaySource,
    FeedManager,
    Published,
    Source,
    SyntheticSource,
)
from trapsim.service.config import RunConfig
from trapsim.store.rundir import RunDir

FLUSH_S = 2.0


def open_sources(specs: list[str], cfg: RunConfig, *, binance_ws: str | None = None,
                 binance_rest: str | None = None) -> list[Source]:
    """The sources named by ``--source`` options; the Binance URLs default to Binance's
    (:class:`~trapsim.feeds.binance.BinanceSpotAdapter`).

    Raises
    ------
    ConfigError
        On an unknown or repeated source, a missing replay file, or ``sleep`` 0 (sources
        are live).
    """
    if not cfg.sleep > 0:
        raise ConfigError("--source runs live: --sleep must be > 0 (wall seconds per market "
                          "second)")
    speed = 1.0 / cfg.sleep
    sources: list[Source] = []
    for spec in specs:
        if spec == "binance-ws":
            urls = {"ws_url": binance_ws, "rest_url": binance_rest}
            adapter = BinanceSpotAdapter(cfg.symbol, **{k: v for k, v in urls.items() if v})
            sources.append(BinanceSource(adapter))
        elif spec.startswith("replay:"):
            path = Path(spec.removeprefix("replay:"))
            if not path.is_file():
                raise ConfigError(f"--source {spec}: no such file: {path}")
            sources.append(CandleReplaySource(path, speed=speed, seed=cfg.seed,
                                              symbol=cfg.symbol))
        elif spec == "synthetic":
            # A live market: it runs until the run stops, not for --duration on its own.
            sources.append(SyntheticSource(cfg.model_copy(update={"duration": None}),
                                           speed=speed))
        else:
            raise ConfigError(f"--source {spec!r}: use binance-ws, replay:FILE or synthetic")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ConfigError(f"--source: each source once, got {', '.join(specs)}")
    return sources


def run_sources(sources: list[Source], cfg: RunConfig, out: Path, console: Console, *,
                breaker_threshold: float | None = None) -> dict:
    """Publish the consensus of ``sources`` into the run directory ``out``; returns the
    report (also ``stats.json``). ``breaker_threshold`` None keeps the
    :class:`~trapsim.feeds.consensus.CircuitBreaker` default (20 %)."""
    rundir = RunDir.create(out, streams=("consensus",))
    rundir.write_yaml("sources.yaml", {"symbol": cfg.symbol, "sleep": cfg.sleep,
                                       "sources": [s.name for s in sources]})
    breaker = CircuitBreaker() if breaker_threshold is None else CircuitBreaker(breaker_threshold)
    manager = FeedManager(sources, breaker=breaker)
    limit = None if cfg.duration is None else cfg.duration * 3600 * cfg.sleep
    stop: dict = {"reason": None}
    rows: list[Published] = []
    published = 0

    def report() -> dict:
        return {"symbol": cfg.symbol, "published": published, "failovers": manager.failovers,
                "breaker_trips": manager.breaker.trips, "stopped_by": stop["reason"],
                **manager.status()}

    def flush() -> None:
        if rows:
            rundir.append("consensus", _table(rows, cfg.symbol))
            rows.clear()
        rundir.flush()
        rundir.write_json("stats.json", report())

    async def consume() -> None:
        nonlocal published
        async for got in manager.run():
            rows.append(got)
            published += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda s=sig: stop.update(reason=signal.Signals(s).name))
        t0 = last = time.monotonic()
        task = asyncio.create_task(consume())
        try:
            while stop["reason"] is None and not task.done():
                await asyncio.sleep(0.1)
                if limit is not None and time.monotonic() - t0 >= limit:
                    stop["reason"] = "end"
                if time.monotonic() - last > FLUSH_S:
                    flush()
                    last = time.monotonic()
        finally:
            # Cancel until done: FeedManager.run awaits asyncio.wait_for, which on Python
            # 3.11 can swallow a cancellation that lands as an item arrives (gh-86296).
            while not task.done():
                task.cancel()
                await asyncio.wait({task}, timeout=1.0)

    console.print(f"run directory {out}  sources {', '.join(s.name for s in sources)}",
                  highlight=False, soft_wrap=True)
    try:
        asyncio.run(main())
    finally:
        flush()
        rundir.close()
    return report()


def _table(rows: list[Published], symbol: str) -> pa.Table:
    return pa.table({"ts": pa.array([r.ts for r in rows], pa.int64()).cast(TS),
                     "symbol": [symbol] * len(rows), "price": [r.price for r in rows],
                     "confidence": [r.confidence for r in rows],
                     "primary": [r.primary for r in rows],
                     "sources": [",".join(r.used) for r in rows]}, schema=CONSENSUS)
