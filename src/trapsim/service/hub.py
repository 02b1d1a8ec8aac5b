"""The WebSocket hub: per-client subscriptions, bounded queues and send timeouts.

A client subscribes by channel and symbol; every published message goes to the
clients that want it (DESIGN.md §6.4, after freqtrade's ``rpc/api_server/ws``).
Each message is encoded once, as a complete WebSocket frame, for all clients
(:class:`Wire`); the messages released together reach a client in one socket write.
A client whose socket does not take its frames queues them, at most ``queue_size``
frames; a client whose queue fills, or whose socket takes nothing for
``send_timeout`` seconds, is closed with code 1008 (policy violation, "too slow"):
it never slows the others and never grows the server's memory.

Messages are JSON text frames ``{"channel", "symbol", "published_ns", "data": [rows]}``
(``published_ns``: wall time, ns since the epoch, at which the run released the event;
a client's receive time minus it is its delivery latency); requests
are :class:`Request` objects, answered ``{"op": "subscribed" | "unsubscribed" |
"pong" | "error", …}`` on the same socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

import orjson
import uvicorn
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode

from trapsim.market.ohlcv import INTERVALS

CHANNELS = ("ticks", "book", "traps", "detections", "hf", "chaos", "alerts", "funding", "status",
            *(f"candles:{i}" for i in INTERVALS), "ingest")
"""Channels a client can subscribe to."""
TOO_SLOW = 1008
"""Close code of a client that does not keep up (RFC 6455 policy violation)."""
QUEUE_SIZE = 1_000
SEND_TIMEOUT = 2.0
WIRE = "trapsim.wire"
"""The ASGI scope extension under which a connection's :class:`Wire` is found."""


def frame(text: str | bytes) -> bytes:
    """``text`` as one complete, unmasked WebSocket text frame (RFC 6455 §5.2): what a
    server sends, the same bytes for every client."""
    return Frame(Opcode.TEXT, text.encode() if isinstance(text, str) else text).serialize(
        mask=False)


