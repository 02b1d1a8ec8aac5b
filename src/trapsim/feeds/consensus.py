"""One price from several sources: outlier rejection, weighting, smoothing, a circuit breaker.

:class:`Consensus` keeps each source's latest price, volume and time. At every
update it

1. drops the sources gone stale (no update for ``stale_s``);
2. drops outliers: with three or more sources, a source further than
   ``outlier_sigmas`` standard deviations from the mean of the others (the
   deviation floored at ``floor_bps`` of that mean, so sources that agree to the
   cent do not make every small difference an outlier); with two that disagree by
   more than ``outlier_sigmas × floor_bps``, the one of lower priority;
3. averages the rest weighted by priority × volume (an EWMA of each source's
   update volumes, plus one unit so a source without volume still counts);
4. smooths that average with an EWMA of half-life ``halflife_s`` in the updates'
   time, and reports a confidence: the weight of the sources used over the
   weight of all sources (1 when every source is fresh and agrees).

This is the median-free consensus of price oracles (e.g. Chainlink's aggregation
of independent node answers, Pyth's confidence-weighted aggregate) reduced to a
handful of feeds of one venue-grade instrument.

:class:`CircuitBreaker` halts publishing when the published price moves more than
``max_move`` within ``window_s`` (exchange practice, e.g. the limit-up/limit-down
bands of US equities) and resumes after ``cooldown_s``.
"""

from __future__ import annotations

import json
import logging
import math
from collections import deque
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from trapsim.core.errors import ConfigError
from trapsim.core.time import NS, iso

log = logging.getLogger("trapsim.feeds")

VOLUME_HALFLIFE_UPDATES = 20
"""Updates over which a source's volume weight halves."""


class ConsensusPrice(NamedTuple):
    """A consensus price as published."""

    ts: int  # ns UTC, the update that produced it
    price: float  # smoothed consensus
    raw: float  # the weighted average before smoothing
    confidence: float  # in [0, 1]
    used: tuple[str, ...]  # the sources averaged, by priority


class Consensus:
    """Consensus price of one symbol from named sources with priorities.

    Parameters
    ----------
    priorities : mapping of str to float
        Source name → priority weight (> 0); higher is preferred.
    outlier_sigmas : float, default 2.0
    floor_bps : float, default 5.0
        Floor of the deviation used for outliers, bps of the others' mean.
    halflife_s : float, default 2.0
        Half-life of the smoothing, seconds of update time (0: no smoothing).
    stale_s : float, default 30.0
        A source without an update for this long is left out.

    Raises
    ------
    ConfigError
        On an empty or non-positive priority, or a parameter out of range.
    """

    def __init__(self, priorities: Mapping[str, float], *, outlier_sigmas: float = 2.0,
                 floor_bps: float = 5.0, halflife_s: float = 2.0, stale_s: float = 30.0) -> None:
        if not priorities or not all(p > 0 for p in priorities.values()):
            raise ConfigError(f"source priorities must be > 0, got {dict(priorities)}")
        if not (outlier_sigmas > 0 and floor_bps >= 0 and halflife_s >= 0 and stale_s > 0):
            raise ConfigError("need outlier_sigmas > 0, floor_bps >= 0, halflife_s >= 0, "
                              "stale_s > 0")
        self.priorities = dict(priorities)
        self.names = sorted(self.priorities, key=lambda s: -self.priorities[s])
        self.k = outlier_sigmas
        self.floor = floor_bps * 1e-4
        self.rate = math.log(2) / (halflife_s * NS) if halflife_s > 0 else math.inf
        self.stale_ns = int(stale_s * NS)
        self._total = sum(self.priorities.values())
        self._price: dict[str, float] = {}
        self._ts: dict[str, int] = {}
        self._volume: dict[str, float] = {}
        self._decay = 0.5 ** (1 / VOLUME_HALFLIFE_UPDATES)
        self._smooth: float | None = None
        self._last_ts: int | None = None

    def update(self, source: str, ts: int, price: float, volume: float = 0.0) -> ConsensusPrice:
        """Take one source's price (ts ns UTC, price > 0, volume >= 0); returns the consensus.

        Raises
        ------
        ConfigError
            If the source is not one of the configured ones.
        """
        if source not in self.priorities:
            raise ConfigError(f"unknown source {source!r}; sources: {', '.join(self.names)}")
        self._price[source] = price
        self._ts[source] = ts
        v = self._volume.get(source, 0.0)
        self._volume[source] = self._decay * v + (1 - self._decay) * volume
        fresh = [s for s in self.names if s in self._ts and ts - self._ts[s] <= self.stale_ns]
        used = self._agreeing(fresh)
        weights = [self.priorities[s] * (1.0 + self._volume[s]) for s in used]
        raw = sum(w * self._price[s] for w, s in zip(weights, used, strict=True)) / sum(weights)
        if self._smooth is None or self._last_ts is None or ts <= self._last_ts:
            self._smooth = raw if self._smooth is None else self._smooth
        else:
            alpha = 1.0 - math.exp(-self.rate * (ts - self._last_ts))
            self._smooth += alpha * (raw - self._smooth)
        self._last_ts = ts if self._last_ts is None else max(ts, self._last_ts)
        confidence = sum(self.priorities[s] for s in used) / self._total
        return ConsensusPrice(ts, self._smooth, raw, confidence, tuple(used))

    def _agreeing(self, fresh: list[str]) -> list[str]:
        """The fresh sources left after dropping outliers (by priority order)."""
        price = self._price
        if len(fresh) == 2:
            a, b = price[fresh[0]], price[fresh[1]]
            if abs(a - b) > self.k * self.floor * 0.5 * (a + b):
                return fresh[:1]  # cannot tell who is wrong: trust the higher priority
            return fresh
        if len(fresh) < 3:
            return fresh
        kept = []
        for s in fresh:
            others = [price[o] for o in fresh if o != s]
            m = sum(others) / len(others)
            sd = math.sqrt(sum((x - m) ** 2 for x in others) / (len(others) - 1))
            if abs(price[s] - m) <= self.k * max(sd, self.floor * m):
                kept.append(s)
        return kept or fresh[:1]


