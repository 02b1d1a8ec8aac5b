"""Each trap rule on hand-built paths that meet its TRAPS.md definition, and on paths that
narrowly miss one clause of it."""

import json

import pytest

from .paths import HI, LO, NS, SIGMA, T0, bull_trap, fibonacci_trap, liquidity_grab, stop_hunt


def only(rows, kind):
    return [r for r in rows if r["trap_type"] == kind]


def at(i):
    return T0 + i * NS


def test_liquidity_grab_is_emitted_when_70_percent_of_the_spike_is_retraced():
    path, start, peak = liquidity_grab()
    got = only(path.detect(), "liquidity_grab")
    # The spike rises 5.5 σ over 10 ticks, so only the full spike is a 5–12 σ reading.
    end = path.first(peak + 59, lambda y: (LO + 5.5 * SIGMA - y) >= 0.7 * 5.5 * SIGMA)
    assert [(r["direction"], r["start"], r["detected_at"]) for r in got] == [
        ("up", at(start), at(end))
    ]
    feats = json.loads(got[0]["features"])
    assert feats["magnitude"] == pytest.approx(5.5)
    assert feats["volume_ratio"] == pytest.approx(5.0, rel=0.05)
    assert feats["rise_s"] == peak - start and feats["retrace"] >= 0.7


def test_liquidity_grab_reports_the_shortest_qualifying_spike():
    # A 7 σ spike over 10 ticks holds 5–12 σ readings from three starts; the 5.6 σ one
    # completes its 70 % retrace first.
    path, start, peak = liquidity_grab(mag=7.0)
    (row,) = only(path.detect(), "liquidity_grab")
    assert row["start"] == at(start + 2)
    assert json.loads(row["features"])["magnitude"] == pytest.approx(5.6)


@pytest.mark.parametrize(
    "miss",
    [
        {"mag": 4.8},  # spike under 5 σ
        {"mag": 12.5, "rise": 6},  # spike over 12 σ (no later start is 5 s back)
        {"volume": 2.8},  # volume under ×3
        {"rise": 70, "mag": 5.5},  # no 5 σ within 60 s
        {"flag": False},  # takes out the prior 240-minute high
        {"retrace": 0.65, "stay": 700},  # never retraces 70 % within 10 min
        {"retrace": 0.8, "back": 30},  # retraces 70 % within 60 s: too fast
    ],
)
def test_liquidity_grab_narrow_misses(miss):
    path, _, _ = liquidity_grab(**miss)
    assert only(path.detect(), "liquidity_grab") == []


def test_stop_hunt_is_emitted_when_3_sigma_back_inside():
    path, start, peak = stop_hunt()
    got = only(path.detect(), "stop_hunt")
    end = path.first(peak, lambda y: y >= LO + 3 * SIGMA)
    assert [(r["direction"], r["detected_at"]) for r in got] == [("down", at(end))]
    feats = json.loads(got[0]["features"])
    assert feats["magnitude"] == pytest.approx(2.0)
    assert feats["level"] == pytest.approx(100.0)
    assert 30 <= feats["lookback_min"] <= 240 and feats["beyond_s"] <= 120


@pytest.mark.parametrize(
    "miss",
    [
        {"pierce": 0.8},  # under 1 σ beyond the level
        {"pierce": 4.3},  # over 4 σ beyond
        {"volume": 1.8},  # volume under ×2
        {"beyond": 130},  # more than 120 s beyond the level
        {"back": 2.7},  # only 2.7 σ back inside
        {"ret": 320},  # back inside more than 5 min after crossing
    ],
)
def test_stop_hunt_narrow_misses(miss):
    path, _, _ = stop_hunt(**miss)
    assert only(path.detect(), "stop_hunt") == []