class Wire(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket connection, which also takes frames encoded once for all clients.

    Frames written here go to the socket as they are: the server negotiates no
    extension (``ws_per_message_deflate=False``), so a frame is the same bytes for
    every client. The connection puts itself in its ASGI scope under :data:`WIRE`.
    """

    def handle_connect(self, event) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none if the handshake was refused
        if scope is not None:
            scope["extensions"][WIRE] = self

    def write(self, frames: bytes) -> bool:
        """Write complete ``frames``; False if the connection is closing."""
        if self.close_sent or self.disconnected or self.transport.is_closing():
            return False
        self.transport.write(frames)
        return True

    def buffered(self) -> int:
        """Bytes written but not yet taken by the socket."""
        return 0 if self.transport is None else self.transport.get_write_buffer_size()


class UvicornServer(uvicorn.Server):
    """Uvicorn without its own signal handling (it would re-raise SIGTERM at exit)."""

    @contextlib.contextmanager
    def capture_signals(self):
        yield


async def start_serving(server: UvicornServer, sock) -> asyncio.Task:
    """Start ``server`` on the listening socket ``sock``; return once it accepts (or has
    failed), with the task that serves until ``server.should_exit``."""
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.005)
    return serving


def uvicorn_server(app, max_message: int) -> UvicornServer:
    """A uvicorn server of ``app`` whose WebSocket connections are :class:`Wire` objects
    (no compression, messages from clients of at most ``max_message`` bytes)."""
    return UvicornServer(uvicorn.Config(app, interface="asgi3", log_level="warning",
                                        access_log=False, ws=Wire,
                                        ws_per_message_deflate=False, lifespan="off",
                                        ws_max_size=max_message))


class Request(BaseModel):
    """A client's request on ``/ws``."""

    model_config = ConfigDict(extra="forbid")
    op: Literal["subscribe", "unsubscribe", "ping"]
    channels: list[str] = Field(default_factory=list, description=f"From {', '.join(CHANNELS)}.")
    symbols: list[str] | None = Field(None, description="Default: every symbol of the run.")

    @field_validator("channels")
    @classmethod
    def _known(cls, channels: list[str]) -> list[str]:
        unknown = [c for c in channels if c not in CHANNELS]
        if unknown:
            raise ValueError(f"unknown channel(s) {unknown}; known: {', '.join(CHANNELS)}")
        return channels


class Client:
    """One subscriber: what it wants, the frames its socket has not taken yet, its sender.

    Parameters
    ----------
    ws : starlette.websockets.WebSocket
        The accepted connection, served by a :class:`Wire` (see :func:`uvicorn_server`).
    queue_size : int
        Frames that may wait for the socket.
    send_timeout : float
        Seconds the socket may take nothing while frames wait.
    """

    def __init__(self, ws, queue_size: int, send_timeout: float) -> None:
        self.ws = ws
        self.wire: Wire = ws.scope["extensions"][WIRE]
        self.wants: set[tuple[str, str | None]] = set()  # (channel, symbol); None: any symbol
        self.key: frozenset = frozenset()  # ``wants``, as a key of clients that get the same
        self.queue: list[bytes] = []  # frames waiting for the socket, in order
        self.waiting = 0  # frames in ``queue``
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.ready = asyncio.Event()
        self.closed = False
        self.sent = 0
        self.handler: asyncio.Task | None = None  # the task serving this connection

    def want(self, wants: set[tuple[str, str | None]]) -> None:
        """Subscribe to exactly ``wants``."""
        self.wants = wants
        self.key = frozenset(wants)

    def wanted(self, channel: str, symbol: str | None) -> bool:
        """Whether a message of ``channel`` about ``symbol`` (None: all symbols) is for it."""
        return (channel, symbol) in self.wants or (channel, None) in self.wants or (
            symbol is None and any(c == channel for c, _ in self.wants))

    def offer(self, frames: bytes, count: int = 1) -> bool:
        """Send ``count`` complete ``frames`` now if the socket takes them, else queue them;
        False if the queue would exceed ``queue_size`` frames (the client is too slow)."""
        if self.closed:
            return True
        if not self.queue and self.wire.writable.is_set():
            self._write(frames, count)
            return True
        if self.waiting + count > self.queue_size:
            return False
        self.queue.append(frames)
        self.waiting += count
        self.ready.set()
        return True

    def _write(self, frames: bytes, count: int) -> None:
        if self.wire.write(frames):
            self.sent += count
        else:
            self.closed = True  # the connection is closing: its handler ends it

    def buffered(self) -> int:
        """Bytes waiting for this client, queued or in its socket's buffer."""
        return sum(map(len, self.queue)) + self.wire.buffered()

    async def sender(self) -> None:
        """Send queued frames once the socket takes them; if it takes nothing for
        ``send_timeout`` seconds, close the client."""
        while not self.closed:
            await self.ready.wait()
            self.ready.clear()
            if not self.queue or self.closed:
                continue
            try:
                async with asyncio.timeout(self.send_timeout):
                    await self.wire.writable.wait()
            except TimeoutError:
                await self.close(TOO_SLOW, "too slow: send timed out")
                return
            frames, count = b"".join(self.queue), self.waiting
            self.queue.clear()
            self.waiting = 0
            self._write(frames, count)

    async def end(self, sender: asyncio.Task) -> None:
        """The connection is over: stop ``sender`` (its :meth:`sender` task) and wait for it."""
        self.closed = True
        self.ready.set()
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender

    async def close(self, code: int, reason: str) -> None:
        """Close with ``code``; if the close cannot be sent within a second (the client reads
        nothing), end the connection anyway: its handler returns and the server drops it."""
        if self.closed:
            return
        self.closed = True
        self.queue.clear()
        self.ready.set()
        try:
            await asyncio.wait_for(self.ws.close(code=code, reason=reason), 1.0)
        except Exception:  # noqa: BLE001 - stuck or gone: stop reading it
            if self.handler is not None:
                self.handler.cancel()


class Hub:
    """Fans published messages out to the subscribed WebSocket clients.

    Parameters
    ----------
    symbols : tuple of str
        The run's symbols (what a client may subscribe to).
    queue_size : int, default :data:`QUEUE_SIZE`
        Frames a client may have waiting.
    send_timeout : float, default :data:`SEND_TIMEOUT`
        Seconds a client's socket may take nothing while frames wait.
    """

    def __init__(self, symbols: tuple[str, ...], queue_size: int = QUEUE_SIZE,
                 send_timeout: float = SEND_TIMEOUT) -> None:
        self.symbols = symbols
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.clients: set[Client] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # clients closed for being too slow
        self._pending: deque[tuple[str, str | None, list[dict], int]] = deque()
        self._scheduled = False

    def publish(self, channel: str, symbol: str | None, rows: list[dict]) -> None:
        """Send one message to every client that wants it (from any thread)."""
        self.publish_many([(channel, symbol, rows)])

    def publish_many(self, messages: list[tuple[str, str | None, list[dict]]]) -> None:
        """Send ``(channel, symbol, rows)`` messages, released together, to every client
        that wants them (from any thread): one socket write per client.

        Messages published before the event loop next runs go out together too.
        """
        if self.clients and self.loop is not None:
            published = time.time_ns()
            self._pending.extend((channel, symbol, rows, published)
                                 for channel, symbol, rows in messages if rows)
            if self._pending and not self._scheduled:
                self._scheduled = True
                self.loop.call_soon_threadsafe(self._dispatch)

    def _dispatch(self) -> None:
        self._scheduled = False  # before draining: a message appended later schedules anew
        messages = []
        while self._pending:
            channel, symbol, rows, published = self._pending.popleft()
            messages.append((channel, symbol, frame(orjson.dumps(
                {"channel": channel, "symbol": symbol, "published_ns": published, "data": rows},
                option=orjson.OPT_SERIALIZE_NUMPY))))
        out: dict[frozenset, tuple[bytes, int]] = {}  # by subscription: the same bytes
        for client in list(self.clients):
            if client.closed:
                continue
            if (mine := out.get(client.key)) is None:
                picked = [f for channel, symbol, f in messages if client.wanted(channel, symbol)]
                mine = out[client.key] = (b"".join(picked), len(picked))
            if mine[1] and not client.offer(*mine):
                self.dropped += 1
                self.clients.discard(client)
                asyncio.ensure_future(client.close(TOO_SLOW, "too slow: queue full"))

    async def serve(self, ws) -> None:
        """Run one accepted WebSocket until it closes."""
        self.loop = asyncio.get_running_loop()
        client = Client(ws, self.queue_size, self.send_timeout)
        client.handler = asyncio.current_task()
        self.clients.add(client)
        sender = asyncio.create_task(client.sender())
        try:
            while not client.closed:
                try:
                    text = await ws.receive_text()
                except Exception:  # noqa: BLE001 - disconnected
                    break
                client.offer(frame(self._answer(client, text)))
        except asyncio.CancelledError:
            if not client.closed:
                raise  # the server is stopping, not this client
        finally:
            self.clients.discard(client)
            await client.end(sender)

    def _answer(self, client: Client, text: str) -> bytes:
        """Apply one request; the answer."""
        try:
            req = Request.model_validate_json(text)
        except ValidationError as err:
            detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}"
                               for e in err.errors())
            return orjson.dumps({"op": "error", "detail": detail})
        if req.op == "ping":
            return b'{"op":"pong"}'
        unknown = [s for s in req.symbols or () if s not in self.symbols]
        if unknown:
            return orjson.dumps({"op": "error", "detail": f"unknown symbol(s) {unknown}; the "
                                 f"run has {', '.join(self.symbols)}"})
        pairs = {(c, s) for c in req.channels for s in (req.symbols or [None])}
        if req.op == "subscribe":
            client.want(client.wants | pairs)
        elif req.symbols is None:  # unsubscribing a channel drops every symbol of it
            client.want({(c, s) for c, s in client.wants - pairs if c not in req.channels})
        else:
            client.want(client.wants - pairs)
        return orjson.dumps({"op": f"{req.op}d", "channels": req.channels,
                             "symbols": req.symbols or list(self.symbols)})


class Outbox:
    """Gathers the messages one thread publishes and sends them together on :meth:`send`:
    the publisher of a :class:`~trapsim.service.live.LiveState` whose events come in
    batches (a run's slice of ticks, a replica's Redis message), so that each WebSocket
    client gets one socket write per batch.

    Parameters
    ----------
    deliver : callable
        Takes the batch, a list of ``(channel, symbol, rows)``.
    """

    def __init__(self, deliver: Callable[[list[tuple[str, str | None, list[dict]]]], None]
                 ) -> None:
        self.deliver = deliver
        self.messages: list[tuple[str, str | None, list[dict]]] = []

    def publish(self, channel: str, symbol: str | None, rows: list[dict]) -> None:
        """Keep one message for the next :meth:`send`."""
        self.messages.append((channel, symbol, rows))

    def send(self) -> None:
        """Deliver what was kept since the last call."""
        messages, self.messages = self.messages, []
        self.deliver(messages)

