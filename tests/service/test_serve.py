"""`trapsim serve` as a user runs it: a real process on a free port, real HTTP and WebSocket
clients, chaos started over the API, SIGTERM."""

import contextlib
import json
import socket
import threading
import time

import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from trapsim.core.time import NS, parse_ts

from .conftest import trapsim
from .serving import AUTH, Server, wait_market

ALL = "BTC-USD,ETH-USD,USDT-USD,BTC-ETH,BTC-USD-PERP"
SHOCK = {"symbol": "BTC-USD", "shock_percentage": -15, "duration_seconds": 300,
         "pattern": "sudden_drop", "recovery_time_seconds": 1800}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("serve"), "--symbols", ALL, "--sleep", "0.005",
               "--frequency", "1.0", "--detect", "--ws-queue-size", "20",
               "--ws-send-timeout", "0.3")
    yield s
    if s.proc.poll() is None:
        s.stop()


def test_prices_book_stats_and_correlations(server):
    current = server.get("/api/v1/prices/BTC-USD/current").json()
    assert set(current) >= {"symbol", "ts", "price", "bid", "ask", "volume", "regime"}
    assert float(current["bid"]) <= float(current["price"]) <= float(current["ask"])
    assert current["price"] == f"{float(current['price']):.2f}"  # the symbol's 2 decimals
    usdt = server.get("/api/v1/prices/USDT-USD/current").json()
    assert len(usdt["price"].split(".")[1]) == 5
    time.sleep(1.5)  # a few market minutes
    ticks = server.get("/api/v1/prices/ETH-USD/history", params={"interval": "1s"}).json()
    ts = [r["ts"] for r in ticks["rows"]]
    assert len(ts) > 100 and ts == sorted(ts)
    minutes = server.get("/api/v1/prices/ETH-USD/history", params={"interval": "1m"}).json()
    assert minutes["rows"] and all(
        float(r["low"]) <= min(float(r["open"]), float(r["close"])) for r in minutes["rows"])
    first = minutes["rows"][0]["ts"]
    later = server.get("/api/v1/prices/ETH-USD/history",
                       params={"interval": "1m", "start": first[:-1] + "+00:00"}).json()
    assert later["rows"][0]["ts"] == first
    book = server.get("/api/v1/orderbook/BTC-USD").json()
    assert len(book["bids"]) >= 10 and len(book["asks"]) >= 10
    assert float(book["bids"][0][0]) < float(book["asks"][0][0])
    assert [float(p) for p, _ in book["bids"]] == sorted((float(p) for p, _ in book["bids"]),
                                                         reverse=True)
    stats = server.get("/api/v1/stats/ETH-USD/24h").json()
    assert float(stats["low"]) <= float(stats["last"]) <= float(stats["high"])
    corr = server.get("/api/v1/correlations", params={"symbols": "BTC-USD,ETH-USD"}).json()
    m = np.array(corr["matrix"])
    assert m.shape == (2, 2) and m[0, 1] == pytest.approx(m[1, 0]) and abs(m[0, 1]) <= 1


@pytest.mark.parametrize(("path", "params", "code", "words"), [
    ("/api/v1/prices/XRP-USD/current", {}, 404, "unknown symbol 'XRP-USD'"),
    ("/api/v1/prices/BTC-USD/history", {"interval": "7m"}, 422, "unknown interval"),
    ("/api/v1/prices/BTC-USD/history", {"start": "yesterday"}, 422, "not an ISO 8601"),
    ("/api/v1/prices/BTC-USD/history", {"start": "2025-01-06T02:00:00Z",
                                        "end": "2025-01-06T01:00:00Z"}, 422, "after start"),
    ("/api/v1/correlations", {"symbols": "BTC-USD,DOGE-USD"}, 404, "DOGE-USD"),
    ("/api/traps", {"min_confidence": 2}, 422, "less than or equal to 1"),
    ("/api/traps", {"source": "guessed"}, 422, "pattern"),
    ("/api/v1/orderbook/ETH", {}, 404, "unknown symbol"),
])
def test_bad_requests_get_a_4xx_naming_the_problem(server, path, params, code, words):
    r = server.get(path, params=params)
    assert r.status_code == code and words in r.text


