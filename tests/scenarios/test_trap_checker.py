"""Tests of the label checker on small hand-built tick paths.

Each path is a quiet mean-reverting walk (5 h before the trap, 1 s ticks) whose σ is
measured here from minute closes, with a hand-made trap shape written over it in σ
units. A valid label must pass; a label or path that misses one clause of
docs/labels.md by a hair must be reported under that clause.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .trap_checker import check_label, check_no_overlap, hf_activations, parse_iso, to_ns

NS = 10**9
T0 = 1_735_689_600 * NS  # 2025-01-01T00:00:00Z, on a minute boundary
PRE = 300 * 60  # ticks before the trap: covers 240-minute ranges and the σ window
POST = 60 * 60
PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def iso(t: int) -> str:
    return str(np.datetime_as_string(np.datetime64(int(t), "ns"))) + "Z"


@dataclass
class Path:
    """Log prices ``x`` and volumes of 1 s ticks; the trap starts at index ``start``."""

    x: np.ndarray
    vol: np.ndarray
    start: int
    sigma: float = field(init=False)

    @property
    def ts(self) -> np.ndarray:
        return T0 + np.arange(len(self.x), dtype=np.int64) * NS

    @property
    def price(self) -> np.ndarray:
        return np.exp(self.x)

    def measure_sigma(self, minute_shift: int = 0) -> float:
        """σ from the closes of minutes M-61 … M-1, M the (floored) minute of the start."""
        m = self.start // 60 + minute_shift
        closes = np.log(self.price[: m * 60]).reshape(m, 60)[-61:, -1]
        return float(np.std(np.diff(closes), ddof=1))

    def bump(self, minutes_back: float, height: float, s: int) -> None:
        """One old tick ``height`` σ beyond p0 (in the trap's direction ``s``), for ranges."""
        i = self.start - int(minutes_back * 60)
        self.x[i] = self.x[self.start - 1] + s * height * self.sigma

    def shape(self, ref: float, s: int, keyframes: list[tuple[int, float]]) -> None:
        """From the start on, price = ref · exp(s · v · σ), v linear between keyframes.

        ``v`` is in σ, positive in the trap's direction; the path runs from p0 at
        offset -1 and stays flat after the last keyframe.
        """
        v0 = s * (self.x[self.start - 1] - ref) / self.sigma
        offs = np.array([-1] + [k for k, _ in keyframes], dtype=float)
        vals = np.array([v0] + [v for _, v in keyframes])
        grid = np.arange(len(self.x) - self.start, dtype=float)
        self.x[self.start :] = ref + s * self.sigma * np.interp(grid, offs, vals)

    def volumes(self, segments: list[tuple[int, int, float]]) -> None:
        """Tick volume = mult × the 30-minute baseline mean over offsets [a, b]."""
        base = float(np.mean(self.vol[self.start - 1800 : self.start]))
        self.vol[self.start :] = base
        for a, b, mult in segments:
            self.vol[self.start + a : self.start + b + 1] = mult * base

    def t(self, offset: int) -> int:
        return int(T0 + (self.start + offset) * NS)

    def at(self, offset: int) -> float:
        return float(self.price[self.start + offset])

    def args(self):
        return self.ts, self.price, self.vol


def quiet(seed: int, start: int = PRE) -> Path:
    """A quiet walk pulled back to its mean (so old extremes stay a few σ away)."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, 1e-4, start + POST)
    x = np.empty_like(e)
    acc = 0.0
    for i, step in enumerate(e):
        acc = acc * (1 - 1 / 270) + step
        x[i] = acc
    path = Path(x + np.log(30_000.0), rng.lognormal(0.0, 0.5, len(e)), start)
    path.sigma = path.measure_sigma()
    return path


def make_label(
    path: Path, type_: str, direction: str, peak: int, end: int, mag: float, pct: float, **params
) -> dict:
    params = {"sigma": path.measure_sigma(), "pct": pct, "span_start_ts": iso(path.t(0)), **params}
    return {
        "id": 1,
        "kind": "trap",
        "type": type_,
        "symbol": "BTC-USD",
        "direction": direction,
        "start_ts": path.t(0),
        "peak_ts": path.t(peak),
        "end_ts": path.t(end),
        "magnitude": float(mag),
        "params": params,
    }


def pct(p1: float, p2: float) -> float:
    return 100 * abs(p1 / p2 - 1)


def clauses(violations: list[str]) -> set[str]:
    return {v.split(":", 1)[0] for v in violations}


# ------------------------------------------------------------------- liquidity grab


def liquidity_grab(
    seed=0,
    direction="up",
    mag=8.0,
    rise=20,
    back=120,
    retrace=0.8,
    vmult=4.0,
    bump_min=150.0,
    bump_h=15.0,
    plateau=0,
    start=PRE,
):
    s = 1 if direction == "up" else -1
    p = quiet(seed, start)
    p.bump(bump_min, bump_h, s)
    x0 = p.x[p.start - 1]
    peak = rise
    p.shape(
        x0,
        s,
        [
            (rise, mag),
            (rise + plateau, mag),
            (rise + plateau + 40, 0.45 * mag),  # 55 % retraced: not yet
            (rise + back - 1, 0.45 * mag),
            (rise + back, (1 - retrace) * mag),  # the end tick
        ],
    )
    p.volumes([(0, rise, vmult)])
    end = rise + back
    p0 = float(p.price[p.start - 1])
    w = p.price[max(0, p.start - 240 * 60) : p.start]
    lab = make_label(
        p,
        "liquidity_grab",
        direction,
        peak,
        end,
        s * np.log(p.at(peak) / p0) / p.sigma,
        pct(p.at(peak), p0),
        range_extreme=float(w.max() if s > 0 else w.min()),
    )
    return p, lab


@pytest.mark.parametrize("direction", ["up", "down"])
def test_liquidity_grab_valid(direction):
    p, lab = liquidity_grab(direction=direction)
    assert check_label(*p.args(), lab) == []


@PROPS
@given(
    seed=st.integers(0, 2**32 - 1),
    direction=st.sampled_from(["up", "down"]),
    mag=st.floats(5.05, 11.95),
    rise=st.integers(5, 60),
    back=st.integers(60, 600),
)
def test_liquidity_grab_valid_anywhere_in_its_ranges(seed, direction, mag, rise, back):
    p, lab = liquidity_grab(seed, direction, mag, rise, back)
    assert check_label(*p.args(), lab) == []


@PROPS
@given(
    seed=st.integers(0, 2**32 - 1),
    direction=st.sampled_from(["up", "down"]),
    mag=st.one_of(st.floats(3.0, 4.95), st.floats(12.05, 13.5)),
)
def test_liquidity_grab_magnitude_out_of_range(seed, direction, mag):
    p, lab = liquidity_grab(seed, direction, mag, bump_h=16.0)
    assert clauses(check_label(*p.args(), lab)) == {"magnitude"}


@pytest.mark.parametrize(
    ("knobs", "clause"),
    [
        ({"mag": 4.9}, "magnitude"),
        ({"rise": 61}, "spike_duration"),
        ({"rise": 4}, "spike_duration"),
        ({"retrace": 0.69}, "end_condition"),
        ({"back": 59}, "end_timing"),
        ({"back": 601}, "end_timing"),
        ({"vmult": 2.9}, "volume"),
        ({"bump_min": 241.0}, "range_extreme"),  # the old high falls out of the 240 min
        ({"bump_h": 7.9}, "range_extreme"),  # the spike takes out the old high
    ],
)
@pytest.mark.parametrize("direction", ["up", "down"])
def test_liquidity_grab_narrow_misses(knobs, clause, direction):
    p, lab = liquidity_grab(direction=direction, **knobs)
    assert clause in clauses(check_label(*p.args(), lab))


def test_liquidity_grab_edges_of_the_ranges_pass():
    for knobs in (
        {"rise": 60},
        {"rise": 5},
        {"back": 60},
        {"back": 600},
        {"vmult": 3.0},
        {"bump_min": 239.0},
        {"retrace": 0.71},
    ):
        p, lab = liquidity_grab(**knobs)
        assert check_label(*p.args(), lab) == [], knobs


def test_end_ts_must_be_the_first_tick_meeting_the_condition():
    p, lab = liquidity_grab()
    lab["end_ts"] += NS  # condition also holds one tick later: not the first any more
    assert "end_first" in clauses(check_label(*p.args(), lab))
    p, lab = liquidity_grab()
    lab["end_ts"] -= NS
    assert "end_condition" in clauses(check_label(*p.args(), lab))


def test_peak_ts_is_the_first_tick_at_the_extreme():
    p, lab = liquidity_grab(plateau=3)
    assert check_label(*p.args(), lab) == []
    lab["peak_ts"] += NS  # still at the maximum, but not the first tick there
    assert clauses(check_label(*p.args(), lab)) == {"peak_ts"}


def test_stored_numbers_must_match_the_ticks():
    p, lab = liquidity_grab()
    ok = json.loads(json.dumps(lab["params"]))
    for key, clause in [("sigma", "sigma"), ("pct", "pct"), ("range_extreme", "range_extreme")]:
        lab["params"] = {**ok, key: ok[key] * (1 + 1e-8)}
        assert check_label(*p.args(), lab) == [], key
        lab["params"] = {**ok, key: ok[key] * (1 + 1e-5)}
        assert clauses(check_label(*p.args(), lab)) == {clause}, key
    lab["params"] = ok
    mag = lab["magnitude"]
    lab["magnitude"] = mag * (1 + 1e-5)
    assert clauses(check_label(*p.args(), lab)) == {"magnitude"}
    lab["magnitude"] = mag
    lab["params"] = {**ok, "p0": float(p.price[p.start - 1])}
    assert check_label(*p.args(), lab) == []
    lab["params"] = {**ok, "p0": float(p.price[p.start - 2])}
    assert clauses(check_label(*p.args(), lab)) == {"p0"}
    lab["params"] = {**ok, "span_start_ts": iso(p.t(-1))}
    assert clauses(check_label(*p.args(), lab)) == {"span_start_ts"}
    lab["params"] = {k: v for k, v in ok.items() if k != "sigma"}
    assert clauses(check_label(*p.args(), lab)) == {"params"}


def test_sigma_uses_the_floored_start_minute():
    p, lab = liquidity_grab(start=PRE + 30)  # the trap starts half way into a minute
    assert check_label(*p.args(), lab) == []
    lab["params"]["sigma"] = p.measure_sigma(minute_shift=1)  # minute rounded up
    assert clauses(check_label(*p.args(), lab)) == {"sigma"}


def test_label_field_formats_are_all_read():
    p, lab = liquidity_grab()
    as_json = {**lab, "params": json.dumps(lab["params"])}
    as_pandas = {
        **lab,
        **{k: pd.Timestamp(lab[k], tz="UTC") for k in ("start_ts", "peak_ts", "end_ts")},
    }
    as_arrow = {
        **lab,
        **{
            k: pa.scalar(lab[k], pa.timestamp("ns", tz="UTC"))
            for k in ("start_ts", "peak_ts", "end_ts")
        },
    }
    for form in (as_json, as_pandas, as_arrow):
        assert check_label(*p.args(), form) == []
    late = {**as_arrow, "end_ts": pa.scalar(lab["end_ts"] + NS, pa.timestamp("ns", tz="UTC"))}
    assert "end_first" in clauses(check_label(*p.args(), late))


def test_basic_fields():
    p, lab = liquidity_grab()
    assert clauses(check_label(*p.args(), {**lab, "kind": "chaos"})) == {"kind"}
    assert clauses(check_label(*p.args(), {**lab, "type": "pump"})) == {"type"}
    assert clauses(check_label(*p.args(), {**lab, "direction": "none"})) == {"direction"}
    assert clauses(check_label(*p.args(), {**lab, "end_ts": lab["end_ts"] + NS // 2})) == {"ticks"}
    assert "order" in clauses(check_label(*p.args(), {**lab, "peak_ts": lab["end_ts"] + NS}))


def test_times_are_read_to_the_nanosecond():
    assert parse_iso("2025-01-01T00:00:00Z") == T0
    assert parse_iso("2025-01-01T00:00:00.000000001Z") == T0 + 1
    assert parse_iso("2025-01-01T01:00:00+01:00") == T0
    assert to_ns(pd.Timestamp(T0 + 7, tz="UTC")) == T0 + 7
    assert to_ns(pa.scalar(T0 + 7, pa.timestamp("ns", tz="UTC"))) == T0 + 7
    assert to_ns(np.datetime64(T0 + 7, "ns")) == T0 + 7


# ------------------------------------------------------------------------ stop hunt


def stop_hunt(
    seed=0, direction="down", lookback=60, pierce=2.5, beyond=60, ret=30, back_in=3.5, vmult=2.5
):
    s = 1 if direction == "up" else -1
    p = quiet(seed)
    w = p.price[p.start - lookback * 60 : p.start]
    level = float(w.max() if s > 0 else w.min())
    # Outside at -0.3 σ, then `beyond` ticks past the level from offset 5 (the peak),
    # back 1.5 σ inside, and `back_in` σ inside at the end tick.
    first = 5
    fade = [(first + beyond - 1, 0.6 * pierce)] if beyond > 1 else []
    p.shape(
        np.log(level),
        s,
        [
            (0, -0.3),
            (first - 1, -0.3),
            (first, pierce),
            *fade,
            (first + beyond, -1.5),
            (first + beyond + ret - 1, -1.5),
            (first + beyond + ret, -back_in),
        ],
    )
    p.volumes([(0, first, vmult)])
    end = first + beyond + ret
    lab = make_label(
        p,
        "stop_hunt",
        direction,
        first,
        end,
        s * np.log(p.at(first) / level) / p.sigma,
        pct(p.at(first), level),
        lookback_min=lookback,
        level=level,
    )
    return p, lab


@pytest.mark.parametrize("direction", ["up", "down"])
def test_stop_hunt_valid(direction):
    p, lab = stop_hunt(direction=direction)
    assert check_label(*p.args(), lab) == []


@PROPS
@given(
    seed=st.integers(0, 2**32 - 1),
    direction=st.sampled_from(["up", "down"]),
    lookback=st.integers(30, 240),
    pierce=st.floats(1.05, 3.95),
    beyond=st.integers(1, 120),
    ret=st.integers(1, 180),
)
def test_stop_hunt_valid_anywhere_in_its_ranges(seed, direction, lookback, pierce, beyond, ret):
    p, lab = stop_hunt(seed, direction, lookback, pierce, beyond, ret)
    assert check_label(*p.args(), lab) == []


@PROPS
@given(seed=st.integers(0, 2**32 - 1), beyond=st.integers(121, 290))
def test_stop_hunt_too_long_beyond_the_level(seed, beyond):
    p, lab = stop_hunt(seed, beyond=beyond, ret=5)
    assert clauses(check_label(*p.args(), lab)) == {"beyond_ticks"}


@pytest.mark.parametrize(
    ("knobs", "clause"),
    [
        ({"beyond": 121, "ret": 5}, "beyond_ticks"),
        ({"pierce": 0.9}, "magnitude"),
        ({"pierce": 4.1}, "magnitude"),
        ({"back_in": 2.9}, "end_condition"),
        ({"beyond": 100, "ret": 201}, "end_timing"),  # back inside 301 s after piercing
        ({"vmult": 1.9}, "volume"),
        ({"lookback": 29}, "lookback"),
        ({"lookback": 241}, "lookback"),
    ],
)
@pytest.mark.parametrize("direction", ["up", "down"])
def test_stop_hunt_narrow_misses(knobs, clause, direction):
    p, lab = stop_hunt(direction=direction, **knobs)
    assert clause in clauses(check_label(*p.args(), lab))


def test_stop_hunt_edges_and_level():
    for knobs in (
        {"beyond": 120, "ret": 5},
        {"beyond": 100, "ret": 200},
        {"vmult": 2.0},
        {"lookback": 30},
        {"lookback": 240},
    ):
        p, lab = stop_hunt(**knobs)
        assert check_label(*p.args(), lab) == [], knobs
    p, lab = stop_hunt()
    lab["params"]["level"] *= 1 + 1e-5
    assert clauses(check_label(*p.args(), lab)) == {"level"}


# ------------------------------------------------------------------ bull/bear traps


def range_break(
    seed=0,
    type_="bull_trap",
    lookback=120,
    mag=5.0,
    hold=300,
    fall=200,
    past=4.5,
    vb=2.0,
    vf=1.2,
    rally=None,
):
    s = 1 if type_ == "bull_trap" else -1
    p = quiet(seed)
    w = p.price[p.start - lookback * 60 : p.start]
    level = float(w.max() if s > 0 else w.min())
    brk, peak = 10, 40
    t_fall = brk + hold
    keys = [(0, -0.3), (brk - 1, -0.3), (brk, 0.5), (peak, mag), (t_fall - 1, 0.4), (t_fall, -0.5)]
    if rally is not None:  # a second, higher push after the fall: the peak moves out
        keys += [(t_fall + 50, rally), (t_fall + 100, -0.5)]
        peak = t_fall + 50
    end = keys[-1][0] + fall
    keys += [(end - 1, -2.0)] if fall > 1 else []
    keys.append((end, -past))
    p.shape(np.log(level), s, keys)
    p.volumes([(0, 40, vb), (41, t_fall - 1, vf)])
    lab = make_label(
        p,
        type_,
        "up" if s > 0 else "down",
        peak,
        end,
        s * np.log(p.at(peak) / level) / p.sigma,
        pct(p.at(peak), level),
        lookback_min=lookback,
        level=level,
    )
    return p, lab


@pytest.mark.parametrize("type_", ["bull_trap", "bear_trap"])
def test_bull_bear_valid(type_):
    p, lab = range_break(type_=type_)
    assert check_label(*p.args(), lab) == []


@PROPS
@given(
    seed=st.integers(0, 2**32 - 1),
    type_=st.sampled_from(["bull_trap", "bear_trap"]),
    lookback=st.integers(60, 240),
    mag=st.floats(2.05, 7.95),
    hold=st.integers(120, 1200),
    fall=st.integers(1, 1800),
)
def test_bull_bear_valid_anywhere_in_their_ranges(seed, type_, lookback, mag, hold, fall):
    p, lab = range_break(seed, type_, lookback, mag, hold, fall)
    assert check_label(*p.args(), lab) == []


@pytest.mark.parametrize(
    ("knobs", "clause"),
    [
        ({"hold": 119}, "hold"),
        ({"hold": 1201}, "hold"),
        ({"mag": 1.9}, "magnitude"),
        ({"mag": 8.1}, "magnitude"),
        ({"vb": 1.4}, "volume"),
        ({"vf": 2.0}, "fading"),  # no fading: as heavy as the breakout
        ({"past": 3.9}, "end_condition"),
        ({"fall": 1801}, "end_timing"),
        ({"lookback": 59}, "lookback"),
        ({"rally": 6.0}, "peak_window"),  # the extreme comes after t_fall
    ],
)
@pytest.mark.parametrize("type_", ["bull_trap", "bear_trap"])
def test_bull_bear_narrow_misses(knobs, clause, type_):
    p, lab = range_break(type_=type_, **knobs)
    assert clause in clauses(check_label(*p.args(), lab))


def test_bull_bear_direction_is_fixed():
    p, lab = range_break(type_="bull_trap")
    assert "direction" in clauses(check_label(*p.args(), {**lab, "direction": "down"}))
    p, lab = range_break(type_="bear_trap")
    assert "direction" in clauses(check_label(*p.args(), {**lab, "direction": "up"}))


def test_bull_bear_edges_pass():
    for knobs in (
        {"hold": 120},
        {"hold": 1200},
        {"fall": 1800},
        {"vb": 1.5},
        {"lookback": 60},
        {"lookback": 240},
    ):
        p, lab = range_break(**knobs)
        assert check_label(*p.args(), lab) == [], knobs


# ------------------------------------------------------------------- Fibonacci trap


def fibonacci(
    seed=0,
    direction="down",
    ratio=0.618,
    size=20.0,
    minutes=120,
    overshoot=2.0,
    touch=30,
    reversal=4.5,
    rev_time=70,
    past_to=False,
    below_from=False,
):
    s = 1 if direction == "up" else -1
    sw = -s  # an up swing gives a down trap
    p = quiet(seed)
    ss = p.start - minutes * 60
    n = p.start - ss - 1
    p.x[ss + 1 : p.start] += sw * (size - 12) * p.sigma * np.arange(1, n + 1) / n
    inner = p.x[ss + 1 : p.start]
    p.x[ss] = (inner.min() - 0.5 * p.sigma) if sw > 0 else (inner.max() + 0.5 * p.sigma)
    x_to = p.x[ss] + sw * size * p.sigma
    assert sw * (x_to - inner).min() > 0.5 * p.sigma  # the swing's high/low is at start_ts
    if below_from:  # one tick of the swing beyond its stated start extreme
        p.x[ss + 600] = p.x[ss] - sw * 0.1 * p.sigma
    p.sigma = p.measure_sigma()
    frm, to = float(np.exp(p.x[ss])), float(np.exp(x_to))
    level = to - ratio * (to - frm)
    ref = np.log(level)
    v0 = s * (x_to - ref) / p.sigma
    approach = 300
    peak = approach + 1 + touch
    keys = (
        [(0, v0)]
        + ([(1, v0 - 0.1)] if past_to else [])
        + [(approach, -0.5), (approach + 1, 0.05), (peak, overshoot)]
    )
    if rev_time > 1:  # 3 σ back, not yet 4
        keys.append((peak + rev_time - 1, overshoot - 3.0))
    keys.append((peak + rev_time, overshoot - reversal))
    p.shape(ref, s, keys)
    p.volumes([])
    frm_p, to_p = float(p.price[ss]), p.at(0)
    lvl = to_p - ratio * (to_p - frm_p)
    lab = make_label(
        p,
        "fibonacci_trap",
        direction,
        peak,
        peak + rev_time,
        s * np.log(p.at(peak) / lvl) / p.sigma,
        pct(p.at(peak), lvl),
        swing_start_ts=iso(p.t(ss - p.start)),
        span_start_ts=iso(p.t(ss - p.start)),
        swing_from=frm_p,
        swing_to=to_p,
        ratio=ratio,
        level=lvl,
    )
    return p, lab


@pytest.mark.parametrize("direction", ["up", "down"])
@pytest.mark.parametrize("ratio", [0.618, 0.786])
def test_fibonacci_valid(direction, ratio):
    p, lab = fibonacci(direction=direction, ratio=ratio)
    assert check_label(*p.args(), lab) == []


@PROPS
@given(
    seed=st.integers(0, 2**32 - 1),
    direction=st.sampled_from(["up", "down"]),
    ratio=st.sampled_from([0.618, 0.786]),
    size=st.floats(15.3, 30.0),
    minutes=st.integers(30, 240),
    overshoot=st.floats(1.05, 2.95),
    touch=st.integers(1, 180),
    rev_time=st.integers(1, 600),
)
def test_fibonacci_valid_anywhere_in_its_ranges(
    seed, direction, ratio, size, minutes, overshoot, touch, rev_time
):
    p, lab = fibonacci(seed, direction, ratio, size, minutes, overshoot, touch, rev_time=rev_time)
    assert check_label(*p.args(), lab) == []


@pytest.mark.parametrize(
    ("knobs", "clause"),
    [
        ({"overshoot": 3.1}, "magnitude"),
        ({"overshoot": 0.9}, "magnitude"),
        ({"touch": 181}, "touch"),
        ({"size": 14.6}, "swing_size"),
        ({"minutes": 29}, "swing_duration"),
        ({"minutes": 241}, "swing_duration"),
        ({"ratio": 0.7}, "ratio"),
        ({"reversal": 3.9}, "end_condition"),
        ({"rev_time": 601}, "end_timing"),
        ({"past_to": True}, "past_swing_to"),
        ({"below_from": True}, "swing_extremes"),
    ],
)
@pytest.mark.parametrize("direction", ["up", "down"])
def test_fibonacci_narrow_misses(knobs, clause, direction):
    p, lab = fibonacci(direction=direction, **knobs)
    assert clause in clauses(check_label(*p.args(), lab))


def test_fibonacci_direction_and_span():
    p, lab = fibonacci(direction="down")
    assert "direction" in clauses(check_label(*p.args(), {**lab, "direction": "up"}))
    lab["params"]["span_start_ts"] = iso(lab["start_ts"])  # must be the swing start
    assert clauses(check_label(*p.args(), lab)) == {"span_start_ts"}
    p, lab = fibonacci()
    lab["params"]["level"] *= 1 + 1e-5
    assert clauses(check_label(*p.args(), lab)) == {"level"}


def test_fibonacci_edges_pass():
    for knobs in ({"touch": 180}, {"rev_time": 600}, {"minutes": 30}, {"minutes": 240}):
        p, lab = fibonacci(**knobs)
        assert check_label(*p.args(), lab) == [], knobs


# ------------------------------------------------------------------------ overlap


def span(ident, symbol, lo, hi, fib=False):
    params = {"span_start_ts": iso(lo)}
    return {
        "id": ident,
        "symbol": symbol,
        "type": "fibonacci_trap" if fib else "stop_hunt",
        "start_ts": hi - NS if fib else lo,
        "end_ts": hi,
        "params": json.dumps(params),
    }


def test_no_overlap():
    a = span(1, "BTC-USD", T0, T0 + 100 * NS)
    assert check_no_overlap([a, span(2, "BTC-USD", T0 + 101 * NS, T0 + 200 * NS)]) == []
    assert len(check_no_overlap([a, span(2, "BTC-USD", T0 + 100 * NS, T0 + 200 * NS)])) == 1
    assert check_no_overlap([a, span(2, "ETH-USD", T0 + 50 * NS, T0 + 200 * NS)]) == []
    # A Fibonacci trap's span starts at its swing, long before its start_ts.
    fib = span(3, "BTC-USD", T0 + 50 * NS, T0 + 4000 * NS, fib=True)
    assert len(check_no_overlap([a, fib])) == 1
    # Contained inside an earlier long label, not just the previous one.
    long = span(4, "BTC-USD", T0, T0 + 1000 * NS)
    later = [
        span(5, "BTC-USD", T0 + 10 * NS, T0 + 20 * NS),
        span(6, "BTC-USD", T0 + 30 * NS, T0 + 40 * NS),
    ]
    assert len(check_no_overlap([long, *later])) == 2


# ------------------------------------------------------------------------- HF mode

W = 300 * NS


def test_hf_three_within_five_minutes_is_one_activation():
    t = [T0, T0 + 120 * NS, T0 + 299 * NS]
    got = hf_activations(t, ["stop_hunt", "bull_trap", "liquidity_grab"])
    assert got == [
        {
            "start_ts": T0 + 299 * NS,
            "end_ts": T0 + 599 * NS,
            "trap_count": 3,
            "types": ["stop_hunt", "bull_trap", "liquidity_grab"],
        }
    ]


def test_hf_window_is_half_open_and_needs_three():
    assert hf_activations([T0, T0 + 150 * NS, T0 + W], ["a", "b", "c"]) == []
    assert hf_activations([T0, T0 + 180 * NS, T0 + 360 * NS], ["a", "b", "c"]) == []
    assert hf_activations([T0, T0 + 10 * NS], ["a", "b"]) == []


def test_hf_chain_extends_the_activation():
    t = [T0 + k * NS for k in (0, 60, 120, 400, 650, 1200)]
    got = hf_activations(t, list("abcdef"))
    assert got == [
        {
            "start_ts": T0 + 120 * NS,
            "end_ts": T0 + 950 * NS,
            "trap_count": 5,
            "types": list("abcde"),
        }
    ]
    # A gap of exactly the window ends it; a gap one second shorter does not.
    t = [T0 + k * NS for k in (0, 60, 120, 420)]
    assert hf_activations(t, list("abcd"))[0]["trap_count"] == 3
    t = [T0 + k * NS for k in (0, 60, 120, 419)]
    assert hf_activations(t, list("abcd"))[0]["trap_count"] == 4


def test_hf_counts_traps_from_the_start_of_the_switching_window():
    t = [T0 + k * NS for k in (0, 250, 400, 500, 560)]
    got = hf_activations(t, list("abcde"))
    # 250 s and 400 s, 500 s are in (200, 500]: switched on at 500, counted from 250.
    assert got == [
        {"start_ts": T0 + 500 * NS, "end_ts": T0 + 860 * NS, "trap_count": 4, "types": list("bcde")}
    ]


def test_hf_unsorted_input_and_parameters():
    t = [T0 + 200 * NS, T0, T0 + 100 * NS]
    got = hf_activations(t, ["c", "a", "b"])
    assert got[0]["types"] == ["a", "b", "c"]
    assert hf_activations(t, ["c", "a", "b"], min_traps=4) == []
    assert hf_activations(t, ["c", "a", "b"], window_ns=150e9) == []
    two = hf_activations(t, ["c", "a", "b"], min_traps=2, window_ns=150e9)
    assert two == [
        {
            "start_ts": T0 + 100 * NS,
            "end_ts": T0 + 350 * NS,
            "trap_count": 3,
            "types": ["a", "b", "c"],
        }
    ]


def hf_by_chains(times, min_traps, window):
    """Reference: split traps into chains (gaps < window); a chain holds at most one activation,
    switched on at its first trap with min_traps traps in the trailing window."""
    times = sorted(times)
    chains, cur = [], [times[0]] if times else []
    for t in times[1:]:
        if t - cur[-1] < window:
            cur.append(t)
        else:
            chains.append(cur)
            cur = [t]
    if cur:
        chains.append(cur)
    out = []
    for ch in chains:
        for j, t in enumerate(ch):
            inside = [u for u in ch[: j + 1] if u > t - window]
            if len(inside) >= min_traps:
                first = ch.index(inside[0])
                out.append((t, ch[-1] + window, len(ch) - first))
                break
    return out


@settings(max_examples=300, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 900), max_size=40),
    min_traps=st.integers(2, 5),
    window_s=st.integers(60, 600),
)
def test_hf_matches_a_chain_based_reference(gaps, min_traps, window_s):
    times = list(T0 + np.cumsum([0, *gaps]).astype(np.int64) * NS)
    got = hf_activations(times, ["x"] * len(times), min_traps, window_s * 1e9)
    want = hf_by_chains([int(t) for t in times], min_traps, window_s * NS)
    assert [(a["start_ts"], a["end_ts"], a["trap_count"]) for a in got] == want
    for a, b in zip(got, got[1:], strict=False):
        assert a["end_ts"] <= b["start_ts"]


# --------------------------------------------------------------- start of the stream


def test_prior_range_is_cut_at_the_stream_start():
    # 100 minutes of stream before the trap: the 240-minute range is what exists.
    p, lab = liquidity_grab(start=100 * 60, bump_min=90.0)
    assert check_label(*p.args(), lab) == []


def test_no_trap_in_the_first_62_minutes():
    p, lab = liquidity_grab(start=61 * 60 + 30, bump_min=50.0)
    assert "stream_start" in clauses(check_label(*p.args(), lab))
