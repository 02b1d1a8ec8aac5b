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
rest of its family is tried (as is a draft moving the price more than
:data:`MAX_MOVE_LOG`); if none fits, the arrival retries
:data:`RETRY_NS` later (drawing its type again every :data:`TYPE_WAIT_NS`) and
is dropped after :data:`MAX_WAIT_NS`. A try at which no type of the family
finds what it needs (:attr:`~trapsim.scenarios.traps.Trap.need`: a level to
break, room for a spike) fails before any draft. Each trap's moves raise σ for
the traps after it, and their sizes scale with that σ; an arrival also waits
(:data:`GATED_RETRY_NS` at a time) while σ exceeds :data:`MAX_INFLATION` times
the base's σ, which keeps clusters from feeding on themselves but throttles
frequencies above about 0.5 (1.0 yields about 6 traps an hour). After the end
condition the overlay left fades to exactly 0 along a raised cosine (25 s per σ
of offset for the quick types, 60 s for the others), so a trap never shifts
the base path for good.

Implementation. The whole loop over arrivals, tries and drafts runs in one
``numba.njit(cache=True)`` kernel per call (:func:`_run`), on the buffer's
arrays and a few tables of the injected types (:class:`_Tables`); Python
builds the labels of the traps it placed. Its randomness comes from the
``…/shapes`` generator in blocks (uniforms for type draws and draft
parameters, standard exponentials for volume jitter), drawn when the kernel
runs short; the blocks are consumed in the order of the tries, so the output
never depends on how a run is cut into calls.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numba
import numpy as np

from trapsim.core.errors import ConfigError
from trapsim.core.seeding import rng_for
from trapsim.core.time import MINUTE_NS, NS, iso, iso_many
from trapsim.scenarios.arrivals import HawkesArrivals
from trapsim.scenarios.contract import (
    BLOCK,
    END,
    FIELDS,
    MAGNITUDE,
    PARAMS,
    PCT,
    PEAK,
    RANGE_NS,
    SIGMA,
    SIGMA_MINUTES,
    START,
    T_BREAK,
    T_FALL,
    T_TOUCH,
    TYPES,
    judge,
    measure_kernel,
    reblock,
    sigma_pair,
)
from trapsim.scenarios.traps import (
    QUICK,
    SWING_NOISE_TICKS,
    TRAP_TYPES,
    TRAPS,
    Trap,
    add_bursts,
    apply_overlay,
    draft,
    feasible,
    write_final,
)

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
MAX_MOVE_LOG = math.log(1.15)
"""Largest log offset a draft may give the price (15 %). Trap sizes scale with σ, and
right after a chaos jump (a crash, a step shock) σ is that jump's: a 21 σ swing would
then double the price. Normal traps stay far below (a Fibonacci swing at a 1-minute σ
of 0.3 %, high for BTC, is 8 %); a draft beyond it is not placed."""

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

_PARAMS = tuple(
    tuple((key, slot, str if key.endswith("_ts") else int if key == "lookback_min" else float)
          for key, slot in PARAMS[kind])
    + (("break_ts", T_BREAK, str), ("fall_ts", T_FALL, str), ("touch_ts", T_TOUCH, str))
    for kind in TYPES)
"""Per type code, the label's parameters after σ, pct and the span: name, record slot, and
how the slot is given: as is (float), as an int, or as the ISO time of its tick (str; a
NaN slot is left out)."""

_STAMPED = tuple(tuple(slot for _, slot, how in spec if how is str) for spec in _PARAMS)
"""Per type code, the record slots of :data:`_PARAMS` given as ISO times."""

BLOCK_DRAWS = 1 << 16
"""Random draws fetched at a time for the compiled loop."""

ROWS = 64
"""Placed traps the compiled loop reports at a time."""

NO_TRAP = -(1 << 62)
"""Start of the last trap placed, before there is one (ns)."""

(ARRIVAL, DUE, WAITED, CHOICE, CLUSTER, FAILED, SPAN_END, CLOCK, LAST_START, UPOS, EPOS,
 AT) = range(12)