def test_bull_trap_is_emitted_when_4_sigma_past_the_level():
    path, start, t_fall = bull_trap()
    got = only(path.detect(), "bull_trap")
    end = path.first(t_fall, lambda y: y <= HI - 4 * SIGMA)
    assert [(r["direction"], r["detected_at"]) for r in got] == [("up", at(end))]
    feats = json.loads(got[0]["features"])
    assert feats["magnitude"] == pytest.approx(5.0)
    assert feats["hold_s"] == pytest.approx(t_fall - start - 1, abs=1)
    assert 60 <= feats["lookback_min"] <= 240


def test_bear_trap_mirrors_bull_trap():
    path, start, t_fall = bull_trap()
    path.y = 2 * LO + path.y[0] - path.y  # reflect the path; the square wave keeps its σ
    rows = path.detect()
    assert [r["direction"] for r in only(rows, "bear_trap")] == ["down"]
    assert only(rows, "bull_trap") == []


@pytest.mark.parametrize(
    "miss",
    [
        {"hold": 100},  # holds under 2 min
        {"hold": 1280},  # holds over 20 min
        {"brk": 1.8},  # breaks by under 2 σ
        {"volume": 1.3},  # breakout volume under ×1.5
        {"hold_volume": 3.0},  # volume not fading
        {"past": 3.8},  # never 4 σ past the level
        {"fall": 2200},  # 4 σ past the level more than 30 min after falling back
    ],
)
def test_bull_trap_narrow_misses(miss):
    path, _, _ = bull_trap(**miss)
    assert only(path.detect(), "bull_trap") == []


@pytest.mark.parametrize("ratio", [0.618, 0.786])
def test_fibonacci_trap_is_emitted_on_the_4_sigma_reversal(ratio):
    path, start, peak = fibonacci_trap(ratio=ratio)
    got = only(path.detect(), "fibonacci_trap")
    end = path.first(peak, lambda y: y - path.y[peak] >= 4 * SIGMA)
    assert [(r["direction"], r["start"], r["detected_at"]) for r in got] == [
        ("down", at(start), at(end))
    ]
    feats = json.loads(got[0]["features"])
    assert feats["ratio"] == ratio
    assert feats["magnitude"] == pytest.approx(2.0)
    assert feats["swing_sigma"] == pytest.approx(31.0)
    assert feats["swing_from"] == pytest.approx(100.0)


@pytest.mark.parametrize(
    "miss",
    [
        {"swing": 14.5},  # swing under 15 σ
        {"over": 0.8},  # overshoot under 1 σ
        {"over": 3.3},  # overshoot over 3 σ (and short of the 0.786 level)
        {"touch": 200},  # peak more than 3 min after touching the level
        {"rev_time": 700},  # 4 σ reversal after more than 10 min
        {"rev": 3.8},  # reverses under 4 σ
    ],
)
def test_fibonacci_trap_narrow_misses(miss):
    path, _, _ = fibonacci_trap(**miss)
    assert only(path.detect(), "fibonacci_trap") == []


def test_a_spike_that_is_a_liquidity_grab_is_not_also_a_stop_hunt():
    # From LO + 3 σ a 6 σ spike down pierces the low by 3 σ and comes back 3.5 σ inside:
    # it meets both definitions; the liquidity grab is reported, the stop hunt is not.
    path, start, peak = stop_hunt(pierce=3.0, volume=5.0, beyond=30, back=3.5, ret=90, flag=True)
    path.ramp(start - 30, start - 1, LO + 3 * SIGMA)
    path.ramp(start - 1, start + 5, LO - 3 * SIGMA, volume=5.0)
    assert [r["trap_type"] for r in path.detect() if r["direction"] == "down"] == ["liquidity_grab"]
    no_grab = path.detect(min_confidence={"liquidity_grab": 1.0})
    assert [r["trap_type"] for r in no_grab if r["direction"] == "down"] == []


def test_min_confidence_filters_by_type():
    path, _, _ = stop_hunt()
    (row,) = only(path.detect(), "stop_hunt")
    assert only(path.detect(min_confidence={"stop_hunt": row["confidence"]}), "stop_hunt")
    assert not only(path.detect(min_confidence=min(1.0, row["confidence"] + 1e-9)), "stop_hunt")
