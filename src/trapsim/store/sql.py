"""The SQL sink: runs, trap labels, HF activations, detections, statistics snapshots, candles
(1m to 1d), funding events and publication alerts.

One SQLAlchemy Core schema, identical on SQLite and PostgreSQL (psycopg 3, URL
``postgresql+psycopg://user@host/db``), created on first use::

    runs            run_id PK, started_at, ended_at, stopped_by, config (JSON)
    labels          run_id, id (PK together), kind, type, symbol, direction,
                    start_ts, peak_ts, end_ts, magnitude, params (JSON)
    hf_activations  run_id, start_ts (PK together), end_ts, trap_count, types (JSON list)
    detections      run_id, seq (PK together), detected_at, trap_type, direction, start,
                    confidence, features (JSON)       (runs with --detect; seq from 1)
    statistics      run_id, seq (PK together), taken_at, market_ts, report (JSON)
    candles         run_id, symbol, interval, ts (PK together), open, high, low, close, volume
    funding         run_id, symbol, ts (PK together), rate, mark_price   (runs with the perp)
    alerts          run_id, symbol, ts, event (PK together), price, value
                    (trapsim.feeds.guard: price band, circuit breaker, depeg alert)

Every time is an int64 (BIGINT) of nanoseconds since the Unix epoch, UTC — the
project's internal time (DESIGN.md §3): exact, and read back identically from
both backends (a timezone-aware DATETIME would lose nanoseconds on PostgreSQL
and its zone on SQLite). ``started_at``, ``ended_at`` and ``taken_at`` are wall
times; the others market times; ``candles.ts`` is the candle's open time.
Prices and magnitudes are DOUBLE PRECISION. Every other table references
``runs.run_id``.

A statistics snapshot is stored at most every :data:`SNAPSHOT_EVERY_S` wall
seconds (the run loop offers one every few seconds, which would make a
week-long paced run store ~300 000 reports), plus the final report at close;
``market_ts`` is the newest tick's time when it was taken.

Writes go through :class:`~trapsim.store.resilient.ResilientWriter`: a
background thread writes batches of at most ``batch_rows`` rows (rows wait up
to :data:`LINGER_S` to share one), one transaction each, with bulk
(executemany) inserts. Rows are keyed by ``(run_id, …)`` and inserted with
``ON CONFLICT DO NOTHING``, and the end-of-run update is idempotent, so a
batch retried after a dropped connection — committed or not — is stored
exactly once, and batches are stored in order. While the database is
unreachable rows are buffered (``buffer_limit``) and written when it returns.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

from trapsim.core.errors import ConfigError
from trapsim.core.schemas import TickBatch
from trapsim.store.resilient import ResilientWriter

BATCH_ROWS = 10_000
"""Default rows per transaction and multi-row insert."""
BUFFER_ROWS = 200_000
"""Default rows buffered while the database is unreachable (≈ 140 days of candles)."""
LINGER_S = 0.5
"""How long rows may wait to share a transaction, seconds (``flush`` and ``close`` do not wait)."""
SNAPSHOT_EVERY_S = 60.0
"""Least wall seconds between stored statistics snapshots (the final one is always stored)."""
CONNECT_TIMEOUT_S = 2

metadata = sa.MetaData()
"""The sink's tables (create them elsewhere with ``metadata.create_all(engine)``)."""


def _run_fk() -> sa.Column:
    return sa.Column("run_id", sa.String, sa.ForeignKey("runs.run_id"), primary_key=True)


runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String, primary_key=True),
    sa.Column("started_at", sa.BigInteger, nullable=False),
    sa.Column("ended_at", sa.BigInteger),
    sa.Column("stopped_by", sa.String),
    sa.Column("config", sa.JSON, nullable=False),
)
labels = sa.Table(
    "labels",
    metadata,
    _run_fk(),
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("type", sa.String, nullable=False),
    sa.Column("symbol", sa.String, nullable=False),
    sa.Column("direction", sa.String, nullable=False),
    sa.Column("start_ts", sa.BigInteger, nullable=False),
    sa.Column("peak_ts", sa.BigInteger, nullable=False),
    sa.Column("end_ts", sa.BigInteger, nullable=False),
    sa.Column("magnitude", sa.Double, nullable=False),
    sa.Column("params", sa.JSON, nullable=False),
)
hf_activations = sa.Table(
    "hf_activations",
    metadata,
    _run_fk(),
    sa.Column("start_ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("end_ts", sa.BigInteger, nullable=False),
    sa.Column("trap_count", sa.Integer, nullable=False),
    sa.Column("types", sa.JSON, nullable=False),
)
detections = sa.Table(
    "detections",
    metadata,
    _run_fk(),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("detected_at", sa.BigInteger, nullable=False),
    sa.Column("trap_type", sa.String, nullable=False),
    sa.Column("direction", sa.String, nullable=False),
    sa.Column("start", sa.BigInteger, nullable=False),
    sa.Column("confidence", sa.Double, nullable=False),
    sa.Column("features", sa.JSON, nullable=False),
)
statistics = sa.Table(
    "statistics",
    metadata,
    _run_fk(),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("taken_at", sa.BigInteger, nullable=False),
    sa.Column("market_ts", sa.BigInteger),
    sa.Column("report", sa.JSON, nullable=False),
)
candles = sa.Table(
    "candles",
    metadata,
    _run_fk(),
    sa.Column("symbol", sa.String, primary_key=True),
    sa.Column("interval", sa.String, primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    *(sa.Column(name, sa.Double, nullable=False) for name in ("open", "high", "low", "close")),
    sa.Column("volume", sa.Double, nullable=False),
)

funding = sa.Table(
    "funding",
    metadata,
    _run_fk(),
    sa.Column("symbol", sa.String, primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("rate", sa.Double, nullable=False),
    sa.Column("mark_price", sa.Double, nullable=False),
)

alerts = sa.Table(
    "alerts",
    metadata,
    _run_fk(),
    sa.Column("symbol", sa.String, primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event", sa.String, primary_key=True),
    sa.Column("price", sa.Double, nullable=False),
    sa.Column("value", sa.Double, nullable=False),
)

# Insert order within a transaction: the run's row before the rows referencing it.
_TABLES = (runs, candles, labels, hf_activations, detections, statistics, funding, alerts)
# The candles table's columns after run_id, named as in the CANDLES schema.
_CANDLE_COLUMNS = tuple(c.name for c in candles.columns)[1:]
_DIALECT_INSERT = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}


def _tuples(table: sa.Table, rows: list[dict]) -> list[tuple]:
    """Rows as tuples in ``table``'s column order, JSON columns as JSON text."""
    names = [(c.name, isinstance(c.type, sa.JSON)) for c in table.columns]
    return [tuple(json.dumps(r[n]) if is_json else r[n] for n, is_json in names) for r in rows]


class _SqlBackend:
    """Writes batches of ``(table name, rows)`` items as one idempotent transaction."""

    def __init__(self, url: str, run_id: str, batch_rows: int) -> None:
        try:
            parsed = sa.make_url(url)
        except sa_exc.ArgumentError as exc:
            raise ConfigError(f"bad database URL {url!r}: {exc}") from exc
        backend = parsed.get_backend_name()
        if backend not in _DIALECT_INSERT:
            raise ConfigError(f"database URL {url!r}: only sqlite and postgresql are supported")
        # Positional parameters on both drivers: rows travel as tuples (see `write`).
        options: dict[str, Any] = {"pool_pre_ping": True}
        if backend == "sqlite":
            # The engine is checked in the caller's thread and used by the writer's.
            options["connect_args"] = {"check_same_thread": False}
            if parsed.database in (None, "", ":memory:"):
                options["poolclass"] = StaticPool  # one connection, or every one is a new database
        else:
            options["paramstyle"] = "format"
            options["connect_args"] = {
                "connect_timeout": CONNECT_TIMEOUT_S,
                "application_name": f"trapsim {run_id}"[:63],
            }
        try:
            self.engine = sa.create_engine(parsed, **options)
        except (sa_exc.ArgumentError, ImportError) as exc:
            raise ConfigError(f"cannot use database URL {url!r}: {exc}") from exc
        self.name = f"database {parsed.render_as_string(hide_password=True)}"
        self.run_id = run_id
        self.batch_rows = batch_rows
        insert = _DIALECT_INSERT[backend]
        self.inserts = {
            t.name: str(insert(t).on_conflict_do_nothing().compile(dialect=self.engine.dialect))
            for t in _TABLES
        }
        self.schema_ready = False

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError) or (
            isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated
        )

    def connect(self) -> None:
        with self.engine.connect() as conn:
            if not self.schema_ready:
                metadata.create_all(conn)
                conn.commit()
                self.schema_ready = True

    def write(self, seq: int, items: list[tuple[str, Any]]) -> None:
        # Rows are tuples in column order, executed by the driver's executemany:
        # SQLAlchemy's per-row parameter processing cost more than the inserts.
        rows: dict[str, list[tuple]] = {t.name: [] for t in _TABLES}
        ends = []
        for table, payload in items:
            if table == "end":
                ends.append(payload)
            else:
                rows[table].extend(payload)
        with self.engine.begin() as conn:
            for table, batch in rows.items():
                for i in range(0, len(batch), self.batch_rows):
                    conn.exec_driver_sql(self.inserts[table], batch[i : i + self.batch_rows])
            for values in ends:
                conn.execute(runs.update().where(runs.c.run_id == self.run_id).values(**values))

    def close(self) -> None:
        self.engine.dispose()


class SqlSink:
    """Runs, labels, HF activations, detections, statistics and candles in SQL, as a
    Sink.

    See the module docstring for the schema and the write guarantees.

    Parameters
    ----------
    url : str
        SQLAlchemy URL: ``sqlite:///path/to/file.db`` or
        ``postgresql+psycopg://user[:password]@host[:port]/db``.
    run_id : str
        Key of the run's row; every other row carries it.
    config : dict
        The run's configuration (JSON-ready), stored with the run's row.
    allow_offline : bool
        Start even if the database is unreachable, buffering until it is back.
    batch_rows : int
        Rows per transaction and multi-row insert.
    buffer_limit : int
        Rows buffered while the database is unreachable; beyond it the oldest
        are dropped with one warning.

    Raises
    ------
    SinkError
        If the database is unreachable (or the schema cannot be created) and
        not ``allow_offline``.
    ConfigError
        If the URL is malformed or not SQLite/PostgreSQL, or a limit is below 1.
    """

    name = "sql"

    def __init__(
        self,
        url: str,
        *,
        run_id: str,
        config: dict,
        allow_offline: bool = False,
        batch_rows: int = BATCH_ROWS,
        buffer_limit: int = BUFFER_ROWS,
    ) -> None:
        self.run_id = run_id
        self._market_ts: int | None = None
        self._detections = 0
        self._snapshots = 0
        self._last_snapshot = -float("inf")
        self._writer = ResilientWriter(
            _SqlBackend(url, run_id, batch_rows),
            buffer_limit=buffer_limit,
            batch_limit=batch_rows,
            linger_s=LINGER_S,
            allow_offline=allow_offline,
        )
        run = {
            "run_id": run_id,
            "started_at": time.time_ns(),
            "ended_at": None,
            "stopped_by": None,
            "config": config,
        }
        self._writer.put(("runs", _tuples(runs, [run])))

    def ticks(self, batch: TickBatch) -> None:
        """Remember the newest tick time (for the statistics snapshots); ticks are not stored."""
        if len(batch):
            self._market_ts = int(batch.ts[-1])

    def candles(self, table: pa.Table) -> None:
        """Queue candles of one interval (:data:`~trapsim.core.schemas.CANDLES` rows)."""
        if not table.num_rows:
            return
        columns = [
            (table[name].cast(pa.int64()) if name == "ts" else table[name]).to_pylist()
            for name in _CANDLE_COLUMNS
        ]
        rows = [(self.run_id, *values) for values in zip(*columns, strict=True)]
        self._writer.put(("candles", rows), weight=len(rows))

    def labels(self, labels: list[dict]) -> None:
        """Queue trap labels."""
        rows = _tuples(metadata.tables["labels"], [{"run_id": self.run_id, **x} for x in labels])
        self._writer.put(("labels", rows), weight=len(rows))

    def hf_activations(self, activations: list[dict]) -> None:
        """Queue ended HF activations."""
        rows = _tuples(hf_activations, [{"run_id": self.run_id, **a} for a in activations])
        self._writer.put(("hf_activations", rows), weight=len(rows))

    def hf_switched_on(self, ts: int, trap_count: int) -> None:
        """Nothing to write: the activation's row is written when it ends."""

    def depth(self, table: pa.Table) -> None:
        """Not stored: L2 snapshots are bulk data for the run directory (``depth.parquet``)."""

    def detections(self, rows: list[dict]) -> None:
        """Queue the live detector's detections, numbered in order from 1."""
        seq = range(self._detections + 1, self._detections + 1 + len(rows))
        self._detections += len(rows)
        rows = _tuples(detections, [
            {"run_id": self.run_id, "seq": i, **d, "features": json.loads(d["features"])}
            for i, d in zip(seq, rows, strict=True)
        ])
        self._writer.put(("detections", rows), weight=len(rows))

    def funding(self, events: list) -> None:
        """Queue the perpetual's funding events."""
        rows = [(self.run_id, e.symbol, e.ts, e.rate, e.mark_price) for e in events]
        self._writer.put(("funding", rows), weight=len(rows))

    def alerts(self, alerts: list[dict]) -> None:
        """Queue publication alerts."""
        rows = [(self.run_id, a["symbol"], a["ts"], a["event"], a["price"], a["value"])
                for a in alerts]
        self._writer.put(("alerts", rows), weight=len(rows))

    def statistics(self, report: dict) -> None:
        """Queue a snapshot, unless one was queued less than :data:`SNAPSHOT_EVERY_S` ago."""
        if time.monotonic() - self._last_snapshot >= SNAPSHOT_EVERY_S:
            self._snapshot(report)

    def _snapshot(self, report: dict) -> None:
        self._last_snapshot = time.monotonic()
        self._snapshots += 1
        row = {
            "run_id": self.run_id,
            "seq": self._snapshots,
            "taken_at": time.time_ns(),
            "market_ts": self._market_ts,
            "report": report,
        }
        self._writer.put(("statistics", _tuples(statistics, [row])))

    def flush(self) -> None:
        """Write what is queued; returns at once while the database is unreachable."""
        self._writer.flush()

    def close(self, report: dict) -> None:
        """Store the final snapshot and the run's end, write everything buffered, release.

        Raises
        ------
        SinkError
            If a write failed for a reason other than the database being unreachable.
        """
        self._snapshot(report)
        end = {"ended_at": time.time_ns(), "stopped_by": report.get("stopped_by")}
        self._writer.put(("end", end))
        self._writer.close()
