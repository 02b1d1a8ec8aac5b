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
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class Measure:
    """A trap measured on a final stream; indices are into the stream's arrays.

    ``values`` holds the per-type quantities of ``docs/labels.md`` (levels,
    ratios, durations in seconds, counts), ``params`` the per-type label
    parameters (JSON-ready), both filled by :func:`measure`.
    """

    type: str
    s: int
    start: int
    peak: int
    end: int
    sigma: float
    magnitude: float
    pct: float
    params: dict = field(default_factory=dict)
    values: dict = field(default_factory=dict)


def sigma_at(ts: np.ndarray, price: np.ndarray, start: int) -> float:
    """σ of a trap starting at tick ``start``.

    Sample standard deviation (ddof = 1) of the 60 log returns between the
    closes (last tick) of minutes ``M-61 … M-1``, ``M`` the minute of
    ``ts[start]``.

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
    return _sigma(ts, price, start)


@numba.njit(cache=True)
def _sigma(ts, price, start):
    """Kernel of :func:`sigma_at`: one forward pass over the 61 minute closes."""
    end = (ts[start] // MINUTE_NS) * MINUTE_NS  # end of minute M-1
    i = np.searchsorted(ts, end - SIGMA_MINUTES * MINUTE_NS) - 1  # close of minute M-62
    r = np.empty(SIGMA_MINUTES - 1)
    last = 0.0
    for k in range(SIGMA_MINUTES):
        edge = end - (SIGMA_MINUTES - 1 - k) * MINUTE_NS  # end of the k-th σ minute
        while i + 1 < start and ts[i + 1] < edge:
            i += 1
        if i < 0 or ts[i] < edge - MINUTE_NS:
            return math.nan
        close = math.log(price[i])
        if k:
            r[k - 1] = close - last
        last = close
    r -= r.mean()
    return math.sqrt(np.sum(r * r) / (len(r) - 1))


def volume_ratio(ts: np.ndarray, volume: np.ndarray, start: int, a: int, b: int) -> float:
    """Volume ×k: mean volume of ticks ``a … b`` over that of ``[start_ts - 30 min, start_ts)``.

    Returns NaN when the window is empty or the baseline is not positive.
    """
    lo = int(ts.searchsorted(ts[start] - VOLUME_BASE_NS))
    base = _mean(volume[lo:start])
    if b < a or not base > 0:
        return math.nan
    return _mean(volume[a:b + 1]) / base


def _mean(x: np.ndarray) -> float:
    """Mean of ``x`` (NaN if empty), the same float as ``x.mean()`` with less overhead."""
    return float(x.sum() / len(x)) if len(x) else math.nan


def prior_extreme(ts: np.ndarray, price: np.ndarray, start: int, minutes: int, s: int) -> float:
    """High (``s = +1``) or low (``s = -1``) of ticks in ``[start_ts - minutes, start_ts)``.

    NaN if there is no such tick.
    """
    lo = int(ts.searchsorted(ts[start] - minutes * MINUTE_NS))
    window = price[lo:start]
    if not len(window):
        return math.nan
    return float(window.max() if s > 0 else window.min())


def _first_clear(values: np.ndarray, threshold: float, eps: float) -> int:
    """Index of the first ``values >= threshold``, or -1 if none or not clear by ``eps``."""
    hit = np.flatnonzero(values >= threshold - eps)
    if not len(hit) or values[hit[0]] < threshold + eps:
        return -1
    return int(hit[0])


def _peak(price: np.ndarray, a: int, b: int, s: int) -> int:
    """First tick of the maximum (``s = +1``) or minimum of ``price[a … b]``."""
    seg = price[a:b + 1]
    return a + int(np.argmax(seg) if s > 0 else np.argmin(seg))


def _running_end(price: np.ndarray, a: int, stop: int, s: int, test) -> int:
    """First tick in ``a … stop`` where ``test(seg, running_extreme)`` clears, else -1."""
    seg = price[a:stop + 1]
    run = np.maximum.accumulate(seg) if s > 0 else np.minimum.accumulate(seg)
    hit = test(seg, run)
    return -1 if hit < 0 else a + hit


def _seconds(ts: np.ndarray, a: int, b: int) -> float:
    return (int(ts[b]) - int(ts[a])) / NS


def _liquidity_grab(m: Measure, ts, price, stop: int) -> str | None:
    s, start, sigma = m.s, m.start, m.sigma
    p0 = price[start - 1]

    def retrace(seg, run):
        move = s * np.log(run / p0)
        # Before the running peak has left p0 in the move's direction, nothing is retraced.
        share = s * np.log(run / seg) / np.where(move > 0, move, np.inf)
        return _first_clear(share, 0.7, EPS)

    m.end = _running_end(price, start, stop, s, retrace)
    if m.end < 0:
        return "no clear 70 % retrace"
    m.peak = _peak(price, start, m.end, s)
    p_peak = price[m.peak]
    m.magnitude = float(s * math.log(p_peak / p0) / sigma)
    m.pct = 100.0 * abs(p_peak / p0 - 1.0)
    extreme = prior_extreme(ts, price, start, 240, s)
    m.params.update(range_extreme=extreme)
    m.values.update(rise_s=_seconds(ts, start, m.peak), retrace_s=_seconds(ts, m.peak, m.end),
                    room=s * math.log(extreme / p_peak) / sigma)
    return None


def _level_end(price, start: int, stop: int, s: int, level: float, sigma: float, k: float) -> int:
    """First tick from ``start`` at least ``k`` σ back on the inside of ``level``."""
    inside = -s * np.log(price[start:stop + 1] / level) / sigma
    hit = _first_clear(inside, k, EPS)
    return -1 if hit < 0 else start + hit


def _stop_hunt(m: Measure, ts, price, stop: int, lookback_min: int) -> str | None:
    s, start, sigma = m.s, m.start, m.sigma
    level = prior_extreme(ts, price, start, lookback_min, s)
    beyond = np.flatnonzero(s * (price[start:stop + 1] - level) > 0)
    if not len(beyond):
        return "never beyond the level"
    first = start + int(beyond[0])
    m.end = _level_end(price, start, stop, s, level, sigma, 3.0)
    if m.end < 0:
        return "never clearly 3 σ back inside"
    if m.end < first:
        return "3 σ inside before the pierce"
    m.peak = _peak(price, start, m.end, s)
    m.magnitude = float(s * math.log(price[m.peak] / level) / sigma)
    m.pct = 100.0 * abs(price[m.peak] / level - 1.0)
    m.params.update(level=level, lookback_min=lookback_min)
    m.values.update(inside0=s * (level - price[start - 1]),
                    beyond_ticks=int(np.count_nonzero(beyond <= m.end - start)),
                    back_s=_seconds(ts, first, m.end))
    return None


def _breakout(m: Measure, ts, price, stop: int, lookback_min: int) -> str | None:
    s, start, sigma = m.s, m.start, m.sigma
    level = prior_extreme(ts, price, start, lookback_min, s)
    beyond = s * (price[start:stop + 1] - level) > 0
    if not beyond.any():
        return "never beyond the level"
    t_break = start + int(np.argmax(beyond))
    back = np.flatnonzero(~beyond[t_break - start:])
    if not len(back):
        return "never back through the level"
    t_fall = t_break + int(back[0])
    m.end = _level_end(price, start, stop, s, level, sigma, 4.0)
    if m.end < 0:
        return "never clearly 4 σ past the level"
    if m.end < t_break:
        return "4 σ past the level before the break"
    m.peak = _peak(price, start, m.end, s)
    m.magnitude = float(s * math.log(price[m.peak] / level) / sigma)
    m.pct = 100.0 * abs(price[m.peak] / level - 1.0)
    m.params.update(level=level, lookback_min=lookback_min)
    m.values.update(t_break=t_break, t_fall=t_fall, hold_s=_seconds(ts, t_break, t_fall),
                    fall_s=_seconds(ts, t_fall, m.end))
    return None


def _fibonacci(m: Measure, ts, price, stop: int, swing_start: int,
               ratio: float) -> str | None:
    s, start, sigma = m.s, m.start, m.sigma
    swing = price[swing_start:start + 1]
    # A down trap follows an up swing: from its low (swing start) to its high (start).
    lo, hi = float(swing.min()), float(swing.max())
    swing_from, swing_to = (lo, hi) if s < 0 else (hi, lo)
    if price[swing_start] != swing_from or price[start] != swing_to:
        return "swing extremes not at its ends"
    level = swing_to - ratio * (swing_to - swing_from)
    m.end = _running_end(price, start, stop, s, lambda seg, run: _first_clear(
        -s * np.log(seg / run) / sigma, 4.0, EPS))
    if m.end < 0:
        return "no clear 4 σ reversal"
    m.peak = _peak(price, start, m.end, s)
    touch = _first_clear(s * np.log(price[start:m.end + 1] / level), 0.0, LEVEL_EPS)
    if touch < 0:
        return "no clear touch of the level"
    touch += start
    m.magnitude = float(s * math.log(price[m.peak] / level) / sigma)
    m.pct = 100.0 * abs(price[m.peak] / level - 1.0)
    m.params.update(swing_start_ts=int(ts[swing_start]), swing_from=swing_from,
                    swing_to=swing_to, ratio=ratio, level=level)
    past = price[start:m.end + 1]
    m.values.update(t_touch=touch, swing_min=_seconds(ts, swing_start, start) / 60.0,
                    swing_sigma=abs(math.log(swing_to / swing_from)) / sigma,
                    touch_s=_seconds(ts, touch, m.peak), reverse_s=_seconds(ts, m.peak, m.end),
                    past_swing=bool(np.any(-s * (past - swing_to) > 0)))
    return None


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
    sigma = sigma_at(ts, price, start)
    if not (sigma > 0 and math.isfinite(sigma)):
        return "no σ"
    m = Measure(trap_type, s, start, -1, -1, sigma, math.nan, math.nan)
    if trap_type == "liquidity_grab":
        why = _liquidity_grab(m, ts, price, stop)
    elif trap_type == "stop_hunt":
        why = _stop_hunt(m, ts, price, stop, lookback_min)
    elif trap_type in ("bull_trap", "bear_trap"):
        why = _breakout(m, ts, price, stop, lookback_min)
    elif trap_type == "fibonacci_trap":
        why = _fibonacci(m, ts, price, stop, swing_start, ratio)
    else:
        return f"unknown trap type {trap_type!r}"
    return why or m


def measure_volume(m: Measure, ts: np.ndarray, volume: np.ndarray) -> None:
    """Add the volume side of ``docs/labels.md`` to a measured trap ``m``, in place.

    ``params["volume_ratio"]`` is volume ×k over ``[start_ts, peak_ts]``
    (all types but ``fibonacci_trap``, which has no volume rule); a bull or
    bear trap also gets ``values["fade"]``, the mean volume over
    ``(peak_ts, t_fall)`` over that over ``[start_ts, peak_ts]``.
    """
    if m.type == "fibonacci_trap":
        return
    m.params["volume_ratio"] = volume_ratio(ts, volume, m.start, m.start, m.peak)
    if "t_fall" in m.values:
        breakout = _mean(volume[m.start:m.peak + 1])
        fade = _mean(volume[m.peak + 1:m.values["t_fall"]])
        m.values["fade"] = fade / breakout if breakout > 0 else math.nan


def _inside(x: float, lo: float, hi: float, margin: float) -> bool:
    return lo + margin * max(abs(lo), 1.0) <= x <= hi - margin * max(abs(hi), 1.0)


def problem(m: Measure, margin: float = 0.0) -> str | None:
    """The first rule of ``docs/labels.md`` that a measured trap breaks, or None.

    ``margin`` (>= 0) tightens every bound by that share of its value (at
    least that much in absolute terms), so that a trap accepted with a margin
    sits well inside its ranges.
    """
    v, p, mag = m.values, m.params, m.magnitude
    low = 1.0 + margin  # one-sided minimum ratios
    high = 1.0 - margin  # one-sided maximum durations and counts
    if m.type == "liquidity_grab":
        rules = (
            (_inside(mag, 5, 12, margin), "magnitude outside [5, 12] σ"),
            (_inside(v["rise_s"], 5, 60, margin), "peak not 5-60 s after start"),
            (v["room"] > 0 and v["room"] >= margin, "peak takes out the 240-min extreme"),
            (p["volume_ratio"] >= 3 * low, "volume below ×3"),
            (_inside(v["retrace_s"], 60, 600, margin), "retrace not 60-600 s after peak"),
        )
    elif m.type == "stop_hunt":
        rules = (
            (_inside(p["lookback_min"], 30, 240, margin), "lookback outside [30, 240] min"),
            (v["inside0"] >= 0, "reference price not inside the range"),
            (_inside(mag, 1, 4, margin), "magnitude outside [1, 4] σ"),
            (v["beyond_ticks"] <= 120 * high, "more than 120 ticks beyond the level"),
            (p["volume_ratio"] >= 2 * low, "volume below ×2"),
            (v["back_s"] <= 300 * high, "not back inside within 300 s"),
        )
    elif m.type in ("bull_trap", "bear_trap"):
        rules = (
            (m.s == (1 if m.type == "bull_trap" else -1), "wrong direction for the type"),
            (_inside(p["lookback_min"], 60, 240, margin), "lookback outside [60, 240] min"),
            (_inside(mag, 2, 8, margin), "magnitude outside [2, 8] σ"),
            (v["t_break"] <= m.peak < v["t_fall"], "peak not between break and fall"),
            (_inside(v["hold_s"], 120, 1200, margin), "hold outside [120, 1200] s"),
            (p["volume_ratio"] >= 1.5 * low, "breakout volume below ×1.5"),
            (v["fade"] < 1 and v["fade"] <= high, "volume not fading after the peak"),
            (v["fall_s"] <= 1800 * high, "not 4 σ past the level within 1800 s"),
        )
    elif m.type == "fibonacci_trap":
        rules = (
            (_inside(v["swing_min"], 30, 240, margin), "swing not 30-240 min long"),
            (v["swing_sigma"] >= 15 * low, "swing below 15 σ"),
            (p["ratio"] in FIB_RATIOS, "ratio not 0.618 or 0.786"),
            (not v["past_swing"], "goes past the swing's end"),
            (v["t_touch"] <= m.peak, "peak before the touch"),
            (v["touch_s"] <= 180 * high, "peak more than 180 s after the touch"),
            (_inside(mag, 1, 3, margin), "overshoot outside [1, 3] σ"),
            (v["reverse_s"] <= 600 * high, "no 4 σ reversal within 600 s"),
        )
    else:
        return f"unknown trap type {m.type!r}"
    return next((why for ok, why in rules if not ok), None)


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
