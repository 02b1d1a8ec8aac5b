"""Bounded buffering, retry with backoff and in-order replay: the one mechanism of network sinks.

A network sink (:mod:`trapsim.store.redis`, :mod:`trapsim.store.sql`) turns each
call of the run loop into *items* and :meth:`ResilientWriter.put`-s them; a
background thread takes them in order, in batches, and writes each batch through
the sink's :class:`Backend`. The simulation never waits on the network except
for bounded back pressure from a reachable but slower server.

Guarantees
    *Order.* Items are written in the order they were put. A batch that fails
    is retried unchanged (same sequence number, same items) until it succeeds;
    the next batch is taken only after that.

    *Nothing twice.* A write interrupted by a dropped connection may have been
    applied or not. :meth:`Backend.write` is atomic and idempotent per sequence
    number, so the retry is harmless: the Redis sink writes each batch in one
    MULTI/EXEC that also records the batch's number, and reads that number back
    after every reconnect to skip a batch already applied; the SQL sink writes
    each batch in one transaction of inserts keyed by ``(run_id, …)`` with
    ``ON CONFLICT DO NOTHING``.

    *Nothing lost, within the bound.* Items wait in memory until written. The
    buffer holds at most ``buffer_limit`` entries (an item weighs as many
    entries as it has rows). When it is full while the server is reachable,
    ``put`` waits for room (back pressure, at most :data:`BLOCK_S`); while the
    server is unreachable the *oldest* waiting items are dropped instead, so the
    simulation never stalls and the newest state survives. Dropping is logged
    once per outage; the run directory is the complete record regardless.

    *Latest state only.* Items put with a ``key`` replace the waiting item of
    the same key (e.g. a statistics snapshot): a long outage buffers one of them.

Failures
    Transient errors (as judged by :meth:`Backend.is_transient`: connection
    refused or dropped, timeouts, a server still loading its data) start an
    outage: one WARNING on logger ``trapsim.store``, then reconnect and retry
    with exponential backoff from :data:`BACKOFF_FIRST_S` to
    :data:`BACKOFF_MAX_S` (DEBUG), and one WARNING when a write succeeds again.
    Any other error is a bug or bad data that no retry can fix: it is logged
    once as ERROR, the writer stops writing, and :meth:`ResilientWriter.close`
    raises :class:`~trapsim.core.errors.SinkError`.

    A server unreachable when the writer is created is a ``SinkError`` unless
    ``allow_offline``; then the writer starts in an outage and buffers.
    :meth:`ResilientWriter.close` waits until everything is written, or until
    the server has been unreachable for :data:`CLOSE_WAIT_S` during the close,
    and says how many entries it gave up on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Protocol

from trapsim.core.errors import ConfigError, SinkError, TrapsimError

log = logging.getLogger("trapsim.store")

BACKOFF_FIRST_S = 0.1
"""Wait before the first retry after a failure, seconds (doubles per failure)."""
BACKOFF_MAX_S = 2.0
"""Longest wait between retries, seconds: a returned server is used again within this."""
BLOCK_S = 5.0
"""Longest wait of ``put`` for room and of ``flush`` for the writer, while the server is up."""
CLOSE_WAIT_S = 10.0
"""Longest ``close`` keeps retrying an unreachable server before giving up its entries."""


class Backend(Protocol):
    """The server side of a :class:`ResilientWriter`; called from its writer thread only.

    Attributes
    ----------
    name : str
        Names the server in log messages and errors (no secrets).
    """

    name: str

    def connect(self) -> None:
        """(Re)connect and reload whatever :meth:`write` needs to be idempotent.

        Called before the first write and after every failed one.
        """

    def write(self, seq: int, items: list[Any]) -> None:
        """Write ``items`` atomically; writing the same ``seq`` again must change nothing.

        ``seq`` increases by one per batch; a batch is retried with the same
        ``seq`` and items after a failure that may or may not have applied it.
        """

    def is_transient(self, exc: BaseException) -> bool:
        """Whether ``exc`` means "server unreachable, retry later" (not a bug or bad data)."""

    def close(self) -> None:
        """Release connections."""


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (drivers append SQL, parameters, links)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@dataclass(slots=True)
class _Cell:
    item: Any
    weight: int
    key: Hashable | None


class ResilientWriter:
    """Writes items through a :class:`Backend` from a background thread, surviving outages.

    See the module docstring for the guarantees.

    Parameters
    ----------
    backend : Backend
        Where the items go.
    buffer_limit : int
        Entries (summed item weights) held in memory, in flight included.
    batch_limit : int
        Entries per write (a single heavier item is written alone).
    linger_s : float
        How long items may wait to be batched with later ones; 0 writes each
        as soon as the thread is free (paced runs), more makes fewer, larger
        writes (flat-out runs). ``flush`` and ``close`` never wait for it.
    allow_offline : bool
        Start buffering when the server is unreachable, instead of raising.

    Raises
    ------
    SinkError
        If the server is unreachable and not ``allow_offline``, or the first
        connection fails for another reason.
    ConfigError
        If ``buffer_limit`` or ``batch_limit`` is below 1.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        buffer_limit: int,
        batch_limit: int,
        linger_s: float = 0.0,
        allow_offline: bool = False,
    ) -> None:
        if buffer_limit < 1 or batch_limit < 1:
            raise ConfigError(
                f"{backend.name}: buffer and batch limits must be >= 1,"
                f" got {buffer_limit}, {batch_limit}"
            )
        self._backend = backend
        self._limit = buffer_limit
        self._batch_limit = min(batch_limit, buffer_limit)
        self._linger = linger_s
        self._cond = threading.Condition()
        self._pending: deque[_Cell] = deque()
        self._keyed: dict[Hashable, _Cell] = {}
        self._queued = 0  # weight waiting in _pending
        self._flying = 0  # weight of the batch being written
        self._oldest = 0.0  # monotonic time the oldest waiting item was put
        self._flush_asked = False
        self._closing = False
        self._closed = False
        self._abandon = threading.Event()
        self._down_since: float | None = None
        self._dropped = 0
        self._error: BaseException | None = None
        try:
            backend.connect()
        except TrapsimError:
            raise
        except Exception as exc:
            if not backend.is_transient(exc):
                raise SinkError(f"cannot use {backend.name}: {first_line(exc)}") from exc
            if not allow_offline:
                raise SinkError(f"{backend.name} is unreachable: {first_line(exc)}") from exc
            with self._cond:
                self._went_down(exc)
        self._thread = threading.Thread(
            target=self._run, name=f"trapsim {backend.name}", daemon=True
        )
        self._thread.start()

    # -- the run loop's side -----------------------------------------------------
    def put(self, item: Any, weight: int = 1, key: Hashable | None = None) -> None:
        """Queue ``item`` (``weight`` entries) for writing; never waits on an unreachable server.

        With a ``key``, ``item`` replaces a waiting item of the same key in its
        place (one not yet taken for writing). When the buffer is full, waits
        at most :data:`BLOCK_S` for room while the server is reachable, then
        drops the oldest waiting items. Ignored after a failure that is not
        transient (:meth:`close` raises it).

        Raises
        ------
        SinkError
            If the writer is closed.
        """
        with self._cond:
            if self._closed or self._closing:
                raise SinkError(f"{self._backend.name}: the sink is closed")
            if self._error is not None:
                return
            cell = self._keyed.get(key) if key is not None else None
            if cell is not None:
                cell.item = item
                return
            if self._queued + self._flying + weight > self._limit and self._down_since is None:
                self._cond.wait_for(lambda: self._has_room(weight), BLOCK_S)
            while self._pending and self._queued + self._flying + weight > self._limit:
                old = self._pending.popleft()
                if old.key is not None:
                    del self._keyed[old.key]
                self._queued -= old.weight
                self._drop(old.weight)
            if self._flying + weight > self._limit:
                self._drop(weight)
                return
            if not self._pending:
                self._oldest = time.monotonic()
            cell = _Cell(item, weight, key)
            self._pending.append(cell)
            self._queued += weight
            if key is not None:
                self._keyed[key] = cell
            self._cond.notify_all()

    def flush(self) -> None:
        """Write what is waiting now; returns when written, or at once if the server is down.

        Waits at most :data:`BLOCK_S` for a reachable server.
        """
        with self._cond:
            if self._down_since is not None or self._error is not None or self._closed:
                return
            self._flush_asked = True
            self._cond.notify_all()
            self._cond.wait_for(
                lambda: (
                    not (self._queued + self._flying)
                    or self._down_since is not None
                    or self._error is not None
                ),
                BLOCK_S,
            )

    def close(self) -> None:
        """Write everything still waiting, stop the thread and release the backend.

        Idempotent. Gives up after the server has been unreachable for
        :data:`CLOSE_WAIT_S` during the close, with one warning saying how
        many entries were not written.

        Raises
        ------
        SinkError
            If a write failed with an error that is not transient (logged
            when it happened).
        """
        with self._cond:
            if self._closed:
                return
            self._closing = True
            self._cond.notify_all()
        deadline = None
        while self._thread.is_alive():
            self._thread.join(0.05)
            if self._down_since is None:
                deadline = None
                continue
            deadline = deadline or time.monotonic() + CLOSE_WAIT_S
            if time.monotonic() >= deadline:
                self._abandon.set()
                self._thread.join(BACKOFF_MAX_S)
                break
        with self._cond:
            self._closed = True
            lost = self._queued + self._flying
        if lost and self._error is None:
            log.warning(
                "%s: %d entries not written, the server was still unreachable %g s into"
                " the close (the run directory holds them)",
                self._backend.name,
                lost,
                CLOSE_WAIT_S,
            )
        if not self._thread.is_alive():
            self._backend.close()
        if self._error is not None:
            raise SinkError(f"{self._backend.name} failed: {self._error}") from self._error

    # -- the writer thread ---------------------------------------------------------
    def _has_room(self, weight: int) -> bool:
        return (
            self._queued + self._flying + weight <= self._limit
            or self._down_since is not None
            or self._error is not None
        )

    def _drop(self, weight: int) -> None:
        if not self._dropped:
            log.warning(
                "%s: buffer full (%d entries), dropping the oldest until the server catches"
                " up (the run directory still holds everything)",
                self._backend.name,
                self._limit,
            )
        self._dropped += weight

    def _ready(self) -> bool:
        if self._abandon.is_set() or not self._pending:
            return self._abandon.is_set() or self._closing
        return (
            self._linger <= 0
            or self._closing
            or self._flush_asked
            or self._queued >= self._batch_limit
            or time.monotonic() - self._oldest >= self._linger
        )

    def _linger_left(self) -> float | None:
        if not (self._pending and self._linger > 0):
            return None
        return max(self._oldest + self._linger - time.monotonic(), 0.001)

    def _take(self) -> list[Any]:
        batch: list[Any] = []
        weight = 0
        limit = self._batch_limit
        while self._pending and (not batch or weight + self._pending[0].weight <= limit):
            cell = self._pending.popleft()
            if cell.key is not None:
                del self._keyed[cell.key]
            batch.append(cell.item)
            weight += cell.weight
        self._queued -= weight
        self._flying = weight
        self._oldest = time.monotonic()
        if not self._pending:
            self._flush_asked = False
        return batch

    def _run(self) -> None:
        seq = 0
        while True:
            with self._cond:
                while not self._ready():
                    self._cond.wait(self._linger_left())
                if self._abandon.is_set() or not self._pending:
                    return
                batch = self._take()
            seq += 1
            if not self._deliver(seq, batch):
                return
            with self._cond:
                self._flying = 0
                self._cond.notify_all()

    def _deliver(self, seq: int, batch: list[Any]) -> bool:
        """Write one batch until it succeeds; False if the writer must stop."""
        delay = BACKOFF_FIRST_S
        while True:
            try:
                if self._down_since is not None:
                    self._backend.connect()
                self._backend.write(seq, batch)
            except Exception as exc:
                if not self._backend.is_transient(exc):
                    self._fail(exc)
                    return False
                with self._cond:
                    self._went_down(exc)
                log.debug(
                    "%s: retry in %.1f s after: %s", self._backend.name, delay, first_line(exc)
                )
                if self._abandon.wait(delay):
                    return False
                delay = min(2 * delay, BACKOFF_MAX_S)
                continue
            if self._down_since is not None:
                self._came_back()
            return True

    def _went_down(self, exc: BaseException) -> None:
        if self._down_since is not None:
            return
        self._down_since = time.monotonic()
        log.warning(
            "%s unreachable (%s): the run continues; buffering up to %d entries and retrying"
            " with backoff",
            self._backend.name,
            first_line(exc),
            self._limit,
        )
        self._cond.notify_all()

    def _came_back(self) -> None:
        with self._cond:
            outage = time.monotonic() - (self._down_since or 0.0)
            dropped, self._dropped = self._dropped, 0
            self._down_since = None
            self._cond.notify_all()
        log.warning(
            "%s reachable again after %.1f s; buffered entries are written in order%s",
            self._backend.name,
            outage,
            f", {dropped} were dropped (buffer full)" if dropped else ", none lost",
        )

    def _fail(self, exc: BaseException) -> None:
        log.error(
            "%s: write failed, no more writes to it (the run directory still holds everything)",
            self._backend.name,
            exc_info=exc,
        )
        with self._cond:
            self._error = exc
            self._pending.clear()
            self._keyed.clear()
            self._queued = self._flying = 0
            self._cond.notify_all()
