"""Throughput of the synthetic market against numpy's normal draws, measured in the same run.

Prints ticks/s for 1, 7 and 30 days generated in chunks of 21,600 ticks (6 h),
the rate at which ``Generator.standard_normal`` draws in the same chunks, and
their ratio (the engine must reach at least 5 M ticks/s and 0.2 × the normal
rate). Run: ``.venv/bin/python benchmarks/bench_market.py``.
"""

from __future__ import annotations

import time

import numpy as np

from trapsim.core.seeding import rng_for
from trapsim.core.time import parse_ts
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.process import SyntheticMarket

CHUNK = 21_600
START = parse_ts("2025-01-06T00:00:00Z")
REPEATS = 3


def ticks_per_second(days: int) -> float:
    """Best of :data:`REPEATS` rates of generating ``days`` of ticks."""
    chunks = days * 86_400 // CHUNK
    best = np.inf
    for rep in range(REPEATS):
        market = SyntheticMarket(DEFAULT_PARAMS, seed=rep, start_ts=START)
        t0 = time.perf_counter()
        for _ in range(chunks):
            market.next_chunk(CHUNK)
        best = min(best, time.perf_counter() - t0)
    return chunks * CHUNK / best


def normals_per_second(days: int) -> float:
    """Best of :data:`REPEATS` rates of drawing one standard normal per tick, chunk by chunk."""
    chunks = days * 86_400 // CHUNK
    best = np.inf
    for rep in range(REPEATS):
        rng = rng_for(rep, "bench")
        t0 = time.perf_counter()
        for _ in range(chunks):
            rng.standard_normal(CHUNK)
        best = min(best, time.perf_counter() - t0)
    return chunks * CHUNK / best


def main() -> None:
    SyntheticMarket(DEFAULT_PARAMS, seed=0, start_ts=START).next_chunk(CHUNK)  # compile
    rates = {days: ticks_per_second(days) for days in (1, 7, 30)}
    normal = normals_per_second(30)
    for days, rate in rates.items():
        print(f"{days:>2} days: {rate / 1e6:7.2f} M ticks/s")
    print(f"numpy standard_normal: {normal / 1e6:7.2f} M draws/s")
    print(f"ratio (30 days / normal draws): {rates[30] / normal:.3f}  (required >= 0.2)")
    print(f"linearity (30-day rate / 1-day rate): {rates[30] / rates[1]:.3f}")


if __name__ == "__main__":
    main()
