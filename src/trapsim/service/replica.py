"""Scale-out, the replica's side: ``trapsim serve --follow URL`` serves a primary's run from Redis.

A :class:`Replica` reads what a primary's :class:`~trapsim.service.relay.Relay`
writes. It subscribes to the channel first, then reads the snapshot keys in one
transaction, builds a fresh :class:`~trapsim.service.live.LiveState` from them, and
applies every later message through the same live-state calls the primary made:
its REST answers and WebSocket frames are the primary's, without simulating.
It takes no writes.

It reads the snapshot again (and serves a fresh state built from it) when a
message is missing (a ``seq`` skipped: it fell behind, or the primary dropped
messages during an outage) or a new run starts under the prefix. While Redis is
unreachable it keeps serving the last state, says ``stale`` in ``/health``, and
reconnects with backoff; if nothing was missed meanwhile it carries on with the
state it has.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable

import numpy as np
import orjson
import pyarrow as pa
import redis

from trapsim.core.errors import ConfigError
from trapsim.core.schemas import TickBatch
from trapsim.market.multi import Funding
from trapsim.market.ohlcv import INTERVALS
from trapsim.market.symbols import SymbolSpec
from trapsim.service.hub import Hub, Outbox
from trapsim.service.live import LiveState
from trapsim.service.relay import RECORD, TICK_FIELDS, LiveKeys, connect, where
from trapsim.store.redis import SOCKET_TIMEOUT_S
from trapsim.store.resilient import first_line

log = logging.getLogger("trapsim.replica")

STALE_S = 5.0
"""Wall seconds without a message from the primary after which the replica is stale
(the primary beats every second)."""
HEALTH_CHECK_S = 5.0
"""Idle wall seconds after which the subscription is pinged (a silently dead link shows)."""
RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 2.0
POLL_S = 0.5


class _Resync(Exception):
    """A message is missing, or a new run started: read the snapshot again."""


class NoPrimary(Exception):
    """No primary's run under the prefix (no ``live:meta``)."""


