"""Scale-out through real Redis: a primary `trapsim serve --redis URL` publishes every event, and
replicas `trapsim serve --follow URL` serve the same REST and WebSocket answers without simulating.

Each test works under a Redis key prefix (and so a channel) of its own, deleted afterwards; the
outage test runs a private `redis-server`. Without Redis the tests are skipped, or fail when
CI=true.
"""

import json
import threading
import time
import uuid

import httpx
import numpy as np
import pytest
import redis
from rich.console import Console
from websockets.sync.client import connect

from trapsim.core.time import NS, iso, parse_ts
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.scenarios.chaos import Scenario
from trapsim.service.config import RunConfig
from trapsim.service.live import LiveState
from trapsim.service.relay import Relay, dumps
from trapsim.service.replica import Replica
from trapsim.service.runner import Runner

from .conftest import trapsim
from .serving import AUTH, Server, free_port, wait_market

SHOCK = {"symbol": "BTC-USD", "shock_percentage": -5, "duration_seconds": 120,
         "pattern": "sudden_drop", "recovery_time_seconds": 600}


def _prefix(redis_url):
    """A key prefix (and channel) of its own, its keys deleted afterwards (never FLUSHDB)."""
    p = f"trapsim_follow_{uuid.uuid4().hex[:12]}_"
    yield p
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=p + "*", count=1000))
    if keys:
        client.unlink(*keys)
    client.close()


@pytest.fixture
def prefix(redis_url):
    yield from _prefix(redis_url)


@pytest.fixture(scope="module")
def module_prefix(redis_url):
    yield from _prefix(redis_url)


def market(server) -> int:
    return parse_ts(server.get("/health").json()["market_time"])


def settled(primary, replica, after: int = 120) -> int:
    """A market time both servers have passed by ``after`` seconds: what they serve up to it
    is final on both."""
    t = min(market(primary), market(replica))
    for server in (primary, replica):
        wait_market(server, t + after * NS)
    return t


@pytest.fixture(scope="module")
def pair(tmp_path_factory, redis_url, module_prefix):
    """A primary with traps, detections and depth, and a replica that joined it 10 market
    minutes in (so it starts from the snapshot, then follows the messages)."""
    tmp = tmp_path_factory.mktemp("follow")
    primary = Server(tmp, "--redis", redis_url, "--redis-prefix", module_prefix, "--symbols",
                     "BTC-USD,ETH-USD", "--sleep", "0.005", "--frequency", "1.0", "--detect",
                     "--depth-every", "30")
    wait_market(primary, market(primary) + 600 * NS)
    replica = Server(tmp, "--redis-prefix", module_prefix, follow=redis_url)
    replica.joined = market(replica)
    yield primary, replica
    for server in (replica, primary):
        if server.proc.poll() is None:
            server.stop()


def test_the_replica_serves_the_primarys_history_including_what_came_before_it(pair):
    primary, replica = pair
    t = iso(settled(primary, replica))
    for symbol in ("BTC-USD", "ETH-USD"):
        for interval in ("1s", "1m"):
            params = {"interval": interval, "end": t}
            want = primary.get(f"/api/v1/prices/{symbol}/history", params=params).json()
            got = replica.get(f"/api/v1/prices/{symbol}/history", params=params).json()
            assert len(want["rows"]) > 10 and got == want
    first = replica.get("/api/v1/prices/BTC-USD/history", params={"interval": "1s"}).json()
    assert parse_ts(first["rows"][0]["ts"]) < replica.joined - 300 * NS  # from the snapshot


def test_the_current_price_and_the_book_agree_for_the_same_market_time(pair):
    primary, replica = pair
    current = replica.get("/api/v1/prices/BTC-USD/current").json()
    t = parse_ts(current["ts"])
    wait_market(primary, t)
    tick = primary.get("/api/v1/prices/BTC-USD/history", params={
        "interval": "1s", "start": current["ts"], "end": iso(t + NS)}).json()["rows"]
    assert tick == [{"ts": current["ts"], "price": current["price"], "volume": current["volume"]}]
    # Books change every 30 market seconds: catch the replica on the primary's latest.
    deadline = time.monotonic() + 60
    while True:
        want = primary.get("/api/v1/orderbook/BTC-USD").json()
        while (got := replica.get("/api/v1/orderbook/BTC-USD").json())["ts"] < want["ts"]:
            assert time.monotonic() < deadline, "the replica's book did not catch up"
        if got["ts"] == want["ts"]:
            break
    assert got == want and len(got["bids"]) == 10


