"""Cost of one consensus update over three sources, and of the circuit breaker check.

Prints µs per `Consensus.update` (3 sources, rotating, with outlier checks,
weights and smoothing) plus `CircuitBreaker.allow`, best of 5 over 300,000
updates, and the ratio to a baseline measured in the same run: a plain Python
function computing a 3-source weighted mean.

Usage: .venv/bin/python benchmarks/bench_consensus.py
"""

from __future__ import annotations

import math
import time

import numpy as np

from trapsim.feeds.consensus import CircuitBreaker, Consensus

N = 300_000
REPEATS = 5
NS = 1_000_000_000


def best(fn) -> float:
    out = math.inf
    for _ in range(REPEATS):
        t = time.perf_counter()
        fn()
        out = min(out, time.perf_counter() - t)
    return out / N * 1e6


def main() -> None:
    rng = np.random.default_rng(0)
    names = ("binance-ws", "replay", "synthetic")
    src = [names[i % 3] for i in range(N)]
    ts = (np.arange(N) * (NS // 10)).tolist()  # ten updates a second
    price = (60_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, N)))).tolist()
    volume = rng.exponential(0.1, N).tolist()

    def consensus() -> None:
        c = Consensus({"binance-ws": 3.0, "replay": 2.0, "synthetic": 1.0})
        b = CircuitBreaker()
        for s, t, p, v in zip(src, ts, price, volume, strict=True):
            b.allow(t, c.update(s, t, p, v).price)

    def baseline() -> None:
        last = {"binance-ws": 60_000.0, "replay": 60_000.0, "synthetic": 60_000.0}
        w = {"binance-ws": 3.0, "replay": 2.0, "synthetic": 1.0}
        for s, p in zip(src, price, strict=True):
            last[s] = p
            sum(w[k] * last[k] for k in last) / 6.0

    us, base = best(consensus), best(baseline)
    print(f"consensus update + breaker, 3 sources: {us:.2f} µs per update (required <= 20)")
    print(f"baseline 3-source weighted mean:        {base:.2f} µs per update")
    print(f"ratio: {us / base:.1f}")


if __name__ == "__main__":
    main()