class CircuitBreaker:
    """Halts publishing after a move of more than ``max_move`` within ``window_s``.

    Parameters
    ----------
    max_move : float, default 0.20
        Largest relative move allowed within the window.
    window_s : float, default 60
        Length of the window the move is measured over, seconds.
    cooldown_s : float, default 300
        Time after a trip until publishing resumes (the reference resets then).
    symbol : str, optional
        Named in the events and log lines.

    Raises
    ------
    ConfigError
        If a parameter is not > 0.
    """

    def __init__(self, max_move: float = 0.20, window_s: float = 60.0,
                 cooldown_s: float = 300.0, symbol: str | None = None) -> None:
        if not (max_move > 0 and window_s > 0 and cooldown_s > 0):
            raise ConfigError("circuit breaker max_move, window_s and cooldown_s must be > 0")
        self.max_move = max_move
        self.symbol = symbol
        self.window_ns = int(window_s * NS)
        self.cooldown_ns = int(cooldown_s * NS)
        self.tripped_at: int | None = None
        self.trips = 0
        self.events: list[dict] = []  # trips and resets (int ns ``ts``), in order
        self._lo: deque[tuple[int, float]] = deque()  # increasing prices: window minimum first
        self._hi: deque[tuple[int, float]] = deque()  # decreasing prices: window maximum first

    @property
    def halted(self) -> bool:
        return self.tripped_at is not None

    def allow(self, ts: int, price: float) -> bool:
        """Whether a price at ``ts`` may be published; trips (and logs) on a too-large move."""
        if self.tripped_at is not None:
            if ts - self.tripped_at < self.cooldown_ns:
                return False
            self._event({"event": "circuit_breaker_reset", "ts": ts, "price": price})
            self.tripped_at = None
            self._lo.clear()
            self._hi.clear()
        move = self._push(ts, price)
        if move > self.max_move:
            self.tripped_at = ts
            self.trips += 1
            self._event({"event": "circuit_breaker_tripped", "ts": ts, "price": price,
                         "move": round(move, 6), "window_s": self.window_ns / NS})
            return False
        return True

    def allow_many(self, ts: np.ndarray, price: np.ndarray) -> np.ndarray:
        """:meth:`allow` over consecutive updates (int64 ns, quote currency): a bool mask.

        Updates inside a halt are refused at once; a batch whose whole range, with
        the window before it, stays within ``max_move`` cannot trip, so only its last
        window is kept; others go update by update.
        """
        n = len(ts)
        if n == 0:
            return np.ones(0, bool)
        if self.tripped_at is not None:
            out = np.zeros(n, bool)
            k = int(np.searchsorted(ts, self.tripped_at + self.cooldown_ns))
            if k < n:  # the first update after the cooldown resets the breaker
                out[k] = self.allow(int(ts[k]), float(price[k]))
                out[k + 1:] = self.allow_many(ts[k + 1:], price[k + 1:])
            return out
        lo, hi = float(price.min()), float(price.max())
        if self._lo:  # the window before the batch
            lo, hi = min(lo, self._lo[0][1]), max(hi, self._hi[0][1])
        if hi / lo - 1.0 <= self.max_move:
            for i in range(int(np.searchsorted(ts, ts[-1] - self.window_ns)), n):
                self._push(int(ts[i]), float(price[i]))
            return np.ones(n, bool)
        return np.fromiter((self.allow(int(t), float(p)) for t, p in zip(ts, price, strict=True)),
                           bool, n)

    def _push(self, ts: int, price: float) -> float:
        """Add an update to the window; returns the largest move within it."""
        for q in (self._lo, self._hi):
            while q and q[0][0] < ts - self.window_ns:
                q.popleft()
        while self._lo and self._lo[-1][1] >= price:
            self._lo.pop()
        while self._hi and self._hi[-1][1] <= price:
            self._hi.pop()
        lo = self._lo[0][1] if self._lo else price
        hi = self._hi[0][1] if self._hi else price
        self._lo.append((ts, price))
        self._hi.append((ts, price))
        return max(price / lo - 1.0, 1.0 - price / hi)

    def _event(self, event: dict) -> None:
        if self.symbol is not None:
            event["symbol"] = self.symbol
        self.events.append(event)
        log.warning(json.dumps({**event, "ts": iso(event["ts"])}))