def test_traps_detections_and_statistics_agree(pair):
    primary, replica = pair
    deadline = time.monotonic() + 120
    while not (traps := primary.get("/api/traps").json()["traps"]):
        assert time.monotonic() < deadline, "no trap yet"
        time.sleep(0.2)
    wait_market(replica, parse_ts(traps[0]["end_ts"]))
    t = settled(primary, replica)
    for params, when in (({}, "end_ts"), ({"source": "detected"}, "detected_at")):
        want, got = ([r for r in s.get("/api/traps", params=params).json()["traps"]
                      if parse_ts(r[when]) <= t] for s in (primary, replica))
        assert got == want and (want or params)  # at least the first trap
    # The statistics are a snapshot every 2 wall seconds: compare one both hold.
    while True:
        want, got = (s.get("/api/metrics").json() for s in (primary, replica))
        if want["market_end"] == got["market_end"]:
            break
        assert time.monotonic() < deadline, "the replica did not get the primary's statistics"
        time.sleep(0.1)
    for report in (want, got):
        del report["websocket"], report["hf"]  # each server's own clients; HF moves on
    assert got == want and want["ticks"] > 0


def test_a_websocket_client_of_the_replica_gets_the_ticks_the_primary_published(pair):
    primary, replica = pair
    subscribe = json.dumps({"op": "subscribe", "channels": ["ticks"], "symbols": ["BTC-USD"]})
    with connect(f"ws://127.0.0.1:{primary.port}/ws") as p, \
            connect(f"ws://127.0.0.1:{replica.port}/ws") as r:
        for ws in (r, p):  # the replica first: it gets every tick the primary sends after
            ws.send(subscribe)
            assert json.loads(ws.recv(timeout=10))["op"] == "subscribed"
        sent = {row["ts"]: row for _ in range(30) for row in json.loads(p.recv(timeout=10))["data"]}
        got: dict[str, dict] = {}
        while not got or max(got) < max(sent):
            frame = json.loads(r.recv(timeout=10))
            assert (frame["channel"], frame["symbol"]) == ("ticks", "BTC-USD")
            got.update((row["ts"], row) for row in frame["data"])
    assert all(got[ts] == row for ts, row in sent.items())
    times = np.array(sorted(parse_ts(ts) for ts in got))
    assert np.all(np.diff(times) == NS)  # not one tick missing


def test_a_scenario_started_on_the_primary_shows_on_the_replica(pair):
    primary, replica = pair
    r = primary.post("/chaos/price-shock", json=SHOCK, headers=AUTH)
    assert r.status_code == 202
    key = r.json()["scenario_id"]
    deadline = time.monotonic() + 60
    while not (mine := [s for s in replica.get("/chaos/active-scenarios").json()["scenarios"]
                        if s["scenario_id"] == key and s["status"] == "active"]):
        assert time.monotonic() < deadline, "the scenario did not show on the replica"
        time.sleep(0.05)
    (theirs,) = [s for s in primary.get("/debug/scenario-timeline").json()["scenarios"]
                 if s["scenario_id"] == key]
    assert {**mine[0], "status": None} == {**theirs, "status": None}
    assert mine[0]["type"] == "price_shock" and mine[0]["symbols"] == ["BTC-USD"]


def test_writes_on_the_replica_are_refused_naming_the_primary(pair):
    primary, replica = pair
    before = primary.get("/debug/scenario-timeline").json()["scenarios"]
    r = replica.post("/chaos/price-shock", json=SHOCK, headers=AUTH)
    assert r.status_code == 409
    assert "read-only replica" in r.json()["detail"] and primary.url in r.json()["detail"]
    r = httpx.delete(f"{replica.url}/chaos/stop-scenario/live-1", headers=AUTH)
    assert r.status_code == 409 and "primary" in r.json()["detail"]
    tick = {"symbol": "BTC-USD", "ts": "2025-01-06T00:00:00Z", "price": "1.5"}
    r = replica.post("/ingest", json={"ticks": [tick]}, headers=AUTH)
    assert r.status_code == 409 and "primary" in r.json()["detail"]
    r = replica.post("/scenario", json={"text": "a major stablecoin loses its peg"})
    assert r.status_code == 409 and "primary" in r.json()["detail"]
    assert primary.get("/debug/scenario-timeline").json()["scenarios"] == before


def test_health_tells_a_replica_and_its_primary(pair):
    primary, replica = pair
    health = replica.get("/health").json()
    assert health["role"] == "replica" and health["status"] == "ok"
    assert health["primary"]["live"] and health["primary"]["last_message_age_s"] < 5
    assert health["primary"]["run_id"] == primary.get("/api/metrics").json()["run_id"]
    assert health["primary"]["http"] == primary.url
    assert primary.get("/health").json()["role"] == "primary"


def test_the_replica_reconnects_after_losing_its_redis_connection(pair, redis_url,
                                                                   module_prefix):
    primary, replica = pair
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    mine = [c["id"] for c in client.client_list() if c["name"] ==
            f"trapsim-replica:{module_prefix}"]
    assert mine
    for client_id in mine:
        client.client_kill_filter(_id=client_id)
    client.close()
    wait_market(replica, market(primary) + 60 * NS)
    assert replica.get("/health").json()["primary"]["live"]
    t = iso(settled(primary, replica))
    params = {"interval": "1s", "end": t}
    want = primary.get("/api/v1/prices/ETH-USD/history", params=params).json()
    assert replica.get("/api/v1/prices/ETH-USD/history", params=params).json() == want


