"""Independent checker of trap labels against docs/labels.md, measured on the tick stream.

Written from /work/shared/TRAPS.md and docs/labels.md only, so that it can catch
an injector that drifts from the contract. Plain numpy; every number is recomputed
from ``ts``, ``price`` and ``volume`` and only then compared with the label.

Each violation is a string ``"<clause>: <detail>"``; the clause names are stable so
tests can ask for a specific one.

Readings chosen where docs/labels.md leaves room (closest to TRAPS.md):

- "``end_ts`` is the first tick at which the end condition holds" needs a point to
  search from, because before the fake move's extreme most end conditions hold
  trivially (a liquidity grab's start has ~100 % retrace of the final spike). The
  search starts after the move has happened: after the peak (liquidity grab,
  Fibonacci: both measure from ``p_peak``), after the first tick beyond the level
  (stop hunt), after ``t_break`` (bull/bear: equivalent to "from ``t_fall``").
- A prior range over W minutes is the ticks in ``[max(t_first, start_ts − W), start_ts)``
  (docs/labels.md: near the start of a stream the range is what the stream holds).
- HF: "each next trap comes within hf_window of the previous one" is read as a gap
  strictly below ``hf_window``, matching the half-open switching-on window
  ``(t − hf_window, t]``; equal start times keep their input order.
"""

from __future__ import annotations

import json
import math
import re
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

NS = 1_000_000_000
MINUTE_NS = 60 * NS
REL_TOL = 1e-6
# Slack on thresholds in σ or ratio units: the boundary value computed by a different
# but equivalent formula may land one rounding step on the other side.
EPS = 1e-9

TYPES = ("liquidity_grab", "stop_hunt", "bull_trap", "bear_trap", "fibonacci_trap")
FIB_RATIOS = (0.618, 0.786)

_ISO = re.compile(
    r"^(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:?\d{2})?$"
)


class _Fatal(Exception):
    """A prerequisite is missing; later clauses cannot be measured."""


# ----------------------------------------------------------------------------- time


def parse_iso(text: str) -> int:
    """ISO 8601 time to int64 ns UTC, keeping all 9 fractional digits."""
    m = _ISO.match(text.strip())
    if m is None:
        raise ValueError(f"not an ISO 8601 time: {text!r}")
    base, frac, tz = m.groups()
    ns = int(np.datetime64(base.replace(" ", "T"), "s").astype(np.int64)) * NS
    if frac:
        ns += int(frac.ljust(9, "0"))
    if tz and tz != "Z":
        sign = 1 if tz[0] == "+" else -1
        hh, mm = int(tz[1:3]), int(tz[-2:])
        ns -= sign * (hh * 3600 + mm * 60) * NS
    return ns


def _iso_is_utc(text: str) -> bool:
    m = _ISO.match(text.strip())
    return m is not None and m.group(3) in (None, "Z", "+00:00", "+0000", "-00:00")


def to_ns(value: Any) -> int:
    """int ns, numpy datetime64, pandas/pyarrow timestamp, datetime or ISO string → int ns."""
    if isinstance(value, bool):
        raise TypeError("a bool is not a time")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ns]").astype(np.int64))
    if hasattr(value, "to_datetime64"):  # pandas.Timestamp (UTC value even when tz-aware)
        return int(value.to_datetime64().astype("datetime64[ns]").astype(np.int64))
    unit = getattr(getattr(value, "type", None), "unit", None)
    if unit is not None and hasattr(value, "value"):  # pyarrow TimestampScalar
        return int(np.datetime64(value.value, unit).astype("datetime64[ns]").astype(np.int64))
    if isinstance(value, datetime):
        dt = value if value.tzinfo else value.replace(tzinfo=UTC)
        delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
        return (delta.days * 86400 + delta.seconds) * NS + delta.microseconds * 1000
    if isinstance(value, str):
        return parse_iso(value)
    raise TypeError(f"cannot read a time from {type(value).__name__}")


def _fmt_s(ns: int) -> str:
    return f"{ns / NS:g} s"


# --------------------------------------------------------------------------- helpers


def label_params(label: Mapping[str, Any]) -> dict:
    """The label's params as a dict (they may come as a JSON string)."""
    p = label.get("params")
    if p is None:
        return {}
    return json.loads(p) if isinstance(p, str | bytes) else dict(p)


