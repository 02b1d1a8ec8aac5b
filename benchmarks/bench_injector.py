"""Throughput of trap injection against a numpy ``cumsum`` pass over the same buffer.

Generates 30 days of synthetic BTC-USD base ticks, then injects traps at the
default frequency (0.2, about 1,440 traps) in one call and in hourly calls
that pass the window a runner guarantees (``lookback_ns`` before the previous
``upto_ts`` to ``max_span_ns`` after the new one). Prints traps/s, ticks/s and
the ratio of each wall time to one ``np.cumsum`` of the buffer's prices,
measured in the same run (best of :data:`REPEATS`).

Usage: ``.venv/bin/python benchmarks/bench_injector.py [--days 30] [--frequency 0.2]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from trapsim.core.time import HOUR_NS, parse_ts
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.process import SyntheticMarket
from trapsim.scenarios.injector import TrapInjector

START = parse_ts("2025-01-06T00:00:00Z")
REPEATS = 3


def inject(ts, price, volume, frequency: float, seed: int,
           step_ns: int | None) -> tuple[float, int]:
    """Wall time and trap count of one run, in one call (``step_ns`` None) or in steps."""
    injector = TrapInjector(symbol="BTC-USD", frequency=frequency, seed=seed, start_ts=START)
    overlay, volume = np.zeros_like(price), volume.copy()
    end = int(ts[-1]) + 1
    steps = [end] if step_ns is None else [*range(START + step_ns, end, step_ns), end]
    count, prev = 0, START
    t0 = time.perf_counter()
    for upto in steps:
        lo = ts.searchsorted(prev - injector.lookback_ns)
        hi = ts.searchsorted(upto + injector.max_span_ns, side="right")
        count += len(injector.inject(ts[lo:hi], price[lo:hi], overlay[lo:hi], volume[lo:hi], upto))
        prev = upto
    return time.perf_counter() - t0, count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--frequency", type=float, default=0.2)
    args = ap.parse_args()

    chunk = SyntheticMarket(DEFAULT_PARAMS, seed=1, start_ts=START).next_chunk(args.days * 86_400)
    ts, price, volume = chunk.ts, chunk.price, chunk.volume
    n = len(ts)
    inject(ts[:86_400], price[:86_400], volume[:86_400], args.frequency, 0, None)  # warm-up
    base = min(_timed(np.cumsum, price) for _ in range(REPEATS))
    print(f"ticks                {n:,} ({args.days} days), frequency {args.frequency}")
    print(f"np.cumsum            {base * 1e3:8.2f} ms  {n / base:14,.0f} ticks/s")
    for name, step in (("one call", None), ("hourly calls", HOUR_NS)):
        runs = [inject(ts, price, volume, args.frequency, seed, step) for seed in range(REPEATS)]
        best, traps = min(runs)
        print(f"{name:20s} {best * 1e3:8.2f} ms  {n / best:14,.0f} ticks/s  "
              f"{traps / best:8,.0f} traps/s ({traps} traps)  ratio {best / base:6.1f}")


def _timed(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


if __name__ == "__main__":
    main()
