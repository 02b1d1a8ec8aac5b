"""Throughput of the trap detector against a plain numpy rolling std, measured in the same run.

Batch: ticks/s of ``TrapDetector.detect`` over the whole stream (best of
:data:`REPEATS`), and of a numpy rolling standard deviation of 1-second log
returns over 60-tick windows (cumulative sums, best of :data:`REPEATS`) on the
same ticks; their ratio. Online: the median and 99th percentile wall time of one
``TrapDetector.update`` call over :data:`ONLINE_TICKS` ticks fed after a day of
warm-up, best median of :data:`REPEATS` passes, and its ratio to the numpy pass's
time per tick. Targets: batch >= 2 M ticks/s, online median <= 20 µs.

Data: 30 days of synthetic BTC-USD ticks (1 s apart), or the ticks of a run
directory with ``--run DIR`` (e.g. one written by ``trapsim run``, traps included).

Usage: ``.venv/bin/python benchmarks/bench_detector.py [--days 30] [--run DIR]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pyarrow as pa

from trapsim.core.time import parse_ts
from trapsim.detect import TrapDetector
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.process import SyntheticMarket
from trapsim.store.rundir import read_stream

START = parse_ts("2025-01-06T00:00:00Z")
REPEATS = 5
WINDOW = 60
ONLINE_TICKS = 200_000


def rolling_std(price: np.ndarray) -> np.ndarray:
    """Std of 1-tick log returns over the last :data:`WINDOW` ticks, by cumulative sums."""
    r = np.diff(np.log(price))
    c1 = np.concatenate(([0.0], np.cumsum(r)))
    c2 = np.concatenate(([0.0], np.cumsum(r * r)))
    s1 = c1[WINDOW:] - c1[:-WINDOW]
    s2 = c2[WINDOW:] - c2[:-WINDOW]
    return np.sqrt(np.maximum(s2 / WINDOW - (s1 / WINDOW) ** 2, 0.0))


def best_time(fn, *args) -> float:
    best = np.inf
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def online(ts, price, volume) -> tuple[float, float]:
    """Median and 99th percentile seconds per ``update`` (best median of the passes)."""
    warm = min(86_400, len(ts) - ONLINE_TICKS)
    tl = ts[warm : warm + ONLINE_TICKS].tolist()
    pl = price[warm : warm + ONLINE_TICKS].tolist()
    vl = volume[warm : warm + ONLINE_TICKS].tolist()
    best = (np.inf, np.inf)
    lat = np.empty(ONLINE_TICKS)
    clock = time.perf_counter_ns
    for _ in range(REPEATS):
        det = TrapDetector()
        det.detect(ts[:warm], price[:warm], volume[:warm])
        update = det.update
        for i in range(ONLINE_TICKS):
            t0 = clock()
            update(tl[i], pl[i], vl[i])
            lat[i] = clock() - t0
        med = float(np.median(lat)) / 1e9
        if med < best[0]:
            best = (med, float(np.percentile(lat, 99)) / 1e9)
    return best


def load(args) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if args.run:
        ticks = read_stream(args.run, "ticks")
        return (
            ticks["ts"].cast(pa.int64()).to_numpy(),
            ticks["price"].to_numpy(),
            ticks["volume"].to_numpy(),
        )
    chunk = SyntheticMarket(DEFAULT_PARAMS, seed=1, start_ts=START).next_chunk(args.days * 86_400)
    return chunk.ts, chunk.price, chunk.volume


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--run", help="run directory whose ticks to use instead")
    args = ap.parse_args()
    ts, price, volume = load(args)
    n = len(ts)
    TrapDetector().detect(ts[:100_000], price[:100_000], volume[:100_000])  # compile, load

    batch = n / best_time(lambda: TrapDetector().detect(ts, price, volume))
    numpy_rate = n / best_time(rolling_std, price)
    med, p99 = online(ts, price, volume)
    detections = TrapDetector().detect(ts, price, volume).num_rows

    print(f"ticks: {n:,} ({n / 86_400:.1f} days), detections: {detections:,}")
    print(f"batch detect:        {batch / 1e6:8.2f} M ticks/s  (required >= 2)")
    print(f"numpy rolling std:   {numpy_rate / 1e6:8.2f} M ticks/s  ({WINDOW}-tick window)")
    print(f"ratio batch / numpy: {batch / numpy_rate:8.3f}")
    print(
        f"online update:       median {med * 1e6:6.2f} µs, p99 {p99 * 1e6:6.2f} µs "
        "(required median <= 20 µs)"
    )
    print(f"ratio online / numpy per tick: {med * numpy_rate:8.1f}")


if __name__ == "__main__":
    main()
