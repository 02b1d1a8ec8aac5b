"""Cost of the live relay to Redis (``trapsim serve --redis``) and of a replica joining late.

Runs the same flat-out simulation (seed 7, two market days by default, so the
snapshot's tick lists are full) in-process through
:class:`trapsim.service.runner.Runner`, alternately into a
:class:`~trapsim.service.live.LiveState` alone and into a live state plus a
:class:`~trapsim.service.relay.Relay`, and prints:

- wall and process CPU seconds of each run (best of ``--repeat``) and their
  ratio (with the relay ÷ live state only): the relay's cost on the run loop
  (a served run is paced, so this is the headroom, not a slowdown users see);
- the Redis memory of the kept ticks (``MEMORY USAGE … SAMPLES 0`` over the
  ``live:ticks:*`` lists) per tick, against the ≈ 45 B documented in
  :mod:`trapsim.service.relay`;
- the wall seconds a replica takes to join from the snapshot
  (:meth:`~trapsim.service.replica.Replica.sync`), and the ticks it loads per second.

Needs Redis at ``--redis`` (default redis://127.0.0.1:6379/0); writes only under
a fresh ``bench_<hex>_`` prefix and deletes it afterwards.

Usage: .venv/bin/python benchmarks/bench_relay.py [--hours 48] [--repeat 3] [--redis URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

import redis
from rich.console import Console

from trapsim.market.params import DEFAULT_PARAMS
from trapsim.service.config import RunConfig
from trapsim.service.live import LiveState
from trapsim.service.relay import Relay
from trapsim.service.replica import Replica
from trapsim.service.runner import Runner

DOCUMENTED_B_PER_TICK = 45


def run(cfg: RunConfig, redis_url: str | None, prefix: str) -> tuple[float, float]:
    """Wall and process CPU seconds of one run, the relay started and stopped included."""
    with tempfile.TemporaryDirectory() as tmp:
        t, cpu = time.perf_counter(), time.process_time()
        state = LiveState(cfg.symbols)
        relay = Relay(redis_url, prefix=prefix, run_id=uuid.uuid4().hex,
                      paced=False) if redis_url else None
        runner = Runner(cfg, Path(tmp) / "run", Console(quiet=True),
                        (state, *([relay] if relay else [])))
        if relay is not None:
            relay.start(runner, state, "http://bench")
        runner.run()
        if relay is not None:
            relay.stop()
        return time.perf_counter() - t, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=48.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    cfg = RunConfig(duration=args.hours, sleep=0, seed=7, market=DEFAULT_PARAMS,
                    symbols=("BTC-USD", "ETH-USD"))
    prefix = f"bench_{uuid.uuid4().hex[:12]}_"
    client = redis.Redis.from_url(args.redis)
    try:
        alone, relayed = [], []
        for _ in range(args.repeat):
            alone.append(run(cfg, None, prefix))
            relayed.append(run(cfg, args.redis, prefix))
        ticks = int(args.hours * 3600) * len(cfg.symbols)
        a, r = min(alone), min(relayed)
        print(f"{ticks:,} ticks, best of {args.repeat}")
        print(f"  live state only     {a[0]:7.2f} s wall  {a[1]:7.2f} s CPU  "
              f"{ticks / a[0]:12,.0f} ticks/s")
        print(f"  live state + relay  {r[0]:7.2f} s wall  {r[1]:7.2f} s CPU  "
              f"{ticks / r[0]:12,.0f} ticks/s")
        print(f"  ratio (relay / alone): wall {r[0] / a[0]:.2f}  CPU {r[1] / a[1]:.2f}")
        keys = list(client.scan_iter(match=prefix + "live:ticks:*"))
        kept = sum(client.llen(k) for k in keys)
        used = sum(client.memory_usage(k, samples=0) for k in keys)
        print(f"Redis: {kept:,} ticks kept, {used / 2**20:.1f} MiB, {used / kept:.1f} B per tick "
              f"(documented ≈ {DOCUMENTED_B_PER_TICK})")
        replica = Replica(args.redis, prefix, lambda state: None, ws_queue_size=1,
                          ws_send_timeout=1.0)
        t = time.perf_counter()
        replica.sync()
        joined = time.perf_counter() - t
        print(f"a replica joins from the snapshot in {joined:.2f} s "
              f"({kept / joined:,.0f} ticks/s)")
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        if keys:
            client.unlink(*keys)


if __name__ == "__main__":
    main()