"""Slots of the injector's state, an int64 array the compiled loop updates in place: the
index of the current arrival among those passed; its time after retries (0: none yet) and
retry wait so far (ns); its drawn type (-1: none yet) and whether it is in an HF cluster;
whether the try at its time already failed its drafts; the last tick of the previous span
(ns); the time of the last try or drop, before which no later arrival goes (ns); the start
of the last trap (ns); the next unused uniform and exponential draw; the draws a try needs, or
the tick of a span the buffer does not reach back enough for."""

DONE, NEED_UNIFORMS, NEED_EXPONENTIALS, ROWS_FULL, SHORT_BUFFER = range(5)
"""Outcomes of :func:`_run`."""

SIDE, SPAN_START, SPAN_STOP, KIND = range(len(FIELDS), len(FIELDS) + 4)
"""Columns after the measure record in a row of :func:`_run`: direction, first and last tick
of the span, type."""


class _Tables(NamedTuple):
    """The injected types as the compiled loop sees them, indexed by type code (the index in
    :data:`~trapsim.scenarios.contract.TYPES`); -1 pads lists of types."""

    family: np.ndarray  # int64 (5, f): the types tried for a drawn one, itself first
    family_needs: np.ndarray  # float64 (5, f, 6): their Trap.need, -1 rows pad
    family_draws: np.ndarray  # int64 (5,): uniforms their drafts take in all
    needs: np.ndarray  # float64 (5, 6): Trap.need
    bounds: np.ndarray  # float64 (2, 5, p, 2): Trap.bounds, then Trap.quick_bounds
    n_bounds: np.ndarray  # int64 (5,): rows of bounds used
    bursts: np.ndarray  # float64 (5, b, 4): Trap.bursts
    n_bursts: np.ndarray  # int64 (5,)
    tails: np.ndarray  # float64 (5, 2): Trap.tail_s_per_sigma, Trap.max_tail_s
    cluster: np.ndarray  # int64 (q,): the quick types
    cluster_edges: np.ndarray  # float64 (q,): their cumulative CLUSTER_MIX weights
    spans: np.ndarray  # float64 (r,): the distinct Trap.nominal_s, increasing
    calm: np.ndarray  # int64 (r + 1, 5): the types drawn outside clusters when i spans fit
    calm_edges: np.ndarray  # float64 (r + 1, 5): their cumulative CALM_MIX weights


def _tables(traps: tuple[type[Trap], ...]) -> _Tables:
    """:class:`_Tables` of the injected ``traps``."""
    k = len(TYPES)
    family = [(t, *(o for o in traps if o.family == t.family and o is not t)) for t in traps]
    width = max(map(len, family))
    fam = np.full((k, width), -1, dtype=np.int64)
    family_needs = np.full((k, width, 6), -1.0)
    family_draws = np.zeros(k, dtype=np.int64)
    needs, tails = np.zeros((k, 6)), np.zeros((k, 2))
    n_bounds, n_bursts = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    bounds = np.full((2, k, max(len(t.bounds) for t in traps), 2), np.nan)
    bursts = np.full((k, max(len(t.bursts) for t in traps), 4), np.nan)
    for t, kin in zip(traps, family, strict=True):
        fam[t.kind, :len(kin)] = [o.kind for o in kin]
        family_needs[t.kind, :len(kin)] = [o.need for o in kin]
        family_draws[t.kind] = sum(len(o.bounds) for o in kin)
        needs[t.kind], tails[t.kind] = t.need, (t.tail_s_per_sigma, t.max_tail_s)
        n_bounds[t.kind], n_bursts[t.kind] = len(t.bounds), len(t.bursts)
        bounds[0, t.kind, :len(t.bounds)] = t.bounds
        bounds[1, t.kind, :len(t.bounds)] = t.quick_bounds
        bursts[t.kind, :len(t.bursts)] = t.bursts
    quick = [t for t in traps if t.family == QUICK]
    spans = sorted({t.nominal_s for t in traps})
    calm = np.full((len(spans) + 1, k), -1, dtype=np.int64)
    calm_edges = np.full((len(spans) + 1, k), np.inf)
    for r, span in enumerate((-math.inf, *spans)):
        pool = [t for t in traps if t.nominal_s <= span] or quick or list(traps)
        calm[r, :len(pool)] = [t.kind for t in pool]
        calm_edges[r, :len(pool)] = np.cumsum([CALM_MIX[t.name] for t in pool])
    return _Tables(fam, family_needs, family_draws, needs, bounds, n_bounds, bursts, n_bursts,
                   tails, np.array([t.kind for t in quick], dtype=np.int64),
                   np.cumsum([CLUSTER_MIX[t.name] for t in quick], dtype=np.float64),
                   np.array(spans, dtype=np.float64), calm, calm_edges)


