"""`trapsim run` end to end: determinism, reproduction, bad input, signals, replay."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest

from trapsim.detect import detect_table, score
from trapsim.market.ohlcv import INTERVALS, CandleAggregator
from trapsim.store.rundir import read_stream

from .conftest import REPO, trapsim

STREAMS = ("ticks", "labels", "hf_activations", *(f"candles_{i}" for i in INTERVALS))


def tables(run):
    extra = tuple(s for s in ("depth", "detections") if (run / f"{s}.parquet").exists())
    return {s: read_stream(run, s) for s in (*STREAMS, *extra)}


def test_paced_equals_flat_out_bit_for_bit(tmp_path):
    # 7 market hours: long enough for the first traps after the injector's look-back.
    common = ["--duration", 7, "--seed", 11, "--frequency", 1.0, "--detect"]
    flat = trapsim("run", *common, "--sleep", 0, "--out", tmp_path / "flat")
    paced = trapsim("run", *common, "--sleep", 0.0001, "--out", tmp_path / "paced")
    assert flat.returncode == 0, flat.stderr
    assert paced.returncode == 0, paced.stderr
    a, b = tables(tmp_path / "flat"), tables(tmp_path / "paced")
    assert a["ticks"].num_rows == 7 * 3600
    assert a["labels"].num_rows > 0
    assert set(a) == {*STREAMS, "depth", "detections"}
    for s in a:
        assert a[s].equals(b[s]), s
        assert (tmp_path / "flat" / f"{s}.parquet").read_bytes() == (
            tmp_path / "paced" / f"{s}.parquet"
        ).read_bytes(), s


def test_config_yaml_reproduces_the_run(tmp_path):
    first = trapsim(
        "run", "--duration", 2, "--sleep", 0, "--volatility", 1.7, "--out", tmp_path / "a"
    )
    assert first.returncode == 0, first.stderr
    again = trapsim("run", "--config", tmp_path / "a" / "config.yaml", "--out", tmp_path / "b")
    assert again.returncode == 0, again.stderr
    a, b = tables(tmp_path / "a"), tables(tmp_path / "b")
    assert all(a[s].equals(b[s]) for s in STREAMS)
    other = trapsim(
        "run", "--config", tmp_path / "a" / "config.yaml", "--seed", 99, "--out", tmp_path / "c"
    )
    assert other.returncode == 0, other.stderr
    assert not read_stream(tmp_path / "c", "ticks").equals(a["ticks"])


def test_run_directory_contents_and_report(tmp_path):
    res = trapsim("run", "--duration", 1, "--sleep", 0, "--seed", 3, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    for name in ("ticks", "labels", "hf_activations", "candles_1m"):
        assert (tmp_path / "r" / f"{name}.parquet").is_file()
    assert not (tmp_path / "r" / "detections.parquet").exists()  # no --detect
    depth = read_stream(tmp_path / "r", "depth")
    assert depth.num_rows == 3600 // 10  # a snapshot every 10 s, 10 levels a side
    assert {len(x) for c in ("bid_price", "ask_qty") for x in depth[c].to_pylist()} == {10}
    ticks = pq.read_table(tmp_path / "r" / "ticks.parquet")
    assert str(ticks.schema.field("ts").type) == "timestamp[ns, tz=UTC]"
    for interval in INTERVALS:  # every interval, the same as aggregating the ticks at once
        got = read_stream(tmp_path / "r", f"candles_{interval}")
        agg = CandleAggregator("BTC-USD", interval)
        done = agg.update(ticks["ts"].cast("int64").to_numpy(), ticks["price"].to_numpy(),
                          ticks["volume"].to_numpy())
        assert got.equals(pa.concat_tables([done, agg.flush()])), interval
    assert ticks.column_names == ["ts", "symbol", "price", "bid", "ask", "volume", "regime"]
    t = ticks.to_pydict()
    assert np.all(np.diff(ticks["ts"].cast("int64").to_numpy()) == 1_000_000_000)
    assert all(b < a for b, a in zip(t["bid"], t["ask"], strict=True))
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert stats["ticks"] == 3600 and stats["stopped_by"] == "end"
    assert abs(sum(stats["regime_share"].values()) - 1) < 1e-9
    assert "traps" in res.stdout and "regime" in res.stdout
    assert "detection" not in stats


def test_depth_snapshots_can_be_turned_off_or_resized(tmp_path):
    res = trapsim("run", "--duration", 0.5, "--sleep", 0, "--seed", 3, "--depth-every", 0,
                  "--out", tmp_path / "off")
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "off" / "depth.parquet").exists()
    res = trapsim("run", "--duration", 0.5, "--sleep", 0, "--seed", 3, "--depth-every", 60,
                  "--depth-levels", 25, "--out", tmp_path / "big")
    assert res.returncode == 0, res.stderr
    big = read_stream(tmp_path / "big", "depth")
    assert big.num_rows == 1800 // 60
    assert {len(x) for x in big["ask_price"].to_pylist()} == {25}


def test_live_detector_gives_the_batch_detectors_rows_and_scores_them(tmp_path):
    run = tmp_path / "r"
    res = trapsim("run", "--duration", 12, "--sleep", 0, "--seed", 8, "--frequency", 0.5,
                  "--detect", "--out", run)
    assert res.returncode == 0, res.stderr
    live = read_stream(run, "detections")
    assert live.num_rows > 0
    assert live.equals(detect_table(read_stream(run, "ticks")))
    stats = json.loads((run / "stats.json").read_text())
    got = score(read_stream(run, "labels"), live, days=0.5)
    d = stats["detection"]
    assert (d["labels"], d["detections"], d["matched"]) == tuple(
        got["all"][k] for k in ("labels", "detections", "matched"))
    assert d["labels"] > 0
    for k in ("precision", "recall", "f1"):
        assert d[k] == pytest.approx(got["all"][k])
        assert d["macro"][k] == pytest.approx(got["macro"][k])
    assert "live detector" in res.stdout
    assert "detect: true" in (run / "config.yaml").read_text()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--volatility", 0], "volatility"),
        (["--volatility", -1.5], "volatility"),
        (["--frequency", 1.5], "frequency"),
        (["--duration", -1], "duration"),
        (["--sleep", -0.1], "sleep"),
        (["--seed", -3], "seed"),
        (["--start", "yesterday"], "start"),
        (["--bogus"], "bogus"),
        (["--volatility", "abc"], "volatility"),
        (["--params", "missing.yaml"], "missing.yaml"),
        (["--config", "missing.yaml"], "missing.yaml"),
        (["--replay", "missing.csv"], "missing.csv"),
        (["--depth-every", -10], "--depth-every"),
        (["--depth-levels", 0], "--depth-levels"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, args, needle):
    res = trapsim(
        "run", "--duration", 0.01, "--sleep", 0, "--out", tmp_path / "r", *args, cwd=tmp_path
    )
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert needle in lines[0] and lines[0].startswith("trapsim: error")
    assert "Traceback" not in res.stderr
    assert not (tmp_path / "r").exists()


def test_bad_config_key_is_named(tmp_path):
    (tmp_path / "c.yaml").write_text("volatilty: 2\nseed: 1\n")
    res = trapsim("run", "--config", tmp_path / "c.yaml", "--out", tmp_path / "r")
    assert res.returncode == 2 and "volatilty" in res.stderr


def test_existing_run_directory_is_never_overwritten(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    res = trapsim("run", "--duration", 0.01, "--sleep", 0, "--out", out)
    assert res.returncode == 2
    assert (out / "keep.txt").read_text() == "precious"
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


def test_sigterm_during_paced_run_leaves_readable_files_and_report(tmp_path):
    out = tmp_path / "r"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "trapsim",
            "run",
            "--sleep",
            "0.001",
            "--seed",
            "5",
            "--detect",
            "--out",
            str(out),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not (out / "config.yaml").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    stats = json.loads((out / "stats.json").read_text())
    assert stats["stopped_by"] == "SIGTERM"
    ticks = pq.read_table(out / "ticks.parquet")
    assert ticks.num_rows == stats["ticks"] > 500
    assert "ticks" in stdout
    # Stopped mid-stream: only what is decided at the last tick is scored.
    assert stats["detection"]["as_of"] == stats["market_end"]
    assert stats["detection"]["detections"] <= pq.read_table(out / "detections.parquet").num_rows


def test_replay_without_traps_reproduces_every_candle(tmp_path, raw):
    src = feather.read_table(raw / "BTC_USDT-1m_2024-08.feather").slice(0, 2 * 1440)
    path = tmp_path / "two_days.parquet"
    pq.write_table(src, path)
    res = trapsim("run", "--replay", path, "--frequency", 0, "--sleep", 0, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    got = read_stream(tmp_path / "r", "candles_1m")
    assert got.num_rows == src.num_rows
    assert np.array_equal(got["ts"].cast("int64").to_numpy(), src["date"].cast("int64").to_numpy())
    for col in ("open", "high", "low", "close", "volume"):
        assert np.array_equal(got[col].to_numpy(), src[col].to_numpy()), col


def test_replay_with_traps_labels_them(tmp_path, raw):
    src = feather.read_table(raw / "BTC_USDT-1m.feather").slice(0, 2 * 1440)
    path = tmp_path / "two_days.feather"
    feather.write_feather(src, path)
    res = trapsim(
        "run",
        "--replay",
        path,
        "--frequency",
        0.5,
        "--sleep",
        0,
        "--seed",
        1,
        "--out",
        tmp_path / "r",
    )
    assert res.returncode == 0, res.stderr
    assert read_stream(tmp_path / "r", "labels").num_rows > 10
    assert read_stream(tmp_path / "r", "ticks").num_rows == 2 * 1440 * 60


BAD_CSV = "open_time,open,high,low,close,volume\n" + "".join(
    f"2023-03-01T00:0{i}:00Z,10,11,9,10,1\n" for i in range(3)
)


@pytest.mark.parametrize(
    "rows,needle",
    [
        ("2023-03-01T00:03:00Z,10,9,11,10,1\n", "row 4"),  # high < low
        ("2023-03-01T00:02:00Z,10,11,9,10,1\n", "row 4"),  # duplicate time
        ("2023-03-01T00:05:00Z,10,11,9,10,1\n", "row 4"),  # a gap
        ("2023-03-01T00:03:00Z,10,11,9,nan,1\n", "row 4"),  # NaN
    ],
)
@pytest.mark.parametrize("command", ["run", "calibrate"])
def test_malformed_candle_file_exits_2_naming_the_row(tmp_path, rows, needle, command):
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD_CSV + rows)
    args = ["--replay", bad, "--sleep", 0] if command == "run" else [bad]
    res = trapsim(command, *args, "--out", tmp_path / "out")
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "bad.csv" in lines[0], res.stderr
    assert not (tmp_path / "out").exists()


def test_realism_of_a_missing_run_directory_exits_2(tmp_path):
    res = trapsim("realism", tmp_path / "nothing")
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1


def test_realism_exits_1_when_a_band_fails_and_writes_the_figure(tmp_path, raw):
    # Four times the volatility puts annualised volatility far above its band.
    res = trapsim(
        "run",
        "--duration",
        24,
        "--volatility",
        4,
        "--sleep",
        0,
        "--seed",
        2,
        "--out",
        tmp_path / "r",
    )
    assert res.returncode == 0, res.stderr
    res = trapsim("realism", tmp_path / "r", "--against", raw / "BTC_USDT-1m_2024-08.feather")
    assert res.returncode == 1, res.stdout + res.stderr
    assert "FAIL" in res.stdout and "ann_vol" in res.stdout
    html = (tmp_path / "r" / "realism.html").read_text()
    assert "ACF of |r|" in html


def test_scenario_file_runs_labels_chaos_and_logs_each_phase(tmp_path):
    res = trapsim("run", "--scenario", REPO / "deploy" / "scenarios" / "price_shock.yaml",
                  "--duration", 30, "--sleep", 0, "--seed", 4, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    labels = read_stream(tmp_path / "r", "labels").to_pylist()
    chaos = [lb for lb in labels if lb["kind"] == "chaos"]
    assert [lb["type"] for lb in chaos] == ["price_shock", "volatility_spike"]
    assert len({lb["id"] for lb in labels}) == len(labels)  # one id space for every label
    events = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    assert [e["event"] for e in events] == ["price_manipulation_started",
                                            "volatility_spike_started"]
    assert events[0]["shock_percentage"] == -15.0
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert stats["chaos"] == {"price_shock": 1, "volatility_spike": 1}
    assert sum(stats["traps"]["per_type"].values()) == len(labels) - 2
    # The scenario is stored inline: the config reproduces the run without the file.
    again = trapsim("run", "--config", tmp_path / "r" / "config.yaml", "--out", tmp_path / "b")
    assert again.returncode == 0, again.stderr
    assert read_stream(tmp_path / "b", "ticks").equals(read_stream(tmp_path / "r", "ticks"))


def test_a_scenario_beyond_the_guard_rails_exits_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("phases:\n  - {type: price_shock, at: 1h, shock_percentage: -40, "
                   "duration_seconds: 60}\n")
    res = trapsim("run", "--scenario", bad, "--duration", 1, "--sleep", 0,
                  "--out", tmp_path / "r")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        f"trapsim: error: --scenario: {bad}: phases[0] (price_shock): a 40% move exceeds "
        "max_deviation 25%"]
    assert not (tmp_path / "r").exists()
