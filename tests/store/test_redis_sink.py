import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime

import numpy as np
import pytest
import redis
from rich.console import Console

from tests.conftest import free_port
from tests.store.conftest import published, run_sim, stream_rows
from trapsim.core.errors import ConfigError, SinkError
from trapsim.core.schemas import TickBatch
from trapsim.core.time import DAY_NS, NS, iso
from trapsim.market.symbols import load_symbol_settings
from trapsim.scenarios.chaos import Scenario
from trapsim.service.config import RunConfig
from trapsim.service.runner import Runner
from trapsim.store import resilient
from trapsim.store.redis import HISTORY_CAP, RedisSink, _Keys, _RedisBackend

MIDNIGHT = 1736208000 * NS  # 2025-01-07T00:00:00Z
REGIMES = ("low_volatility_neutral", "high_volatility_bearish")


def ticks(start: int, n: int, step: int = NS) -> TickBatch:
    """``n`` ticks from ``start``: tick ``i`` has price ``100 + i``, volume ``i / 8``, regime
    ``i % 2``."""
    i = np.arange(n)
    price = 100.0 + i
    return TickBatch(
        "BTC-USD",
        start + i * step,
        price,
        price - 0.5,
        price + 0.5,
        i / 8,
        (i % 2).astype(np.int8),
        REGIMES,
    )


def as_tuples(batch: TickBatch) -> list[tuple[int, float, float]]:
    """``(ts, price, volume)`` per tick, as :func:`read_day` returns them."""
    return list(zip(batch.ts.tolist(), batch.price.tolist(), batch.volume.tolist(), strict=True))


def label(i: int, end_ts: int) -> dict:
    return {
        "id": i,
        "kind": "trap",
        "type": "stop_hunt",
        "symbol": "BTC-USD",
        "direction": "up" if i % 2 else "down",
        "start_ts": end_ts - 20 * NS,
        "peak_ts": end_ts - 10 * NS,
        "end_ts": end_ts,
        "magnitude": 1.5 + i,
        "params": {"sigma": 0.001, "level": 100.5 + i, "lookback_min": 36},
    }


def label_json(lab: dict) -> dict:
    """A label row as the sink's JSON reads back: ISO times, ``params`` an object."""
    out = {**lab, **{k: iso(lab[k]) for k in ("start_ts", "peak_ts", "end_ts")}}
    if isinstance(out["params"], str):
        out["params"] = json.loads(out["params"])
    return out


def hf_json(act: dict) -> dict:
    types = act["types"]
    return {
        "start_ts": iso(act["start_ts"]),
        "end_ts": iso(act["end_ts"]),
        "trap_count": act["trap_count"],
        "types": json.loads(types) if isinstance(types, str) else types,
    }


def detection_json(det: dict) -> dict:
    """A run directory detection row as the sink writes it: ISO times, features as an object."""
    return {
        **det,
        "detected_at": iso(det["detected_at"]),
        "start": iso(det["start"]),
        "features": json.loads(det["features"]),
    }


def flat(report: dict, parent: str = "") -> dict:
    """The report as the ``statistics`` hash holds it."""
    out = {}
    for key, value in report.items():
        if isinstance(value, dict):
            out.update(flat(value, f"{parent}{key}."))
        else:
            text = value if isinstance(value, str) else "" if value is None else json.dumps(value)
            out[f"{parent}{key}"] = text
    return out


def day_key(prefix: str, ts: int) -> str:
    return f"{prefix}price_history:{datetime.fromtimestamp(ts // NS, UTC):%Y-%m-%d}"


def read_day(rclient, key: str) -> list[tuple[int, float, float]]:
    """A day list as ``(ts ns, price, volume)``, newest first."""
    rows = [json.loads(x) for x in rclient.lrange(key, 0, -1)]
    assert all(set(r) == {"ts", "price", "volume"} for r in rows)
    return [(_parse_iso(r["ts"]), r["price"], r["volume"]) for r in rows]


def _parse_iso(text: str) -> int:
    whole, _, frac = text.rstrip("Z").partition(".")
    sec = int(datetime.fromisoformat(whole).replace(tzinfo=UTC).timestamp())
    return sec * NS + int(frac.ljust(9, "0") or 0)


def warnings(caplog, text: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "trapsim.store" and r.levelno == logging.WARNING and text in r.getMessage()
    ]


