"""Cost of the Redis and SQLite sinks on a flat-out run, and the Redis memory it leaves.

Runs the same 30-day flat-out simulation (seed 7) in-process through
:class:`trapsim.service.runner.Runner`, alternately with only the run
directory and with the run directory plus a :class:`RedisSink` and a SQLite
:class:`SqlSink`, and prints:

- wall seconds of each run (best and median of ``--repeat``) and their ratios
  (with sinks ÷ run directory only; the target is at most 2), and the
  process CPU seconds (all threads; the Redis server's own CPU not included),
  which shared machines disturb less than wall time;
- the Redis memory the sink's keys use after the run (``MEMORY USAGE … SAMPLES 0``
  summed over the prefix's keys) against the bound documented in
  :mod:`trapsim.store.redis`, and the server's ``used_memory`` before and after.

Needs Redis at ``--redis`` (default redis://127.0.0.1:6379/0); writes only
under a fresh ``bench_<hex>_`` prefix and deletes it afterwards.

Usage: .venv/bin/python benchmarks/bench_sinks.py [--days 30] [--repeat 3] [--redis URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median

import redis
from rich.console import Console

from trapsim.market.params import DEFAULT_PARAMS
from trapsim.service.config import RunConfig
from trapsim.service.runner import Runner
from trapsim.store.redis import HISTORY_CAP, LIST_CAP, RedisSink
from trapsim.store.sql import SqlSink

BOUND_MB = 36.0
"""The documented memory bound of a 30-day flat-out run with the default caps."""


def run(cfg: RunConfig, redis_url: str | None, prefix: str) -> tuple[float, float]:
    """Wall and process CPU seconds of one run, sinks constructed and closed included."""
    with tempfile.TemporaryDirectory() as tmp:
        t, cpu = time.perf_counter(), time.process_time()
        sinks = ()
        if redis_url:
            run_id = uuid.uuid4().hex
            sinks = (
                RedisSink(redis_url, run_id=run_id, prefix=prefix, clear=True),
                SqlSink(
                    f"sqlite:///{tmp}/sim.db", run_id=run_id, config=cfg.model_dump(mode="json")
                ),
            )
        Runner(cfg, Path(tmp) / "run", Console(quiet=True), extra_sinks=sinks).run()
        return time.perf_counter() - t, time.process_time() - cpu


def prefix_bytes(client: redis.Redis, prefix: str) -> tuple[int, int]:
    """Keys under ``prefix`` and the bytes they use."""
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    return len(keys), sum(client.memory_usage(k, samples=0) or 0 for k in keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--days", type=float, default=30.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    cfg = RunConfig(duration=args.days * 24, sleep=0, seed=7, market=DEFAULT_PARAMS)
    client = redis.Redis.from_url(args.redis)
    prefix = f"bench_{uuid.uuid4().hex[:12]}_"
    used_before = client.info("memory")["used_memory"]
    run(RunConfig(duration=1, sleep=0, seed=7, market=DEFAULT_PARAMS), args.redis, prefix)
    base, sinks = [], []
    try:
        for _ in range(args.repeat):  # alternate, so machine load hits both alike
            base.append(run(cfg, None, prefix))
            sinks.append(run(cfg, args.redis, prefix))
        n_keys, used = prefix_bytes(client, prefix)
        used_after = client.info("memory")["used_memory"]
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.unlink(*keys)
    print(f"{args.days:g}-day flat-out run, {args.repeat} runs each (alternating):")
    for name, runs in (("run directory only", base), ("+ Redis + SQLite sinks", sinks)):
        wall = [w for w, _ in runs]
        print(
            f"  {name:24s} wall best {min(wall):5.2f} s, median {median(wall):5.2f} s"
            f"   CPU median {median(c for _, c in runs):5.2f} s   (walls: {_fmt(wall)})"
        )
    for stat in (min, median):
        ratio = stat(w for w, _ in sinks) / stat(w for w, _ in base)
        print(f"  wall ratio of the {stat.__name__:6s}  {ratio:5.2f}   (target <= 2)")
    cpu_ratio = median(c for _, c in sinks) / median(c for _, c in base)
    print(f"  CPU ratio of the median {cpu_ratio:5.2f}")
    print(
        f"Redis after the run: {n_keys} keys under {prefix!r} use {used / 1e6:.1f} MB"
        f" (MEMORY USAGE), bound {BOUND_MB:g} MB for 30 days at history_cap={HISTORY_CAP},"
        f" list_cap={LIST_CAP}; server used_memory {used_before / 1e6:.1f} → "
        f"{used_after / 1e6:.1f} MB"
    )


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