FOUND, RETRY, REDRAW, DROP = range(4)
"""Outcomes of :func:`_seek`."""


@numba.njit(cache=True)
def _seek(ts, price, final, highs, lows, j, when, waited, failed, upto, span_ns, needs):
    """Walk an arrival's tries from tick ``j`` (time ``when``) to one that may place a trap.

    A try fails at once while σ of the final stream is gated by
    :data:`MAX_INFLATION` or the market offers none of the types ``needs``
    what it needs (:func:`~trapsim.scenarios.traps.feasible`); each failure
    waits :data:`RETRY_NS` (:data:`GATED_RETRY_NS` when gated).

    Parameters
    ----------
    ts, price, final : numpy.ndarray, shape (n,)
        Tick times (int64 ns), base and final prices.
    highs, lows : numpy.ndarray
        :func:`~trapsim.scenarios.contract.block_extremes` of ``final``.
    j, when : int
        Tick and time of the first try; the caller has checked that its span
        fits in the buffer and starts before ``upto``.
    waited : int
        Retry wait so far, ns.
    failed : bool
        The try at ``j`` has already failed (its drafts did not keep the contract).
    upto, span_ns : int
        The call's ``upto_ts`` and the injector's ``max_span_ns``.
    needs : numpy.ndarray of float64, shape (k, 6)
        :attr:`~trapsim.scenarios.traps.Trap.need` of the arrival's types
        (rows of -1 pad).

    Returns
    -------
    status, j, when, waited, sigma
        :data:`FOUND`: the try at tick ``j`` (time ``when``) may succeed; σ there.
        :data:`DROP`: the arrival waited too long; ``when`` is its last try.
        :data:`RETRY`: the next try, at ``when``, is for the caller to check
        (beyond ``upto`` or the buffer). :data:`REDRAW`: the same, and the
        arrival's type is drawn again first. σ is NaN but for :data:`FOUND`.
    """
    n = len(ts)
    while True:
        gated = False
        if failed:
            failed = False
        else:
            sigma, base = sigma_pair(ts, final, price, j)
            gated = not 0.0 < sigma <= MAX_INFLATION * base
            if not gated and feasible(ts, final, highs, lows, j, sigma, needs):
                return FOUND, j, when, waited, sigma
        wait = GATED_RETRY_NS if gated else RETRY_NS
        waited += wait
        if waited > MAX_WAIT_NS:
            return DROP, j, when, waited, math.nan
        when = ts[j] + wait
        if waited // TYPE_WAIT_NS > (waited - wait) // TYPE_WAIT_NS:
            return REDRAW, j, when, waited, math.nan
        while j < n and ts[j] < when:
            j += 1
        if j >= n or ts[j] >= upto or ts[j] + span_ns > ts[n - 1]:
            return RETRY, j, when, waited, math.nan