def _close(a: float, b: float, rel: float = REL_TOL) -> bool:
    return math.isclose(float(a), float(b), rel_tol=rel, abs_tol=0.0)


class _Label:
    """Everything common to the five types, recomputed from the ticks."""

    def __init__(self, ts, price, volume, label, out: list[str]):
        self.out = out
        self.ts = np.asarray(ts, dtype=np.int64)
        self.price = np.asarray(price, dtype=np.float64)
        self.volume = np.asarray(volume, dtype=np.float64)
        if not (len(self.ts) == len(self.price) == len(self.volume)):
            raise _Fatal("ticks: ts, price and volume differ in length")
        if len(self.ts) > 1 and np.any(np.diff(self.ts) <= 0):
            raise _Fatal("ticks: ts is not strictly increasing")
        self.label = label
        self.range_note = ""
        self.p = label_params(label)
        self.type = label.get("type")
        self.direction = label.get("direction")

        if label.get("kind") != "trap":
            self.bad("kind", f"{label.get('kind')!r}, expected 'trap'")
        if self.type not in TYPES:
            raise _Fatal(f"type: {self.type!r} is not one of {', '.join(TYPES)}")
        if self.direction not in ("up", "down"):
            raise _Fatal(f"direction: {self.direction!r} is neither 'up' nor 'down'")
        if self.type == "bull_trap" and self.direction != "up":
            self.bad("direction", "a bull_trap is always up")
        if self.type == "bear_trap" and self.direction != "down":
            self.bad("direction", "a bear_trap is always down")
        self.s = 1 if self.direction == "up" else -1

        try:
            self.start = to_ns(label["start_ts"])
            self.peak_label = to_ns(label["peak_ts"])
            self.end = to_ns(label["end_ts"])
        except (KeyError, TypeError, ValueError) as err:
            raise _Fatal(f"times: cannot read start_ts/peak_ts/end_ts: {err}") from None
        if not self.start <= self.peak_label <= self.end:
            self.bad("order", "expected start_ts <= peak_ts <= end_ts")
        if self.start >= self.end:
            raise _Fatal("order: start_ts is not before end_ts")
        self.i_start = self.tick("start_ts", self.start, fatal=True)
        self.i_end = self.tick("end_ts", self.end, fatal=True)
        self.tick("peak_ts", self.peak_label, fatal=False)

        if self.start - int(self.ts[0]) < 62 * MINUTE_NS:
            self.bad("stream_start", "start_ts is less than 62 minutes after the first tick")
        self.sigma = self._sigma()
        sig = self.param("sigma")
        if sig is not None and not _close(sig, self.sigma):
            self.bad("sigma", f"params.sigma {sig!r} != {self.sigma!r} from minute closes")

        if self.i_start == 0:
            raise _Fatal("p0: no tick before start_ts")
        self.p0 = float(self.price[self.i_start - 1])
        if "p0" in self.p and not _close(self.p["p0"], self.p0):
            self.bad("p0", f"params.p0 {self.p['p0']!r} != last price before start {self.p0!r}")

        window = self.price[self.i_start : self.i_end + 1]
        k = int(np.argmax(window) if self.s > 0 else np.argmin(window))  # first occurrence
        self.i_peak = self.i_start + k
        self.p_peak = float(self.price[self.i_peak])
        self.t_peak = int(self.ts[self.i_peak])
        if self.peak_label != self.t_peak:
            self.bad(
                "peak_ts",
                f"label {self.peak_label} but the first tick at the "
                f"{'maximum' if self.s > 0 else 'minimum'} of [start_ts, end_ts] is {self.t_peak}",
            )

        self.base_volume = self._base_volume()

    # -- reporting
    def bad(self, clause: str, detail: str) -> None:
        self.out.append(f"{clause}: {detail}")

    def param(self, key: str, *, required: bool = True):
        if key not in self.p or self.p[key] is None:
            if required:
                self.bad("params", f"missing params.{key}")
            return None
        return self.p[key]

    def param_time(self, key: str) -> int | None:
        v = self.param(key)
        if v is None:
            return None
        if not isinstance(v, str) or not _iso_is_utc(v):
            self.bad("params", f"params.{key} = {v!r} is not an ISO 8601 UTC string")
        try:
            return to_ns(v)
        except (TypeError, ValueError):
            return None

    # -- measures
    def tick(self, name: str, t: int, *, fatal: bool) -> int | None:
        i = int(np.searchsorted(self.ts, t))
        if i < len(self.ts) and self.ts[i] == t:
            return i
        msg = f"{name} {t} is not the time of a tick"
        if fatal:
            raise _Fatal(f"ticks: {msg}")
        self.bad("ticks", msg)
        return None

    def _sigma(self) -> float:
        m = self.start // MINUTE_NS
        minutes = np.arange(m - 61, m, dtype=np.int64)
        last = np.searchsorted(self.ts, (minutes + 1) * MINUTE_NS, side="left") - 1
        if last[0] < 0 or np.any(self.ts[np.maximum(last, 0)] < minutes * MINUTE_NS):
            raise _Fatal(
                "sigma: a minute of the 61 before start_ts's minute has no tick "
                f"(the stream starts {(self.start - int(self.ts[0])) / MINUTE_NS:g} min before)"
            )
        closes = self.price[last]
        sigma = float(np.std(np.diff(np.log(closes)), ddof=1))
        if not sigma > 0:
            raise _Fatal("sigma: zero volatility over the 61 minutes before start_ts")
        return sigma

    def _base_volume(self) -> float:
        lo = int(np.searchsorted(self.ts, self.start - 30 * MINUTE_NS, side="left"))
        if lo >= self.i_start:
            raise _Fatal("volume: no ticks in [start_ts - 30 min, start_ts)")
        return float(np.mean(self.volume[lo : self.i_start]))

    def volume_ratio(self, i0: int, i1: int) -> float:
        """Mean tick volume over indices [i0, i1] relative to the 30-minute baseline."""
        return float(np.mean(self.volume[i0 : i1 + 1])) / self.base_volume

    def prior_range(self, minutes: float) -> tuple[float, float]:
        lo = int(np.searchsorted(self.ts, self.start - round(minutes * MINUTE_NS), side="left"))
        if lo >= self.i_start:
            raise _Fatal(f"range: no ticks in the {minutes} minutes before start_ts")
        # Near the stream start the range is what the stream holds; messages say so.
        start_gap = (self.start - int(self.ts[0])) / MINUTE_NS
        self.range_note = f" (only {start_gap:g} min of ticks)" if start_gap < minutes else ""
        w = self.price[lo : self.i_start]
        return float(w.min()), float(w.max())

    def in_range(self, clause: str, value: float, lo: float, hi: float) -> None:
        if not lo - EPS <= value <= hi + EPS:
            self.bad(clause, f"{value:.6g} not in [{lo:g}, {hi:g}]")

    def magnitude(self, value: float, lo: float, hi: float) -> None:
        self.in_range("magnitude", value, lo, hi)
        mag = self.label.get("magnitude")
        if mag is None or not _close(mag, value):
            self.bad("magnitude", f"label {mag!r} != {value!r} recomputed from the ticks")

    def pct(self, p1: float, p2: float) -> None:
        want = 100.0 * abs(p1 / p2 - 1.0)
        got = self.param("pct")
        if got is not None and not _close(got, want):
            self.bad("pct", f"params.pct {got!r} != {want!r}")

    def span_start(self, expected: int) -> None:
        got = self.param_time("span_start_ts")
        if got is not None and got != expected:
            self.bad("span_start_ts", f"{got} != {expected}")

    def end_first(self, cond: np.ndarray, i_from: int, what: str) -> None:
        """``cond`` covers ticks i_from+1 … i_end; its first True must be the last one."""
        hits = np.flatnonzero(cond)
        if len(hits) == 0 or hits[0] != len(cond) - 1:
            if len(cond) and cond[-1]:
                first = int(self.ts[i_from + 1 + hits[0]])
                self.bad("end_first", f"{what} first holds at {first}, before end_ts {self.end}")
            else:
                self.bad("end_condition", f"{what} does not hold at end_ts {self.end}")

    def level_param(self, level: float) -> None:
        got = self.param("level")
        if got is not None and not _close(got, level):
            self.bad("level", f"params.level {got!r} != {level!r} from the ticks{self.range_note}")

    def lookback(self, lo: float, hi: float) -> float | None:
        w = self.param("lookback_min")
        if w is None:
            return None
        if isinstance(w, bool) or not isinstance(w, int | float) or w <= 0:
            self.bad("lookback", f"params.lookback_min {w!r} is not a number of minutes")
            return None
        if not lo <= w <= hi:
            self.bad("lookback", f"params.lookback_min {w!r} not in [{lo:g}, {hi:g}]")
        return float(w)