def test_a_replica_keeps_serving_through_a_redis_outage_and_stops_cleanly(tmp_path,
                                                                          private_redis):
    server = private_redis
    primary = Server(tmp_path, "--redis", server.url, "--sleep", "0.01")
    replica = Server(tmp_path, follow=server.url)
    server.kill()
    deadline = time.monotonic() + 60
    while (health := replica.get("/health").json())["status"] != "stale":
        assert time.monotonic() < deadline, "the replica did not say it is stale"
        time.sleep(0.1)
    assert not health["primary"]["connected"]
    assert replica.get("/api/v1/prices/BTC-USD/current").status_code == 200  # the last
    server.start()
    wait_market(replica, market(primary) + 30 * NS)
    assert replica.get("/health").json()["status"] == "ok"
    # What the primary buffered during the outage reached the replica: no hole.
    params = {"interval": "1s", "end": iso(settled(primary, replica))}
    want = primary.get("/api/v1/prices/BTC-USD/history", params=params).json()
    assert replica.get("/api/v1/prices/BTC-USD/history", params=params).json() == want
    code, out, err = replica.stop()
    assert code == 0, err
    assert primary.stop()[0] == 0


@pytest.mark.parametrize(("args", "words"), [
    (("--follow", "http://127.0.0.1/0"), "bad Redis URL"),
    (("--follow", "redis://127.0.0.1:{free}/0"), "cannot follow 127.0.0.1:{free}/0"),
    (("--follow", "{redis}", "--redis-prefix", "nobody_here_"),
     "no primary publishes under prefix 'nobody_here_'"),
    (("--follow", "{redis}", "--seed", "3", "--symbols", "BTC-USD"),
     "--seed, --symbols cannot be used with it"),
])
def test_a_replica_that_cannot_follow_exits_2_naming_why(redis_url, args, words):
    free = free_port()
    fill = {"free": free, "redis": redis_url}
    r = trapsim("serve", "--port", free_port(), *(a.format(**fill) for a in args))
    assert r.returncode == 2 and words.format(**fill) in r.stderr


def contents(state: LiveState) -> dict:
    """Everything a live state serves, as JSON would carry it."""
    return json.loads(dumps({
        "ticks": {s: state.recent(s) for s in state.symbols}, "regime": state.regime,
        "bars": {"/".join(k): list(v) for k, v in state.bars.items()}, "books": state.books,
        "labels": list(state.label_log), "detections": list(state.detection_log),
        "alerts": list(state.alert_log), "hf": state.hf, "report": state.report,
        "ended": state.ended, "counts": state.counts}))


def test_replicas_rebuild_the_primarys_live_state_from_messages_and_from_the_snapshot(
        tmp_path, redis_url, prefix):
    depeg = Scenario.model_validate({"name": "depeg", "phases": [
        {"type": "stablecoin_depeg", "at": "1h"}]})
    cfg = RunConfig(duration=10, sleep=0, seed=5, frequency=1.0, market=DEFAULT_PARAMS,
                    detect=True, symbols=("BTC-USD", "ETH-USD", "USDT-USD", "BTC-USD-PERP"),
                    scenario=depeg)
    state = LiveState(cfg.symbols)
    relay = Relay(redis_url, prefix=prefix, run_id="run-1", paced=False)
    runner = Runner(cfg, tmp_path / "run", Console(quiet=True), (state, relay), "run-1")
    relay.start(runner, state, "http://primary")
    early = Replica(redis_url, prefix, lambda s: None, ws_queue_size=10, ws_send_timeout=1)
    early.sync()  # joins before the first tick: the run comes as messages
    following = threading.Thread(target=early.follow)
    following.start()
    runner.run()
    relay.stop()
    deadline = time.monotonic() + 60
    while not early.stopped:
        assert time.monotonic() < deadline, "the replica did not get the whole run"
        time.sleep(0.05)
    early.stop()
    following.join()
    late = Replica(redis_url, prefix, lambda s: None, ws_queue_size=10, ws_send_timeout=1)
    late.sync()  # joins after the end: the run comes from the snapshot
    want = contents(state)
    assert want["labels"] and want["detections"] and want["alerts"] and want["books"]
    assert want["ended"] and len(want["ticks"]["BTC-USD"]["ts"]) == want["counts"]["BTC-USD"]
    assert contents(early.state) == want
    assert contents(late.state) == want
    assert early.market_ts == late.market_ts == runner.market_ts
    assert early.control == late.control
    assert late.stopped and late.meta["symbols"] == list(cfg.symbols)
