"""Throughput of five symbols on one clock, with quotes and L2 depth, against numpy.

Prints symbol-ticks/s for BTC-USD, ETH-USD, USDT-USD, BTC-ETH and BTC-USD-PERP over 30
days of 1-second ticks:

- the market layer: `MultiAssetMarket` with every symbol's bid/ask (`SpreadModel`) and
  its L2 depth snapshots every 10 s (`DepthModel`, 10 levels a side), best of 3;
- the path engine of a run: `Simulation` of the five symbols (chaos-free, traps on BTC
  and ETH at the default frequency, the cross and the perpetual from the final legs,
  quotes) plus every symbol's depth snapshots every 10 s, best of 3;
- the whole command, `trapsim run --symbols … --duration 720 --sleep 0` (traps on BTC and
  ETH, quotes, depth every 10 s, candles 1m…1d, everything written to the run
  directory), wall time of the subprocess;

and the ratio of each to numpy's standard-normal draws/s measured in the same run.

Usage: .venv/bin/python benchmarks/bench_multi.py
"""

from __future__ import annotations

import math
import subprocess
import sys
import tempfile
import time

import numpy as np

from trapsim.market.depth import DepthModel
from trapsim.market.multi import SYMBOLS, MultiAssetMarket, quote_params
from trapsim.market.spread import SpreadModel
from trapsim.service.config import RunConfig
from trapsim.service.simulation import Simulation

DAYS = 30
CHUNK = 36_000
START = 1_736_121_600 * 1_000_000_000


def run() -> tuple[float, int]:
    market = MultiAssetMarket(SYMBOLS, seed=1, start_ts=START)
    spreads = {s: SpreadModel(quote_params(s), seed=1, symbol=s) for s in SYMBOLS}
    depth = {s: DepthModel(s, seed=1) for s in SYMBOLS}
    n = rows = 0
    t = time.perf_counter()
    for _ in range(DAYS * 86_400 // CHUNK):
        chunks, _ = market.next_chunks(CHUNK)
        for s, c in chunks.items():
            bid, ask = spreads[s].quotes(c.ts, c.price, c.volume)
            rows += depth[s].update(c.ts, bid, ask, c.volume).num_rows
            n += len(c)
    return n / (time.perf_counter() - t), rows


def engine() -> float:
    """Symbol-ticks/s of the run's path engine with depth, no storage."""
    sim = Simulation(RunConfig(symbols=SYMBOLS, duration=DAYS * 24, sleep=0, seed=1))
    depth = {s: DepthModel(s, seed=1) for s in SYMBOLS}
    n = 0
    t = time.perf_counter()
    for step in sim.batches():
        for s, ticks in step.ticks.items():
            depth[s].update(ticks.ts, ticks.bid, ticks.ask, ticks.volume)
            n += len(ticks)
    return n / (time.perf_counter() - t)


def whole_command() -> float:
    """Symbol-ticks/s of the whole `trapsim run` of five symbols for 30 days."""
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "trapsim", "run", "--symbols", ",".join(SYMBOLS),
                        "--duration", str(DAYS * 24), "--sleep", "0", "--seed", "1",
                        "--out", f"{tmp}/run"], check=True, capture_output=True)
        return len(SYMBOLS) * DAYS * 86_400 / (time.perf_counter() - t)


def main() -> None:
    rng = np.random.default_rng(0)
    out = np.empty(2_592_000)
    base = math.inf
    for _ in range(6):
        t = time.perf_counter()
        rng.standard_normal(out=out)
        base = min(base, time.perf_counter() - t)
    base = len(out) / base
    best, rows = 0.0, 0
    for _ in range(3):
        rate, rows = run()
        best = max(best, rate)
    print(f"5 symbols x {DAYS} days, quotes + depth every 10 s ({rows:,} depth snapshots): "
          f"{best / 1e6:.2f} M symbol-ticks/s (required >= 2)")
    eng = max(engine() for _ in range(3))
    print(f"run engine (traps, cross, perp, quotes) + depth every 10 s: {eng / 1e6:.2f} M "
          "symbol-ticks/s (required >= 2)")
    whole = whole_command()
    print(f"trapsim run --symbols (5) --duration {DAYS * 24} --sleep 0, whole command: "
          f"{whole / 1e6:.2f} M symbol-ticks/s (required >= 2)")
    print(f"numpy standard_normal: {base / 1e6:.1f} M draws/s; ratio {best / base:.3f} "
          f"(market layer), {eng / base:.3f} (run engine), {whole / base:.3f} (whole command)")


if __name__ == "__main__":
    main()
