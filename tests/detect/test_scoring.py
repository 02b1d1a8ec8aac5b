"""Scoring by the TRAPS.md rule: matching edge cases, metrics, PR curve and its page."""

import json
import math

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.schemas import DETECTIONS, LABELS
from trapsim.detect import pr_curve, score, write_pr_html
from trapsim.detect.scoring import LiveScore, format_table, to_json

NS = 1_000_000_000
S = 1_736_121_600 * NS


def labels(*rows):
    """Labels from (type, direction, start s, peak s, end s[, kind]) offsets."""
    out = []
    for i, r in enumerate(rows):
        kind = r[5] if len(r) > 5 else "trap"
        out.append(
            {
                "id": i,
                "kind": kind,
                "type": r[0],
                "symbol": "BTC-USD",
                "direction": r[1],
                "start_ts": S + r[2] * NS,
                "peak_ts": S + r[3] * NS,
                "end_ts": S + r[4] * NS,
                "magnitude": 1.0,
                "params": "{}",
            }
        )
    return pa.Table.from_pylist(out, schema=LABELS)


def detections(*rows):
    """Detections from (type, direction, detected_at s[, confidence]) offsets."""
    out = [
        {
            "detected_at": S + int(r[2] * NS),
            "trap_type": r[0],
            "direction": r[1],
            "start": S + int(r[2] * NS),
            "confidence": r[3] if len(r) > 3 else 1.0,
            "features": "{}",
        }
        for r in rows
    ]
    return pa.Table.from_pylist(out, schema=DETECTIONS)


ONE = labels(("stop_hunt", "up", 100, 110, 130))


def matched(lab, det):
    return score(lab, det, days=1.0)["types"]["stop_hunt"]["matched"]


def test_one_label_two_detections_matches_the_earliest_once():
    r = score(ONE, detections(("stop_hunt", "up", 140), ("stop_hunt", "up", 120)), days=1.0)
    t = r["types"]["stop_hunt"]
    assert (t["matched"], t["detections"], t["false_alarms"]) == (1, 2, 1)
    assert t["precision"] == 0.5 and t["recall"] == 1.0
    assert t["latency_median_s"] == 10.0  # the earliest, 120 s, against the peak at 110 s


def test_wrong_direction_or_type_does_not_match():
    assert matched(ONE, detections(("stop_hunt", "down", 120))) == 0
    assert matched(ONE, detections(("bull_trap", "up", 120))) == 0


@pytest.mark.parametrize(
    "at, hit",
    [
        (99.999999999, False),  # one ns before start_ts
        (100, True),  # at start_ts
        (130 + 300, True),  # at end_ts + 300 s
        (130 + 300.000000001, False),  # one ns after
    ],
)
def test_matching_window_edges(at, hit):
    assert matched(ONE, detections(("stop_hunt", "up", at))) == int(hit)


def test_a_detection_matches_one_label_only():
    two = labels(("stop_hunt", "up", 100, 110, 130), ("stop_hunt", "up", 200, 210, 230))
    r = score(two, detections(("stop_hunt", "up", 220)), days=1.0)["types"]["stop_hunt"]
    assert (r["matched"], r["recall"]) == (1, 0.5)
    # The first label takes it (labels choose in start order); a second detection in the
    # overlap goes to the second label.
    both = score(two, detections(("stop_hunt", "up", 220), ("stop_hunt", "up", 225)), days=1.0)[
        "types"
    ]["stop_hunt"]
    assert both["matched"] == 2