# -- the key table -----------------------------------------------------------------------
def test_every_key_has_its_type_and_content(redis_url, rclient, prefix):
    sink = RedisSink(redis_url, run_id="direct", prefix=prefix)
    assert rclient.get(prefix + "running") == "1"
    batch = ticks(MIDNIGHT - 3 * NS, 7)  # 3 ticks on 2025-01-06, 4 on 2025-01-07
    sink.ticks(batch.slice(0, 5))
    sink.ticks(batch.slice(5, 7))
    labels = [label(0, MIDNIGHT - NS), label(1, MIDNIGHT + 2 * NS)]
    sink.labels(labels)
    sink.hf_switched_on(labels[0]["start_ts"], 3)
    act = {"start_ts": labels[0]["start_ts"], "end_ts": MIDNIGHT + 3 * NS, "trap_count": 3,
           "types": ["stop_hunt", "bull_trap", "stop_hunt"]}  # fmt: skip
    sink.hf_activations([act])
    report = {"ticks": 7, "traps": {"total": 2, "per_type": {"stop_hunt": 2}}, "stopped_by": None}
    sink.statistics(report)
    sink.flush()

    p = prefix
    expect_types = {
        "last_btc_price": "string",
        "prev_btc_price": "string",
        "price_change_pct": "string",
        "market_regime": "string",
        "running": "string",
        "trap_history": "list",
        "hf_activations": "list",
        "statistics": "hash",
        "price_history:2025-01-06": "list",
        "price_history:2025-01-07": "list",
        "sink_seq:direct": "string",
    }
    assert {k.removeprefix(p): rclient.type(k) for k in rclient.scan_iter(p + "*")} == expect_types
    assert float(rclient.get(p + "last_btc_price")) == 106.0
    assert float(rclient.get(p + "prev_btc_price")) == 105.0
    assert float(rclient.get(p + "price_change_pct")) == pytest.approx(100 / 105)
    assert rclient.get(p + "market_regime") == REGIMES[0]  # tick 6: regime 6 % 2
    assert rclient.get(p + "running") == "1"
    history = [json.loads(x) for x in rclient.lrange(p + "trap_history", 0, -1)]
    assert history == [label_json(lab) for lab in reversed(labels)]
    assert [json.loads(x) for x in rclient.lrange(p + "hf_activations", 0, -1)] == [hf_json(act)]
    assert rclient.hgetall(p + "statistics") == flat(report)
    expected = as_tuples(batch)
    assert read_day(rclient, p + "price_history:2025-01-06") == expected[:3][::-1]
    assert read_day(rclient, p + "price_history:2025-01-07") == expected[3:][::-1]
    assert rclient.lrange(p + "price_history:2025-01-07", -1, -1) == [
        '{"ts":"2025-01-07T00:00:00Z","price":103,"volume":0.375}'
    ]

    final = {**report, "stopped_by": "end"}
    sink.close(final)
    assert rclient.get(p + "running") == "0"
    assert rclient.hgetall(p + "statistics") == flat(final)


