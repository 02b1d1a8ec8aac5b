import json
import logging
import threading
import time

import psycopg
import pytest
import sqlalchemy as sa

from tests.conftest import free_port
from tests.store.conftest import run_sim, stream_rows
from trapsim.core.errors import ConfigError, SinkError
from trapsim.market.ohlcv import INTERVALS
from trapsim.store import resilient
from trapsim.store.sql import SqlSink, _SqlBackend, _tuples, metadata

TABLES = ("runs", "labels", "hf_activations", "detections", "statistics", "candles")
WALL_COLUMNS = {"started_at", "ended_at", "taken_at"}
CONFIG = {"seed": 3, "note": "test"}


def rows(url: str, table: str, run_id: str) -> list[dict]:
    """A table's rows of one run, in primary-key order."""
    engine = sa.create_engine(url)
    try:
        t = metadata.tables[table]
        query = sa.select(t).where(t.c.run_id == run_id).order_by(*t.primary_key.columns)
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]
    finally:
        engine.dispose()


def without_wall_times(table_rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_COLUMNS} for r in table_rows]


def assert_matches_run_dir(url: str, run_id: str, run, report: dict) -> None:
    """The database holds exactly the run directory's labels, activations and candles."""
    labels = stream_rows(run, "labels")
    assert labels
    for lab in labels:
        lab["params"] = json.loads(lab["params"])
    assert rows(url, "labels", run_id) == [{"run_id": run_id, **lab} for lab in labels]
    acts = stream_rows(run, "hf_activations")
    for act in acts:
        act["types"] = json.loads(act["types"])
    assert rows(url, "hf_activations", run_id) == [{"run_id": run_id, **a} for a in acts]
    candles = [c for iv in INTERVALS for c in stream_rows(run, f"candles_{iv}")]
    key = lambda c: (c["symbol"], c["interval"], c["ts"])  # noqa: E731 - the primary key
    assert rows(url, "candles", run_id) == sorted(
        ({"run_id": run_id, **c} for c in candles), key=key)
    assert {c["interval"] for c in candles} == set(INTERVALS)
    detections = stream_rows(run, "detections") if (run / "detections.parquet").exists() else []
    for i, det in enumerate(detections, 1):
        det.update(run_id=run_id, seq=i, features=json.loads(det["features"]))
    assert rows(url, "detections", run_id) == detections
    (run_row,) = rows(url, "runs", run_id)
    assert run_row["config"] == CONFIG
    assert run_row["stopped_by"] == "end"
    assert run_row["started_at"] < run_row["ended_at"] <= time.time_ns()
    snapshots = rows(url, "statistics", run_id)
    assert snapshots[-1]["report"] == json.loads((run / "stats.json").read_text()) == report
    assert snapshots[-1]["market_ts"] == stream_rows(run, "ticks")[-1]["ts"]


def test_sqlite_holds_the_run(tmp_path, sqlite_url):
    sink = SqlSink(sqlite_url, run_id="run-1", config=CONFIG, batch_rows=100)
    report = run_sim(tmp_path / "run", sink)
    assert_matches_run_dir(sqlite_url, "run-1", tmp_path / "run", report)


def test_sqlite_and_postgres_hold_the_same_rows(tmp_path, sqlite_url, pg_url):
    sinks = [SqlSink(url, run_id="same", config=CONFIG) for url in (sqlite_url, pg_url)]
    report = run_sim(tmp_path / "run", *sinks, detect=True)
    assert stream_rows(tmp_path / "run", "detections")
    for url in (sqlite_url, pg_url):
        assert_matches_run_dir(url, "same", tmp_path / "run", report)
    for table in TABLES:
        lite, pg = (without_wall_times(rows(url, table, "same")) for url in (sqlite_url, pg_url))
        assert lite == pg, table
        assert [{k: type(v) for k, v in r.items()} for r in lite] == [
            {k: type(v) for k, v in r.items()} for r in pg
        ], table
    schemas = []
    for url in (sqlite_url, pg_url):
        engine = sa.create_engine(url)
        inspector = sa.inspect(engine)
        schemas.append(
            {
                t: (
                    [(c["name"], c["nullable"]) for c in inspector.get_columns(t)],
                    inspector.get_pk_constraint(t)["constrained_columns"],
                )
                for t in TABLES
            }
        )
        engine.dispose()
    assert schemas[0] == schemas[1]