def test_metrics_macro_and_pooled():
    lab = labels(
        ("liquidity_grab", "up", 0, 10, 100),
        ("liquidity_grab", "down", 1000, 1010, 1100),
        ("fibonacci_trap", "down", 2000, 2500, 2600),
        ("stop_hunt", "up", 5000, 5010, 5030, "chaos"),
    )
    det = detections(
        ("liquidity_grab", "up", 70),
        ("liquidity_grab", "up", 3000),
        ("fibonacci_trap", "down", 2650),
        ("bear_trap", "down", 4000),
    )
    r = score(lab, det, days=2.0)
    lg, fib, bear, sh = (
        r["types"][k] for k in ("liquidity_grab", "fibonacci_trap", "bear_trap", "stop_hunt")
    )
    assert (lg["precision"], lg["recall"], lg["f1"]) == (0.5, 0.5, 0.5)
    assert (fib["precision"], fib["recall"], fib["f1"]) == (1.0, 1.0, 1.0)
    assert fib["latency_median_s"] == 150.0
    assert (bear["precision"], bear["f1"]) == (0.0, 0.0) and math.isnan(bear["recall"])
    assert sh["labels"] == 0 and math.isnan(sh["f1"])  # the chaos label is not a trap
    assert lg["false_alarms_per_day"] == 0.5
    assert r["macro"]["f1"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    assert r["macro"]["recall"] == pytest.approx(0.75)
    assert r["all"]["matched"] == 2 and r["all"]["false_alarms_per_day"] == 1.0
    assert r["all"]["latency_median_s"] == pytest.approx((60 + 150) / 2)
    assert "macro" in format_table(r)
    assert json.loads(to_json(r))["types"]["bear_trap"]["recall"] is None


def test_days_must_be_positive():
    with pytest.raises(ValueError, match="days"):
        score(ONE, detections(), days=0)


def test_pr_curve_redoes_matching_per_threshold_and_writes_a_page(tmp_path):
    lab = labels(("stop_hunt", "up", 100, 110, 130), ("stop_hunt", "up", 1000, 1010, 1030))
    det = detections(
        ("stop_hunt", "up", 115, 0.2),
        ("stop_hunt", "up", 120, 0.9),
        ("stop_hunt", "up", 1020, 0.5),
        ("stop_hunt", "up", 5000, 0.1),
    )
    curve = pr_curve(lab, det, thresholds=[0.0, 0.15, 0.3, 0.6, 1.0])
    sh = curve["types"]["stop_hunt"]
    assert sh["recall"] == [1.0, 1.0, 1.0, 0.5, 0.0]
    # At 0.3 the 0.2 detection is gone and the 0.9 one takes the first label.
    assert sh["precision"][:4] == [0.5, 2 / 3, 1.0, 1.0]
    assert math.isnan(sh["precision"][4])
    assert curve["macro"]["recall"][:4] == sh["recall"][:4]
    page = tmp_path / "pr.html"
    write_pr_html(curve, page)
    text = page.read_text()
    assert "plotly" in text.lower() and "stop_hunt" in text and "macro" in text


# -- the live score ----------------------------------------------------------------------
def as_dicts(table):
    """Rows as the run loop holds them: int ns times."""
    cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns]
    return pa.table(cols, names=table.column_names).to_pylist()


def live(labs, dets):
    board = LiveScore(S)
    board.add_labels(as_dicts(labs))
    board.add_detections(as_dicts(dets))
    return board


def test_live_score_counts_no_trap_as_missed_while_a_detection_may_still_catch_it():
    labs = labels(("stop_hunt", "up", 1000, 1010, 1030))
    dets = detections(("stop_hunt", "up", 200), ("stop_hunt", "up", 1200))
    board = live(labs, dets)
    # 1100 s: the label's window is open; the false alarm at 200 s is decided.
    early = board.report(S + 1100 * NS)
    assert (early["labels"], early["detections"], early["matched"]) == (0, 1, 0)
    assert early["recall"] is None and early["precision"] == 0.0
    # A trap injected but not yet ended holds back detections after its start.
    held = live(labels(), dets).report(S + 1100 * NS, pending=[S + 150 * NS])
    assert held["detections"] == 0
    # 1330 s: the window (end + 300 s) has closed; the late detection caught it.
    late = board.report(S + 1330 * NS)
    assert (late["labels"], late["detections"], late["matched"]) == (1, 2, 1)
    assert late["recall"] == 1.0 and late["precision"] == 0.5


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["stop_hunt", "bull_trap"]), st.integers(0, 5000),
                          st.integers(1, 400)), max_size=8),
       st.lists(st.tuples(st.sampled_from(["stop_hunt", "bull_trap"]), st.integers(0, 6000)),
                max_size=12),
       st.integers(0, 7000))
def test_live_score_only_ever_scores_what_the_final_score_agrees_with(labs, dets, now):
    labs = labels(*[(k, "up", a, a, a + d) for k, a, d in labs])
    dets = detections(*[(k, "up", t) for k, t in dets])
    board = live(labs, dets)
    part = board.report(S + now * NS)
    final = board.report(S + 99_999 * NS, ended=True)
    full = score(labs, dets, days=99_999 / 86_400)
    assert final["matched"] == full["all"]["matched"]
    assert (final["labels"], final["detections"]) == (labs.num_rows, dets.num_rows)
    # What is scored so far is decided: its labels and detections keep their fate.
    assert part["labels"] <= final["labels"] and part["detections"] <= final["detections"]
    assert part["matched"] <= final["matched"]
    assert part["detections"] - part["matched"] <= final["detections"] - final["matched"]