# ------------------------------------------------------------------------- the types


def _liquidity_grab(c: _Label) -> None:
    s, sigma = c.s, c.sigma
    c.span_start(c.start)
    move = s * math.log(c.p_peak / c.p0)
    c.magnitude(move / sigma, 5, 12)
    c.pct(c.p_peak, c.p0)

    spike = c.t_peak - c.start
    if not 5 * NS <= spike <= 60 * NS:
        c.bad("spike_duration", f"peak_ts - start_ts = {_fmt_s(spike)} not in [5 s, 60 s]")

    low, high = c.prior_range(240)
    extreme = high if s > 0 else low
    if not s * (extreme - c.p_peak) > 0:
        c.bad("range_extreme", f"peak {c.p_peak!r} takes out the 240-minute extreme {extreme!r}")
    got = c.param("range_extreme")
    if got is not None and not _close(got, extreme):
        c.bad("range_extreme", f"params.range_extreme {got!r} != {extreme!r}{c.range_note}")

    vr = c.volume_ratio(c.i_start, c.i_peak)
    if vr < 3 - EPS:
        c.bad("volume", f"spike volume x{vr:.4g} < x3")

    if move <= 0:
        c.bad("end_condition", "no spike to retrace")
        return
    after = c.price[c.i_peak + 1 : c.i_end + 1]
    retrace = s * np.log(c.p_peak / after) / move
    c.end_first(retrace >= 0.7 - EPS, c.i_peak, "retrace >= 70 %")
    back = c.end - c.t_peak
    if not 60 * NS <= back <= 600 * NS:
        c.bad("end_timing", f"end_ts - peak_ts = {_fmt_s(back)} not in [60 s, 600 s]")


