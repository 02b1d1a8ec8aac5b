"""`trapsim replay`: a recorded Binance stream through a local venue and the adapter."""

import re
import time

import pytest

from .conftest import trapsim


def test_replay_rebuilds_the_venue_book_at_every_update(raw):
    res = trapsim("replay", raw / "btcusdt_20240808.gz", "--speed", "max")
    assert res.returncode == 0, res.stderr
    out = " ".join(res.stdout.split())
    assert "trades │ 9,757" in out
    assert re.search(r"book = venue best quotes \(by update id\) │ 3,449 of 3,449", out)
    assert "resyncs (sequence gaps) │ 0" in out


def test_replay_keeps_the_recorded_pace_times_the_speed(raw):
    # 5 min 46 s of recording at 200×: about 1.7 s of wall time, not less.
    t = time.monotonic()
    res = trapsim("replay", raw / "btcusdt_20240808.gz", "--speed", "200")
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t > 346 / 200


@pytest.mark.parametrize("args, needle", [
    (["--speed", "fast"], "--speed must be a number > 0 or 'max'"),
    (["--speed", "0"], "--speed must be a number > 0 or 'max'"),
])
def test_bad_speed_exits_2(raw, args, needle):
    res = trapsim("replay", raw / "btcusdt_20240808.gz", *args)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"trapsim: error: {needle}, got '{args[1]}'"]


def test_a_missing_or_malformed_recording_exits_2(tmp_path):
    res = trapsim("replay", tmp_path / "none.gz")
    assert res.returncode == 2 and "cannot read" in res.stderr
    bad = tmp_path / "bad.txt"
    bad.write_text("hello world\n")
    res = trapsim("replay", bad)
    assert res.returncode == 2 and "line 1" in res.stderr
