"""Throughput of replaying a 1-minute candle file as 1-second ticks, with a numpy baseline.

Prints, for the 2025 BTC/USDT file (130,708 candles, 7.8 M ticks):
- end-to-end replay (read, classify regimes, bridge, stream in chunks) ticks/s;
- bridging alone (:func:`bridge_ticks` on candles already read) ticks/s;
- each as a ratio to numpy's standard-normal draws/s measured in the same run.
Each figure is the best of ``--repeat`` runs, after one warm-up run.

Usage: .venv/bin/python benchmarks/bench_replay.py [--file PATH] [--chunk N] [--repeat K]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from trapsim.core.seeding import rng_for
from trapsim.feeds.candles import read_candles
from trapsim.feeds.replay import ReplayMarket, bridge_ticks

RAW = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "raw"
BTC_2025 = RAW / "BTC_USDT-1m.feather"


def best_seconds(run, repeat: int) -> float:
    run()  # warm-up: numba compilation or loading its cache, page cache
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        run()
        times.append(time.perf_counter() - t)
    return min(times)


def replay(path: Path, chunk: int) -> int:
    market = ReplayMarket(path, seed=1)
    n = 0
    while (ticks := market.next_chunk(chunk)) is not None:
        n += len(ticks)
    return n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--file", type=Path, default=BTC_2025)
    parser.add_argument("--chunk", type=int, default=1 << 16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    candles = read_candles(args.file)
    n_ticks = 60 * len(candles)
    rng = np.random.default_rng(0)
    normals = n_ticks / best_seconds(lambda: rng.standard_normal(n_ticks), args.repeat)
    end_to_end = n_ticks / best_seconds(lambda: replay(args.file, args.chunk), args.repeat)
    bridging = n_ticks / best_seconds(
        lambda: bridge_ticks(candles, rng_for(1, "bench")), args.repeat
    )

    print(f"file                {args.file.name}: {len(candles):,} candles, {n_ticks:,} ticks")
    print(f"numpy normals       {normals / 1e6:8.2f} M draws/s   (baseline)")
    for name, rate in (("replay, end to end", end_to_end), ("bridge_ticks alone", bridging)):
        print(f"{name:<20}{rate / 1e6:8.2f} M ticks/s  ratio {rate / normals:.3f}")


if __name__ == "__main__":
    main()
