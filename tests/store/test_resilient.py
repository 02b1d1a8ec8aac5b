"""The shared buffering and retry mechanism, against a backend whose failures are scripted.

The sink tests run it against real servers; here a scripted backend produces
the failures a real server produces only by chance: a write applied whose reply
is lost, a server down for exactly as long as a test needs.
"""

import logging
import threading
import time

import pytest

from trapsim.core.errors import SinkError
from trapsim.store import resilient
from trapsim.store.resilient import ResilientWriter


class Scripted:
    """A backend keeping what it applied; ``up`` switches the server, ``lose_replies`` fails
    that many writes *after* applying them (idempotent per ``seq``, as the contract asks)."""

    name = "scripted"

    def __init__(self, up: bool = True, delay: float = 0.0) -> None:
        self.up = up
        self.delay = delay
        self.lose_replies = 0
        self.applied: list = []
        self.applied_seq = 0
        self.calls: list[tuple[int, list]] = []
        self.connects = 0
        self.closed = False

    def is_transient(self, exc: BaseException) -> bool:
        return isinstance(exc, ConnectionError)

    def connect(self) -> None:
        self.connects += 1
        if not self.up:
            raise ConnectionError("connection refused")

    def write(self, seq: int, items: list) -> None:
        self.calls.append((seq, list(items)))
        time.sleep(self.delay)
        if not self.up:
            raise ConnectionError("connection reset")
        if seq > self.applied_seq:
            self.applied += items
            self.applied_seq = seq
        if self.lose_replies:
            self.lose_replies -= 1
            raise ConnectionError("reply lost")

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch):
    monkeypatch.setattr(resilient, "BACKOFF_FIRST_S", 0.005)
    monkeypatch.setattr(resilient, "BACKOFF_MAX_S", 0.02)
    monkeypatch.setattr(resilient, "CLOSE_WAIT_S", 0.3)


def store_warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "trapsim.store" and r.levelno == logging.WARNING
    ]


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.002)


def test_items_are_written_in_order_exactly_once_across_lost_replies_and_outages():
    backend = Scripted()
    writer = ResilientWriter(backend, buffer_limit=10_000, batch_limit=7)
    for i in range(600):
        writer.put(i)
        if i % 97 == 0:
            backend.lose_replies = 2
        if i % 150 == 0:
            backend.up = False
        if i % 150 == 20:
            backend.up = True
    backend.up = True
    writer.close()
    assert backend.applied == list(range(600))
    # A failed batch is retried unchanged, with the same sequence number.
    by_seq: dict[int, list] = {}
    for seq, items in backend.calls:
        assert by_seq.setdefault(seq, items) == items
    assert sorted(by_seq) == list(range(1, len(by_seq) + 1))
    assert backend.closed


def test_one_warning_when_the_server_goes_and_one_when_it_returns(caplog):
    backend = Scripted()
    writer = ResilientWriter(backend, buffer_limit=100, batch_limit=10)
    backend.up = False
    writer.put("a")
    wait_until(lambda: backend.connects >= 5)  # several retries, each failing
    backend.up = True
    writer.put("b")
    writer.close()
    assert backend.applied == ["a", "b"]
    messages = store_warnings(caplog)
    assert len(messages) == 2
    assert "scripted unreachable (connection reset)" in messages[0]
    assert "reachable again" in messages[1] and "none lost" in messages[1]


def test_put_never_waits_on_a_down_server_and_drops_the_oldest_beyond_the_bound(caplog):
    backend = Scripted(up=False)
    writer = ResilientWriter(backend, buffer_limit=100, batch_limit=10, allow_offline=True)
    t = time.monotonic()
    for i in range(20_000):
        writer.put(i)
    assert time.monotonic() - t < 2.0
    backend.up = True
    writer.close()
    # The batch in flight when the outage began, then the newest entries.
    first = backend.calls[0][1]
    assert backend.applied[: len(first)] == first
    assert backend.applied[len(first) :] == list(range(20_000 - 100 + len(first), 20_000))
    messages = store_warnings(caplog)
    assert sum("buffer full (100 entries)" in m for m in messages) == 1
    assert f"{20_000 - 100} were dropped" in messages[-1]


def test_a_reachable_but_slow_server_gets_back_pressure_not_drops(caplog):
    backend = Scripted(delay=0.01)
    writer = ResilientWriter(backend, buffer_limit=5, batch_limit=2)
    for i in range(40):
        writer.put(i)
    writer.close()
    assert backend.applied == list(range(40))
    assert not store_warnings(caplog)


def test_keyed_items_replace_their_waiting_predecessor():
    backend = Scripted(up=False)
    writer = ResilientWriter(backend, buffer_limit=100, batch_limit=100, allow_offline=True)
    writer.put("first")
    wait_until(lambda: backend.connects >= 2)  # "first" is in flight, retried as it is
    writer.put("stats 1", key="stats")
    writer.put("tick")
    writer.put("stats 2", key="stats")
    backend.up = True
    writer.close()
    assert backend.applied == ["first", "stats 2", "tick"]


def test_flush_writes_what_waits_and_returns_at_once_when_down():
    backend = Scripted()
    writer = ResilientWriter(backend, buffer_limit=100, batch_limit=100, linger_s=60)
    writer.put("x")
    writer.flush()
    assert backend.applied == ["x"]
    backend.up = False
    writer.put("y")
    t = time.monotonic()
    writer.flush()  # returns when the write failed
    assert time.monotonic() - t < 0.5
    t = time.monotonic()
    writer.flush()  # known to be down: returns at once
    assert time.monotonic() - t < 0.05
    backend.up = True
    writer.close()
    assert backend.applied == ["x", "y"]


def test_unreachable_at_start_is_a_sink_error_unless_offline_is_allowed():
    with pytest.raises(SinkError, match="scripted is unreachable: connection refused"):
        ResilientWriter(Scripted(up=False), buffer_limit=10, batch_limit=10)
    backend = Scripted(up=False)
    writer = ResilientWriter(backend, buffer_limit=10, batch_limit=10, allow_offline=True)
    writer.put(1)
    backend.up = True
    writer.close()
    assert backend.applied == [1]


def test_close_gives_up_on_a_server_that_stays_down(caplog):
    backend = Scripted(up=False)
    writer = ResilientWriter(backend, buffer_limit=10, batch_limit=10, allow_offline=True)
    writer.put(1, weight=3)
    t = time.monotonic()
    writer.close()
    assert 0.3 <= time.monotonic() - t < 2.0
    assert "3 entries not written" in store_warnings(caplog)[-1]
    with pytest.raises(SinkError, match="closed"):
        writer.put(2)


def test_an_error_no_retry_can_fix_stops_the_writer_and_close_raises(caplog):
    class Broken(Scripted):
        def write(self, seq, items):
            raise ValueError("bad value")

    writer = ResilientWriter(Broken(), buffer_limit=10, batch_limit=10)
    writer.put(1)
    wait_until(lambda: any(r.levelno == logging.ERROR for r in caplog.records))
    writer.put(2)  # ignored: the writer has stopped
    with pytest.raises(SinkError, match="scripted failed: bad value"):
        writer.close()


def test_a_writer_thread_per_sink_and_none_left_after_close():
    before = threading.active_count()
    writers = [ResilientWriter(Scripted(), buffer_limit=10, batch_limit=10) for _ in range(3)]
    assert threading.active_count() == before + 3
    for w in writers:
        w.close()
    assert threading.active_count() == before