def test_metrics_traps_timeline_and_debug(server):
    deadline = time.monotonic() + 30
    while not server.get("/api/metrics").json()["ticks"] and time.monotonic() < deadline:
        time.sleep(0.2)  # the statistics are a snapshot taken every 2 wall seconds
    metrics = server.get("/api/metrics").json()
    assert metrics["ticks"] > 0 and "per_type" in metrics["traps"] and "hf" in metrics
    while not server.get("/api/traps").json()["count"] and time.monotonic() < deadline:
        time.sleep(0.2)
    injected = server.get("/api/traps").json()
    assert injected["count"] > 0 and injected["traps"][0]["kind"] == "trap"
    one = injected["traps"][0]["type"]
    only = server.get("/api/traps", params={"type": one}).json()["traps"]
    assert only and all(t["type"] == one for t in only)
    detected = server.get("/api/traps", params={"source": "detected", "min_confidence": 0.5})
    assert all(r["confidence"] >= 0.5 for r in detected.json()["traps"])
    events = server.get("/api/timeline").json()["events"]
    assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
    buffers = server.get("/debug/price-buffers").json()
    assert set(buffers) == set(ALL.split(",")) and buffers["BTC-USD"]["ticks_kept"] > 0
    assert server.get("/debug/data-sources/status").json()["sources"][0]["status"] == "live"
    assert len(server.get("/debug/correlation-matrix").json()["symbols"]) == 5


def test_every_write_endpoint_needs_the_token(server):
    paths = [f"/chaos/{p}" for p in ("price-shock", "gradual-divergence", "feed-disruption",
                                     "stablecoin-depeg", "correlation-break",
                                     "volatility-spike", "market-crash")]
    for path in paths:
        assert server.post(path, json={}).status_code == 401
        assert server.post(path, json={}, headers={"Authorization": "Bearer wrong"}
                           ).status_code == 401
    assert httpx.delete(server.url + "/chaos/stop-scenario/x").status_code == 401


def test_a_shock_started_over_the_api_moves_the_price_and_stops(server):
    before = float(server.get("/api/v1/prices/BTC-USD/current").json()["price"])
    r = server.post("/chaos/price-shock", json=SHOCK, headers=AUTH)
    assert r.status_code == 202
    key = r.json()["scenario_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        active = {s["scenario_id"]: s for s in server.get("/chaos/active-scenarios").json()[
            "scenarios"]}
        if active.get(key, {}).get("status") == "active":
            break
        time.sleep(0.05)
    assert active[key]["type"] == "price_shock" and active[key]["symbols"] == ["BTC-USD"]
    wait_market(server, parse_ts(active[key]["start_ts"]) + 300 * NS)  # the full shock
    after = float(server.get("/api/v1/prices/BTC-USD/current").json()["price"])
    assert after < 0.92 * before
    assert httpx.delete(f"{server.url}/chaos/stop-scenario/{key}", headers=AUTH).json()[
        "status"] == "stopping"
    deadline = time.monotonic() + 30
    while not (stopped := [s for s in server.get("/debug/scenario-timeline").json()[
            "scenarios"] if s["scenario_id"] == key and "stopped_ts" in s["params"]]):
        assert time.monotonic() < deadline, "the stop was not taken"
        time.sleep(0.05)
    wait_market(server, stopped[0]["params"]["stopped_ts"] + 310 * NS)  # the fade is over
    recovered = float(server.get("/api/v1/prices/BTC-USD/current").json()["price"])
    assert recovered > 0.95 * before
    timeline = server.get("/debug/scenario-timeline").json()["scenarios"]
    assert any(s["scenario_id"] == key and "stopped_ts" in s["params"] for s in timeline)


@pytest.mark.parametrize(("body", "words"), [
    ({**SHOCK, "shock_percentage": -40}, "exceeds max_deviation 25%"),
    ({**SHOCK, "symbol": "SOL-USD"}, "needs SOL-USD"),
    ({**SHOCK, "pattern": "zigzag"}, "pattern"),
    ({**SHOCK, "at": "2h"}, "Extra inputs are not permitted"),
    ({"shock_percentage": "lots"}, "shock_percentage"),
])
def test_out_of_range_chaos_requests_are_refused(server, body, words):
    r = server.post("/chaos/price-shock", json=body, headers=AUTH)
    assert r.status_code == 422 and words in r.text


def test_stopping_an_unknown_scenario_is_a_404(server):
    r = httpx.delete(f"{server.url}/chaos/stop-scenario/live-999", headers=AUTH)
    assert r.status_code == 404 and "live-999" in r.text


