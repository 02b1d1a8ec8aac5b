"""Scale-out, the primary's side: every event of a served run to Redis pub/sub, and a snapshot.

``trapsim serve --redis URL`` puts a :class:`Relay` next to the live state
(:class:`~trapsim.service.live.LiveState`): it gets every call the live state gets
(ticks, candles, book, labels, HF mode, detections, funding, alerts, statistics,
the end of the run) and, every 0.25 wall seconds, the run's scenarios. A
background thread writes them (:class:`~trapsim.store.resilient.ResilientWriter`):
the run loop never waits on Redis, and an outage is retried with backoff while
events wait in a bounded buffer (the oldest dropped beyond it, counted in the
log). Replicas (``trapsim serve --follow URL``, :mod:`trapsim.service.replica`)
rebuild the same live state from what it writes and serve the same REST and
WebSocket answers.

Channel ``<prefix>live`` carries one JSON message per write, a batch of events
in the order they happened::

    {"run": run id, "seq": n, "t": market time (int ns) the events are complete up to,
     "events": [[kind, symbol or null, data], …]}

``seq`` counts a run's messages from 1 without gaps: a subscriber that sees one
skipped has missed messages and reads the snapshot again. Times are int ns UTC.
Kinds (the :class:`~trapsim.store.base.Sink` call each one repeats) and ``data``:

=================  ===============================================================
``start``          the run's metadata (as ``live:meta``); the first message of a run
``ticks``          ``{"ts", "price", "bid", "ask", "volume", "regime"}`` columns of one
                   symbol (``regime``: codes into the metadata's ``regime_names``)
``candles``        completed candles, columns of :data:`~trapsim.core.schemas.CANDLES`
``depth``          L2 snapshots of one symbol, columns of :data:`~trapsim.core.schemas.DEPTH`
``labels``         trap and chaos labels at their end (label rows, ``params`` an object)
``hf_on``          ``{"ts", "trap_count", "state"}``: HF mode switched on (``state``: the
                   HF state after it, as ``live:state`` ``hf``)
``hf_activations`` ``{"rows", "state"}``: ended HF activations ``{"start_ts", "end_ts",
                   "trap_count", "types"}``, the HF state after them
``detections``     the live detector's detections (``features`` JSON text)
``funding``        the perpetual's funding events ``{"ts", "symbol", "rate", "mark_price"}``
``alerts``         publication alerts ``{"ts", "symbol", "event", "price", "value"}``
``statistics``     the statistics report (every 2 wall seconds)
``close``          the final report: the run ended (the primary keeps serving it)
``control``        ``{"scenarios": [...], "traps_under_way": [[symbol, type, n], ...]}``,
                   when it changes (``scenarios`` as ``GET /debug/scenario-timeline``)
``beat``           null, after a wall second without another message
``stopped``        null: the primary stopped serving
=================  ===============================================================

Keys under the prefix: the snapshot a replica starts from. They are updated in
the same MULTI/EXEC that publishes each message, and ``live:seq`` says which
message they include, so a replica that subscribes first and then reads them
misses nothing and applies nothing twice:

=========================================  ======  ========================================
``live:meta``                              string  JSON: ``run_id``, ``seed``, ``symbols``,
                                                   ``specs``, ``regime_names``, ``http``
                                                   (where the primary listens), ``started``
``live:seq``                               string  the last message's ``seq``
``live:state``                             hash    ``t``, ``report`` and ``hf`` (JSON, as in
                                                   ``GET /api/metrics``), ``control`` (JSON),
                                                   ``ended`` (``1`` once the run ended),
                                                   ``stopped`` (``1`` once the primary stopped)
``live:counts``                            hash    ticks published, by symbol
``live:ticks:<symbol>``                    list    the newest ``history_ticks`` ticks,
                                                   oldest first, 41-byte records (:data:`RECORD`)
``live:candles:<symbol>:<interval>``       list    the newest 5 000 candles, JSON rows
``live:labels``, ``live:detections``,      list    the newest 5 000 of each, JSON rows
``live:alerts``
``live:books``                             hash    symbol → its newest ``depth`` data (JSON)
=========================================  ======  ========================================

Memory: ≈ 45 B per kept tick in Redis (two market days of 1-second ticks: 7.8 MB
per symbol), under 2 MB for the rest with full lists. A new run under the same
prefix deletes the previous run's ``live:*`` keys first (one primary per prefix).
A Redis restarted without persistence has lost the keys: the relay writes the
metadata again, and replicas rebuild from what follows.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from trapsim.core.errors import ConfigError
from trapsim.core.schemas import TickBatch
from trapsim.service.live import HISTORY_TICKS, KEEP_ROWS
from trapsim.store.redis import CONNECT_TIMEOUT_S, SOCKET_TIMEOUT_S, resp, transaction
from trapsim.store.resilient import ResilientWriter

if TYPE_CHECKING:
    from trapsim.service.live import LiveState
    from trapsim.service.runner import Runner

TICK_FIELDS = ("ts", "price", "bid", "ask", "volume", "regime")
RECORD = np.dtype([("ts", "<i8"), ("price", "<f8"), ("bid", "<f8"), ("ask", "<f8"),
                   ("volume", "<f8"), ("regime", "u1")])
"""One tick in ``live:ticks:<symbol>``: little-endian int64 ns, four float64, a uint8 regime."""
_FRAMED = np.dtype([("head", "S5"), ("record", RECORD), ("tail", "S2")])  # a RESP bulk string
CONTROL_S = 0.25
"""Wall seconds between looks at the run's scenarios."""
BEAT_S = 1.0
"""Wall seconds without a message after which a ``beat`` is sent."""
BUFFER_LIMIT = 200_000
"""Entries (ticks, other events) buffered while Redis is unreachable."""
BATCH_ENTRIES = 20_000
"""Entries per message (≈ 2 MB of ticks)."""
FLAT_LINGER_S = 0.2
"""How long a flat-out run lets events wait to share a message, seconds."""


