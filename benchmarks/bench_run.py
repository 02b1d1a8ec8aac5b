"""Throughput of the whole path engine and of `trapsim run`, with a numpy baseline.

Prints:
- generation (market + traps + quotes, in memory, the base market and the quotes
  on a worker thread as in a run) ticks/s for 1, 7 and 30 days, and its ratio
  to numpy's standard-normal draws/s measured in the same run (both warm, best
  of 5);
- the whole `trapsim run --duration 720 --sleep 0` command: wall seconds and
  peak RSS of the child process;
- paced drift: how far released ticks lag their wall-clock schedule after 60 s at
  --sleep 0.001, and at --sleep 0.01 with the Redis sink on (needs Redis at
  127.0.0.1:6379; keys under the prefix bench_paced_).

Usage: .venv/bin/python benchmarks/bench_run.py [--skip-paced]
"""

from __future__ import annotations

import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from trapsim.market.params import DEFAULT_PARAMS
from trapsim.service.config import RunConfig
from trapsim.service.simulation import Simulation

REPEATS = 5
"""Timed repeats of each in-memory measurement; the best is reported (least disturbed)."""


def normal_rate(n: int = 2_592_000) -> float:
    """numpy's standard-normal draws/s into a preallocated array, warm (best of REPEATS)."""
    rng = np.random.default_rng(0)
    out = np.empty(n)
    best = math.inf
    for _ in range(REPEATS + 1):  # the first pass faults the pages in
        t = time.perf_counter()
        rng.standard_normal(out=out)
        best = min(best, time.perf_counter() - t)
    return n / best


def generation_rate(days: float, seed: int = 1) -> tuple[float, int, int]:
    """Ticks/s of the whole path engine, best of REPEATS; ticks and traps of one run."""
    best = math.inf
    for _ in range(REPEATS):
        sim = Simulation(RunConfig(duration=days * 24, sleep=0, seed=seed, market=DEFAULT_PARAMS))
        n = traps = 0
        t = time.perf_counter()
        for step in sim.batches():
            n += len(step.ticks["BTC-USD"])
            traps += len(step.labels)
        best = min(best, time.perf_counter() - t)
    return n / best, n, traps


def whole_command(hours: float) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        t = time.perf_counter()
        subprocess.run(
            [
                sys.executable,
                "-m",
                "trapsim",
                "run",
                "--duration",
                str(hours),
                "--sleep",
                "0",
                "--seed",
                "7",
                "--out",
                str(out),
            ],
            check=True,
            capture_output=True,
        )
        wall = time.perf_counter() - t
    rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return wall, rss_mb


def paced_drift(wall_seconds: float = 60.0, sleep: float = 0.001, extra: tuple = ()) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "trapsim",
                "run",
                "--sleep",
                str(sleep),
                "--seed",
                "7",
                "--out",
                str(out),
                *extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        while not (out / "config.yaml").exists():
            time.sleep(0.01)
        t0 = time.monotonic()
        time.sleep(wall_seconds)
        proc.terminate()
        elapsed = time.monotonic() - t0
        proc.wait()
        stats = json.loads((out / "stats.json").read_text())
    return {
        "wall_s": round(elapsed, 2),
        "market_s": stats["ticks"],
        "final_lag_s": round(stats["pacing"]["lag_s"], 4),
        "max_lag_s": round(stats["pacing"]["max_lag_s"], 4),
    }


def main() -> None:
    generation_rate(0.5)  # warm the numba cache and imports
    base = normal_rate()
    print(f"numpy standard_normal: {base / 1e6:.1f} M draws/s")
    for days in (1, 7, 30):
        rate, n, traps = generation_rate(days)
        print(
            f"generation {days:>2} d: {n:>9,} ticks, {traps:>5} traps, {rate / 1e6:6.2f} M ticks/s,"
            f" ratio to numpy normals {rate / base:.2f}"
        )
    wall, rss = whole_command(720)
    print(
        f"trapsim run --duration 720 --sleep 0: {wall:.2f} s wall, peak RSS {rss:.0f} MB,"
        f" {2_592_000 / wall / 1e6:.2f} M ticks/s end to end"
    )
    if "--skip-paced" not in sys.argv:
        print("paced --sleep 0.001 over 60 s:", paced_drift())
        import redis

        url, prefix = "redis://127.0.0.1:6379/0", "bench_paced_"
        sinks = ("--redis", url, "--redis-prefix", prefix, "--redis-clear")
        print("paced --sleep 0.01 with Redis over 60 s:", paced_drift(sleep=0.01, extra=sinks))
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(match=prefix + "*"):
            client.unlink(key)


if __name__ == "__main__":
    main()