def _stop_hunt(c: _Label) -> None:
    s, sigma = c.s, c.sigma
    c.span_start(c.start)
    w = c.lookback(30, 240)
    if w is None:
        return
    low, high = c.prior_range(w)
    level = high if s > 0 else low
    c.level_param(level)
    if s * (level - c.p0) < 0:
        c.bad("inside", f"p0 {c.p0!r} is already beyond the level {level!r}")
    c.magnitude(s * math.log(c.p_peak / level) / sigma, 1, 4)
    c.pct(c.p_peak, level)

    beyond = s * (c.price[c.i_start : c.i_end + 1] - level) > 0
    n_beyond = int(beyond.sum())
    if n_beyond > 120:
        c.bad("beyond_ticks", f"{n_beyond} ticks beyond the level, more than 120")
    vr = c.volume_ratio(c.i_start, c.i_peak)
    if vr < 2 - EPS:
        c.bad("volume", f"volume x{vr:.4g} < x2")

    if n_beyond == 0:
        c.bad("end_condition", "price never goes beyond the level")
        return
    i_first = c.i_start + int(np.argmax(beyond))
    after = c.price[i_first + 1 : c.i_end + 1]
    c.end_first(-s * np.log(after / level) / sigma >= 3 - EPS, i_first, "3 sigma back inside")
    took = c.end - int(c.ts[i_first])
    if took > 300 * NS:
        c.bad("end_timing", f"end_ts - first tick beyond the level = {_fmt_s(took)} > 300 s")


