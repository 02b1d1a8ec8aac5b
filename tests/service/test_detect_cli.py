"""`trapsim detect`, `score` and `levels` end to end."""

import json

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from .conftest import trapsim


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("detect") / "run"
    res = trapsim("run", "--duration", 24, "--sleep", 0, "--seed", 5, "--out", out)
    assert res.returncode == 0, res.stderr
    return out


def test_detect_a_run_directory_writes_and_scores(run):
    res = trapsim("detect", run)
    assert res.returncode == 0, res.stderr
    det = pq.read_table(run / "detections.parquet")
    assert det.column_names == [
        "detected_at",
        "trap_type",
        "direction",
        "start",
        "confidence",
        "features",
    ]
    assert det.num_rows > 0
    result = json.loads((run / "score.json").read_text())
    assert 0.0 <= result["macro"]["f1"] <= 1.0
    assert (run / "pr_curve.html").is_file()
    assert "macro" in res.stdout


def test_detect_a_price_file_then_score_it(run, tmp_path):
    ticks = pq.read_table(run / "ticks.parquet").select(["ts", "price", "volume"])
    pacsv.write_csv(ticks.set_column(0, "ts", ticks["ts"].cast("int64")), tmp_path / "p.csv")
    out = tmp_path / "d.csv"
    res = trapsim("detect", tmp_path / "p.csv", "--out", out)
    assert res.returncode == 0, res.stderr
    res = trapsim(
        "score",
        "--labels",
        run / "labels.parquet",
        "--detections",
        out,
        "--out",
        tmp_path / "s.json",
        "--figure",
        tmp_path / "pr.html",
    )
    assert res.returncode == 0, res.stderr
    from_csv = json.loads((tmp_path / "s.json").read_text())
    trapsim("detect", run)  # the run's own detections of the same ticks
    assert from_csv["macro"] == json.loads((run / "score.json").read_text())["macro"]


def test_levels_prints_every_timeframe(run):
    res = trapsim("levels", run)
    assert res.returncode == 0, res.stderr
    for tf in ("1m", "5m", "15m"):
        assert tf in res.stdout


@pytest.mark.parametrize("command", ["detect", "levels"])
def test_malformed_input_exits_2_with_one_line(tmp_path, command):
    bad = tmp_path / "bad.csv"
    bad.write_text("ts,price,volume\n2,10,1\n1,10,1\n")
    res = trapsim(command, bad)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_score_of_a_missing_file_exits_2(tmp_path, run):
    res = trapsim("score", "--labels", run, "--detections", tmp_path / "none.parquet")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
