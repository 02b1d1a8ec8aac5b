"""The live state of a served run: what the API reads and the WebSocket hub pushes.

:class:`LiveState` is a sink (:class:`trapsim.store.base.Sink`) next to the run
directory: it keeps each symbol's recent ticks in a fixed-size ring, the recent
candles of every interval, the latest L2 book, and the labels, detections and
alerts of the run, all in bounded memory, and hands every event to a publisher
(the hub) as one message per channel and symbol. The run loop writes from its own
thread; the API reads under the same lock.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from trapsim.core.schemas import TickBatch
from trapsim.core.time import iso, iso_many
from trapsim.market.depth import newest_book

TICK_FIELDS = ("ts", "price", "bid", "ask", "volume")
HISTORY_TICKS = 2 * 86_400
"""Ticks kept per symbol: two market days of 1-second ticks (5 symbols: 19 MB)."""
KEEP_ROWS = 5_000
"""Candles per symbol and interval, and labels, detections and alerts, kept."""

Publish = Callable[[str, str | None, list[dict]], None]
"""``publish(channel, symbol, rows)``: one message of a channel (``symbol`` None for all)."""
Listening = Callable[[], bool]
"""Whether anyone receives what is published now (ticks are not turned into rows if not)."""


class TickRing:
    """The last ``capacity`` ticks of one symbol, columnar.

    Parameters
    ----------
    capacity : int
        Ticks kept (> 0); older ones are overwritten.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.cols = {f: np.empty(capacity, np.int64 if f == "ts" else np.float64)
                     for f in TICK_FIELDS}
        self.n = 0  # ticks written so far

    def append(self, batch: TickBatch) -> None:
        values = {f: getattr(batch, f)[-self.capacity:] for f in TICK_FIELDS}
        k = len(values["ts"])
        at = (self.n + len(batch) - k) % self.capacity
        first = min(k, self.capacity - at)
        for f, v in values.items():
            self.cols[f][at:at + first] = v[:first]
            self.cols[f][:k - first] = v[first:]
        self.n += len(batch)

    def __len__(self) -> int:
        return min(self.n, self.capacity)

    def columns(self) -> dict[str, np.ndarray]:
        """All kept ticks, oldest first (copies)."""
        size = len(self)
        start = (self.n - size) % self.capacity
        order = (np.arange(size) + start) % self.capacity
        return {f: c[order] for f, c in self.cols.items()}


def tick_rows(cols: dict[str, np.ndarray]) -> list[dict]:
    """Ticks as JSON rows (``ts`` ISO 8601)."""
    return [{"ts": t, "price": p, "bid": b, "ask": a, "volume": v} for t, p, b, a, v in zip(
        iso_many(cols["ts"]), cols["price"].tolist(), cols["bid"].tolist(),
        cols["ask"].tolist(), cols["volume"].tolist(), strict=True)]


def table_rows(table: pa.Table) -> list[dict]:
    """A table's rows as dicts, ``ts`` as ISO 8601 text."""
    rows = table.drop_columns("ts").to_pylist()
    for row, ts in zip(rows, iso_many(table["ts"].cast(pa.int64()).to_numpy()), strict=True):
        row["ts"] = ts
    return rows


def _json_label(label: dict) -> dict:
    return {**label, **{k: iso(label[k]) for k in ("start_ts", "peak_ts", "end_ts")}}


