"""The Redis sink: live keys, capped histories and pub/sub events under one key prefix.

The key table of seed 000 (the Market Maker Trap Simulation Service), with prefix
``sim_`` and the asset ``btc`` taken from the symbol ``BTC-USD``:

================================  ======  ==================================================
key                               type    content
================================  ======  ==================================================
``sim_last_btc_price``            string  price of the newest tick (shortest exact float text)
``sim_prev_btc_price``            string  price of the tick before it
``sim_price_change_pct``          string  ``100 × (last − prev) / prev``
``sim_market_regime``             string  regime name of the newest tick
``sim_running``                   string  ``1`` from construction, ``0`` once closed (any stop)
``sim_trap_history``              list    one JSON label per trap, newest first
``sim_chaos_history``             list    one JSON label per chaos phase, newest first
``sim_hf_activations``            list    one JSON object per ended HF activation, newest first
``sim_detections``                list    one JSON detection of the live detector, newest first
                                          (runs with ``--detect``)
``sim_orderbook_btc``             string  the newest L2 depth snapshot: ``{"ts", "bids":
                                          [[price, qty], …], "asks": […]}``, best first
``sim_statistics``                hash    the statistics report, nested keys joined by dots
                                          (``traps.per_type.stop_hunt`` → ``4``), replaced
                                          at every snapshot; ``null`` is the empty string
``sim_price_history:YYYY-MM-DD``  list    that UTC day's ticks, newest first
``sim_funding_history``           list    one JSON funding event of the perpetual, newest first
``sim_alert_history``             list    one JSON publication alert, newest first
``sim_sink_seq:<run_id>``         string  bookkeeping: the last batch of run ``<run_id>``
                                          written (see *Writes*)
================================  ======  ==================================================

A run of several symbols (``--symbols``) gives each its own ``last_<asset>_price``,
``prev_<asset>_price`` and ``orderbook_<asset>`` (:func:`asset_tag`: ``eth``, ``usdt``,
``btc_eth``, ``btc_perp``) and day lists ``price_history_<asset>:YYYY-MM-DD``; the
headline symbol (the first) keeps the names above, and sets ``price_change_pct`` and
``market_regime``.

JSON shapes (compact, times ISO 8601 UTC with ``Z``)::

    sim_trap_history       {"id", "kind", "type", "symbol", "direction", "start_ts",
                            "peak_ts", "end_ts", "magnitude", "params": {…}}   (the label row)
    sim_hf_activations     {"start_ts", "end_ts", "trap_count", "types": [trap type, …]}
    sim_detections         {"detected_at", "trap_type", "direction", "start", "confidence",
                            "features": {…}}                   (the DETECTIONS row)
    sim_price_history:…    {"ts", "price", "volume"}
    sim_funding_history    {"ts", "symbol", "rate", "mark_price"}
    sim_alert_history      {"ts", "symbol", "event", "price", "value"}   (trapsim.feeds.guard)

Channel ``sim_events`` carries, the moment each happens (at the tick it
happens in a paced run), one JSON message per event::

    {"event": "trap", …the label row…}               a trap completed (its end_ts)
    {"event": "chaos", …the label…}                  a chaos phase ended
    {"event": "hf_on", "ts", "trap_count"}           HF mode switched on
    {"event": "hf_activation", …the activation…}     an HF activation ended
    {"event": "detection", …the detection…}          the live detector flagged a trap
    {"event": "funding", …the funding event…}        the perpetual paid funding
    {"event": "alert", …the alert…}                  a price left its band, a circuit
                                                     breaker tripped or reset, a depeg alert

Caps and expiry
    ``sim_trap_history``, ``sim_hf_activations``, ``sim_detections``,
    ``sim_funding_history`` and ``sim_alert_history`` keep their newest ``list_cap``
    entries; each day list keeps its day's newest ``history_cap`` ticks and expires
    ``day_ttl_s`` wall seconds after its last write (as does the bookkeeping key).
    Every list is trimmed in the same transaction that pushes to it.

Memory bound
    Redis's own accounting (``MEMORY USAGE``) of the entries, list encoding
    and allocator rounding included: a tick ≤ 100 B (≈ 85 B of JSON; 96 B on
    average measured), a trap ≤ 600 B (460 B average), an HF activation
    ≤ 500 B (a 25-trap one; 175 B average), a detection ≤ 800 B (≈ 600 B of
    JSON), the statistics hash ≈ 4 KB (5 KB with the live score), the other
    keys < 1 KB. A run holds at most::

        D × history_cap × 100 B  +  list_cap × 1.1 KB  +  5 KB
        (+ list_cap × 0.8 KB + 1 KB with --detect)

    where ``D`` is the number of day lists alive: the run's market days, and
    at most the market days written in the last ``day_ttl_s`` wall seconds
    plus one. With the defaults (history_cap 10 000, list_cap 5 000, two-day
    TTL) a 30-day flat-out run (``D`` = 30, nothing expired yet) holds at most
    30 × 1.0 MB + 5.5 MB ≈ **36 MB** (27–30 MB measured by
    ``benchmarks/bench_sinks.py``). A paced run stays bounded however long
    it lasts: at ``--sleep 1`` (real time) ``D`` ≤ 3, ≈ 9 MB; at the default
    ``--sleep 0.1`` (ten market days a wall day) ``D`` ≤ 21, ≈ 27 MB.

Writes
    Every write goes through :class:`~trapsim.store.resilient.ResilientWriter`:
    a background thread writes batches, each as one MULTI/EXEC transaction that
    also sets ``sim_sink_seq:<run_id>`` to the batch's number. After a
    reconnect the writer reads that number back and skips a batch the server
    already applied, so a retried batch never duplicates a history entry or a
    published event, and batches are applied in order. With Redis persistence
    (AOF) a restarted server keeps everything written; without it a restart
    loses the keys written before it (Redis's own guarantee), never those
    buffered during the outage. Subscribers disconnected by an outage miss the
    events published while they were away (pub/sub does not replay).

    A paced run writes as soon as the writer is free (the live keys follow
    every tick); a flat-out run lets items linger :data:`FLAT_LINGER_S` to
    write larger pipelined transactions. Only ticks that survive the day
    list's cap are formatted and sent. Nothing outside the prefix is touched;
    ``clear=True`` deletes the prefix's keys (``SCAN`` + ``UNLINK`` on
    ``prefix*``) before the first write.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from trapsim.core.errors import ConfigError, SinkError
from trapsim.core.schemas import TickBatch
from trapsim.core.time import DAY_NS, NS, iso
from trapsim.market.depth import newest_book
from trapsim.store.resilient import ResilientWriter

HISTORY_CAP = 10_000
"""Default ticks kept per day list (the newest; 2.8 h of 1-second ticks)."""
LIST_CAP = 5_000
"""Default entries kept in the trap history and the HF activations (≈ 100 days of traps)."""
DAY_TTL_S = 2 * 86_400
"""Default expiry of a day list after its last write, wall seconds."""
BUFFER_LIMIT = 200_000
"""Default entries buffered while Redis is unreachable (≈ 5.5 h of a paced run at 10 ticks/s)."""
BATCH_ENTRIES = 50_000
"""Entries per transaction (≈ 4.5 MB of ticks)."""
FLAT_LINGER_S = 0.2
"""How long a flat-out run lets items wait to share a transaction, seconds."""
CONNECT_TIMEOUT_S = 1.0
SOCKET_TIMEOUT_S = 5.0

_TICK = np.dtype([("ts", np.int64), ("price", np.float64), ("volume", np.float64)])
_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


def _json(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


def _day_tails(ts: np.ndarray, cap: int) -> list[tuple[int, int, int]]:
    """``(day, lo, hi)`` per UTC day of sorted ``ts``: rows ``lo:hi`` are its newest ``cap``."""
    days = ts // DAY_NS
    cuts = np.flatnonzero(np.diff(days)) + 1
    starts = [0, *cuts.tolist()]
    ends = [*cuts.tolist(), len(ts)]
    return [(int(days[s]), max(s, e - cap), e) for s, e in zip(starts, ends, strict=True)]


def resp(*args: bytes | str | int) -> bytes:
    """One command in the Redis protocol (RESP2: an array of bulk strings)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)


