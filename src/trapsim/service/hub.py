"""The WebSocket hub: per-client subscriptions, bounded queues and send timeouts.

A client subscribes by channel and symbol; every published message goes to the
clients that want it, through a per-client queue of at most ``queue_size``
frames drained by its own sender task (DESIGN.md §6.4, after freqtrade's
``rpc/api_server/ws``). A client whose queue fills, or whose send takes longer
than ``send_timeout``, is closed with code 1008 (policy violation, "too slow"):
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
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from trapsim.market.ohlcv import INTERVALS

CHANNELS = ("ticks", "book", "traps", "detections", "hf", "chaos", "alerts", "funding", "status",
            *(f"candles:{i}" for i in INTERVALS), "ingest")
"""Channels a client can subscribe to."""
TOO_SLOW = 1008
"""Close code of a client that does not keep up (RFC 6455 policy violation)."""
QUEUE_SIZE = 1_000
SEND_TIMEOUT = 2.0


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
    """One subscriber: what it wants, its queue of frames and its sender task."""

    def __init__(self, ws, queue_size: int, send_timeout: float) -> None:
        self.ws = ws
        self.wants: set[tuple[str, str | None]] = set()  # (channel, symbol); None: any symbol
        self.queue: deque[str] = deque()
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.ready = asyncio.Event()
        self.closed = False
        self.sent = 0
        self.handler: asyncio.Task | None = None  # the task serving this connection

    def offer(self, frame: str) -> bool:
        """Queue a frame; False if the queue is full (the client is too slow)."""
        if len(self.queue) >= self.queue_size:
            return False
        self.queue.append(frame)
        self.ready.set()
        return True

    async def sender(self) -> None:
        """Send queued frames until closed; a send over the timeout closes the client."""
        while not self.closed:
            await self.ready.wait()
            self.ready.clear()
            while self.queue and not self.closed:
                frame = self.queue.popleft()
                try:
                    async with asyncio.timeout(self.send_timeout):  # no task per send
                        await self.ws.send_text(frame)
                except TimeoutError:
                    await self.close(TOO_SLOW, "too slow: send timed out")
                    return
                except Exception:  # noqa: BLE001 - the socket is gone
                    self.closed = True
                    return
                self.sent += 1

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
        Seconds one send may take.
    """

    def __init__(self, symbols: tuple[str, ...], queue_size: int = QUEUE_SIZE,
                 send_timeout: float = SEND_TIMEOUT) -> None:
        self.symbols = symbols
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.clients: set[Client] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.dropped = 0  # clients closed for being too slow

    def publish(self, channel: str, symbol: str | None, rows: list[dict]) -> None:
        """Send one message to every client that wants it (from any thread)."""
        if self.clients and rows and self.loop is not None:
            self.loop.call_soon_threadsafe(self._dispatch, channel, symbol, rows, time.time_ns())

    def _dispatch(self, channel: str, symbol: str | None, rows: list[dict],
                  published: int) -> None:
        frame = None
        for client in list(self.clients):
            if (channel, symbol) in client.wants or (channel, None) in client.wants or (
                    symbol is None and any(c == channel for c, _ in client.wants)):
                if frame is None:
                    frame = orjson.dumps({"channel": channel, "symbol": symbol,
                                          "published_ns": published, "data": rows},
                                         option=orjson.OPT_SERIALIZE_NUMPY).decode()
                if not client.closed and not client.offer(frame):
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
                client.offer(self._answer(client, text))
        except asyncio.CancelledError:
            if not client.closed:
                raise  # the server is stopping, not this client
        finally:
            self.clients.discard(client)
            await client.end(sender)

    def _answer(self, client: Client, text: str) -> str:
        """Apply one request; the answer frame."""
        try:
            req = Request.model_validate_json(text)
        except ValidationError as err:
            detail = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'request'}: {e['msg']}"
                               for e in err.errors())
            return orjson.dumps({"op": "error", "detail": detail}).decode()
        if req.op == "ping":
            return '{"op":"pong"}'
        unknown = [s for s in req.symbols or () if s not in self.symbols]
        if unknown:
            return orjson.dumps({"op": "error", "detail": f"unknown symbol(s) {unknown}; the "
                                 f"run has {', '.join(self.symbols)}"}).decode()
        pairs = {(c, s) for c in req.channels for s in (req.symbols or [None])}
        if req.op == "subscribe":
            client.wants |= pairs
        else:
            client.wants -= pairs
            if req.symbols is None:  # unsubscribing a channel drops every symbol of it
                client.wants = {(c, s) for c, s in client.wants if c not in req.channels}
        return orjson.dumps({"op": f"{req.op}d", "channels": req.channels,
                             "symbols": req.symbols or list(self.symbols)}).decode()
