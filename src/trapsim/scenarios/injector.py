"""Trap injection into one symbol's tick stream, with ground-truth labels.

Arrivals. Trap arrivals are a Hawkes process (:mod:`trapsim.scenarios.arrivals`)
with mean rate ``10 × frequency`` per hour of market time, branching ratio
:data:`BRANCHING` and excitation decay :data:`DECAY_S`, so traps come in
clusters. The arrival process never depends on placement: an arrival that
falls inside the previous trap's span waits until just after it, one whose
trap cannot be placed retries (below), and the long-run rate stays the
configured one unless the market saturates.

Mix. At each arrival a type is drawn from the requested types:

- in an HF cluster (a trap started less than :data:`CLUSTER_NS` ago, or the
  next arrival is due within it): a quick type with its shortest timings,
  :data:`CLUSTER_MIX`; a stop hunt needs a level within reach, and a
  liquidity grab takes its place when there is none;
- otherwise: :data:`CALM_MIX` over the types whose typical span ends before
  the next arrival is due, so the slow types (bull/bear about 15 min,
  Fibonacci about 75 min) fill the calm gaps and get rarer as the frequency
  rises.

At the default frequency (0.2) this gives about 3 HF activations a day and
roughly 60-65 % liquidity grabs, 20-23 % stop hunts, 5 % bull traps, 5 % bear
traps and 3-5 % Fibonacci traps (synthetic and replayed BTC); at 0.5, about 10
activations a day and almost only quick types.

Placement. A drafted trap (:mod:`trapsim.scenarios.traps`) is written as a log
overlay on the base price, its volume bursts are added, and it is measured on
the final stream (:mod:`trapsim.scenarios.contract`); it is accepted only if it
keeps every rule of ``docs/labels.md`` with a :data:`MARGIN` to spare. Else the
rest of its family is tried; if none fits, the arrival retries
:data:`RETRY_NS` later (drawing its type again every :data:`TYPE_WAIT_NS`) and
is dropped after :data:`MAX_WAIT_NS`. Each trap's moves raise σ for the traps
after it, and their sizes scale with that σ; an arrival also waits
(:data:`GATED_RETRY_NS` at a time) while σ exceeds :data:`MAX_INFLATION` times
the base's σ, which keeps clusters from feeding on themselves but throttles
frequencies above about 0.5 (1.0 yields about 6 traps an hour). After the end
condition the overlay left fades to exactly 0 along a raised cosine (25 s per σ
of offset for the quick types, 60 s for the others), so a trap never shifts
the base path for good.
"""

from __future__ import annotations

import bisect
import itertools
import math
import numbers

import numpy as np

from trapsim.core.errors import ConfigError
from trapsim.core.seeding import rng_for
from trapsim.core.time import MINUTE_NS, NS, iso
from trapsim.scenarios.arrivals import HawkesArrivals
from trapsim.scenarios.contract import (
    RANGE_NS,
    SIGMA_MINUTES,
    VOLUME_BASE_NS,
    Measure,
    measure,
    measure_volume,
    problem,
    sigma_at,
)
from trapsim.scenarios.traps import QUICK, TRAP_TYPES, TRAPS, Draft, Site, Trap

FIRST_TRAP_NS = (SIGMA_MINUTES + 1) * MINUTE_NS
"""Earliest trap start after the stream's first tick: σ needs 61 whole minutes before it."""
TRAPS_PER_HOUR = 10.0
"""Mean trap rate at ``frequency = 1``, traps per hour of market time."""

BRANCHING = 0.4
"""Hawkes branching ratio: mean number of traps each trap triggers."""

DECAY_S = 90.0
"""Hawkes excitation decay time, seconds."""

CALM_MIX = {"liquidity_grab": 0.1, "stop_hunt": 0.1, "bull_trap": 0.2, "bear_trap": 0.2,
            "fibonacci_trap": 0.6}
"""Weights of the types drawn at an arrival outside HF clusters, among those that fit."""

CLUSTER_MIX = {"liquidity_grab": 0.15, "stop_hunt": 0.85}
"""Weights of the quick types drawn inside an HF cluster."""

CLUSTER_NS = 5 * MINUTE_NS
"""An arrival this close to the previous trap start or to the next arrival is in a cluster."""

MARGIN = 0.1
"""Share by which every bound of ``docs/labels.md`` is tightened when accepting a trap."""

RETRY_NS = 60 * NS
"""Wait before retrying an arrival whose trap could not be placed."""

GATED_RETRY_NS = 3 * MINUTE_NS
"""Wait before retrying an arrival held back by :data:`MAX_INFLATION` (σ moves per minute)."""

TYPE_WAIT_NS = 10 * MINUTE_NS
"""Wait after which an arrival's type is drawn again."""

