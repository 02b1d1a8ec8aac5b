"""`trapsim run --source …`: live sources, failover and consensus from the command line."""

import asyncio
import json
import threading

import pyarrow.compute as pc
import pytest

from trapsim.feeds.venue import RecordedVenue
from trapsim.store.rundir import read_stream

from .conftest import RAW, trapsim


@pytest.fixture
def venue(raw):
    """A local venue replaying the recorded Binance stream in real time, on its own thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    v = RecordedVenue(raw / "btcusdt_20240808.gz", speed=1.0)
    port = asyncio.run_coroutine_threadsafe(v.start(), loop).result(10)
    yield f"127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(v.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def test_the_venue_carries_the_feed_and_the_others_back_it_up(tmp_path, venue):
    res = trapsim("run", "--source", "binance-ws", "--source",
                  f"replay:{RAW / 'BTC_USDT-1m.feather'}", "--source", "synthetic",
                  "--binance-ws-url", f"ws://{venue}", "--binance-rest-url", f"http://{venue}",
                  "--sleep", 0.01, "--duration", 0.15, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    stats = json.loads((tmp_path / "r" / "stats.json").read_text())
    assert stats["stopped_by"] == "end" and stats["published"] > 500
    assert {s["state"] for s in stats["sources"].values()} == {"up"}
    table = read_stream(tmp_path / "r", "consensus")
    assert table.num_rows == stats["published"]
    late = table.slice(table.num_rows // 2)
    assert set(late["primary"].to_pylist()) == {"binance-ws"}
    assert pc.min(table["confidence"]).as_py() >= 0 and pc.max(table["confidence"]).as_py() <= 1


def test_an_unreachable_venue_fails_over_to_the_replay(tmp_path, raw):
    res = trapsim("run", "--source", "binance-ws", "--source",
                  f"replay:{raw / 'BTC_USDT-1m.feather'}",
                  "--binance-ws-url", "ws://127.0.0.1:1", "--binance-rest-url",
                  "http://127.0.0.1:1", "--sleep", 0.01, "--duration", 0.15,
                  "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    events = [json.loads(x) for x in res.stderr.splitlines() if x.startswith("{")]
    assert any(e["event"] == "source_down" and e["source"] == "binance-ws" for e in events)
    assert {"event": "failover", "from": None, "to": "replay"}.items() <= next(
        e for e in events if e["event"] == "failover").items()
    table = read_stream(tmp_path / "r", "consensus")
    assert table.num_rows > 100 and set(table["primary"].to_pylist()) == {"replay"}


@pytest.mark.parametrize("args, needle", [
    (["--source", "coingecko"], "use binance-ws, replay:FILE or synthetic"),
    (["--source", "replay:/nope.feather"], "no such file"),
    (["--source", "synthetic", "--sleep", 0], "--sleep must be > 0"),
    (["--source", "synthetic", "--source", "synthetic"], "each source once"),
])
def test_bad_sources_exit_2(tmp_path, args, needle):
    res = trapsim("run", "--duration", 0.01, *args, "--out", tmp_path / "r")
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr
    assert not (tmp_path / "r").exists()
