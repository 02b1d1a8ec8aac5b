"""The measurable trap contract of ``docs/labels.md``: measure a trap on the final stream.

Everything here reads only the final tick stream (``ts``, ``price``, ``volume``),
the way an independent checker would, so the injector can verify each trap it
builds before it accepts the label: :func:`measure` and :func:`measure_volume`
measure a trap from its start and inputs, :func:`problem` judges the measure
against the bounds, and :func:`label_problem` checks a finished label.

Two readings of "first tick at which the end condition holds" agree on every
accepted trap: the end is searched from ``start_ts`` with the running extreme
of the fake move (so a premature end shows up as a failure), which equals the
search from ``peak_ts`` with the final peak whenever the measured peak lies
before the end. Threshold crossings must be clear by :data:`EPS` on both
sides, so that log-return or ``std`` rounding in another implementation cannot
move a crossing by one tick.

A measure is a flat float64 record with one slot per name of :data:`FIELDS`,
filled and judged by compiled kernels (:func:`measure_kernel`, :func:`judge`):
the injector measures every draft it writes, so the contract's scans must not
run in Python. The injector also passes the block index of its final prices
(:func:`block_extremes`), so that prior-range extremes cost a few hundred
comparisons; :func:`measure` and :func:`label_problem` scan every tick.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from trapsim.core.time import MINUTE_NS, NS, parse_ts

EPS = 1e-6
"""Clearance of a threshold crossing, in the threshold's own units (σ, or a retrace share)."""

LEVEL_EPS = 1e-9
"""Clearance of a Fibonacci-level touch, in log price."""

FIB_RATIOS = (0.618, 0.786)
"""The Fibonacci retracement ratios of a ``fibonacci_trap``."""

SIGMA_MINUTES = 61
"""Minute closes behind σ: minutes ``M-61 … M-1`` of the start minute ``M``."""

VOLUME_BASE_NS = 30 * MINUTE_NS
"""Window before ``start_ts`` of the volume baseline."""

RANGE_NS = 240 * MINUTE_NS
"""Longest prior range any trap looks at."""

RETRACE = 0.7
"""Share of a liquidity grab's spike that its end retraces."""

REVERSAL = 4.0
"""Reversal (σ) from a Fibonacci trap's peak that ends it."""

TYPES = ("liquidity_grab", "stop_hunt", "bull_trap", "bear_trap", "fibonacci_trap")
"""The five trap types; a type's code in the kernels is its index here."""

LIQUIDITY_GRAB, STOP_HUNT, BULL_TRAP, BEAR_TRAP, FIBONACCI_TRAP = range(len(TYPES))

FIELDS = (
    "start", "peak", "end", "sigma", "magnitude", "pct", "level", "lookback_min",
    "volume_ratio", "rise_s", "retrace_s", "room", "inside0", "beyond_ticks", "back_s",
    "t_break", "t_fall", "hold_s", "fall_s", "fade", "swing_start", "swing_from", "swing_to",
    "ratio", "t_touch", "swing_min", "swing_sigma", "touch_s", "reverse_s", "past_swing",
)
"""Slots of a measure record, NaN where the type has none.

Ticks (``start``, ``peak``, ``end``, ``t_*``, ``swing_start``) are indices into
the stream; ``level`` is the broken level, the Fibonacci level, or a liquidity
grab's 240-min extreme; durations are in seconds (``swing_min`` in minutes),
distances in σ, ``past_swing`` is 1 if a tick goes past the swing's end.
"""

(START, PEAK, END, SIGMA, MAGNITUDE, PCT, LEVEL, LOOKBACK_MIN, VOLUME_RATIO, RISE_S,
 RETRACE_S, ROOM, INSIDE0, BEYOND_TICKS, BACK_S, T_BREAK, T_FALL, HOLD_S, FALL_S, FADE,
 SWING_START, SWING_FROM, SWING_TO, RATIO, T_TOUCH, SWING_MIN, SWING_SIGMA, TOUCH_S,
 REVERSE_S, PAST_SWING) = range(len(FIELDS))