class Replica:
    """A read-only view of a primary's served run, kept up to date from Redis.

    The app reads it where a primary reads its :class:`~trapsim.service.runner.Runner`:
    :attr:`market_ts`, :meth:`scenarios`, :meth:`traps_under_way`.

    Parameters
    ----------
    url : str
        The Redis the primary publishes to (``trapsim serve --redis URL``).
    prefix : str
        The primary's ``--redis-prefix``.
    on_state : callable
        Called with each new live state to serve (the first, and after every resync),
        from the thread that builds it.
    ws_queue_size, ws_send_timeout : int, float
        The WebSocket hub's limits (:class:`~trapsim.service.hub.Hub`).

    Raises
    ------
    ConfigError
        If the URL is malformed.
    """

    def __init__(self, url: str, prefix: str, on_state: Callable[[LiveState], None], *,
                 ws_queue_size: int, ws_send_timeout: float) -> None:
        # Named, so that CLIENT LIST shows the replicas of a prefix.
        self.client = connect(url, health_check_interval=HEALTH_CHECK_S,
                              client_name="trapsim-replica:" + re.sub(r"\s", "_", prefix))
        self.source = where(self.client)
        self.keys = LiveKeys(prefix)
        self.on_state = on_state
        self.hub = Hub((), ws_queue_size, ws_send_timeout)
        self.outbox = Outbox(self.hub.publish_many)  # a Redis message's events leave together
        self.meta: dict = {}
        self.specs: dict[str, SymbolSpec] = {}
        self.state: LiveState | None = None
        self.seq = 0  # the last message applied
        self.market_ts: int | None = None
        self.control: dict = {"scenarios": [], "traps_under_way": []}
        self.connected = False
        self.stopped = False  # the primary said it stopped serving
        self.last_message: float | None = None  # monotonic wall time
        self._pubsub = None
        self._halt = threading.Event()

    # -- what the app reads (any thread) ------------------------------------------
    def scenarios(self, ended: bool = False) -> list[dict]:
        """The primary's scenarios as last relayed (see ``Runner.scenarios``)."""
        return [s for s in self.control["scenarios"] if ended or s["status"] != "ended"]

    def traps_under_way(self) -> dict[tuple[str, str], int]:
        """The primary's traps under way as last relayed (see ``Runner.traps_under_way``)."""
        return {(s, t): n for s, t, n in self.control["traps_under_way"]}

    @property
    def live(self) -> bool:
        """Whether the primary is heard: connected, a message within :data:`STALE_S`."""
        return (self.connected and not self.stopped and self.last_message is not None
                and time.monotonic() - self.last_message < STALE_S)

    def primary(self) -> dict:
        """The primary as ``/health`` reports it."""
        age = None if self.last_message is None else time.monotonic() - self.last_message
        return {"redis": self.source, "channel": self.keys.channel, "connected": self.connected,
                "run_id": self.meta.get("run_id"), "http": self.meta.get("http"),
                "last_message_age_s": age, "live": self.live, "stopped": self.stopped}

    def refusal(self) -> str:
        """Why a write is refused here."""
        return (f"this server is a read-only replica of run {self.meta.get('run_id')}: send "
                f"writes to the primary (it serves at {self.meta.get('http')})")

    # -- following -------------------------------------------------------------------
    def sync(self) -> None:
        """Subscribe, read the snapshot and serve a state built from it.

        Raises
        ------
        ConfigError
            If Redis is unreachable or refuses the client, or no primary publishes
            under the prefix.
        """
        try:
            self._sync()
        except redis.RedisError as exc:
            raise ConfigError(f"cannot follow {self.source}: {first_line(exc)}") from None
        except NoPrimary:
            raise ConfigError(f"no primary publishes under prefix {self.keys.prefix!r} at "
                              f"{self.source} (start one with `trapsim serve --redis URL "
                              "--redis-prefix PREFIX`)") from None

    def follow(self) -> None:
        """Apply the primary's messages until :meth:`stop`, reconnecting and reading the
        snapshot again whenever needed."""
        delay = RECONNECT_FIRST_S
        while not self._halt.is_set():
            try:
                if self._pubsub is None:
                    self._sync()
                    if delay > RECONNECT_FIRST_S:
                        log.warning("%s: following again", self.source)
                    delay = RECONNECT_FIRST_S
                msg = self._pubsub.get_message(timeout=POLL_S)
                if msg is not None and msg["type"] == "message":
                    self._take(msg["data"])
            except _Resync:
                self._unsubscribe()
            except (redis.RedisError, NoPrimary) as exc:
                if self.connected:
                    log.warning("%s: %s; serving the last state, reconnecting", self.source,
                                "no primary under the prefix" if isinstance(exc, NoPrimary)
                                else first_line(exc))
                self.connected = False
                self._unsubscribe()
                self._halt.wait(delay)
                delay = min(2 * delay, RECONNECT_MAX_S)
        self._unsubscribe()
        self.client.close()

    def stop(self, reason: str = "stopped") -> None:
        """Stop following (from any thread; ``reason`` is not used: the primary goes on);
        :meth:`follow` returns within a poll."""
        self._halt.set()

    def _unsubscribe(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None

    def _sync(self) -> None:
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(self.keys.channel)
            # Only once the subscription is confirmed is no later message lost.
            deadline = time.monotonic() + SOCKET_TIMEOUT_S
            while (msg := pubsub.get_message(timeout=POLL_S)) is None or \
                    msg["type"] != "subscribe":
                if time.monotonic() > deadline:
                    raise redis.TimeoutError("the subscription was not confirmed")
            meta, seq, snapshot = self._read()
            if meta["run_id"] != self.meta.get("run_id") or seq != self.seq:
                self._restore(meta, seq, snapshot)
        except BaseException:
            pubsub.close()
            raise
        self._pubsub = pubsub
        self.connected = True
        self.last_message = time.monotonic()

    def _read(self) -> tuple[dict, int, dict]:
        """The snapshot keys, read in one transaction: ``(meta, seq, snapshot)``."""
        k = self.keys
        while True:
            raw = self.client.get(k.meta)
            if raw is None:
                raise NoPrimary
            symbols = orjson.loads(raw)["symbols"]
            lists = {("logs", kind): key for kind, key in k.logs.items()}
            lists |= {("ticks", s): k.ticks(s) for s in symbols}
            lists |= {("candles", s, i): k.candles(s, i) for s in symbols for i in INTERVALS}
            pipe = self.client.pipeline(transaction=True)
            pipe.get(k.meta).get(k.seq).hgetall(k.state).hgetall(k.counts).hgetall(k.books)
            for key in lists.values():
                pipe.lrange(key, 0, -1)
            again, seq, state, counts, books, *values = pipe.execute()
            if again == raw:  # else a new run started in between
                break
        snapshot = {"state": state, "counts": counts, "books": books,
                    **dict(zip(lists, values, strict=True))}
        return orjson.loads(raw), int(seq or 0), snapshot

    def _restore(self, meta: dict, seq: int, snap: dict) -> None:
        """Build the live state of the snapshot (publishing nothing), then serve it."""
        symbols = tuple(meta["symbols"])
        names = tuple(meta["regime_names"])
        state = LiveState(symbols, history_ticks=meta["history_ticks"])
        for s in symbols:
            rec = np.frombuffer(b"".join(snap["ticks", s]), RECORD)
            if len(rec):
                state.ticks(TickBatch(s, *(rec[f] for f in TICK_FIELDS[:-1]),
                                      rec["regime"].astype(np.int8), names))
            for interval in INTERVALS:
                rows = [orjson.loads(r) for r in snap["candles", s, interval]]
                if rows:
                    state.candles(pa.Table.from_pylist(rows))
        state.counts.update({s.decode(): int(n) for s, n in snap["counts"].items()})
        state.labels([orjson.loads(r) for r in snap["logs", "labels"]])
        state.detections([orjson.loads(r) for r in snap["logs", "detections"]])
        state.alerts([orjson.loads(r) for r in snap["logs", "alerts"]])
        for book in snap["books"].values():
            state.depth(pa.table(orjson.loads(book)))
        kept = {f.decode(): v for f, v in snap["state"].items()}
        if "report" in kept:
            state.statistics(orjson.loads(kept["report"]))
        if "hf" in kept:
            state.hf = orjson.loads(kept["hf"])
        if "ended" in kept:
            state.close(state.report)
        state.publish = self.outbox.publish
        state.listening = lambda: bool(self.hub.clients)
        self.control = orjson.loads(kept["control"]) if "control" in kept else {
            "scenarios": [], "traps_under_way": []}
        self.market_ts = int(kept["t"]) if "t" in kept else None
        self.stopped = "stopped" in kept
        if self.state is not None:
            log.warning("%s: read the snapshot again (run %s, message %d)", self.source,
                        meta["run_id"], seq)
        self.meta, self.seq, self.state = meta, seq, state
        self.specs = {s: SymbolSpec(**meta["specs"][s]) for s in symbols}
        self.hub.symbols = symbols
        self.on_state(state)

    def _take(self, payload: bytes) -> None:
        """Apply one message of the channel."""
        msg = orjson.loads(payload)
        if msg["run"] != self.meta["run_id"] or msg["seq"] > self.seq + 1:
            raise _Resync
        self.last_message = time.monotonic()
        if msg["seq"] <= self.seq:
            return  # in the snapshot already
        try:
            for kind, symbol, data in msg["events"]:
                self._apply(kind, symbol, data)
        finally:
            self.outbox.send()  # what was applied is published, even if a later event fails
        self.seq = msg["seq"]
        if msg["t"] is not None:
            self.market_ts = msg["t"]

    def _apply(self, kind: str, symbol: str | None, data) -> None:
        """One event, through the live-state call the primary made."""
        state = self.state
        if kind == "ticks":
            state.ticks(TickBatch(symbol, *(np.asarray(data[f], np.int64 if f == "ts" else
                                                       np.float64) for f in TICK_FIELDS[:-1]),
                                  np.asarray(data["regime"], np.int8),
                                  tuple(self.meta["regime_names"])))
        elif kind in ("candles", "depth"):
            getattr(state, kind)(pa.table(data))
        elif kind in ("labels", "detections", "alerts", "statistics", "close"):
            getattr(state, kind)(data)
        elif kind == "hf_on":
            state.hf_switched_on(data["ts"], data["trap_count"])
        elif kind == "hf_activations":
            state.hf_activations(data["rows"])
        elif kind == "funding":
            state.funding([Funding(**e) for e in data])
        elif kind == "control":
            self.control = data
        elif kind == "stopped":
            self.stopped = True