def test_sub_second_ticks_keep_exact_iso_times(redis_url, rclient, prefix):
    sink = RedisSink(redis_url, run_id="subsec", prefix=prefix)
    sink.ticks(ticks(MIDNIGHT, 3, step=NS // 4))
    sink.close({})
    rows = [json.loads(x)["ts"] for x in rclient.lrange(prefix + "price_history:2025-01-07", 0, -1)]
    assert rows == ["2025-01-07T00:00:00.5Z", "2025-01-07T00:00:00.25Z", "2025-01-07T00:00:00Z"]


def test_caps_and_ttl_are_applied(redis_url, rclient, prefix):
    sink = RedisSink(
        redis_url, run_id="caps", prefix=prefix, history_cap=4, list_cap=3, day_ttl_s=50
    )
    batch = ticks(MIDNIGHT - 6 * NS, 16)  # 6 ticks on the first day, 10 on the second
    for lo in range(0, 16, 5):  # several calls, one of them across midnight
        sink.ticks(batch.slice(lo, min(lo + 5, 16)))
    sink.labels([label(i, MIDNIGHT + i * NS) for i in range(5)])
    acts = [{"start_ts": MIDNIGHT + i * NS, "end_ts": MIDNIGHT + (i + 1) * NS, "trap_count": 3,
             "types": ["a", "b", "c"]} for i in range(4)]  # fmt: skip
    sink.hf_activations(acts)
    sink.close({"ticks": 16})

    expected = as_tuples(batch)
    day1, day2 = day_key(prefix, MIDNIGHT - NS), day_key(prefix, MIDNIGHT)
    assert read_day(rclient, day1) == expected[2:6][::-1]
    assert read_day(rclient, day2) == expected[12:][::-1]
    history = rclient.lrange(prefix + "trap_history", 0, -1)
    assert [json.loads(x)["id"] for x in history] == [4, 3, 2]
    assert [json.loads(x) for x in rclient.lrange(prefix + "hf_activations", 0, -1)] == [
        hf_json(a) for a in acts[:0:-1]
    ]
    for key in (day1, day2, prefix + "sink_seq:caps"):
        assert 0 < rclient.ttl(key) <= 50
    for key in ("trap_history", "hf_activations", "last_btc_price", "running", "statistics"):
        assert rclient.ttl(prefix + key) == -1  # live keys and capped lists do not expire


def test_clear_deletes_only_the_prefix_keys(redis_url, rclient, prefix):
    own = prefix + "[ab]_"  # glob characters in the prefix are matched literally
    outsider = f"trapsim_test_outsider_{uuid.uuid4().hex}"
    look_alike = prefix + "a_x"  # would match the prefix as an unescaped glob
    rclient.set(own + "stale", "1")
    rclient.rpush(own + "trap_history", "old")
    rclient.set(outsider, "keep")
    rclient.set(look_alike, "keep")
    try:
        sink = RedisSink(redis_url, run_id="clear", prefix=own, clear=True)
        assert rclient.get(own + "stale") is None
        assert rclient.lrange(own + "trap_history", 0, -1) == []
        assert rclient.get(outsider) == "keep"
        assert rclient.get(look_alike) == "keep"
        sink.close({})
    finally:
        rclient.unlink(outsider)


def test_bad_options_are_config_errors(redis_url, prefix):
    with pytest.raises(ConfigError, match="prefix"):
        RedisSink(redis_url, run_id="x", prefix="")
    with pytest.raises(ConfigError, match="history_cap"):
        RedisSink(redis_url, run_id="x", prefix=prefix, history_cap=0)
    with pytest.raises(ConfigError, match="Redis URL"):
        RedisSink("http://nowhere", run_id="x", prefix=prefix)


# -- a whole run ---------------------------------------------------------------------------
def test_run_end_to_end_matches_the_run_directory(tmp_path, redis_url, rclient, prefix):
    listener = rclient.pubsub()
    listener.subscribe(prefix + "events")
    assert listener.get_message(timeout=2)["type"] == "subscribe"
    sink = RedisSink(redis_url, run_id="e2e", prefix=prefix)
    report = run_sim(tmp_path / "run", sink, detect=True)
    events = []
    while (msg := listener.get_message(timeout=0.5)) is not None:
        events.append(json.loads(msg["data"]))
    listener.close()

    run = tmp_path / "run"
    labels = [label_json(lab) for lab in stream_rows(run, "labels")]
    acts = [hf_json(a) for a in stream_rows(run, "hf_activations")]
    detections = [detection_json(d) for d in stream_rows(run, "detections")]
    assert labels and acts and detections
    by_kind = {
        kind: [e for e in events if e["event"] == kind]
        for kind in ("trap", "hf_on", "hf_activation", "detection")
    }
    assert len(events) == sum(len(v) for v in by_kind.values())
    assert [{k: v for k, v in e.items() if k != "event"} for e in by_kind["trap"]] == labels
    assert [{k: v for k, v in e.items() if k != "event"} for e in by_kind["hf_activation"]] == acts
    assert [e["ts"] for e in by_kind["hf_on"]] == [a["start_ts"] for a in acts]
    got = [{k: v for k, v in e.items() if k != "event"} for e in by_kind["detection"]]
    assert got == detections
    stored = [json.loads(x) for x in rclient.lrange(prefix + "detections", 0, -1)]
    assert stored == detections[::-1]
    depth = stream_rows(run, "depth")
    newest = depth[-1]
    book = json.loads(rclient.get(prefix + "orderbook_btc"))
    assert book == {
        "ts": iso(newest["ts"]),
        "bids": [list(x) for x in zip(newest["bid_price"], newest["bid_qty"], strict=True)],
        "asks": [list(x) for x in zip(newest["ask_price"], newest["ask_qty"], strict=True)],
    }
    history = [json.loads(x) for x in rclient.lrange(prefix + "trap_history", 0, -1)]
    assert history == labels[::-1]
    assert [json.loads(x) for x in rclient.lrange(prefix + "hf_activations", 0, -1)] == acts[::-1]

    tick_rows = published(stream_rows(run, "ticks"))
    last, prev = tick_rows[-1], tick_rows[-2]
    assert float(rclient.get(prefix + "last_btc_price")) == last["price"]
    assert float(rclient.get(prefix + "prev_btc_price")) == prev["price"]
    change = float(rclient.get(prefix + "price_change_pct"))
    assert change == pytest.approx((last["price"] / prev["price"] - 1) * 100, rel=1e-12)
    assert rclient.get(prefix + "market_regime") == last["regime"]
    today = last["ts"] // DAY_NS
    day = [(r["ts"], r["price"], r["volume"]) for r in tick_rows if r["ts"] // DAY_NS == today]
    assert read_day(rclient, day_key(prefix, last["ts"])) == day[-HISTORY_CAP:][::-1]

    stats = json.loads((run / "stats.json").read_text())
    assert rclient.hgetall(prefix + "statistics") == flat(stats) == flat(report)
    assert rclient.get(prefix + "running") == "0"


# -- faults ----------------------------------------------------------------------------------
def test_unreachable_at_start_is_a_sink_error(prefix):
    url = f"redis://127.0.0.1:{free_port()}/0"
    t = time.monotonic()
    with pytest.raises(SinkError, match="unreachable"):
        RedisSink(url, run_id="x", prefix=prefix)
    assert time.monotonic() - t < 3


def test_offline_start_runs_and_says_what_it_could_not_write(tmp_path, prefix, caplog, monkeypatch):
    monkeypatch.setattr(resilient, "CLOSE_WAIT_S", 0.3)
    sink = RedisSink(
        f"redis://127.0.0.1:{free_port()}/0", run_id="x", prefix=prefix, allow_offline=True
    )
    report = run_sim(tmp_path / "run", sink)
    assert len(stream_rows(tmp_path / "run", "labels")) == report["traps"]["total"] > 0
    assert len(warnings(caplog, "unreachable (")) == 1
    assert len(warnings(caplog, "not written")) == 1


def test_buffer_bound_reached_warns_once_and_the_run_dir_is_complete(
    tmp_path, prefix, caplog, monkeypatch
):
    monkeypatch.setattr(resilient, "CLOSE_WAIT_S", 0.3)
    sink = RedisSink(
        f"redis://127.0.0.1:{free_port()}/0",
        run_id="x",
        prefix=prefix,
        allow_offline=True,
        buffer_limit=50,
    )
    report = run_sim(tmp_path / "run", sink)
    assert len(warnings(caplog, "buffer full (50 entries)")) == 1
    run = tmp_path / "run"
    assert len(stream_rows(run, "labels")) == report["traps"]["total"] > 0
    assert len(stream_rows(run, "ticks")) == report["ticks"] == 6 * 3600


def test_server_restarted_mid_run_loses_and_duplicates_nothing(tmp_path, private_redis, caplog):
    client = redis.Redis.from_url(private_redis.url, decode_responses=True, socket_timeout=1)
    restarted = threading.Event()

    def restart_after_some_traps() -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if client.llen("sim_trap_history") >= 3:
                    break
            except redis.RedisError:
                pass
            time.sleep(0.01)
        private_redis.kill()
        time.sleep(0.4)
        private_redis.start()
        restarted.set()

    chaos = threading.Thread(target=restart_after_some_traps)
    chaos.start()
    sink = RedisSink(private_redis.url, run_id="restart", paced=True)
    run_sim(tmp_path / "run", sink, sleep=1e-4)
    chaos.join()
    assert restarted.is_set()

    run = tmp_path / "run"
    labels = [label_json(lab) for lab in stream_rows(run, "labels")]
    history = [json.loads(x) for x in client.lrange("sim_trap_history", 0, -1)]
    assert len(labels) > 3
    assert history == labels[::-1]  # every trap once, in order
    acts = [hf_json(a) for a in stream_rows(run, "hf_activations")]
    assert [json.loads(x) for x in client.lrange("sim_hf_activations", 0, -1)] == acts[::-1]
    tick_rows = published(stream_rows(run, "ticks"))
    day = [(r["ts"], r["price"], r["volume"]) for r in tick_rows]
    assert read_day(client, day_key("sim_", day[-1][0])) == day[-HISTORY_CAP:][::-1]
    assert client.get("sim_running") == "0"
    assert len(warnings(caplog, "unreachable (")) == 1
    assert len(warnings(caplog, "reachable again")) == 1
    client.close()


def test_a_batch_whose_reply_was_lost_is_not_applied_again(redis_url, rclient, prefix):
    keys = _Keys(prefix, ("BTC-USD",), "lost-reply")
    backend = _RedisBackend(redis_url, keys, history_cap=10, list_cap=10, day_ttl_s=60, clear=False)
    listener = rclient.pubsub()
    listener.subscribe(keys.events)
    assert listener.get_message(timeout=2)["type"] == "subscribe"
    first = [("trap", '{"id":1}', '{"event":"trap","id":1}')]
    backend.connect()
    backend.write(1, first)
    backend.connect()  # after the reconnect that follows a lost reply
    backend.write(1, first)  # the writer's retry of that batch
    backend.write(2, [("trap", '{"id":2}', '{"event":"trap","id":2}')])
    assert rclient.lrange(keys.traps, 0, -1) == ['{"id":2}', '{"id":1}']
    events = []
    while (msg := listener.get_message(timeout=0.3)) is not None:
        events.append(msg["data"])
    assert events == ['{"event":"trap","id":1}', '{"event":"trap","id":2}']
    listener.close()
    backend.close()


def test_several_symbols_get_their_own_keys_and_subscribers_the_faulty_feed(
        tmp_path, redis_url, rclient, prefix):
    symbols = ("BTC-USD", "ETH-USD", "BTC-USD-PERP")
    sc = Scenario.model_validate({"name": "f", "phases": [
        {"type": "feed_disruption", "at": "8h", "mode": "outage", "duration_seconds": 600,
         "affect_symbols": ["ETH-USD"]}]})
    cfg = RunConfig(duration=9, sleep=0, seed=4, symbols=symbols, scenario=sc)
    sink = RedisSink(redis_url, run_id="multi", prefix=prefix, symbols=symbols)
    Runner(cfg, tmp_path / "run", Console(quiet=True), extra_sinks=(sink,)).run()
    ticks = published(stream_rows(tmp_path / "run", "ticks"))
    feed = stream_rows(tmp_path / "run", "feed")
    for symbol, asset in (("BTC-USD", "btc"), ("ETH-USD", "eth"), ("BTC-USD-PERP", "btc_perp")):
        mine = [r for r in ticks if r["symbol"] == symbol]
        assert float(rclient.get(f"{prefix}last_{asset}_price")) == mine[-1]["price"]
        assert json.loads(rclient.get(f"{prefix}orderbook_{asset}"))["bids"]
    day = day_key(prefix, ticks[-1]["ts"]).replace("price_history:", "price_history_eth:")
    got = [ts for ts, _, _ in read_day(rclient, day)][::-1]
    # Redis holds what subscribers got: ETH's ten-minute outage is missing there, not in ticks.
    sent = [r["ts"] for r in feed if r["symbol"] == "ETH-USD"]
    assert got == sent[-len(got):] and len(got) == HISTORY_CAP
    start = ticks[0]["ts"]
    outage = [t for t in got if 8 * 3600 <= (t - start) // NS < 8 * 3600 + 600]
    assert not outage and len(sent) == 9 * 3600 - 600
    funding = [json.loads(x) for x in rclient.lrange(prefix + "funding_history", 0, -1)]
    assert [f["ts"] for f in funding] == [iso(r["ts"]) for r in
                                          stream_rows(tmp_path / "run", "funding")][::-1]
    assert len(funding) == 1  # 08:00 UTC


def test_subscribers_get_quotes_on_the_grid_and_nothing_while_the_breaker_halts(
        tmp_path, redis_url, rclient, prefix):
    specs = {s: spec.model_dump() for s, spec in load_symbol_settings().items()}
    specs["BTC-USD"]["circuit_breaker_threshold"] = 0.05
    sc = Scenario.model_validate({"name": "drop", "phases": [
        {"type": "price_shock", "at": "1h", "shock_percentage": -10, "duration_seconds": 5,
         "pattern": "gradual_linear", "recovery_time_seconds": 600}]})
    cfg = RunConfig(duration=2, sleep=0, seed=3, frequency=0, scenario=sc,
                    symbol_settings=specs)
    sink = RedisSink(redis_url, run_id="guard", prefix=prefix, history_cap=10_000)
    Runner(cfg, tmp_path / "run", Console(quiet=True), extra_sinks=(sink,)).run()
    alerts = stream_rows(tmp_path / "run", "alerts")
    assert [a["event"] for a in alerts] == ["circuit_breaker_tripped", "circuit_breaker_reset"]
    trip, reset = (a["ts"] for a in alerts)
    ticks = stream_rows(tmp_path / "run", "ticks")
    got = read_day(rclient, day_key(prefix, ticks[0]["ts"]))[::-1]
    # Every tick but the halted five minutes, each price on the cent grid.
    assert [ts for ts, _, _ in got] == [r["ts"] for r in ticks if not trip <= r["ts"] < reset]
    cents = np.array([p for _, p, _ in got]) * 100
    assert np.array_equal(cents, np.round(cents))
    history = [json.loads(x) for x in rclient.lrange(prefix + "alert_history", 0, -1)]
    assert [h["event"] for h in history] == ["circuit_breaker_reset", "circuit_breaker_tripped"]
