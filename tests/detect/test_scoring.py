"""Scoring by the TRAPS.md rule: matching edge cases, metrics, PR curve and its page."""

import json
import math

import pyarrow as pa
import pytest

from trapsim.core.schemas import DETECTIONS, LABELS
from trapsim.detect import pr_curve, score, write_pr_html
from trapsim.detect.scoring import format_table, to_json

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
