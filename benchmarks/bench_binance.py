"""Throughput of the Binance adapter and book builder on the recorded venue stream.

Prints messages/s of the recorded Binance spot stream (depth diffs, trades,
bookTicker) through `SpotStream.on_message` (decode, events, local book), best of
5, with its ratio to `orjson.loads` alone over the same messages measured in the
same run, and the rate of the whole adapter over a loopback websocket from
`RecordedVenue` (transport included).

Usage: .venv/bin/python benchmarks/bench_binance.py [--recording PATH]
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from pathlib import Path

import orjson

from trapsim.feeds.binance import BinanceSpotAdapter, SpotStream, read_recording
from trapsim.feeds.venue import RecordedVenue

REPEATS = 5


def best_rate(fn, n: int) -> float:
    best = math.inf
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return n / best


async def over_websocket(path: Path) -> tuple[int, float]:
    venue = RecordedVenue(path)
    port = await venue.start()
    adapter = BinanceSpotAdapter(ws_url=f"ws://127.0.0.1:{port}",
                                 rest_url=f"http://127.0.0.1:{port}")
    t = time.perf_counter()
    n = sum([1 async for _ in adapter.events()])
    wall = time.perf_counter() - t
    await venue.stop()
    return n, wall


def main() -> None:
    raw = Path(__file__).resolve().parents[2] / "shared" / "data" / "raw"
    path = (Path(sys.argv[sys.argv.index("--recording") + 1]) if "--recording" in sys.argv
            else raw / "btcusdt_20240808.gz")
    lines = list(read_recording(path))
    n = len(lines)

    def adapter() -> None:
        stream = SpotStream()
        for ts, body in lines:
            stream.on_message(body, ts)

    def decode_only() -> None:
        for _, body in lines:
            orjson.loads(body)

    rate = best_rate(adapter, n)
    base = best_rate(decode_only, n)
    print(f"recording: {n:,} messages ({path.name})")
    print(f"adapter + book builder: {rate / 1e3:8.1f} k messages/s  (required >= 200 k)")
    print(f"orjson.loads alone:     {base / 1e3:8.1f} k messages/s")
    print(f"ratio adapter / decode: {rate / base:.3f}")
    events, wall = asyncio.run(over_websocket(path))
    print(f"over a loopback websocket from RecordedVenue: {events:,} events in {wall:.2f} s,"
          f" {events / wall / 1e3:.1f} k/s")


if __name__ == "__main__":
    main()