def dumps(obj: Any) -> bytes:
    """Compact JSON (numpy arrays and scalars as JSON numbers, NaN as null)."""
    return orjson.dumps(obj, option=orjson.OPT_SERIALIZE_NUMPY)


def plain(table: pa.Table) -> pa.Table:
    """``table`` with ``ts`` as int64 ns (JSON has no timestamp type)."""
    i = table.column_names.index("ts")
    return table.set_column(i, "ts", table["ts"].cast(pa.int64()))


def connect(url: str, **options: Any) -> redis.Redis:
    """A client of ``url`` with short timeouts, no retries of its own, and ``options``.

    Raises
    ------
    ConfigError
        If the URL is malformed.
    """
    try:
        return redis.Redis.from_url(url, socket_connect_timeout=CONNECT_TIMEOUT_S,
                                    socket_timeout=SOCKET_TIMEOUT_S, retry=Retry(NoBackoff(), 0),
                                    **options)
    except ValueError as exc:
        raise ConfigError(f"bad Redis URL {url!r}: {exc}") from None


def where(client: redis.Redis) -> str:
    """``host:port/db`` of a client (no secrets), for messages."""
    kw = client.connection_pool.connection_kwargs
    return (kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}") + \
        f"/{kw.get('db', 0)}"


class LiveKeys:
    """The channel and key names of the live relay under ``prefix`` (module docstring)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.channel = f"{prefix}live"
        self.meta = f"{prefix}live:meta"
        self.seq = f"{prefix}live:seq"
        self.state = f"{prefix}live:state"
        self.counts = f"{prefix}live:counts"
        self.books = f"{prefix}live:books"
        self.logs = {kind: f"{prefix}live:{kind}" for kind in ("labels", "detections", "alerts")}

    def ticks(self, symbol: str) -> str:
        return f"{self.prefix}live:ticks:{symbol}"

    def candles(self, symbol: str, interval: str) -> str:
        return f"{self.prefix}live:candles:{symbol}:{interval}"


class _Backend:
    """Writes batches of events as one seq-guarded MULTI/EXEC each: the snapshot keys and
    one PUBLISH (:class:`~trapsim.store.resilient.Backend`)."""

    def __init__(self, client: redis.Redis, keys: LiveKeys, run_id: str,
                 history_ticks: int) -> None:
        self.client = client
        self.name = f"redis {where(client)} (live relay)"
        self.keys = keys
        self.run_id = run_id
        self.history_ticks = history_ticks
        self.applied = 0
        self.meta: bytes | None = None  # the run's live:meta, once written
        self.meta_lost = False

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, redis.ConnectionError | redis.TimeoutError) and not isinstance(
            exc, redis.AuthenticationError)

    def connect(self) -> None:
        meta, seq = self.client.pipeline(transaction=False).get(self.keys.meta).get(
            self.keys.seq).execute()
        ours = meta is not None and orjson.loads(meta)["run_id"] == self.run_id
        self.applied = int(seq) if ours and seq is not None else 0
        # A restarted Redis without persistence lost the keys: replicas need the metadata
        # again (the history kept before is gone; they rebuild from what follows).
        self.meta_lost = meta is None and self.meta is not None

    def write(self, seq: int, items: list[tuple]) -> None:
        if seq <= self.applied:
            return  # applied before the connection dropped; its reply was lost
        k = self.keys
        cmds: list[bytes] = []
        events = []
        t = None
        for kind, symbol, data, at in items:
            t = at if at is not None else t
            events.append([kind, symbol, data])
            cmds += self._snapshot(kind, symbol, data)
        if self.meta_lost:
            cmds.append(resp("SET", k.meta, self.meta))
        if t is not None:
            cmds.append(resp("HSET", k.state, "t", t))
        cmds.append(resp("SET", k.seq, seq))
        cmds.append(resp("PUBLISH", k.channel, dumps(
            {"run": self.run_id, "seq": seq, "t": t, "events": events})))
        transaction(self.client, cmds)
        self.applied = seq
        self.meta_lost = False

    def _snapshot(self, kind: str, symbol: str | None, data: Any) -> list[bytes]:
        """The key updates of one event."""
        k = self.keys
        if kind == "start":
            old = list(self.client.scan_iter(match=_glob(k.prefix) + "live:*", count=1000))
            self.meta = dumps(data)
            return [*([resp("UNLINK", *old)] if old else ()), resp("SET", k.meta, self.meta)]
        if kind == "ticks":
            return [*_push_ticks(k.ticks(symbol), data, self.history_ticks),
                    resp("HINCRBY", k.counts, symbol, len(data["ts"]))]
        if kind == "candles":
            cmds = []
            for (sym, interval), rows in _by(data, ("symbol", "interval")).items():
                key = k.candles(sym, interval)
                cmds += [resp("RPUSH", key, *map(dumps, rows[-KEEP_ROWS:])),
                         resp("LTRIM", key, -KEEP_ROWS, -1)]
            return cmds
        if kind == "depth":
            return [resp("HSET", k.books, sym, dumps({c: [r[c] for r in rows] for c in rows[0]}))
                    for (sym,), rows in _by(data, ("symbol",)).items()]
        if kind in k.logs:
            return [resp("RPUSH", k.logs[kind], *map(dumps, data[-KEEP_ROWS:])),
                    resp("LTRIM", k.logs[kind], -KEEP_ROWS, -1)]
        if kind in ("hf_on", "hf_activations"):
            return [resp("HSET", k.state, "hf", dumps(data["state"]))]
        if kind == "stopped":
            return [resp("HSET", k.state, "stopped", 1)]
        if kind in ("statistics", "close", "control"):
            field = "control" if kind == "control" else "report"
            return [resp("HSET", k.state, field, dumps(data),
                         *(("ended", 1) if kind == "close" else ()))]
        return []

    def close(self) -> None:
        self.client.close()


def _glob(text: str) -> str:
    """``text`` with the glob characters of ``SCAN MATCH`` escaped."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _by(data: dict[str, list], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    """Columns as rows, grouped by the values of ``keys``."""
    rows = [dict(zip(data, values, strict=True)) for values in zip(*data.values(), strict=True)]
    out: dict[tuple, list[dict]] = {}
    for row in rows:
        out.setdefault(tuple(row[k] for k in keys), []).append(row)
    return out


def _push_ticks(key: str, cols: dict[str, np.ndarray], cap: int) -> list[bytes]:
    """``RPUSH key`` of the newest ``cap`` ticks as :data:`RECORD` bulk strings (framed by
    numpy in one piece: a tick a second per symbol must not cost a Python loop), then
    ``LTRIM`` to ``cap``."""
    n = min(len(cols["ts"]), cap)
    framed = np.empty(n, _FRAMED)
    framed["head"] = b"$%d\r\n" % RECORD.itemsize
    framed["tail"] = b"\r\n"
    for f in TICK_FIELDS:
        framed["record"][f] = cols[f][-n:]
    name = key.encode()
    push = b"*%d\r\n$5\r\nRPUSH\r\n$%d\r\n%s\r\n" % (n + 2, len(name), name) + framed.tobytes()
    return [push, resp("LTRIM", key, -cap, -1)]


class Relay:
    """A sink that publishes a served run's events to Redis for replicas (module docstring).

    Put it after the live state in the run's sinks, and :meth:`start` it before the
    run begins; :meth:`stop` it when the server stops (the run's end only publishes
    ``close``: the primary keeps serving, and beating, after it).

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
    prefix : str
        Prefix of the channel and keys (the Redis sink's ``--redis-prefix``).
    run_id : str
        The run's id (in every message).
    paced : bool
        True for a paced run (events written as soon as the writer is free); False
        lets them wait :data:`FLAT_LINGER_S` to share a message.
    history_ticks : int, default :data:`~trapsim.service.live.HISTORY_TICKS`
        Ticks kept per symbol in ``live:ticks:<symbol>``.

    Raises
    ------
    ConfigError
        If the URL is malformed. An unreachable server is not an error: the
        relay buffers until it is back (the Redis sink decides whether a run may
        start without Redis).
    """

    name = "relay"

    def __init__(self, url: str, *, prefix: str, run_id: str, paced: bool,
                 history_ticks: int = HISTORY_TICKS) -> None:
        self.keys = LiveKeys(prefix)
        self.run_id = run_id
        self.history_ticks = history_ticks
        self._writer = ResilientWriter(
            _Backend(connect(url), self.keys, run_id, history_ticks), buffer_limit=BUFFER_LIMIT,
            batch_limit=BATCH_ENTRIES, linger_s=0.0 if paced else FLAT_LINGER_S,
            allow_offline=True)
        self._runner: Runner | None = None
        self._state: LiveState | None = None
        self._last_put = time.monotonic()
        self._halt = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="trapsim relay", daemon=True)

    def start(self, runner: Runner, state: LiveState, http: str) -> None:
        """Publish the run's metadata and start watching its scenarios.

        Parameters
        ----------
        runner : Runner
            The served run (its market time, scenarios and traps under way).
        state : LiveState
            The live state, before this relay in the sinks (its HF state is relayed).
        http : str
            Where the primary serves (for the replicas' answer to a write).
        """
        self._runner, self._state = runner, state
        cfg = runner.cfg
        self._put("start", None, {
            "run_id": self.run_id, "seed": cfg.seed, "symbols": list(cfg.symbols),
            "specs": {s: cfg.specs[s].model_dump(mode="json") for s in cfg.symbols},
            "regime_names": list(runner.sim.regime_names), "history_ticks": self.history_ticks,
            "http": http, "started": datetime.now(UTC).isoformat()})
        self._writer.flush()  # replicas can join before the first tick (not if Redis is down)
        self._watcher.start()

    def stop(self) -> None:
        """Publish ``stopped``, write what is buffered (giving up after a bounded wait
        while Redis is unreachable) and release the connection.

        Raises
        ------
        SinkError
            If a write failed for a reason other than Redis being unreachable.
        """
        self._halt.set()
        if self._watcher.is_alive():
            self._watcher.join()
        self._put("stopped", None, None)
        self._writer.close()

    def _put(self, kind: str, symbol: str | None, data: Any, weight: int = 1,
             keyed: bool = False) -> None:
        # Read before the event is queued: every event it covers is queued already
        # (the runner moves its clock after its sinks). Keyed events replace a waiting
        # one in its place, so they carry no time.
        at = None if keyed or self._runner is None else self._runner.market_ts
        self._writer.put((kind, symbol, data, at), weight, key=kind if keyed else None)
        self._last_put = time.monotonic()

    def _watch(self) -> None:
        """Relay the scenarios when they change, and beat when nothing else was sent."""
        last = None
        while not self._halt.wait(CONTROL_S):
            runner = self._runner
            control = {"scenarios": runner.scenarios(ended=True), "traps_under_way": [
                [*key, n] for key, n in sorted(runner.traps_under_way().items())]}
            if control != last:
                self._put("control", None, control, keyed=True)
                last = control
            elif time.monotonic() - self._last_put > BEAT_S:
                self._put("beat", None, None)

    # -- the sink ------------------------------------------------------------------
    def ticks(self, batch: TickBatch) -> None:
        self._put("ticks", batch.symbol, {f: np.array(getattr(batch, f)) for f in TICK_FIELDS},
                  weight=len(batch))

    def candles(self, table: pa.Table) -> None:
        self._put("candles", None, plain(table).to_pydict(), weight=table.num_rows)

    def depth(self, table: pa.Table) -> None:
        self._put("depth", None, plain(table).to_pydict())

    def labels(self, labels: list[dict]) -> None:
        self._put("labels", None, labels, weight=len(labels))

    def hf_switched_on(self, ts: int, trap_count: int) -> None:
        self._put("hf_on", None, {"ts": ts, "trap_count": trap_count, "state": self._state.hf})

    def hf_activations(self, activations: list[dict]) -> None:
        self._put("hf_activations", None, {"rows": activations, "state": self._state.hf})

    def detections(self, rows: list[dict]) -> None:
        self._put("detections", None, rows, weight=len(rows))

    def funding(self, events: list) -> None:
        self._put("funding", None, [e._asdict() for e in events])

    def alerts(self, alerts: list[dict]) -> None:
        self._put("alerts", None, alerts, weight=len(alerts))

    def statistics(self, report: dict) -> None:
        self._put("statistics", None, report, keyed=True)

    def flush(self) -> None:
        """Nothing to wait for: events go out as soon as the writer is free."""

    def close(self, report: dict) -> None:
        self._put("close", None, report)