MAX_WAIT_NS = 60 * MINUTE_NS
"""Wait after which an arrival is dropped."""

MAX_INFLATION = 2.0
"""Largest σ of the final stream, as a multiple of the base's σ, at which a trap may start.

Each trap's moves enter the σ of the traps after it, and their sizes scale with
that σ; holding back while earlier traps dominate σ keeps clusters from
feeding on themselves."""

TAIL_MIN_S = 15.0
"""Shortest recovery tail, seconds."""


class TrapInjector:
    """Injects labelled traps into the price and volume of one symbol's 1-second ticks.

    Parameters
    ----------
    symbol : str
        Symbol written into the labels; also names the random streams.
    frequency : float
        In [0, 1]: mean rate ``10 × frequency`` traps per hour of market time;
        0 injects nothing.
    seed : int
        Run seed (>= 0); arrivals and shapes draw from
        ``rng_for(seed, "traps/<symbol>/arrivals")`` and ``…/shapes``.
    start_ts : int
        Market time the arrival process starts at, int ns UTC.
    types : tuple of str, default :data:`TRAP_TYPES`
        Trap types to inject (distinct names from :data:`TRAP_TYPES`).

    Attributes
    ----------
    lookback_ns : int
        History the injector reads before the start of any span: the 240-min
        prior range (σ's 61 minute closes, the 30-min volume baseline and a
        Fibonacci swing's noise window lie inside it) plus one minute. No span
        starts before the first call's first tick + ``lookback_ns``.
    max_span_ns : int
        Longest market time one trap's span covers, recovery tail included
        (a Fibonacci trap's span starts with its swing).

    Raises
    ------
    ConfigError
        If a parameter is out of range.
    """

    def __init__(self, *, symbol: str, frequency: float, seed: int, start_ts: int,
                 types: tuple[str, ...] = TRAP_TYPES) -> None:
        if not isinstance(symbol, str) or not symbol:
            raise ConfigError(f"symbol must be a non-empty string, got {symbol!r}")
        if (isinstance(frequency, bool) or not isinstance(frequency, numbers.Real)
                or not 0.0 <= frequency <= 1.0):
            raise ConfigError(f"frequency must be a number in [0, 1], got {frequency!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0, got {seed!r}")
        if isinstance(start_ts, bool) or not isinstance(start_ts, numbers.Integral):
            raise ConfigError(f"start_ts must be an integer (ns UTC), got {start_ts!r}")
        types = tuple(types)
        unknown = [t for t in types if t not in TRAPS]
        if not types or unknown or len(set(types)) != len(types):
            raise ConfigError(
                f"types must be distinct names from {', '.join(TRAP_TYPES)}, got {types!r}")
        self.symbol = symbol
        self.frequency = float(frequency)
        self.types = types
        self._traps: tuple[Trap, ...] = tuple(TRAPS[t]() for t in types)
        self.lookback_ns = RANGE_NS + MINUTE_NS
        self.max_span_ns = max(
            math.ceil((t.window_s + t.max_tail_s) * NS) for t in self._traps) + NS
        self._arrivals = HawkesArrivals(
            rate_per_hour=TRAPS_PER_HOUR * self.frequency, branching=BRANCHING,
            decay_s=DECAY_S, start_ts=int(start_ts), rng=rng_for(seed, f"traps/{symbol}/arrivals"))
        self._rng = rng_for(seed, f"traps/{symbol}/shapes")
        self._ahead: list[int] = []  # the current arrival and the next one, when known
        self._due = 0  # the current arrival's time after retries (0: none yet)
        self._waited = 0  # retry wait of the current arrival, ns
        self._choice: tuple[tuple[Trap, ...], bool] | None = None  # see _draw
        self._span_end = -1  # last tick of the previous span, ns
        self._clock = 0  # time of the last try or drop: no later arrival goes before it, ns
        self._last_start = None  # start of the last trap placed, ns
        self._next_id = 0
        # Every measure of a label must be taken on the emitted stream, which
        # starts at start_ts: no trap before σ's 61 minute closes exist there;
        # prior ranges are cut at the stream start (docs/labels.md).
        self._stream_start = int(start_ts)
        self._earliest = self._stream_start + FIRST_TRAP_NS
        self._upto = None  # upto_ts of the previous call

    def _peek(self, k: int) -> int | None:
        """Arrival ``k`` ahead (0: the current one), or None if the process has ended."""
        while len(self._ahead) <= k:
            nxt = next(self._arrivals, None)
            if nxt is None:
                return None
            self._ahead.append(nxt)
        return self._ahead[k]

    def _pop(self) -> None:
        self._ahead.pop(0)
        self._due = self._waited = 0
        self._choice = None

    def inject(self, ts: np.ndarray, price: np.ndarray, overlay: np.ndarray,
               volume: np.ndarray, upto_ts: int) -> list[dict]:
        """Inject every trap whose span starts before ``upto_ts`` (at or after the previous call's).

        Parameters
        ----------
        ts : numpy.ndarray of int64, shape (n,)
            Tick times, ns UTC, 1 s apart. It must cover at least
            ``[previous upto_ts - lookback_ns, upto_ts + max_span_ns]``, or end
            where a finite source ends (a trap that does not fit is dropped).
        price : numpy.ndarray of float64, shape (n,)
            Base price; read only.
        overlay : numpy.ndarray of float64, shape (n,)
            Log offsets; the final price is ``price * exp(overlay)``. Written
            in place, only inside the spans of the traps placed now.
        volume : numpy.ndarray of float64, shape (n,)
            Final volume; increased in place inside those spans.
        upto_ts : int
            Ns UTC, not below the previous call's. Afterwards every tick before
            ``upto_ts`` is final; overlay and volume written at later ticks
            must be passed back unchanged in the next call's buffer.

        Returns
        -------
        list of dict
            The new labels ordered by ``start_ts``: ``id, kind, type, symbol,
            direction, start_ts, peak_ts, end_ts`` (int ns), ``magnitude`` (σ)
            and ``params`` (``sigma``, ``pct``, ``span_start_ts``,
            ``span_end_ts`` and the per-type keys of ``docs/labels.md``).
            They depend only on the buffer content, never on how the run is
            cut into calls.

        Raises
        ------
        ConfigError
            If the arrays differ in length, ``upto_ts`` goes back in time, or
            the buffer does not reach back ``lookback_ns`` before a span.
        """
        upto = int(upto_ts)
        if self._upto is not None and upto < self._upto:
            raise ConfigError(f"upto_ts went back from {iso(self._upto)} to {iso(upto)}")
        n = len(ts)
        if not len(price) == len(overlay) == len(volume) == n:
            raise ConfigError("ts, price, overlay and volume must have the same length")
        self._upto = upto
        if not n:
            return []
        labels: list[dict] = []
        final = None
        while (arrival := self._peek(0)) is not None:
            when = max(self._due or arrival, self._span_end + 1, self._earliest, self._clock)
            if when >= upto:
                break
            self._clock = when
            j = int(ts.searchsorted(when))
            if j < n and ts[j] >= upto:
                break
            if j >= n or ts[j] + self.max_span_ns > ts[-1]:
                self._pop()  # the source ends before the span could
                continue
            if ts[0] > max(self._stream_start, ts[j] - self.lookback_ns):
                raise ConfigError(
                    f"the buffer starts at {iso(ts[0])}, less than lookback_ns before "
                    f"a span at {iso(ts[j])}")
            if final is None:
                final = price * np.exp(overlay)
            if self._choice is None:
                self._choice = self._draw(int(ts[j]))
            site = Site(ts, price, final, j, sigma_at(ts, final, j))
            gated = not 0 < site.sigma <= MAX_INFLATION * sigma_at(ts, price, j)
            label = None if gated else self._place(*self._choice, site, overlay, volume)
            if label is not None:
                labels.append(label)
                self._pop()
                continue
            wait = GATED_RETRY_NS if gated else RETRY_NS
            self._waited += wait
            if self._waited > MAX_WAIT_NS:
                self._pop()
                continue
            self._due = int(ts[j]) + wait
            if self._waited // TYPE_WAIT_NS > (self._waited - wait) // TYPE_WAIT_NS:
                self._choice = None
        return labels

    def _draw(self, when: int) -> tuple[tuple[Trap, ...], bool]:
        """Draw the type of the arrival placed at ``when``.

        Returns the types to try, the drawn one first and then the rest of its
        family, and whether the arrival is in an HF cluster.
        """
        nxt = self._peek(1)
        gap = math.inf if nxt is None else (nxt - when) / NS
        cluster = gap < CLUSTER_NS / NS or (
            self._last_start is not None and when - self._last_start < CLUSTER_NS)
        quick = [t for t in self._traps if t.family == QUICK]
        if cluster and quick:
            pool, mix = quick, CLUSTER_MIX
        else:
            pool = [t for t in self._traps if t.nominal_s <= gap] or quick or list(self._traps)
            mix = CALM_MIX
        edges = list(itertools.accumulate(mix[t.name] for t in pool))
        drawn = pool[min(bisect.bisect(edges, self._rng.random() * edges[-1]), len(pool) - 1)]
        kin = tuple(t for t in self._traps if t.family == drawn.family and t is not drawn)
        return (drawn, *kin), cluster

    def _place(self, traps: tuple[Trap, ...], quick: bool, site: Site, overlay: np.ndarray,
               volume: np.ndarray) -> dict | None:
        """Place the first of ``traps`` that fits at ``site``; its label, or None."""
        for trap in traps:
            label = self._try(trap, site, overlay, volume, quick)
            if label is not None:
                return label
        return None

    def _try(self, trap: Trap, site: Site, overlay: np.ndarray, volume: np.ndarray,
             quick: bool) -> dict | None:
        """Draft one trap at ``site``; commit it and return its label, or leave no trace."""
        draft = trap.draft(site, self._rng, quick)
        label = None if draft is None else self._commit(trap, draft, site, overlay, volume)
        if label is None and site.dirty > site.j:
            site.apply(site.j, overlay[site.j:site.dirty])
        site.dirty = 0
        return label

    def _commit(self, trap: Trap, draft: Draft, site: Site, overlay: np.ndarray,
                volume: np.ndarray) -> dict | None:
        """Write, measure and check a draft; on success write overlay and volume for good."""
        ts, j = site.ts, site.j
        over = site.write(j, draft.log_price)
        m = measure(draft.type, ts, site.final, start=draft.start, s=draft.s, stop=draft.stop,
                    lookback_min=draft.lookback_min, swing_start=draft.span_start,
                    ratio=draft.ratio)
        if isinstance(m, str):
            return None
        over, span_end = self._tail(site, over, m, trap)
        saved = volume[j:span_end + 1].copy()
        for a, b, target, decay_s in trap.bursts(m):
            self._burst(ts, volume, draft.start, a, b, target, decay_s, span_end + 1)
        measure_volume(m, ts, volume)
        if problem(m, MARGIN) is not None:
            volume[j:span_end + 1] = saved
            return None
        overlay[j:span_end + 1] = over
        site.apply(span_end + 1, overlay[span_end + 1:site.dirty])
        self._span_end = int(ts[span_end])
        self._last_start = int(ts[m.start])
        return self._label(m, ts, j, span_end)

    @staticmethod
    def _tail(site: Site, over: np.ndarray, m: Measure, trap: Trap) -> tuple[np.ndarray, int]:
        """The span's overlay, whose value at the end fades to exactly 0 (raised cosine),
        and the span's last tick; writes the tail's final prices."""
        j, e = site.j, m.end
        left = over[e - j]
        tail_s = min(max(abs(left) / m.sigma * trap.tail_s_per_sigma, TAIL_MIN_S),
                     trap.max_tail_s)
        span_end = site.after(e, tail_s)
        k = span_end - e
        tail = left * (0.5 * (1.0 + np.cos(np.pi * np.arange(1, k + 1) / k)))
        tail[-1] = 0.0
        site.apply(e + 1, tail)
        return np.concatenate((over[:e + 1 - j], tail)), span_end

    def _burst(self, ts: np.ndarray, volume: np.ndarray, start: int, a: int, b: int,
               target: float, decay_s: float, hi: int) -> None:
        """Add flow on ticks ``a … hi-1`` so ticks ``a … b`` average ``target`` × the baseline.

        The flow has tick jitter of mean 1 and spread 0.5 (half constant, half
        exponential) and decays exponentially after ``b``.
        """
        lo = int(ts.searchsorted(ts[start] - VOLUME_BASE_NS))
        base = volume[lo:start].mean()
        jitter = 0.5 + 0.5 * self._rng.standard_exponential(hi - a)
        flow = jitter * np.exp(-np.maximum(ts[a:hi] - ts[b], 0) / (decay_s * NS))
        need = target * base * (b - a + 1) - volume[a:b + 1].sum()
        if need > 0:
            volume[a:hi] += flow * (need / flow[:b - a + 1].sum())

    def _label(self, m: Measure, ts: np.ndarray, j: int, span_end: int) -> dict:
        params = {"sigma": float(m.sigma), "pct": float(m.pct), "span_start_ts": iso(ts[j]),
                  "span_end_ts": iso(ts[span_end])}
        for key, value in m.params.items():
            params[key] = (iso(value) if key.endswith("_ts")
                           else value if isinstance(value, int) else float(value))
        for key in ("t_break", "t_fall", "t_touch"):
            if key in m.values:
                params[key[2:] + "_ts"] = iso(ts[m.values[key]])
        label = {
            "id": self._next_id, "kind": "trap", "type": m.type, "symbol": self.symbol,
            "direction": "up" if m.s > 0 else "down", "start_ts": int(ts[m.start]),
            "peak_ts": int(ts[m.peak]), "end_ts": int(ts[m.end]),
            "magnitude": float(m.magnitude), "params": params,
        }
        self._next_id += 1
        return label
