"""Throughput of the run-directory sink against a plain ``pyarrow.parquet.write_table``.

Writes 30 days of 1-second BTC-USD ticks (2,592,000 rows) through
:class:`trapsim.store.rundir.RunDir` in batches of 21,600 rows (6 h), then
closes (compacts) the run, and prints rows/s and the ratio of its wall time to
a single ``write_table`` of the same rows measured in the same process.

Usage: ``python benchmarks/bench_rundir.py [--days 30] [--batch 21600] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from trapsim.core.schemas import TickBatch
from trapsim.store.rundir import RunDir


def make_batches(days: int, batch: int) -> list[pa.Table]:
    """Synthetic tick tables: geometric random-walk prices, one row per second."""
    n = days * 86_400
    rng = np.random.default_rng(7)
    ts = 1_704_067_200 * 10**9 + np.arange(n, dtype=np.int64) * 10**9
    price = 42_000.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-4, n)))
    regime = (np.arange(n) // 3_600 % 3).astype(np.int8)
    ticks = TickBatch(
        "BTC-USD", ts, price, price - 0.5, price + 0.5, rng.exponential(0.05, n), regime,
        ("calm", "trend", "storm"),
    )
    return [ticks.slice(i, i + batch).to_arrow() for i in range(0, n, batch)]


def time_rundir(batches: list[pa.Table], root: Path) -> float:
    t0 = time.perf_counter()
    run = RunDir.create(root / "run")
    for table in batches:
        run.append("ticks", table)
    run.close()
    return time.perf_counter() - t0


def time_baseline(table: pa.Table, root: Path) -> float:
    t0 = time.perf_counter()
    pq.write_table(table, root / "plain.parquet")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--batch", type=int, default=21_600)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    batches = make_batches(args.days, args.batch)
    whole = pa.concat_tables(batches)
    rows = whole.num_rows
    sink, base = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as d:
            sink.append(time_rundir(batches, Path(d)))
            base.append(time_baseline(whole, Path(d)))
    best_sink, best_base = min(sink), min(base)
    print(f"rows                 {rows:,} in {len(batches)} batches of {args.batch:,}")
    print(f"RunDir append+close  {best_sink:.3f} s  {rows / best_sink:,.0f} rows/s")
    print(f"pq.write_table       {best_base:.3f} s  {rows / best_base:,.0f} rows/s")
    print(f"ratio RunDir/plain   {best_sink / best_base:.2f}")


if __name__ == "__main__":
    main()
