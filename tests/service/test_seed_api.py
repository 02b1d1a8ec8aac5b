"""MarketSimulator's `/ingest`, `/recent` and `/scenario` and the Micro Trading Bot's tick push
(`--ws-port`) on a real `trapsim serve`, and the whole OpenAPI schema fuzzed with
schemathesis: no 5xx, every answer as documented."""

import json
import time

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from websockets.sync.client import connect

from trapsim.core.time import parse_ts

from .serving import AUTH, Server, free_port, wait_market

ALL = "BTC-USD,ETH-USD,USDT-USD,BTC-ETH,BTC-USD-PERP"
TICK = {"symbol": "BTC-USD", "ts": "2025-01-06T00:00:00Z", "price": "1.25", "volume": 0.5}
RESULTS = {"P", "S", "T", "X", "p", "q", "s", "t", "x", "y", "z"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
"""No 5xx and every answer as documented (a schema-valid request may still be refused: a time
must parse, a narrative match a rule)."""
STRICT = {"/ingest", "/recent", "/scenario"}
"""Paths also checked to refuse any data that breaks their schema (elsewhere pydantic's lax
coercions, such as true for 1.0, are taken)."""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws_port = free_port()
    # 1,000 ticks a market second, one frame each on the tick push, in slices as large as
    # a loaded machine makes them: room for the frames of a slice or two.
    s = Server(tmp_path_factory.mktemp("seed"), "--symbols", ALL, "--sleep", "0.005",
               "--frequency", "1.0", "--ws-port", ws_port, "--ws-queue-size", 50_000)
    s.ws_port = ws_port
    yield s
    if s.proc.poll() is None:
        s.stop()


def test_ingested_ticks_are_kept_listed_and_published_not_simulated(server):
    with connect(f"ws://127.0.0.1:{server.port}/ws") as ws:
        ws.send(json.dumps({"op": "subscribe", "channels": ["ingest"]}))
        assert json.loads(ws.recv(timeout=10))["op"] == "subscribed"
        r = server.post("/ingest", headers=AUTH, json={"ticks": [
            TICK, {**TICK, "symbol": "ETH-USD", "ts": "2025-01-06 00:00:01", "price": 2.5}]})
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "ok" and r.json()["accepted"] == 2
        pushed = [json.loads(ws.recv(timeout=10)) for _ in range(2)]
    assert {(m["channel"], m["symbol"]) for m in pushed} == {("ingest", "BTC-USD"),
                                                             ("ingest", "ETH-USD")}
    rows = server.get("/recent", params={"source": "ingested", "n": 2}).json()
    assert [(r["symbol"], r["ts"], r["price"]) for r in rows] == [
        ("BTC-USD", "2025-01-06T00:00:00Z", "1.25"), ("ETH-USD", "2025-01-06T00:00:01Z", "2.5")]
    assert server.get("/recent", params={"source": "ingested", "symbol": "ETH-USD"}
                      ).json()[-1]["price"] == "2.5"
    # The simulated market is the model's: nothing near the ingested price.
    assert float(server.get("/api/v1/prices/BTC-USD/current").json()["price"]) > 1000
    assert all(float(r["price"]) > 1000 for r in server.get(
        "/recent", params={"symbol": "BTC-USD", "n": 500}).json())


def test_recent_lists_the_last_simulated_ticks_in_time_order(server):
    rows = server.get("/recent").json()
    assert len(rows) == 50 and {r["source"] for r in rows} == {"simulated"}
    assert {r["symbol"] for r in rows} == set(ALL.split(","))
    assert [parse_ts(r["ts"]) for r in rows] == sorted(parse_ts(r["ts"]) for r in rows)
    eth = server.get("/recent", params={"symbol": "ETH-USD", "n": 7}).json()
    assert len(eth) == 7 and {r["symbol"] for r in eth} == {"ETH-USD"}
    assert all(float(r["bid"]) <= float(r["price"]) <= float(r["ask"]) for r in eth)
    assert len({r["ts"] for r in eth}) == 7


@pytest.mark.parametrize(("params", "words"), [
    ({"n": 0}, "greater than or equal to 1"),
    ({"n": 10_001}, "less than or equal to 10000"),
    ({"n": "many"}, "valid integer"),
    ({"symbol": "DOGE-USD"}, "BTC-USD"),
    ({"source": "rumour"}, "simulated"),
])
def test_bad_recent_queries_are_422s(server, params, words):
    r = server.get("/recent", params=params)
    assert r.status_code == 422 and words in r.text


@pytest.mark.parametrize(("ticks", "words"), [
    ([{**TICK, "symbol": "XRP-USD"}], "\"symbol\"],\"msg\":\"Input should be 'BTC-USD'"),
    ([{**TICK, "ts": "yesterday"}], "'yesterday' is not an ISO 8601 time"),
    ([{**TICK, "price": 0}], "greater than 0"),
    ([{**TICK, "price": "NaN"}], "finite number"),
    ([{**TICK, "volume": -1}], "greater than or equal to 0"),
    ([{**TICK, "venue": "x"}], "Extra inputs are not permitted"),
    ([], "at least 1 item"),
    ([TICK] * 1001, "at most 1000 items"),
])
def test_bad_ticks_are_refused_naming_the_field(server, ticks, words):
    before = len(server.get("/recent", params={"source": "ingested", "n": 10_000}).json())
    r = server.post("/ingest", headers=AUTH, json={"ticks": ticks})
    assert r.status_code == 422 and words in r.text
    assert len(server.get("/recent", params={"source": "ingested", "n": 10_000}).json()) == before


def test_ingest_and_starting_scenarios_need_the_token(server):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token"}):
        assert server.post("/ingest", headers=headers, json={"ticks": [TICK]}).status_code == 401
        r = server.post("/scenario", headers=headers, json={"text": "a flash crash",
                                                             "start": True})
        assert r.status_code == 401
    timeline = server.get("/debug/scenario-timeline").json()["scenarios"]
    assert server.post("/scenario", json={"text": "a flash crash", "steps": 2}
                       ).status_code == 200  # a projection only needs no token
    assert server.get("/debug/scenario-timeline").json()["scenarios"] == timeline


def test_a_narrative_is_projected_from_the_current_prices(server):
    r = server.post("/scenario", json={"text": "what if a major stablecoin loses its peg",
                                       "steps": 6})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [(x["rule"], x["phase"]["type"], x["phase"]["target_deviation"])
            for x in body["rules"]] == [("stablecoin_depeg", "stablecoin_depeg", -0.09)]
    assert body["started"] == []
    impacts = {x["ticker"]: x for x in body["impacts"]}
    assert body["impacts"][0]["ticker"] == "USDT-USD" and set(impacts) == set(ALL.split(","))
    usdt = impacts["USDT-USD"]
    assert usdt["peak_move_pct"] < -3 and len(usdt["projection"]) == 6
    # It starts from the price of the last tick before it (it starts a second later).
    start = parse_ts(body["generated_at"]) - 10**9
    then = [x for x in server.get("/recent", params={"symbol": "USDT-USD", "n": 10_000}).json()
            if parse_ts(x["ts"]) == start]
    assert usdt["baseline"][0]["open"] == usdt["projection"][0]["open"] == then[0]["price"]
    assert float(usdt["projection"][-1]["close"]) < float(usdt["baseline"][-1]["close"])
    for c in usdt["projection"]:
        assert float(c["low"]) <= min(float(c["open"]), float(c["close"])) <= float(c["high"])
    assert impacts["ETH-USD"]["projection"] == impacts["ETH-USD"]["baseline"]  # untouched
    hours = [parse_ts(c["ts"]) for c in usdt["projection"]]
    assert all(b - a == 3600 * 10**9 for a, b in zip(hours, hours[1:], strict=False))


def test_the_tick_push_sends_every_tick_in_the_seed_format(server):
    with connect(f"ws://127.0.0.1:{server.ws_port}") as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["status"] == "connected" and parse_ts(hello["timestamp"])
        ws.send("anything")  # read and ignored
        last: dict[str, int] = {}
        seen: dict[str, int] = {}
        for _ in range(20_000):  # a paced run sends each symbol's ticks in slices
            f = json.loads(ws.recv(timeout=10))
            assert set(f) == {"request_id", "results", "status"} and f["status"] == "OK"
            r = f["results"]
            assert set(r) == RESULTS and len(f["request_id"]) == 32
            assert r["T"] in ALL.split(",") and 0 < r["p"] <= r["P"] and r["S"] >= 0
            assert r["t"] == r["q"] == r["y"] and (r["X"], r["x"], r["z"]) == (11, 11, 1)
            assert r["t"] > last.get(r["T"], 0)  # each symbol's ticks in time order
            last[r["T"]] = r["t"]
            seen[r["T"]] = seen.get(r["T"], 0) + 1
            if len(seen) == 5 and min(seen.values()) >= 3:
                break
    assert set(last) == set(ALL.split(","))


def test_plain_http_on_the_tick_push_port_is_told_to_upgrade(server):
    r = httpx.get(f"http://127.0.0.1:{server.ws_port}/")
    assert r.status_code == 426 and r.headers["upgrade"] == "websocket"
    assert "ws://" in r.text


def test_a_started_narrative_runs_as_chaos_phases(server):
    r = server.post("/scenario", headers=AUTH, json={
        "text": "a mild flash crash of ETH, then the perpetual's feed goes stale for 2 hours",
        "steps": 2, "interval": "15m", "start": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [x["rule"] for x in body["rules"]] == ["flash_crash", "feed_disruption"]
    shock, outage = (x["phase"] for x in body["rules"])
    assert (shock["symbol"], shock["shock_percentage"]) == ("ETH-USD", -5)
    assert (outage["mode"], outage["duration_seconds"], outage["affect_symbols"]) == (
        "stale", 7200, ["BTC-USD-PERP"])
    ids = {s["scenario_id"]: s["type"] for s in body["started"]}
    assert sorted(ids.values()) == ["feed_disruption", "price_shock"]
    deadline = time.monotonic() + 60
    while not ids.keys() <= {s["scenario_id"] for s in server.get(
            "/debug/scenario-timeline").json()["scenarios"]}:
        assert time.monotonic() < deadline, "the phases were not started"
        time.sleep(0.1)


@pytest.mark.parametrize(("body", "words"), [
    ({"text": "a sunny afternoon"}, "known keywords"),
    ({"text": "a 50% crash"}, "exceeds max_deviation 25%"),
    ({"text": "volatility 500x"}, "volatility_multiplier"),
    ({"text": "a crash", "steps": 100}, "72 hours"),
    ({"text": ". ".join(["a crash"] * 9)}, "describes 9 phases; at most 8"),
    ({"text": "a crash", "interval": "2h"}, "interval"),
    ({"text": ""}, "at least 1 character"),
    ({"text": "a crash", "when": "now"}, "Extra inputs are not permitted"),
])
def test_bad_narratives_are_422s_naming_the_problem(server, body, words):
    r = server.post("/scenario", json=body)
    assert r.status_code == 422 and words in r.text


def fuzz(operation, mode: GenerationMode, url: str) -> None:
    """Ten requests of one operation, of data that fits its schema or not; raises on a
    failed check."""
    checks = CHECKS + [negative_data_rejection] * (operation.path in STRICT)

    @settings(max_examples=10, deadline=None, database=None, derandomize=True,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case):
        case.call_and_validate(base_url=url, headers=AUTH, timeout=60, checks=checks)

    run()


def test_fuzzed_requests_never_get_a_5xx_and_match_the_schema(server):
    """Every operation of the OpenAPI schema, with the token (the write endpoints are fuzzed
    too: scenarios start, ticks are kept)."""
    schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in GenerationMode:
            try:
                fuzz(operation, mode, server.url)
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE  # no parameter to get wrong
            except Exception as exc:  # noqa: BLE001 - every operation's failure is reported
                failures.append(f"{operation.label} ({mode}): {exc}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize(("path", "body"), [
    ("/chaos/market-crash", {"volatility_multiplier": 1e300}),
    ("/chaos/market-crash", {"volume_spike_multiplier": 1e300}),
    ("/chaos/stablecoin-depeg", {"volatility_increase": 1e300}),
])
def test_multipliers_the_run_cannot_carry_are_refused(server, path, body):
    # Once accepted, these overflowed the prices and ended the run (found by the fuzzing).
    r = server.post(path, headers=AUTH, json=body)
    assert r.status_code == 422 and "less than or equal to 100" in r.text


def test_the_service_and_its_run_are_still_up_after_fuzzing(server):
    health = server.get("/health").json()
    assert health["status"] == "ok"
    wait_market(server, parse_ts(health["market_time"]) + 60 * 10**9)  # the run goes on
    assert httpx.get(server.url + "/recent", params={"n": 1}).status_code == 200