class LiveState:
    """A sink that keeps the served run's recent state and publishes every event.

    Parameters
    ----------
    symbols : tuple of str
        The run's symbols.
    publish : Publish, optional
        Receives every event; default none.
    listening : Listening, optional
        Whether ``publish`` has receivers now; default: whenever ``publish`` is given.
    history_ticks : int, default :data:`HISTORY_TICKS`
        Ticks kept per symbol.
    """

    name = "live"

    def __init__(self, symbols: tuple[str, ...], publish: Publish | None = None,
                 listening: Listening | None = None, history_ticks: int = HISTORY_TICKS) -> None:
        self.symbols = symbols
        self.publish = publish or (lambda channel, symbol, rows: None)
        self.listening = listening or (lambda: publish is not None)
        self.lock = threading.Lock()
        self.rings = {s: TickRing(history_ticks) for s in symbols}
        self.regime: dict[str, str] = {}
        self.regime_log = {s: deque(maxlen=KEEP_ROWS) for s in symbols}  # regime changes
        self.bars: dict[tuple[str, str], deque] = {}  # candles by (symbol, interval)
        self.books: dict[str, dict] = {}
        self.label_log: deque[dict] = deque(maxlen=KEEP_ROWS)
        self.detection_log: deque[dict] = deque(maxlen=KEEP_ROWS)
        self.alert_log: deque[dict] = deque(maxlen=KEEP_ROWS)
        self.hf = {"active": False, "since": None, "activations": 0}
        self.report: dict = {}
        self.ended = False
        self.counts = {s: 0 for s in symbols}  # ticks published per symbol
        self.updated: dict[str, float] = {}  # monotonic wall time of each symbol's last tick

    # -- the sink ------------------------------------------------------------------
    def ticks(self, batch: TickBatch) -> None:
        codes = batch.regime
        changes = np.flatnonzero(codes[1:] != codes[:-1]) + 1
        with self.lock:
            self.rings[batch.symbol].append(batch)
            if self.regime.get(batch.symbol) != batch.regime_names[int(codes[0])]:
                changes = np.concatenate([[0], changes])
            self.regime_log[batch.symbol].extend(
                {"ts": iso(int(batch.ts[i])), "regime": batch.regime_names[int(codes[i])]}
                for i in changes)
            self.regime[batch.symbol] = batch.regime_names[int(batch.regime[-1])]
            self.counts[batch.symbol] += len(batch)
            self.updated[batch.symbol] = time.monotonic()
        if self.listening():
            self.publish("ticks", batch.symbol, tick_rows({f: getattr(batch, f)
                                                           for f in TICK_FIELDS}))

    def candles(self, table: pa.Table) -> None:
        rows = table_rows(table)
        with self.lock:
            for row in rows:
                key = (row["symbol"], row["interval"])
                self.bars.setdefault(key, deque(maxlen=KEEP_ROWS)).append(row)
        for (symbol, interval), group in _groups(rows, ("symbol", "interval")).items():
            self.publish(f"candles:{interval}", symbol, group)

    def labels(self, labels: list[dict]) -> None:
        rows = [_json_label(lb) for lb in labels]
        with self.lock:
            self.label_log.extend(rows)
        for row in rows:
            self.publish("traps" if row["kind"] == "trap" else "chaos", row["symbol"], [row])

    def hf_activations(self, activations: list[dict]) -> None:
        with self.lock:
            self.hf = {"active": False, "since": None,
                       "activations": self.hf["activations"] + len(activations)}
        self.publish("hf", None, [{"event": "hf_off", "start_ts": iso(a["start_ts"]),
                                   "end_ts": iso(a["end_ts"]), "trap_count": a["trap_count"]}
                                  for a in activations])

    def hf_switched_on(self, ts: int, trap_count: int) -> None:
        with self.lock:
            self.hf = {**self.hf, "active": True, "since": iso(ts)}
        self.publish("hf", None, [{"event": "hf_on", "ts": iso(ts), "trap_count": trap_count}])

    def depth(self, table: pa.Table) -> None:
        book = newest_book(table)
        book = {**book, "ts": iso(book["ts"]), "symbol": table["symbol"][0].as_py()}
        with self.lock:
            self.books[book["symbol"]] = book
        self.publish("book", book["symbol"], [book])

    def detections(self, rows: list[dict]) -> None:
        out = [{**r, "detected_at": iso(r["detected_at"]), "start": iso(r["start"])}
               for r in rows]
        with self.lock:
            self.detection_log.extend(out)
        self.publish("detections", None, out)

    def funding(self, events: list) -> None:
        self.publish("funding", "BTC-USD-PERP", [{**e._asdict(), "ts": iso(e.ts)}
                                                 for e in events])

    def alerts(self, alerts: list[dict]) -> None:
        out = [{**a, "ts": iso(a["ts"])} for a in alerts]
        with self.lock:
            self.alert_log.extend(out)
        for a in out:
            self.publish("alerts", a["symbol"], [a])

    def statistics(self, report: dict) -> None:
        self.report = report

    def flush(self) -> None:
        """Nothing is buffered."""

    def close(self, report: dict) -> None:
        self.report = report
        self.ended = True
        self.publish("status", None, [{"event": "ended", "stopped_by": report.get("stopped_by")}])

    # -- reads (any thread) ---------------------------------------------------------
    def recent(self, symbol: str, n: int | None = None) -> dict[str, np.ndarray]:
        """The last ``n`` ticks of ``symbol`` kept (all if None), oldest first."""
        with self.lock:
            cols = self.rings[symbol].columns()
        return cols if n is None else {f: c[-n:] for f, c in cols.items()}

    def regime_changes(self, symbol: str) -> list[dict]:
        """The last :data:`KEEP_ROWS` regime changes of ``symbol``: ``ts`` (ISO 8601) of the
        first tick in a new regime and ``regime``, oldest first (the first tick's included)."""
        with self.lock:
            return list(self.regime_log[symbol])

    def candle_rows(self, symbol: str, interval: str) -> list[dict]:
        with self.lock:
            return list(self.bars.get((symbol, interval), ()))


def _groups(rows: list[dict], keys: tuple[str, ...]) -> dict[tuple, list[dict]]:
    out: dict[tuple, list[dict]] = {}
    for row in rows:
        out.setdefault(tuple(row[k] for k in keys), []).append(row)
    return out