_LEVEL_PARAMS = (("level", LEVEL), ("lookback_min", LOOKBACK_MIN), ("volume_ratio", VOLUME_RATIO))
PARAMS = {
    "liquidity_grab": (("range_extreme", LEVEL), ("volume_ratio", VOLUME_RATIO)),
    "stop_hunt": _LEVEL_PARAMS,
    "bull_trap": _LEVEL_PARAMS,
    "bear_trap": _LEVEL_PARAMS,
    "fibonacci_trap": (("swing_start_ts", SWING_START), ("swing_from", SWING_FROM),
                       ("swing_to", SWING_TO), ("ratio", RATIO), ("level", LEVEL)),
}
"""Per type, the label parameters of ``docs/labels.md`` and the record slot of each: a tick
for the ``…_ts`` ones, whole minutes for ``lookback_min``."""


@dataclass(slots=True)
class Measure:
    """A trap measured on a final stream with times ``ts``: its type, direction and record.

    ``record`` has one float per name of :data:`FIELDS`, filled by
    :func:`measure` and :func:`measure_volume`.
    """

    type: str
    s: int
    record: np.ndarray
    ts: np.ndarray

    @property
    def peak(self) -> int:
        return int(self.record[PEAK])

    @property
    def end(self) -> int:
        return int(self.record[END])

    @property
    def sigma(self) -> float:
        return float(self.record[SIGMA])

    @property
    def magnitude(self) -> float:
        return float(self.record[MAGNITUDE])

    @property
    def pct(self) -> float:
        return float(self.record[PCT])

    @property
    def params(self) -> dict:
        """The per-type label parameters of :data:`PARAMS` (``…_ts`` in int ns)."""
        r = self.record.tolist()
        return {key: int(self.ts[int(r[slot])]) if key.endswith("_ts")
                else int(r[slot]) if key == "lookback_min" else r[slot]
                for key, slot in PARAMS[self.type]}