@numba.njit(cache=True)
def _span_overlay(ts, over, overlay, j, end, stop, sigma, tail_s_per_sigma, max_tail_s):
    """A span's overlay and last tick, and the overlay to give ticks ``end+1 … max(stop, span
    end)``.

    The span keeps the draft's overlay ``over`` (from tick ``j``) up to the
    trap's end, then a tail fades what is left there to exactly 0 along a
    raised cosine, :data:`TAIL_MIN_S` to ``max_tail_s`` long
    (``tail_s_per_sigma`` per σ left). Past the span, up to the draft's last
    tick ``stop``, the buffer's ``overlay`` comes back.
    """
    left = over[end - j]
    tail_s = min(max(abs(left) / sigma * tail_s_per_sigma, TAIL_MIN_S), max_tail_s)
    span_end = np.searchsorted(ts, ts[end] + round(tail_s * NS))
    k = span_end - end
    span = np.empty(span_end + 1 - j)
    span[:end + 1 - j] = over[:end + 1 - j]
    # cos(πi/k) and sin(πi/k) by rotation, one step of π/k per tick.
    step_cos, step_sin = math.cos(math.pi / k), math.sin(math.pi / k)
    c, s = 1.0, 0.0
    for i in range(1, k + 1):
        c, s = c * step_cos - s * step_sin, s * step_cos + c * step_sin
        span[end - j + i] = left * 0.5 * (1.0 + c)
    span[-1] = 0.0
    rest = np.empty(max(stop, span_end) - end)
    rest[:k] = span[end + 1 - j:]
    rest[k:] = overlay[span_end + 1:stop + 1]
    return span, span_end, rest


@numba.njit(cache=True)
def _draw(tab, when, nxt, last_start, u):
    """Draw the type of the arrival placed at ``when`` (ns), by a uniform ``u``.

    ``nxt`` is the next arrival (-1: none), ``last_start`` the start of the
    last trap (:data:`NO_TRAP`: none). Returns the type and whether the
    arrival is in an HF cluster.
    """
    gap = math.inf if nxt < 0 else (nxt - when) / NS
    cluster = gap < CLUSTER_NS / NS or (last_start != NO_TRAP and when - last_start < CLUSTER_NS)
    if cluster and len(tab.cluster):
        pool, edges = tab.cluster, tab.cluster_edges
    else:
        r = np.searchsorted(tab.spans, gap, side="right")
        pool, edges = tab.calm[r], tab.calm_edges[r]
    size = np.count_nonzero(pool >= 0)
    pick = np.searchsorted(edges[:size], u * edges[size - 1], side="right")
    return pool[min(pick, size - 1)], cluster


@numba.njit(cache=True)
def _place(tab, members, quick, ts, price, logs, final, highs, lows, overlay, volume, j, sigma,
           uniforms, upos, exponentials, epos, row):
    """Place the first of the types ``members`` (-1 pads) that keeps the contract at tick ``j``.

    Each is drafted (:func:`~trapsim.scenarios.traps.draft`; ``quick`` for
    the shortest timings), written, measured on the final stream, given its
    recovery tail and volume bursts, and judged with :data:`MARGIN`
    (:mod:`~trapsim.scenarios.contract`); one that fails leaves no trace.
    Draws start at ``uniforms[upos]`` and ``exponentials[epos]``. Returns
    whether a trap was placed (its row then filled, see :data:`KIND`) and the
    next unused draws.
    """
    for kind in members:
        if kind < 0:
            break
        k = tab.n_bounds[kind]
        s, start, stop, lookback_min, ratio, over = draft(
            kind, ts, price, logs, final, highs, lows, j, sigma, tab.bounds[quick, kind, :k],
            uniforms[upos:upos + k], tab.needs[kind])
        upos += k
        if not s or np.max(np.abs(over)) > MAX_MOVE_LOG:
            continue
        write_final(price, final, highs, lows, j, over)
        dirty = j + len(over)
        rec, why = measure_kernel(kind, ts, final, highs, lows, start, s, stop, lookback_min, j,
                                  ratio)
        if not why:
            end = int(rec[END])
            span, span_end, rest = _span_overlay(ts, over, overlay, j, end, stop, rec[SIGMA],
                                                 tab.tails[kind, 0], tab.tails[kind, 1])
            write_final(price, final, highs, lows, end + 1, rest)
            dirty = max(dirty, end + 1 + len(rest))
            hi = span_end + 1
            bursts = tab.bursts[kind, :tab.n_bursts[kind]].copy()
            draws = 0
            for b in range(len(bursts)):  # record slots to ticks
                bursts[b, 0], bursts[b, 1] = rec[int(bursts[b, 0])], rec[int(bursts[b, 1])]
                draws += hi - int(bursts[b, 0])
            saved = volume[j:hi].copy()
            add_bursts(ts, volume, start, bursts, hi, exponentials[epos:epos + draws])
            epos += draws
            if not judge(kind, s, ts, volume, rec, MARGIN):
                overlay[j:hi] = span
                row[:len(FIELDS)] = rec
                row[SIDE], row[SPAN_START], row[SPAN_STOP], row[KIND] = s, j, span_end, kind
                return True, upos, epos
            volume[j:hi] = saved
        write_final(price, final, highs, lows, j, overlay[j:dirty])
    return False, upos, epos