def test_postgres_connections_dropped_mid_run_lose_and_duplicate_nothing(tmp_path, pg_url, caplog):
    run_id = "dropped"
    sink = SqlSink(pg_url, run_id=run_id, config=CONFIG, batch_rows=50)
    admin = sa.make_url(pg_url)
    stop = threading.Event()
    killed = []

    def terminate_the_sink_connections() -> None:
        with psycopg.connect(
            host=admin.host, port=admin.port or 5432, user=admin.username,
            dbname=admin.database, autocommit=True,
        ) as conn:  # fmt: skip
            while not stop.wait(0.02):
                killed.extend(
                    conn.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE application_name = %s",
                        (f"trapsim {run_id}",),
                    ).fetchall()
                )

    chaos = threading.Thread(target=terminate_the_sink_connections)
    chaos.start()
    try:
        report = run_sim(tmp_path / "run", sink, sleep=1e-4)
    finally:
        stop.set()
        chaos.join()
    assert len(killed) >= 5
    assert_matches_run_dir(pg_url, run_id, tmp_path / "run", report)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_unreachable_database_at_start_is_a_sink_error():
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    t = time.monotonic()
    with pytest.raises(SinkError, match="unreachable"):
        SqlSink(url, run_id="x", config=CONFIG)
    assert time.monotonic() - t < 5


def test_offline_start_buffers_and_the_run_dir_is_complete(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(resilient, "CLOSE_WAIT_S", 0.3)
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/postgres"
    sink = SqlSink(url, run_id="x", config=CONFIG, allow_offline=True, buffer_limit=100)
    report = run_sim(tmp_path / "run", sink)
    assert len(stream_rows(tmp_path / "run", "labels")) == report["traps"]["total"] > 0
    messages = [r.getMessage() for r in caplog.records if r.name == "trapsim.store"]
    assert sum("unreachable (" in m for m in messages) == 1
    assert sum("buffer full (100 entries)" in m for m in messages) == 1
    assert sum("not written" in m for m in messages) == 1


def test_bad_urls_are_config_errors():
    with pytest.raises(ConfigError, match="only sqlite and postgresql"):
        SqlSink("mysql://u@h/db", run_id="x", config=CONFIG)
    with pytest.raises(ConfigError, match="bad database URL"):
        SqlSink("not a url", run_id="x", config=CONFIG)


@pytest.mark.parametrize("backend_url", ["sqlite", "postgresql"])
def test_a_batch_retried_after_its_commit_is_stored_once(backend_url, request):
    url = request.getfixturevalue("sqlite_url" if backend_url == "sqlite" else "pg_url")
    backend = _SqlBackend(url, "retried", batch_rows=2)
    backend.connect()
    lab = {"run_id": "retried", "kind": "trap", "type": "bull_trap", "symbol": "BTC-USD",
           "direction": "up", "start_ts": 1, "peak_ts": 2, "end_ts": 3, "magnitude": 1.0,
           "params": {}}  # fmt: skip
    run = {"run_id": "retried", "started_at": 1, "ended_at": None, "stopped_by": None,
           "config": CONFIG}  # fmt: skip
    batch = [
        ("runs", _tuples(metadata.tables["runs"], [run])),
        ("labels", _tuples(metadata.tables["labels"], [{**lab, "id": i} for i in range(5)])),
        ("end", {"ended_at": 2, "stopped_by": "end"}),
    ]
    backend.write(1, batch)
    backend.write(1, batch)  # the commit went through, its acknowledgement did not
    backend.close()
    assert [r["id"] for r in rows(url, "labels", "retried")] == list(range(5))
    assert [(r["ended_at"], r["stopped_by"]) for r in rows(url, "runs", "retried")] == [(2, "end")]
