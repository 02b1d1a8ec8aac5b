"""Throughput of trap injection against numpy's standard-normal draws, measured in the same run.

Generates 30 days of synthetic BTC-USD base ticks, then injects traps at the
default frequency (0.2, about 1,440 traps) in one call, in 6-hour calls (as
the path engine steps) and in hourly calls; the stepped runs pass the window a
runner guarantees (``lookback_ns`` before the previous ``upto_ts`` to
``max_span_ns`` after the new one). Prints, for the best of :data:`REPEATS`
runs of each, the wall time, injected ticks/s and traps/s, and the ratio of
ticks/s to the standard-normal draws/s of ``numpy`` (best of
:data:`REPEATS` draws of 20 M).

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
REPEATS = 5
NORMALS = 20_000_000


def normal_rate() -> float:
    """Standard-normal draws per second of ``numpy`` (best of :data:`REPEATS`)."""
    rng = np.random.default_rng(0)
    rng.standard_normal(1000)
    best = np.inf
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        rng.standard_normal(NORMALS)
        best = min(best, time.perf_counter() - t0)
    return NORMALS / best


def inject(ts, price, volume, frequency: float, step_ns: int | None) -> tuple[float, int]:
    """Wall time and trap count of one run, in one call (``step_ns`` None) or in steps."""
    injector = TrapInjector(symbol="BTC-USD", frequency=frequency, seed=1, start_ts=START)
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
    inject(ts[:86_400], price[:86_400], volume[:86_400], args.frequency, None)  # compile, load
    normals = normal_rate()
    print(f"ticks                {n:,} ({args.days} days), frequency {args.frequency}")
    print(f"numpy normals        {normals:14,.0f} draws/s")
    for name, step in (("one call", None), ("6-hour calls", 6 * HOUR_NS),
                       ("hourly calls", HOUR_NS)):
        best, traps = min(inject(ts, price, volume, args.frequency, step) for _ in range(REPEATS))
        print(f"{name:20s} {best * 1e3:8.2f} ms  {n / best:14,.0f} ticks/s  "
              f"{traps / best:8,.0f} traps/s ({traps} traps)  "
              f"ratio {n / best / normals:5.2f} × normals/s")


if __name__ == "__main__":
    main()