def _range_break(c: _Label) -> None:
    s, sigma = c.s, c.sigma
    c.span_start(c.start)
    w = c.lookback(60, 240)
    if w is None:
        return
    low, high = c.prior_range(w)
    level = high if s > 0 else low
    c.level_param(level)
    c.magnitude(s * math.log(c.p_peak / level) / sigma, 2, 8)
    c.pct(c.p_peak, level)

    beyond = s * (c.price[c.i_start : c.i_end + 1] - level) > 0
    if not beyond.any():
        c.bad("hold", "price never breaks the level")
        return
    k_break = int(np.argmax(beyond))
    back = np.flatnonzero(~beyond[k_break:])
    if len(back) == 0:
        c.bad("hold", "price never falls back through the level before end_ts")
        return
    i_break, i_fall = c.i_start + k_break, c.i_start + k_break + int(back[0])
    t_break, t_fall = int(c.ts[i_break]), int(c.ts[i_fall])
    if not i_break <= c.i_peak < i_fall:
        c.bad("peak_window", f"peak {c.t_peak} not in [t_break {t_break}, t_fall {t_fall})")
    hold = t_fall - t_break
    if not 120 * NS <= hold <= 1200 * NS:
        c.bad("hold", f"t_fall - t_break = {_fmt_s(hold)} not in [120 s, 1200 s]")

    vr = c.volume_ratio(c.i_start, c.i_peak)
    if vr < 1.5 - EPS:
        c.bad("volume", f"breakout volume x{vr:.4g} < x1.5")
    fade = c.volume[c.i_peak + 1 : i_fall]
    breakout = float(np.mean(c.volume[c.i_start : c.i_peak + 1]))
    if len(fade) == 0:
        c.bad("fading", "no ticks between peak_ts and t_fall to show fading volume")
    elif not float(np.mean(fade)) < breakout:
        c.bad("fading", f"volume after the peak {np.mean(fade):.6g} >= breakout {breakout:.6g}")

    after = c.price[i_break + 1 : c.i_end + 1]
    c.end_first(-s * np.log(after / level) / sigma >= 4 - EPS, i_break, "4 sigma past the level")
    took = c.end - t_fall
    if took > 1800 * NS:
        c.bad("end_timing", f"end_ts - t_fall = {_fmt_s(took)} > 1800 s")


def _fibonacci(c: _Label) -> None:
    s, sigma = c.s, c.sigma
    t_ss = c.param_time("swing_start_ts")
    frm, to, ratio = c.param("swing_from"), c.param("swing_to"), c.param("ratio")
    if t_ss is None or frm is None or to is None or ratio is None:
        return
    c.span_start(t_ss)
    i_ss = c.tick("swing_start_ts", t_ss, fatal=False)
    if i_ss is None:
        return
    dur = c.start - t_ss
    if not 30 * MINUTE_NS <= dur <= 240 * MINUTE_NS:
        c.bad("swing_duration", f"{dur / MINUTE_NS:g} min not in [30, 240]")

    sw = 1 if to > frm else -1  # swing direction; the trap goes against it
    if s != -sw:
        swing, trap = ("up", "down") if sw > 0 else ("down", "up")
        c.bad("direction", f"an {swing} swing gives a {trap} trap")
    window = c.price[i_ss : c.i_start + 1]
    lo, hi = float(window.min()), float(window.max())
    frm_t, to_t = (lo, hi) if sw > 0 else (hi, lo)
    if not (_close(frm, frm_t) and _close(to, to_t)):
        c.bad(
            "swing_extremes",
            f"params ({frm!r}, {to!r}) != extremes of the swing ({frm_t!r}, {to_t!r})",
        )
    if c.price[i_ss] != frm_t or c.price[c.i_start] != to_t:
        c.bad(
            "swing_extremes",
            "the swing does not run from its low/high at swing_start_ts "
            "to its high/low at start_ts",
        )
    fake = c.price[c.i_start : c.i_end + 1]
    if np.any(sw * (fake - to_t) > 0):
        c.bad("past_swing_to", "a tick in [start_ts, end_ts] goes past swing_to")
    size = abs(math.log(to_t / frm_t)) / sigma
    if size < 15 - EPS:
        c.bad("swing_size", f"{size:.6g} sigma < 15")

    if not any(math.isclose(ratio, r, rel_tol=0, abs_tol=1e-12) for r in FIB_RATIOS):
        c.bad("ratio", f"params.ratio {ratio!r} is neither 0.618 nor 0.786")
    level = to_t - ratio * (to_t - frm_t)
    c.level_param(level)

    touched = np.flatnonzero(s * (fake - level) >= 0)
    if len(touched) == 0:
        c.bad("touch", "price never reaches the Fibonacci level")
    else:
        t_touch = int(c.ts[c.i_start + touched[0]])
        if c.t_peak - t_touch > 180 * NS:
            c.bad("touch", f"peak_ts - t_touch = {_fmt_s(c.t_peak - t_touch)} > 180 s")
    c.magnitude(s * math.log(c.p_peak / level) / sigma, 1, 3)
    c.pct(c.p_peak, level)

    after = c.price[c.i_peak + 1 : c.i_end + 1]
    c.end_first(-s * np.log(after / c.p_peak) / sigma >= 4 - EPS, c.i_peak, "4 sigma reversal")
    took = c.end - c.t_peak
    if took > 600 * NS:
        c.bad("end_timing", f"end_ts - peak_ts = {_fmt_s(took)} > 600 s")