def _lpush_ticks(key: str, rows: np.ndarray) -> bytes:
    """``LPUSH key`` of ticks as ``{"ts","price","volume"}`` JSON, encoded column-wise by Arrow.

    Formatting and framing ~10^5 ticks per transaction one by one in Python
    would cost more than the simulation; Arrow's float to string cast is the
    shortest text that reads back exactly, like ``repr``.
    """
    ts = rows["ts"]
    if np.all(ts % NS == 0):
        times = pa.array(ts // NS).cast(pa.timestamp("s")).cast(pa.string())
        times = pc.binary_join_element_wise(
            pc.replace_substring(times, " ", "T", max_replacements=1), "Z", ""
        )
    else:  # sub-second ticks (not produced today): the exact text of `iso`
        times = pa.array([iso(t) for t in ts.tolist()], pa.string())
    entries = pc.binary_join_element_wise(
        '{"ts":"',
        times,
        '","price":',
        pa.array(rows["price"]).cast(pa.string()),
        ',"volume":',
        pa.array(rows["volume"]).cast(pa.string()),
        "}",
        "",
    )
    lengths = pc.binary_length(entries).cast(pa.string())
    framed = pc.binary_join_element_wise("$", lengths, "\r\n", entries, "\r\n", "")
    one_list = pa.ListArray.from_arrays(pa.array([0, len(rows)], pa.int32()), framed)
    body = pc.binary_join(one_list, "")[0].as_buffer().to_pybytes()
    name = key.encode()
    return b"*%d\r\n$5\r\nLPUSH\r\n$%d\r\n%s\r\n" % (len(rows) + 2, len(name), name) + body


def _flatten(report: dict, parent: str = "") -> dict[str, str]:
    """A nested report as hash fields: dotted keys, strings as is, ``None`` as ``""``, else JSON."""
    out: dict[str, str] = {}
    for key, value in report.items():
        name = f"{parent}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        elif isinstance(value, str):
            out[name] = value
        else:
            out[name] = "" if value is None else _json(value)
    return out


def transaction(client: redis.Redis, cmds: list[bytes]) -> None:
    """Run ``cmds`` (each from :func:`resp`) in one MULTI/EXEC sent in one piece.

    One send per transaction: a pipeline sends in ~6 KB pieces, and each
    piece releases the GIL and waits for it back while the simulation
    thread computes, which made a flat-out run several times slower.

    Raises
    ------
    redis.RedisError
        The connection's error, or the first command's error inside the transaction.
    """
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command([b"".join([resp("MULTI"), *cmds, resp("EXEC")])])
        for _ in range(len(cmds) + 1):
            conn.read_response()  # OK, then QUEUED per command
        results = conn.read_response()
    except BaseException:
        conn.disconnect()  # it may be mid-reply: never reuse it
        raise
    finally:
        pool.release(conn)
    failed = [r for r in results if isinstance(r, Exception)]
    if failed:
        raise failed[0]


def asset_tag(symbol: str) -> str:
    """The name a symbol's keys carry: its base asset for a USD pair (``BTC-USD`` → ``btc``),
    else the symbol in lower case with ``_`` (``BTC-ETH`` → ``btc_eth``), a perpetual
    ``<base>_perp`` (``BTC-USD-PERP`` → ``btc_perp``)."""
    parts = symbol.lower().split("-")
    if parts[-1] == "perp":
        return f"{parts[0]}_perp"
    return parts[0] if parts[1:] == ["usd"] else "_".join(parts)


class _Keys:
    """Key and channel names of one prefix and the run's symbols (the first is the headline)."""

    def __init__(self, prefix: str, symbols: tuple[str, ...], run_id: str) -> None:
        self.prefix = prefix
        self.headline = symbols[0]
        self.asset = {s: asset_tag(s) for s in symbols}
        self.last = {s: f"{prefix}last_{a}_price" for s, a in self.asset.items()}
        self.prev = {s: f"{prefix}prev_{a}_price" for s, a in self.asset.items()}
        self.book = {s: f"{prefix}orderbook_{a}" for s, a in self.asset.items()}
        self.change = f"{prefix}price_change_pct"
        self.regime = f"{prefix}market_regime"
        self.running = f"{prefix}running"
        self.traps = f"{prefix}trap_history"
        self.chaos = f"{prefix}chaos_history"
        self.hf = f"{prefix}hf_activations"
        self.detections = f"{prefix}detections"
        self.funding = f"{prefix}funding_history"
        self.alerts = f"{prefix}alert_history"
        self.stats = f"{prefix}statistics"
        self.events = f"{prefix}events"
        self.seq = f"{prefix}sink_seq:{run_id}"

    def day(self, symbol: str, day: int) -> str:
        name = "price_history" if symbol == self.headline else f"price_history_{self.asset[symbol]}"
        return f"{self.prefix}{name}:{datetime.fromtimestamp(day * 86_400, UTC):%Y-%m-%d}"


class _RedisBackend:
    """Writes batches of sink items as seq-guarded MULTI/EXEC transactions."""

    def __init__(
        self,
        url: str,
        keys: _Keys,
        *,
        history_cap: int,
        list_cap: int,
        day_ttl_s: int,
        clear: bool,
    ) -> None:
        try:
            # No client-side retries: a retried EXEC could apply a batch twice; the
            # writer retries instead, after checking the sequence key.
            self.client = redis.Redis.from_url(
                url,
                socket_connect_timeout=CONNECT_TIMEOUT_S,
                socket_timeout=SOCKET_TIMEOUT_S,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigError(f"bad Redis URL {url!r}: {exc}") from exc
        kw = self.client.connection_pool.connection_kwargs
        where = kw.get("path") or f"{kw.get('host', 'localhost')}:{kw.get('port', 6379)}"
        self.name = f"redis {where}/{kw.get('db', 0)}"
        self.keys = keys
        self.history_cap = history_cap
        self.list_cap = list_cap
        self.day_ttl_s = day_ttl_s
        self.clear_pending = clear
        self.applied = 0

    def is_transient(self, exc: BaseException) -> bool:
        # BusyLoadingError (a restarted server loading its data) is a ConnectionError;
        # so is a refused password, which no retry heals.
        return isinstance(exc, redis.ConnectionError | redis.TimeoutError) and not isinstance(
            exc, redis.AuthenticationError
        )

    def connect(self) -> None:
        self.client.ping()
        if self.clear_pending:
            self.clear()
            self.clear_pending = False
        self.applied = int(self.client.get(self.keys.seq) or 0)

    def clear(self) -> None:
        """Delete every key of the prefix, and only those."""
        pattern = _GLOB_SPECIAL.sub(r"\\\1", self.keys.prefix) + "*"
        found: list[bytes] = []
        for key in self.client.scan_iter(match=pattern, count=1000):
            found.append(key)
            if len(found) == 1000:
                self.client.unlink(*found)
                found = []
        if found:
            self.client.unlink(*found)

    def write(self, seq: int, items: list[tuple]) -> None:
        if seq <= self.applied:
            return  # applied before the connection dropped; its reply was lost
        k = self.keys
        cmds: list[bytes] = []
        ticks = [item for item in items if item[0] == "ticks"]
        if ticks:
            cmds += self._ticks(ticks)
        lists = {"trap": k.traps, "chaos": k.chaos, "hf": k.hf, "detection": k.detections,
                 "funding": k.funding, "alert": k.alerts}
        pushed: dict[str, list[str]] = {key: [] for key in lists.values()}
        for item in items:
            tag = item[0]
            if tag in lists:
                pushed[lists[tag]].append(item[1])
                cmds.append(resp("PUBLISH", k.events, item[2]))
            elif tag == "hf_on":
                cmds.append(resp("PUBLISH", k.events, item[1]))
            elif tag == "stats":
                fields = [x for pair in item[1].items() for x in pair]
                cmds.append(resp("DEL", k.stats))
                if fields:
                    cmds.append(resp("HSET", k.stats, *fields))
            elif tag == "running":
                cmds.append(resp("SET", k.running, item[1]))
            elif tag == "book":
                cmds.append(resp("SET", k.book[item[1]], item[2]))
        for key, rows in pushed.items():
            if rows:
                # Pushed oldest first, so the list reads newest first.
                cmds += [resp("LPUSH", key, *rows), resp("LTRIM", key, 0, self.list_cap - 1)]
        cmds.append(resp("SET", k.seq, seq, "EX", self.day_ttl_s))
        transaction(self.client, cmds)
        self.applied = seq

    def _ticks(self, items: list[tuple]) -> list[bytes]:
        k = self.keys
        cmds = []
        for symbol in dict.fromkeys(item[1] for item in items):
            mine = [item for item in items if item[1] == symbol]
            _, _, _, last, prev, regime = mine[-1]
            cmds.append(resp("SET", k.last[symbol], repr(last)))
            if prev is not None:
                cmds.append(resp("SET", k.prev[symbol], repr(prev)))
            if symbol == k.headline:
                cmds.append(resp("SET", k.regime, regime))
                if prev:
                    cmds.append(resp("SET", k.change, repr((last - prev) / prev * 100.0)))
            rows = np.concatenate([item[2] for item in mine])
            for day, lo, hi in _day_tails(rows["ts"], self.history_cap):
                key = k.day(symbol, day)
                cmds += [
                    _lpush_ticks(key, rows[lo:hi]),
                    resp("LTRIM", key, 0, self.history_cap - 1),
                    resp("EXPIRE", key, self.day_ttl_s),
                ]
        return cmds

    def close(self) -> None:
        self.client.close()


class RedisSink:
    """The seed's Redis keys and the ``events`` channel as a :class:`~trapsim.store.base.Sink`.

    See the module docstring for the keys, JSON shapes, caps, memory bound and
    write guarantees.

    Parameters
    ----------
    url : str
        ``redis://[:password@]host:port/db`` (or ``rediss://``, ``unix://``).
    run_id : str
        Identifies the run (its sequence key).
    symbols : tuple of str
        The run's symbols, the headline first; :func:`asset_tag` names each one's
        keys (``BTC-USD`` → ``sim_last_btc_price``).
    prefix : str
        Prefix of every key and of the channel.
    paced : bool
        True for a paced run: every call is written at once. False (flat out):
        calls are batched into larger transactions.
    history_cap : int
        Ticks kept per ``price_history:<day>`` list (the newest).
    list_cap : int
        Entries kept in ``trap_history``, ``hf_activations`` and ``detections`` (the
        newest).
    day_ttl_s : int
        Expiry of a day list after its last write, seconds.
    clear : bool
        Delete the prefix's keys (only those) before the first write.
    allow_offline : bool
        Start even if Redis is unreachable, buffering until it is back.
    buffer_limit : int
        Entries (ticks, traps, activations, events) buffered while Redis is
        unreachable; beyond it the oldest are dropped with one warning.

    Raises
    ------
    SinkError
        If Redis is unreachable and not ``allow_offline``.
    ConfigError
        If the URL is malformed, the prefix is empty or a cap, the TTL or the
        buffer limit is below 1.
    """

    name = "redis"

    def __init__(
        self,
        url: str,
        *,
        run_id: str,
        symbols: tuple[str, ...] = ("BTC-USD",),
        prefix: str = "sim_",
        paced: bool = False,
        history_cap: int = HISTORY_CAP,
        list_cap: int = LIST_CAP,
        day_ttl_s: int = DAY_TTL_S,
        clear: bool = False,
        allow_offline: bool = False,
        buffer_limit: int = BUFFER_LIMIT,
    ) -> None:
        if not prefix:
            raise ConfigError("the Redis key prefix must not be empty")
        if min(history_cap, list_cap, day_ttl_s) < 1:
            raise ConfigError(
                "Redis history_cap, list_cap and day_ttl_s must be >= 1,"
                f" got {history_cap}, {list_cap}, {day_ttl_s}"
            )
        self.run_id = run_id
        self.symbols = tuple(symbols)
        self.keys = _Keys(prefix, self.symbols, run_id)
        self._history_cap = history_cap
        self._last_price: dict[str, float] = {}
        backend = _RedisBackend(
            url,
            self.keys,
            history_cap=history_cap,
            list_cap=list_cap,
            day_ttl_s=day_ttl_s,
            clear=clear,
        )
        self._writer = ResilientWriter(
            backend,
            buffer_limit=buffer_limit,
            batch_limit=BATCH_ENTRIES,
            linger_s=0.0 if paced else FLAT_LINGER_S,
            allow_offline=allow_offline,
        )
        self._writer.put(("running", "1"), key="running")
        self._writer.flush()

    def ticks(self, batch: TickBatch) -> None:
        """Queue the live keys and each day's newest ``history_cap`` ticks of ``batch``.

        Raises
        ------
        SinkError
            If the batch is of a symbol not among the sink's.
        """
        n = len(batch)
        if not n:
            return
        if batch.symbol not in self.keys.asset:
            raise SinkError(f"Redis sink of {', '.join(self.symbols)} got ticks of "
                            f"{batch.symbol}")
        # Older ticks of a day would be trimmed at once: never buffer or send them.
        keep = np.concatenate(
            [np.arange(lo, hi) for _, lo, hi in _day_tails(batch.ts, self._history_cap)]
        )
        rows = np.empty(len(keep), _TICK)
        rows["ts"] = batch.ts[keep]
        rows["price"] = batch.price[keep]
        rows["volume"] = batch.volume[keep]
        last = float(batch.price[-1])
        prev = float(batch.price[-2]) if n > 1 else self._last_price.get(batch.symbol)
        regime = batch.regime_names[int(batch.regime[-1])]
        self._last_price[batch.symbol] = last
        self._writer.put(("ticks", batch.symbol, rows, last, prev, regime), weight=len(rows))

    def candles(self, table: pa.Table) -> None:
        """Nothing to write: the seed's key table has no candles."""

    def labels(self, labels: list[dict]) -> None:
        """Queue each trap (chaos phase) for its history and the ``events`` channel."""
        for label in labels:
            row = {
                **label,
                "start_ts": iso(label["start_ts"]),
                "peak_ts": iso(label["peak_ts"]),
                "end_ts": iso(label["end_ts"]),
            }
            tag = "trap" if label["kind"] == "trap" else "chaos"
            self._writer.put((tag, _json(row), _json({"event": tag, **row})))

    def hf_activations(self, activations: list[dict]) -> None:
        """Queue each ended activation for its list and the ``events`` channel."""
        for act in activations:
            row = {
                "start_ts": iso(act["start_ts"]),
                "end_ts": iso(act["end_ts"]),
                "trap_count": int(act["trap_count"]),
                "types": list(act["types"]),
            }
            self._writer.put(("hf", _json(row), _json({"event": "hf_activation", **row})))

    def hf_switched_on(self, ts: int, trap_count: int) -> None:
        """Queue an ``hf_on`` event."""
        event = {"event": "hf_on", "ts": iso(ts), "trap_count": int(trap_count)}
        self._writer.put(("hf_on", _json(event)))

    def depth(self, table: pa.Table) -> None:
        """Queue the newest L2 snapshot for ``orderbook_<asset>`` (a newer one replaces one
        not yet written); one symbol's snapshots per call."""
        if not table.num_rows:
            return
        symbol = table["symbol"][0].as_py()
        book = newest_book(table)
        book["ts"] = iso(book["ts"])
        self._writer.put(("book", symbol, _json(book)), key=f"book/{symbol}")

    def detections(self, rows: list[dict]) -> None:
        """Queue each detection for its list and the ``events`` channel."""
        for det in rows:
            row = {
                **det,
                "detected_at": iso(det["detected_at"]),
                "start": iso(det["start"]),
                "features": json.loads(det["features"]),
            }
            self._writer.put(("detection", _json(row), _json({"event": "detection", **row})))

    def funding(self, events: list) -> None:
        """Queue each funding event for ``funding_history`` and the ``events`` channel."""
        for e in events:
            row = {"ts": iso(e.ts), "symbol": e.symbol, "rate": e.rate,
                   "mark_price": e.mark_price}
            self._writer.put(("funding", _json(row), _json({"event": "funding", **row})))

    def alerts(self, alerts: list[dict]) -> None:
        """Queue each publication alert for ``alert_history`` and the ``events`` channel."""
        for a in alerts:
            row = {**a, "ts": iso(a["ts"])}
            self._writer.put(("alert", _json(row), _json({"event": "alert", **row})))

    def statistics(self, report: dict) -> None:
        """Queue the report for ``statistics`` (a newer snapshot replaces one not yet written)."""
        self._writer.put(("stats", _flatten(report)), key="stats")

    def flush(self) -> None:
        """Write what is queued; returns at once while Redis is unreachable."""
        self._writer.flush()

    def close(self, report: dict) -> None:
        """Write the final statistics and ``running = 0``, then everything still buffered.

        Raises
        ------
        SinkError
            If a write failed for a reason other than Redis being unreachable.
        """
        self.statistics(report)
        self._writer.put(("running", "0"), key="running")
        self._writer.close()