@numba.njit(cache=True)
def _pop(state):
    """Move on to the next arrival."""
    state[ARRIVAL] += 1
    state[DUE] = state[WAITED] = 0
    state[CHOICE] = -1


@numba.njit(cache=True, nogil=True)
def _run(tab, ts, price, logs, final, highs, lows, overlay, volume, upto, span_ns, lookback_ns,
         stream_start, earliest, state, arrivals, uniforms, exponentials, rows):
    """The loop of :meth:`TrapInjector.inject` over one buffer, from ``state`` (see
    :data:`ARRIVAL`), which it updates in place.

    ``arrivals`` are the current arrival and the ones after it (all those
    before ``upto`` and one more, or up to the end of the process);
    ``uniforms`` and ``exponentials`` are the random draws at hand. Placed
    traps fill ``rows``. Stops when done, when it needs more draws or rows
    (the interrupted try is made again on the next call), or at a span the
    buffer does not reach back enough for. Returns the outcome
    (:data:`DONE` …) and the number of rows filled.
    """
    n = len(ts)
    filled = 0
    while state[ARRIVAL] < len(arrivals):
        k = state[ARRIVAL]
        when = max(state[DUE] or arrivals[k], state[SPAN_END] + 1, earliest, state[CLOCK])
        if when >= upto:
            break
        state[CLOCK] = when
        j = np.searchsorted(ts, when)
        if j < n and ts[j] >= upto:
            break
        if j >= n or ts[j] + span_ns > ts[n - 1]:
            _pop(state)  # the source ends before the span could
            continue
        if ts[0] > max(stream_start, ts[j] - lookback_ns):
            state[AT] = j
            return SHORT_BUFFER, filled
        if state[CHOICE] < 0:
            if state[UPOS] >= len(uniforms):
                state[AT] = 1
                return NEED_UNIFORMS, filled
            nxt = arrivals[k + 1] if k + 1 < len(arrivals) else -1
            state[CHOICE], state[CLUSTER] = _draw(tab, ts[j], nxt, state[LAST_START],
                                                  uniforms[state[UPOS]])
            state[UPOS] += 1
        choice = state[CHOICE]
        status, j, when, state[WAITED], sigma = _seek(
            ts, price, final, highs, lows, j, when, state[WAITED], state[FAILED] != 0, upto,
            span_ns, tab.family_needs[choice])
        state[FAILED] = 0
        if status == RETRY or status == REDRAW:
            state[DUE] = when
            if status == REDRAW:
                state[CHOICE] = -1
            continue
        state[CLOCK] = when
        if status == DROP:
            _pop(state)
            continue
        state[DUE] = when
        # Room for the whole try, or it is made again once there is.
        state[AT] = tab.family_draws[choice]
        if len(uniforms) - state[UPOS] < state[AT]:
            return NEED_UNIFORMS, filled
        reach = np.searchsorted(ts, ts[j] + span_ns, side="right") - j
        state[AT] = tab.family.shape[1] * tab.bursts.shape[1] * reach
        if len(exponentials) - state[EPOS] < state[AT]:
            return NEED_EXPONENTIALS, filled
        if filled == len(rows):
            return ROWS_FULL, filled
        placed, state[UPOS], state[EPOS] = _place(
            tab, tab.family[choice], state[CLUSTER], ts, price, logs, final, highs, lows, overlay,
            volume, j, sigma, uniforms, state[UPOS], exponentials, state[EPOS], rows[filled])
        if placed:
            state[SPAN_END] = ts[int(rows[filled, SPAN_STOP])]
            state[LAST_START] = ts[int(rows[filled, START])]
            filled += 1
            _pop(state)
        else:
            state[FAILED] = 1
    return DONE, filled