_CHECKS = {
    "liquidity_grab": _liquidity_grab,
    "stop_hunt": _stop_hunt,
    "bull_trap": _range_break,
    "bear_trap": _range_break,
    "fibonacci_trap": _fibonacci,
}


# ------------------------------------------------------------------------ public API


def check_label(
    ts: np.ndarray, price: np.ndarray, volume: np.ndarray, label: Mapping[str, Any]
) -> list[str]:
    """Violations of docs/labels.md by one trap label on one symbol's ticks.

    Parameters
    ----------
    ts, price, volume : np.ndarray, shape (n,)
        The symbol's final tick stream: int64 ns UTC (strictly increasing), float64.
    label : mapping
        ``id, kind, type, symbol, direction, start_ts, peak_ts, end_ts, magnitude,
        params``; times as int ns or pandas/pyarrow timestamps, params as a dict or
        a JSON string.

    Returns
    -------
    list of str
        ``"<clause>: <detail>"`` per violation; empty when the label meets its definition.
    """
    out: list[str] = []
    try:
        c = _Label(ts, price, volume, label, out)
        _CHECKS[c.type](c)
    except _Fatal as err:
        out.append(str(err))
    return out


def check_no_overlap(labels: Iterable[Mapping[str, Any]]) -> list[str]:
    """Violations of "labels of one symbol never overlap": ``[span_start_ts, end_ts]`` disjoint."""
    by_symbol: dict[Any, list[tuple[int, int, Any]]] = {}
    for lab in labels:
        p = label_params(lab)
        span = p.get("span_start_ts", lab["start_ts"])
        by_symbol.setdefault(lab.get("symbol"), []).append(
            (to_ns(span), to_ns(lab["end_ts"]), lab.get("id"))
        )
    out = []
    for symbol, spans in by_symbol.items():
        spans.sort(key=lambda x: (x[0], x[1]))
        reach, reach_id = None, None
        for lo, hi, ident in spans:
            if reach is not None and lo <= reach:
                out.append(
                    f"overlap: {symbol}: label {ident} starts at {lo}, "
                    f"inside label {reach_id} which ends at {reach}"
                )
            if reach is None or hi > reach:
                reach, reach_id = hi, ident
    return out


def hf_activations(
    start_times: Sequence[Any],
    types: Sequence[str],
    min_traps: int = 3,
    window_ns: float = 300e9,
) -> list[dict]:
    """HF activations from trap start times, by the rule in docs/labels.md.

    Returns dicts ``start_ts`` (int ns), ``end_ts`` (int ns), ``trap_count``, ``types``.
    """
    if len(start_times) != len(types):
        raise ValueError("start_times and types differ in length")
    w = int(window_ns)
    t_raw = [to_ns(x) for x in start_times]
    order = sorted(range(len(t_raw)), key=lambda i: t_raw[i])  # stable on ties
    t = [t_raw[i] for i in order]
    ty = [types[i] for i in order]
    out: list[dict] = []
    i, n = 0, len(t)
    while i < n:
        # Trap times in (t_i - w, t_i]: indices first .. newest (ties at t_i included).
        first = bisect_right(t, t[i] - w)
        newest = bisect_right(t, t[i]) - 1
        if newest - first + 1 < min_traps:
            i += 1
            continue
        last = newest
        while last + 1 < n and t[last + 1] - t[last] < w:
            last += 1
        out.append(
            {
                "start_ts": t[i],
                "end_ts": t[last] + w,
                "trap_count": last - first + 1,
                "types": list(ty[first : last + 1]),
            }
        )
        i = last + 1
    return out
