"""Real Redis and PostgreSQL for the sink tests.

The shared servers are Redis at ``TRAPSIM_TEST_REDIS`` (default
redis://127.0.0.1:6379/0) and PostgreSQL at ``TRAPSIM_TEST_PG`` (default
postgresql+psycopg://postgres@127.0.0.1:5432/postgres). A test that needs a
missing server is skipped, or fails when ``CI=true``. Tests write to Redis only
under a prefix of their own, deleted afterwards, and to a PostgreSQL database
created for the session and dropped after it. Restart tests run a private
``redis-server`` with append-only persistence.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import psycopg
import pyarrow as pa
import pytest
import redis
import sqlalchemy as sa
from rich.console import Console

from tests.conftest import missing
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.symbols import load_symbol_settings
from trapsim.service.config import RunConfig
from trapsim.service.runner import Runner
from trapsim.store.rundir import read_stream

PG_URL = os.environ.get("TRAPSIM_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def run_sim(out: Path, *sinks, sleep: float = 0.0, detect: bool = False) -> dict:
    """The 6-hour seed-3 run of the issue, into ``out`` and ``sinks``; returns the report."""
    cfg = RunConfig(duration=6, sleep=sleep, seed=3, frequency=1.0, market=DEFAULT_PARAMS,
                    detect=detect)
    return Runner(cfg, out, Console(quiet=True), extra_sinks=sinks).run()


def published(rows: list[dict]) -> list[dict]:
    """Tick rows with the price subscribers get: on the symbol's grid (its ``decimals``)."""
    specs = load_symbol_settings()
    return [{**r, "price": float(specs[r["symbol"]].on_grid(*[np.array([r["price"]])] * 3)[0][0])}
            for r in rows]


def stream_rows(run_dir: Path, stream: str) -> list[dict]:
    """A run directory stream as dicts, times as int ns (JSON columns left as text)."""
    table = read_stream(run_dir, stream)
    cols = [c.cast(pa.int64()) if pa.types.is_timestamp(c.type) else c for c in table.columns]
    return pa.table(cols, names=table.column_names).to_pylist()


# -- Redis ---------------------------------------------------------------------------
@pytest.fixture
def rclient(redis_url):
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


@pytest.fixture
def prefix(rclient) -> str:
    """A key prefix of this test only; its keys are deleted afterwards (never FLUSHDB)."""
    p = f"trapsim_test_{uuid.uuid4().hex[:12]}_"
    yield p
    keys = list(rclient.scan_iter(match=p + "*", count=1000))
    if keys:
        rclient.unlink(*keys)


# -- SQL -------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def pg_url() -> str:
    """A fresh PostgreSQL database for the session, dropped afterwards."""
    admin = sa.make_url(PG_URL)
    dsn = dict(host=admin.host, port=admin.port or 5432, user=admin.username, dbname=admin.database)
    if admin.password:
        dsn["password"] = admin.password
    name = f"trapsim_test_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(**dsn, autocommit=True, connect_timeout=2) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        missing(f"PostgreSQL at {admin.render_as_string()} unusable: {exc}")
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(**dsn, autocommit=True, connect_timeout=2) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'sim.db'}"