@numba.njit(cache=True, nogil=True)
def _final(price, overlay):
    """Final prices (:func:`~trapsim.scenarios.traps.apply_overlay`) and their
    :func:`~trapsim.scenarios.contract.block_extremes`."""
    final = np.empty(len(price))
    apply_overlay(price, overlay, final)
    highs, lows = np.empty(len(final) // BLOCK), np.empty(len(final) // BLOCK)
    reblock(final, highs, lows, 0, len(final))
    return final, highs, lows


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
        traps = tuple(TRAPS[t] for t in types)
        self.lookback_ns = RANGE_NS + MINUTE_NS
        self.max_span_ns = max(
            math.ceil((t.window_s + t.max_tail_s) * NS) for t in traps) + NS
        self._tables = _tables(traps)
        self._arrivals = HawkesArrivals(
            rate_per_hour=TRAPS_PER_HOUR * self.frequency, branching=BRANCHING,
            decay_s=DECAY_S, start_ts=int(start_ts), rng=rng_for(seed, f"traps/{symbol}/arrivals"))
        self._ahead: list[int] = []  # the current arrival and the ones after it, when known
        self._ended = False  # the arrival process has no more arrivals
        self._rng = rng_for(seed, f"traps/{symbol}/shapes")
        self._uniforms = np.empty(0)
        self._exponentials = np.empty(0)
        self._state = np.zeros(AT + 1, dtype=np.int64)
        self._state[[CHOICE, SPAN_END, LAST_START]] = -1, -1, NO_TRAP
        self._rows = np.empty((ROWS, KIND + 1))
        self._next_id = 0
        # Every measure of a label must be taken on the emitted stream, which
        # starts at start_ts: no trap before σ's 61 minute closes exist there;
        # prior ranges are cut at the stream start (docs/labels.md).
        self._stream_start = int(start_ts)
        self._earliest = self._stream_start + FIRST_TRAP_NS
        self._upto = None  # upto_ts of the previous call

    @property
    def upto(self) -> int | None:
        """``upto_ts`` of the last :meth:`inject` call (ns UTC), None before the first."""
        return self._upto

    def _fetch(self, upto: int) -> None:
        """Fetch arrivals until one at or after ``upto``, or the end of the process."""
        while not self._ended and (not self._ahead or self._ahead[-1] < upto):
            nxt = next(self._arrivals, None)
            if nxt is None:
                self._ended = True
            else:
                self._ahead.append(nxt)

    def prime(self) -> None:
        """Draw the first blocks of random numbers now, as the first trap try would.

        A caller with time to spare (while its base market is being made) saves
        the first :meth:`inject` the draws; the output is the same either way.
        Does nothing after the first draws.
        """
        if len(self._uniforms) or len(self._exponentials) or self.frequency == 0:
            return
        tab = self._tables
        # The first try's need in _run, on 1-second ticks: every family member's every
        # burst over the ticks of the longest span.
        reach = self.max_span_ns // NS + 1
        self._uniforms = self._refill(self._uniforms, 0, 1, self._rng.random)
        self._exponentials = self._refill(
            self._exponentials, 0, tab.family.shape[1] * tab.bursts.shape[1] * reach,
            self._rng.standard_exponential)

    @staticmethod
    def _refill(buffer: np.ndarray, used: int, need: int, draw) -> np.ndarray:
        """``buffer`` without its first ``used`` draws, topped up by ``draw(out=…)`` to at least
        :data:`BLOCK_DRAWS` and ``need`` draws (in place when it is big enough)."""
        left = len(buffer) - used
        size = max(len(buffer), BLOCK_DRAWS, 2 * need)
        out = buffer if size == len(buffer) else np.empty(size)
        out[:left] = buffer[used:]
        draw(out=out[left:])
        return out

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
            If the arrays differ in length, ``overlay`` or ``volume`` is not
            float64, ``upto_ts`` goes back in time, or the buffer does not
            reach back ``lookback_ns`` before a span.
        """
        upto = int(upto_ts)
        if self._upto is not None and upto < self._upto:
            raise ConfigError(f"upto_ts went back from {iso(self._upto)} to {iso(upto)}")
        n = len(ts)
        if not len(price) == len(overlay) == len(volume) == n:
            raise ConfigError("ts, price, overlay and volume must have the same length")
        if overlay.dtype != np.float64 or volume.dtype != np.float64:
            raise ConfigError("overlay and volume must be float64 arrays (written in place)")
        self._upto = upto
        self._fetch(upto)
        state = self._state
        first = max(state[DUE] or self._ahead[0], state[SPAN_END] + 1, self._earliest,
                    state[CLOCK]) if n and self._ahead else upto
        if first >= upto:
            return []
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        price = np.ascontiguousarray(price, dtype=np.float64)
        final, highs, lows = _final(price, overlay)
        # Drafts read base log prices from their noise window before the first try on.
        logs = np.empty(n)
        since = max(int(ts.searchsorted(first)) - SWING_NOISE_TICKS, 0)
        logs[:since] = np.nan
        logs[since:] = np.log(price[since:])
        arrivals = np.array(self._ahead, dtype=np.int64)
        rows = []
        while True:
            status, filled = _run(
                self._tables, ts, price, logs, final, highs, lows, overlay, volume,
                upto, self.max_span_ns, self.lookback_ns, self._stream_start, self._earliest,
                state, arrivals, self._uniforms, self._exponentials, self._rows)
            rows.append(self._rows[:filled].copy())
            if status == NEED_UNIFORMS:
                self._uniforms = self._refill(self._uniforms, state[UPOS], state[AT],
                                              self._rng.random)
                state[UPOS] = 0
            elif status == NEED_EXPONENTIALS:
                self._exponentials = self._refill(self._exponentials, state[EPOS], state[AT],
                                                  self._rng.standard_exponential)
                state[EPOS] = 0
            elif status != ROWS_FULL:
                break
        del self._ahead[:state[ARRIVAL]]
        state[ARRIVAL] = 0
        if status == SHORT_BUFFER:
            raise ConfigError(
                f"the buffer starts at {iso(ts[0])}, less than lookback_ns before "
                f"a span at {iso(ts[state[AT]])}")
        return self._labels(ts, np.concatenate(rows))

    def _labels(self, ts: np.ndarray, rows: np.ndarray) -> list[dict]:
        """Labels of the traps placed, one row of :func:`_run` each."""
        rows = rows.tolist()
        moves: list[int] = []  # start, peak and end tick of each label
        stamped: list[int] = []  # every tick a label gives as ISO text, in order
        for r in rows:
            moves += (int(r[START]), int(r[PEAK]), int(r[END]))
            stamped += (int(r[SPAN_START]), int(r[SPAN_STOP]))
            stamped += [int(r[slot]) for slot in _STAMPED[int(r[KIND])] if r[slot] == r[slot]]
        times = iter(ts[np.array(moves, dtype=np.int64)].tolist())
        text = iter(iso_many(ts[np.array(stamped, dtype=np.int64)]))
        labels = []
        for r in rows:
            kind = int(r[KIND])
            params = {"sigma": r[SIGMA], "pct": r[PCT], "span_start_ts": next(text),
                      "span_end_ts": next(text)}
            for key, slot, how in _PARAMS[kind]:
                if how is float:
                    params[key] = r[slot]
                elif how is int:
                    params[key] = int(r[slot])
                elif r[slot] == r[slot]:  # a tick, given unless NaN
                    params[key] = next(text)
            labels.append({
                "id": self._next_id, "kind": "trap", "type": TYPES[kind], "symbol": self.symbol,
                "direction": "up" if r[SIDE] > 0 else "down", "start_ts": next(times),
                "peak_ts": next(times), "end_ts": next(times), "magnitude": r[MAGNITUDE],
                "params": params,
            })
            self._next_id += 1
        return labels