def test_websocket_subscribe_unsubscribe_and_errors(server):
    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        ws.send(json.dumps({"op": "subscribe", "channels": ["ticks"], "symbols": ["ETH-USD"]}))
        assert json.loads(ws.recv(timeout=10))["op"] == "subscribed"
        msgs = [json.loads(ws.recv(timeout=10)) for _ in range(20)]
        assert {(m["channel"], m["symbol"]) for m in msgs} == {("ticks", "ETH-USD")}
        assert all(float(r["bid"]) <= float(r["ask"]) for m in msgs for r in m["data"])
        ws.send(json.dumps({"op": "unsubscribe", "channels": ["ticks"]}))
        while json.loads(ws.recv(timeout=10)).get("op") != "unsubscribed":
            pass
        ws.send(json.dumps({"op": "ping"}))
        assert json.loads(ws.recv(timeout=10)) == {"op": "pong"}  # no ticks any more
        for bad, words in (({"op": "subscribe", "channels": ["news"]}, "unknown channel"),
                           ({"op": "subscribe", "channels": ["ticks"], "symbols": ["X"]},
                            "unknown symbol"),
                           ({"op": "dance"}, "op"), ("not json", "request")):
            ws.send(bad if isinstance(bad, str) else json.dumps(bad))
            answer = json.loads(ws.recv(timeout=10))
            assert answer["op"] == "error" and words in answer["detail"]


def test_the_symbols_ticks_of_one_release_leave_together(server):
    with connect(f"ws://127.0.0.1:{server.port}/ws", max_queue=None) as ws:
        ws.send(json.dumps({"op": "subscribe", "channels": ["ticks"]}))
        assert json.loads(ws.recv(timeout=10))["op"] == "subscribed"
        msgs = [json.loads(ws.recv(timeout=10)) for _ in range(100)]
    releases: dict[int, dict[str, list[str]]] = {}
    for m in msgs:
        releases.setdefault(m["published_ns"], {})[m["symbol"]] = [r["ts"] for r in m["data"]]
    whole = list(releases.values())[1:-1]  # the first and last may be cut by the reading
    assert len(whole) >= 10
    for symbols in whole:  # every symbol, on the same market times, with one release time
        assert sorted(symbols) == sorted(ALL.split(","))
        assert len({tuple(ts) for ts in symbols.values()}) == 1


def test_a_slow_client_is_dropped_and_the_others_keep_receiving(server):
    everything = {"op": "subscribe", "channels": ["ticks", "book", "candles:1m"]}
    with connect(f"ws://127.0.0.1:{server.port}/ws", max_queue=1) as slow, \
            connect(f"ws://127.0.0.1:{server.port}/ws") as fast:
        slow.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.send(json.dumps(everything))
        fast.send(json.dumps({"op": "subscribe", "channels": ["ticks"], "symbols": ["BTC-USD"]}))
        received = []  # the fast client reads all along, on its own thread

        def read_fast():
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                while True:
                    received.append(json.loads(fast.recv(timeout=10)).get("channel"))

        reader = threading.Thread(target=read_fast, daemon=True)
        reader.start()
        deadline = time.monotonic() + 60
        while not server.get("/api/metrics").json()["websocket"]["dropped_slow"]:
            assert time.monotonic() < deadline, "the slow client was never dropped"
            time.sleep(0.1)
        assert server.get("/health").json()["websocket_clients"] == 1  # the fast one only
        # What it had been sent drains, then nothing more: a 1008 close frame when the
        # server could still send one, the connection ended, or silence.
        quiet = time.monotonic() + 30
        try:
            while time.monotonic() < quiet:
                slow.recv(timeout=5)
            pytest.fail("the dropped client is still being sent frames")
        except ConnectionClosed as closed:
            assert closed.rcvd is None or closed.rcvd.code == 1008
        except TimeoutError:
            pass
        before = len(received)
        deadline = time.monotonic() + 30
        while len(received) < before + 50:
            assert reader.is_alive() and time.monotonic() < deadline, "the fast client stalled"
            time.sleep(0.05)
        assert server.get("/api/metrics").json()["websocket"]["dropped_slow"] == 1


def test_writes_are_off_without_a_token_and_sigterm_stops_cleanly(tmp_path):
    s = Server(tmp_path, "--sleep", "0.01", token=None)
    r = s.post("/chaos/price-shock", json=SHOCK)
    assert r.status_code == 403 and "TRAPSIM_API_TOKEN" in r.text
    code, out, err = s.stop()
    assert code == 0, err
    assert "trapsim run" in out and json.loads((s.out / "stats.json").read_text())[
        "stopped_by"] == "SIGTERM"


def test_a_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = trapsim("serve", "--port", port, "--out", tmp_path / "r")
    assert r.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in r.stderr
    assert not (tmp_path / "r").exists()


def test_prometheus_metrics_parse_with_the_seed_names(server):
    from prometheus_client.parser import text_string_to_metric_families

    r = server.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert {"market_data_price_updates", "market_data_staleness_seconds",
            "market_data_subscriber_count", "market_data_memory_usage_bytes"} <= set(families)
    updates = {s.labels["symbol"]: s.value for s in families["market_data_price_updates"].samples
               if s.name == "market_data_price_updates_total"}
    assert set(updates) == set(ALL.split(",")) and min(updates.values()) > 0
    assert all(s.value >= 0 for s in families["market_data_staleness_seconds"].samples)