@numba.njit(cache=True)
def minute_closes(ts, start):
    """Indices of the closes (last tick) of minutes ``M-61 … M-1``, ``M`` the minute of
    ``ts[start]``, behind :func:`sigma_at`; empty if a minute has no tick or the stream does
    not reach back."""
    end = (ts[start] // MINUTE_NS) * MINUTE_NS  # end of minute M-1
    i = np.searchsorted(ts, end - SIGMA_MINUTES * MINUTE_NS) - 1  # close of minute M-62
    out = np.empty(SIGMA_MINUTES, dtype=np.int64)
    for k in range(SIGMA_MINUTES):
        edge = end - (SIGMA_MINUTES - 1 - k) * MINUTE_NS  # end of the k-th σ minute
        # Ticks 1 s apart put the next close 60 ticks on; correct the guess either way.
        g = min(i + 60, start - 1)
        while g > i and ts[g] >= edge:
            g -= 1
        while g + 1 < start and ts[g + 1] < edge:
            g += 1
        i = g
        if i < 0 or ts[i] < edge - MINUTE_NS:
            return out[:0]
        out[k] = i
    return out


@numba.njit(cache=True)
def sigma_of_closes(x):
    """σ from the log closes ``x`` of :func:`minute_closes`: the sample standard deviation
    (ddof = 1) of their changes."""
    r = x[1:] - x[:-1]
    r -= r.mean()
    return math.sqrt(np.sum(r * r) / (len(r) - 1))


@numba.njit(cache=True)
def sigma_at(ts, price, start):
    """σ of a trap starting at tick ``start``.

    Sample standard deviation (ddof = 1) of the 60 log returns between the
    closes (last tick) of minutes ``M-61 … M-1``, ``M`` the minute of
    ``ts[start]``. Compiled, so other kernels call it too.

    Parameters
    ----------
    ts, price : numpy.ndarray, shape (n,)
        Tick times (int64 ns UTC, increasing) and final prices.
    start : int
        Index of the trap's first tick.

    Returns
    -------
    float
        σ in log-return units; NaN if a minute has no tick or the stream does
        not reach back far enough.
    """
    closes = minute_closes(ts, start)
    if not len(closes):
        return math.nan
    return sigma_of_closes(np.log(price[closes]))


@numba.njit(cache=True)
def sigma_pair(ts, price, other, start):
    """:func:`sigma_at` of two price streams over the same ticks (say a final stream and its
    base), finding the closes once and taking a log once where the two agree."""
    closes = minute_closes(ts, start)
    if not len(closes):
        return math.nan, math.nan
    a, b = np.empty(len(closes)), np.empty(len(closes))
    for k in range(len(closes)):
        a[k] = math.log(price[closes[k]])
        b[k] = a[k] if other[closes[k]] == price[closes[k]] else math.log(other[closes[k]])
    return sigma_of_closes(a), sigma_of_closes(b)


@numba.njit(cache=True)
def total(x):
    """Sum of ``x`` in eight interleaved partial sums, as numpy's pairwise sum starts: the
    additions proceed in parallel where one running sum would wait on each."""
    acc = np.zeros(8)
    n = len(x) - len(x) % 8
    for i in range(0, n, 8):
        for k in range(8):
            acc[k] += x[i + k]
    for i in range(n, len(x)):
        acc[0] += x[i]
    return acc.sum()


@numba.njit(cache=True)
def _mean(x):
    return total(x) / len(x) if len(x) else math.nan


@numba.njit(cache=True)
def volume_ratio(ts, volume, start, a, b):
    """Volume ×k: mean volume of ticks ``a … b`` over that of ``[start_ts - 30 min, start_ts)``.

    Returns NaN when the window is empty or the baseline is not positive.
    """
    lo = np.searchsorted(ts, ts[start] - VOLUME_BASE_NS)
    base = _mean(volume[lo:start])
    if b < a or not base > 0:
        return math.nan
    return _mean(volume[a:b + 1]) / base


BLOCK = 32
"""Ticks per block of :func:`block_extremes`."""


@numba.njit(cache=True)
def reblock(x, highs, lows, lo, hi):
    """Recompute the :func:`block_extremes` ``highs`` and ``lows`` of ``x`` over the whole
    blocks that overlap ticks ``lo … hi-1``, after ``x`` changed there."""
    for b in range(lo // BLOCK, min((hi + BLOCK - 1) // BLOCK, len(highs))):
        top = bottom = x[b * BLOCK]
        for i in range(b * BLOCK + 1, (b + 1) * BLOCK):
            top = max(top, x[i])
            bottom = min(bottom, x[i])
        highs[b], lows[b] = top, bottom


def block_extremes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Maximum and minimum of ``x`` over each whole block of :data:`BLOCK` ticks.

    An index of a price stream for :func:`range_extreme`; whoever changes the
    prices keeps it in step with :func:`reblock`. A trailing partial block has
    no entry.
    """
    highs = np.empty(len(x) // BLOCK)
    lows = np.empty_like(highs)
    reblock(x, highs, lows, 0, len(x))
    return highs, lows


@numba.njit(cache=True)
def range_extreme(x, extremes, lo, hi, s):
    """Maximum of ``s * x`` over ticks ``lo … hi-1`` (-inf if none).

    ``extremes`` are the :func:`block_extremes` highs (``s = +1``) or lows of
    ``x``, so whole blocks cost one comparison; an empty array scans every
    tick.
    """
    best = -np.inf
    i = lo
    while i < hi:
        b = i // BLOCK
        if i % BLOCK == 0 and i + BLOCK <= hi and b < len(extremes):
            best = max(best, s * extremes[b])
            i += BLOCK
        else:
            best = max(best, s * x[i])
            i += 1
    return best


@numba.njit(cache=True)
def prior_extreme(ts, price, extremes, start, minutes, s):
    """High (``s = +1``) or low (``s = -1``) of ticks in ``[start_ts - minutes, start_ts)``.

    ``extremes`` as for :func:`range_extreme`. NaN if there is no such tick.
    """
    lo = np.searchsorted(ts, ts[start] - minutes * MINUTE_NS)
    return s * range_extreme(price, extremes, lo, start, s) if lo < start else math.nan


# The scans below find the first tick whose value reaches ``threshold - eps``; the
# crossing counts only if that tick also clears ``threshold + eps``. Extremes and peaks
# are taken on prices, so a peak is the first tick at the extreme price even where two
# logs round alike; logs are taken tick by tick, only as far as the scan goes.


@numba.njit(cache=True)
def _seconds(ts, a, b):
    return (ts[b] - ts[a]) / NS


@numba.njit(cache=True)
def _liquidity_grab(ts, price, extremes, start, stop, s, sigma, rec):
    p0 = price[start - 1]
    lp0 = math.log(p0)
    end, peak, l_peak = -1, start, math.log(price[start])
    for i in range(start, stop + 1):
        lp = math.log(price[i])
        if s * price[i] > s * price[peak]:
            peak, l_peak = i, lp
        move = s * (l_peak - lp0)
        if move > 0:  # nothing is retraced before the running peak has left p0
            share = s * (l_peak - lp) / move
            if share >= RETRACE - EPS:
                if share >= RETRACE + EPS:
                    end = i
                break
    if end < 0:
        return "no clear 70 % retrace"
    p_peak = price[peak]
    extreme = prior_extreme(ts, price, extremes, start, 240, s)
    rec[PEAK], rec[END] = peak, end
    rec[MAGNITUDE] = s * math.log(p_peak / p0) / sigma
    rec[PCT] = 100.0 * abs(p_peak / p0 - 1.0)
    rec[LEVEL] = extreme
    rec[RISE_S] = _seconds(ts, start, peak)
    rec[RETRACE_S] = _seconds(ts, peak, end)
    rec[ROOM] = s * math.log(extreme / p_peak) / sigma
    return ""


@numba.njit(cache=True)
def _level_scan(price, start, stop, s, level, sigma, k):
    """Stop-hunt and bull/bear scans around ``level``.

    Returns ``t_break`` (first tick beyond the level), ``t_fall`` (first tick
    after it not beyond), ``end`` (first tick clearly ``k`` σ back inside), the
    peak in ``[start, end]`` and the number of ticks beyond the level there;
    -1 for what is not found.
    """
    t_break = t_fall = end = -1
    peak, beyond_ticks = start, 0
    settled = False
    llevel = math.log(level)
    for i in range(start, stop + 1):
        beyond = s * (price[i] - level) > 0
        if not settled:
            if s * price[i] > s * price[peak]:
                peak = i
            inside = -s * (math.log(price[i]) - llevel) / sigma
            if inside >= k - EPS:
                settled = True
                end = i if inside >= k + EPS else -1
            elif beyond:
                beyond_ticks += 1
        if beyond:
            if t_break < 0:
                t_break = i
        elif t_break >= 0 and t_fall < 0:
            t_fall = i
        if settled and t_fall >= 0:
            break
    return t_break, t_fall, end, peak, beyond_ticks


@numba.njit(cache=True)
def _stop_hunt(ts, price, extremes, start, stop, s, sigma, lookback_min, rec):
    level = prior_extreme(ts, price, extremes, start, lookback_min, s)
    first, _, end, peak, beyond_ticks = _level_scan(price, start, stop, s, level, sigma, 3.0)
    if first < 0:
        return "never beyond the level"
    if end < 0:
        return "never clearly 3 σ back inside"
    if end < first:
        return "3 σ inside before the pierce"
    rec[PEAK], rec[END] = peak, end
    rec[MAGNITUDE] = s * math.log(price[peak] / level) / sigma
    rec[PCT] = 100.0 * abs(price[peak] / level - 1.0)
    rec[LEVEL], rec[LOOKBACK_MIN] = level, lookback_min
    rec[INSIDE0] = s * (level - price[start - 1])
    rec[BEYOND_TICKS] = beyond_ticks
    rec[BACK_S] = _seconds(ts, first, end)
    return ""


@numba.njit(cache=True)
def _breakout(ts, price, extremes, start, stop, s, sigma, lookback_min, rec):
    level = prior_extreme(ts, price, extremes, start, lookback_min, s)
    t_break, t_fall, end, peak, _ = _level_scan(price, start, stop, s, level, sigma, 4.0)
    if t_break < 0:
        return "never beyond the level"
    if t_fall < 0:
        return "never back through the level"
    if end < 0:
        return "never clearly 4 σ past the level"
    if end < t_break:
        return "4 σ past the level before the break"
    rec[PEAK], rec[END] = peak, end
    rec[MAGNITUDE] = s * math.log(price[peak] / level) / sigma
    rec[PCT] = 100.0 * abs(price[peak] / level - 1.0)
    rec[LEVEL], rec[LOOKBACK_MIN] = level, lookback_min
    rec[T_BREAK], rec[T_FALL] = t_break, t_fall
    rec[HOLD_S] = _seconds(ts, t_break, t_fall)
    rec[FALL_S] = _seconds(ts, t_fall, end)
    return ""


@numba.njit(cache=True)
def _fibonacci(ts, price, start, stop, s, sigma, swing_start, ratio, rec):
    swing = price[swing_start:start + 1]
    # A down trap follows an up swing: from its low (swing start) to its high (start).
    lo, hi = swing.min(), swing.max()
    swing_from, swing_to = (lo, hi) if s < 0 else (hi, lo)
    if price[swing_start] != swing_from or price[start] != swing_to:
        return "swing extremes not at its ends"
    level = swing_to - ratio * (swing_to - swing_from)
    end, peak, l_peak = -1, start, math.log(price[start])
    for i in range(start, stop + 1):
        lp = math.log(price[i])
        if s * price[i] > s * price[peak]:
            peak, l_peak = i, lp
        back = -s * (lp - l_peak) / sigma
        if back >= REVERSAL - EPS:
            if back >= REVERSAL + EPS:
                end = i
            break
    if end < 0:
        return "no clear 4 σ reversal"
    touch, past = -1, False
    llevel = math.log(level)
    for i in range(start, end + 1):
        if touch == -1:
            reach = s * (math.log(price[i]) - llevel)
            if reach >= -LEVEL_EPS:
                touch = i if reach >= LEVEL_EPS else -2
        past = past or -s * (price[i] - swing_to) > 0
    if touch < 0:
        return "no clear touch of the level"
    rec[PEAK], rec[END] = peak, end
    rec[MAGNITUDE] = s * math.log(price[peak] / level) / sigma
    rec[PCT] = 100.0 * abs(price[peak] / level - 1.0)
    rec[SWING_START], rec[SWING_FROM], rec[SWING_TO] = swing_start, swing_from, swing_to
    rec[RATIO], rec[LEVEL], rec[T_TOUCH] = ratio, level, touch
    rec[SWING_MIN] = _seconds(ts, swing_start, start) / 60.0
    rec[SWING_SIGMA] = abs(math.log(swing_to / swing_from)) / sigma
    rec[TOUCH_S] = _seconds(ts, touch, peak)
    rec[REVERSE_S] = _seconds(ts, peak, end)
    rec[PAST_SWING] = past
    return ""


@numba.njit(cache=True)
def measure_kernel(kind, ts, price, highs, lows, start, s, stop, lookback_min, swing_start,
                   ratio):
    """The compiled :func:`measure`: the record, and why the trap cannot be measured.

    ``kind`` is the type's index in :data:`TYPES`; ``highs`` and ``lows`` the
    :func:`block_extremes` of ``price`` (or empty arrays); the other
    arguments are those of :func:`measure`. Returns ``(record, why)``, ``why``
    being ``""`` when the trap could be measured.
    """
    extremes = highs if s > 0 else lows
    rec = np.full(len(FIELDS), np.nan)
    rec[START] = start
    sigma = sigma_at(ts, price, start)
    if not (sigma > 0 and math.isfinite(sigma)):
        return rec, "no σ"
    rec[SIGMA] = sigma
    if kind == LIQUIDITY_GRAB:
        why = _liquidity_grab(ts, price, extremes, start, stop, s, sigma, rec)
    elif kind == STOP_HUNT:
        why = _stop_hunt(ts, price, extremes, start, stop, s, sigma, lookback_min, rec)
    elif kind == FIBONACCI_TRAP:
        why = _fibonacci(ts, price, start, stop, s, sigma, swing_start, ratio, rec)
    else:
        why = _breakout(ts, price, extremes, start, stop, s, sigma, lookback_min, rec)
    return rec, why


_NO_INDEX = np.empty(0)
"""No :func:`block_extremes`: :func:`measure` scans every tick of a prior range."""


def measure(trap_type: str, ts: np.ndarray, price: np.ndarray, *, start: int, s: int,
            stop: int, lookback_min: int = 0, swing_start: int = 0,
            ratio: float = 0.0) -> Measure | str:
    """Measure the price side of a trap starting at tick ``start``, per ``docs/labels.md``.

    :func:`measure_volume` adds the volume side.

    Parameters
    ----------
    trap_type : str
        One of the five trap types.
    ts, price : numpy.ndarray, shape (n,)
        The final stream: int64 ns UTC (1 s apart) and prices; it must reach
        240 min before ``ts[start]``.
    start : int
        Index of ``start_ts``.
    s : int
        +1 for an ``up`` fake move, -1 for ``down``.
    stop : int
        Last index searched for the end.
    lookback_min : int
        W of a stop hunt or bull/bear trap, minutes.
    swing_start, ratio :
        Index of the swing start and the Fibonacci ratio of a ``fibonacci_trap``.

    Returns
    -------
    Measure or str
        The measured trap (its bounds are judged by :func:`problem`), or why it
        cannot be measured (no end within ``stop``, no σ, …).
    """
    if trap_type not in TYPES:
        return f"unknown trap type {trap_type!r}"
    rec, why = measure_kernel(TYPES.index(trap_type), ts, price, _NO_INDEX, _NO_INDEX, start, s,
                              stop, lookback_min, swing_start, ratio)
    return why or Measure(trap_type, s, rec, ts)


@numba.njit(cache=True)
def _measure_volume(kind, ts, volume, rec):
    if kind == FIBONACCI_TRAP:
        return
    start, peak = int(rec[START]), int(rec[PEAK])
    rec[VOLUME_RATIO] = volume_ratio(ts, volume, start, start, peak)
    if kind == BULL_TRAP or kind == BEAR_TRAP:
        breakout = _mean(volume[start:peak + 1])
        fade = _mean(volume[peak + 1:int(rec[T_FALL])])
        rec[FADE] = fade / breakout if breakout > 0 else math.nan


def measure_volume(m: Measure, ts: np.ndarray, volume: np.ndarray) -> None:
    """Add the volume side of ``docs/labels.md`` to a measured trap ``m``, in place.

    ``volume_ratio`` is volume ×k over ``[start_ts, peak_ts]`` (all types but
    ``fibonacci_trap``, which has no volume rule); a bull or bear trap also
    gets ``fade``, the mean volume over ``(peak_ts, t_fall)`` over that over
    ``[start_ts, peak_ts]``.
    """
    _measure_volume(TYPES.index(m.type), ts, volume, m.record)


@numba.njit(cache=True)
def _inside(x, lo, hi, margin):
    return lo + margin * max(abs(lo), 1.0) <= x <= hi - margin * max(abs(hi), 1.0)


@numba.njit(cache=True)
def _problem(kind, s, r, margin):
    """Kernel of :func:`problem`: the first broken rule, "" if none."""
    low = 1.0 + margin  # one-sided minimum ratios
    high = 1.0 - margin  # one-sided maximum durations and counts
    mag = r[MAGNITUDE]
    if kind == LIQUIDITY_GRAB:
        if not _inside(mag, 5.0, 12.0, margin):
            return "magnitude outside [5, 12] σ"
        if not _inside(r[RISE_S], 5.0, 60.0, margin):
            return "peak not 5-60 s after start"
        if not (r[ROOM] > 0 and r[ROOM] >= margin):
            return "peak takes out the 240-min extreme"
        if not r[VOLUME_RATIO] >= 3.0 * low:
            return "volume below ×3"
        if not _inside(r[RETRACE_S], 60.0, 600.0, margin):
            return "retrace not 60-600 s after peak"
    elif kind == STOP_HUNT:
        if not _inside(r[LOOKBACK_MIN], 30.0, 240.0, margin):
            return "lookback outside [30, 240] min"
        if not r[INSIDE0] >= 0:
            return "reference price not inside the range"
        if not _inside(mag, 1.0, 4.0, margin):
            return "magnitude outside [1, 4] σ"
        if not r[BEYOND_TICKS] <= 120.0 * high:
            return "more than 120 ticks beyond the level"
        if not r[VOLUME_RATIO] >= 2.0 * low:
            return "volume below ×2"
        if not r[BACK_S] <= 300.0 * high:
            return "not back inside within 300 s"
    elif kind == BULL_TRAP or kind == BEAR_TRAP:
        if s != (1 if kind == BULL_TRAP else -1):
            return "wrong direction for the type"
        if not _inside(r[LOOKBACK_MIN], 60.0, 240.0, margin):
            return "lookback outside [60, 240] min"
        if not _inside(mag, 2.0, 8.0, margin):
            return "magnitude outside [2, 8] σ"
        if not r[T_BREAK] <= r[PEAK] < r[T_FALL]:
            return "peak not between break and fall"
        if not _inside(r[HOLD_S], 120.0, 1200.0, margin):
            return "hold outside [120, 1200] s"
        if not r[VOLUME_RATIO] >= 1.5 * low:
            return "breakout volume below ×1.5"
        if not (r[FADE] < 1 and r[FADE] <= high):
            return "volume not fading after the peak"
        if not r[FALL_S] <= 1800.0 * high:
            return "not 4 σ past the level within 1800 s"
    else:
        if not _inside(r[SWING_MIN], 30.0, 240.0, margin):
            return "swing not 30-240 min long"
        if not r[SWING_SIGMA] >= 15.0 * low:
            return "swing below 15 σ"
        if not (r[RATIO] == FIB_RATIOS[0] or r[RATIO] == FIB_RATIOS[1]):
            return "ratio not 0.618 or 0.786"
        if r[PAST_SWING]:
            return "goes past the swing's end"
        if not r[T_TOUCH] <= r[PEAK]:
            return "peak before the touch"
        if not r[TOUCH_S] <= 180.0 * high:
            return "peak more than 180 s after the touch"
        if not _inside(mag, 1.0, 3.0, margin):
            return "overshoot outside [1, 3] σ"
        if not r[REVERSE_S] <= 600.0 * high:
            return "no 4 σ reversal within 600 s"
    return ""


@numba.njit(cache=True)
def judge(kind, s, ts, volume, rec, margin):
    """Measure the volume side of a trap's record, then judge it against ``docs/labels.md``.

    The compiled path of :func:`measure_volume` followed by :func:`problem`.

    Parameters
    ----------
    kind : int
        The trap type's index in :data:`TYPES`.
    s : int
        +1 for an ``up`` fake move, -1 for ``down``.
    ts, volume : numpy.ndarray, shape (n,)
        The final stream's times and volume.
    rec : numpy.ndarray of float64
        The trap's record from :func:`measure` (``Measure.record``); its volume
        slots are filled in place.
    margin : float
        See :func:`problem`.

    Returns
    -------
    str
        The first rule broken, or ``""``.
    """
    _measure_volume(kind, ts, volume, rec)
    return _problem(kind, s, rec, margin)


def problem(m: Measure, margin: float = 0.0) -> str | None:
    """The first rule of ``docs/labels.md`` that a measured trap breaks, or None.

    ``m`` must have its volume side (:func:`measure_volume`). ``margin``
    (>= 0) tightens every bound by that share of its value (at least that
    much in absolute terms), so that a trap accepted with a margin sits well
    inside its ranges.
    """
    return _problem(TYPES.index(m.type), m.s, m.record, margin) or None


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


def label_problem(label: dict, ts: np.ndarray, price: np.ndarray, volume: np.ndarray,
                  margin: float = 0.0) -> str | None:
    """Check one trap label against the final stream, per ``docs/labels.md``.

    The trap is re-measured from the label's type, direction, ``start_ts`` and
    inputs (``params.lookback_min``, ``params.swing_start_ts``,
    ``params.ratio``); its times, magnitude, σ and levels must equal the
    measured ones and the measure must keep every rule (see :func:`problem`).

    Parameters
    ----------
    label : dict
        A label as :meth:`~trapsim.scenarios.injector.TrapInjector.inject`
        returns it (int ns times, ``params`` a dict).
    ts, price, volume : numpy.ndarray, shape (n,)
        The final stream, reaching 240 min before the label's span start.
    margin : float
        See :func:`problem`.

    Returns
    -------
    str or None
        The first problem found, None for a valid label.
    """
    p = label["params"]
    if label.get("kind") != "trap" or label.get("direction") not in ("up", "down"):
        return "kind is not trap or direction is not up/down"
    idx = np.searchsorted(ts, [label["start_ts"], label["peak_ts"], label["end_ts"]])
    if np.any(idx >= len(ts)) or np.any(ts[np.minimum(idx, len(ts) - 1)] != [
            label["start_ts"], label["peak_ts"], label["end_ts"]]):
        return "label times are not ticks of the stream"
    start, peak, end = (int(i) for i in idx)
    s = 1 if label["direction"] == "up" else -1
    swing_start = 0
    if label["type"] == "fibonacci_trap":
        swing_start = int(np.searchsorted(ts, parse_ts(p["swing_start_ts"])))
    m = measure(label["type"], ts, price, start=start, s=s, stop=end,
                lookback_min=p.get("lookback_min", 0), swing_start=swing_start,
                ratio=p.get("ratio", 0.0))
    if isinstance(m, str):
        return m
    measure_volume(m, ts, volume)
    if m.end != end:
        return "end_ts is not the first tick of the end condition"
    if m.peak != peak:
        return "peak_ts is not the first tick of the peak"
    if not (_close(m.magnitude, label["magnitude"]) and _close(m.sigma, p["sigma"])
            and _close(m.pct, p["pct"])):
        return "magnitude, sigma or pct differ from the measure"
    for key, value in m.params.items():
        claimed = p.get(key)
        if key == "swing_start_ts":
            claimed = parse_ts(claimed) if claimed else None
        if claimed is None or not _close(float(value), float(claimed)):
            return f"params.{key} differs from the measure"
    return problem(m, margin)
