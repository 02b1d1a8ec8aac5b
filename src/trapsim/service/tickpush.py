"""The Micro Trading Bot's plain tick push (seed 004): ``trapsim serve --ws-port 8765``.

A WebSocket server of its own port that sends every tick of every symbol to every
connected client, with no subscription: the feed the seed's bot reads from
``ws://localhost:8765``. On connect a client gets the seed server's greeting
``{"status": "connected", "message": …, "timestamp": ISO 8601}``; then one text
frame per tick in the seed's event format (Polygon's, as its server maps it)::

    {"request_id": "<32 hex>", "status": "OK",
     "results": {"T": symbol, "P": price, "p": bid, "S": volume, "s": volume,
                 "t": ts, "q": ts, "y": ts, "X": 11, "x": 11, "z": 1}}

``P`` is the last price and ``p`` the bid (numbers rounded to the symbol's
decimals: the seed's format, not trapsim's money strings), ``S`` and ``s`` the
tick's volume (the seed's bot reads ``S`` as the volume; trapsim volumes are base
units, not whole shares), ``t``, ``q`` and ``y`` the tick's market time in integer
ns, ``X``/``x`` the seed's fixed exchange code 11 and ``z`` its tape 1.
``request_id`` is a digest of symbol and time (the seed's is random; this one
repeats with the run). The ask is not in the format; ``/ws`` has it.

Messages from a client are read and ignored. A client is served as by the hub
(:mod:`trapsim.service.hub`): at most ``queue_size`` frames waiting and a send
timeout, else it is closed with code 1008 and never slows the others.
"""

import asyncio
import hashlib
import time

import orjson
from starlette.responses import PlainTextResponse
from starlette.websockets import WebSocket

from trapsim.core.time import iso, parse_ts
from trapsim.service.hub import (
    TOO_SLOW,
    Client,
    UvicornServer,
    frame,
    start_serving,
    uvicorn_server,
)

EXCHANGE = 11
"""The seed server's fixed exchange code."""


class TickPush:
    """Pushes every published tick to every client of its own WebSocket server.

    Parameters
    ----------
    decimals : dict of str to int
        Each symbol's price decimals.
    queue_size : int
        Frames a client may have waiting.
    send_timeout : float
        Seconds one send may take.
    max_message : int
        Largest message a client may send, bytes.
    """

    def __init__(self, decimals: dict[str, int], queue_size: int, send_timeout: float,
                 max_message: int) -> None:
        self.decimals = decimals
        self.queue_size = queue_size
        self.send_timeout = send_timeout
        self.max_message = max_message
        self.clients: set[Client] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self._server: UvicornServer | None = None
        self._serving: asyncio.Task | None = None

    async def start(self, sock) -> None:
        """Serve on the listening socket ``sock`` (in the running loop)."""
        self.loop = asyncio.get_running_loop()
        self._server = uvicorn_server(self._app, self.max_message)
        self._serving = await start_serving(self._server, sock)

    async def stop(self) -> None:
        """Close every client with code 1001 and stop serving."""
        await asyncio.gather(*(c.close(1001, "server shutting down") for c in list(self.clients)))
        if self._server is not None:
            self._server.should_exit = True
            await self._serving

    def publish(self, channel: str, symbol: str | None, rows: list[dict]) -> None:
        """Send ``rows`` of the ``ticks`` channel to every client (from any thread); other
        channels are not this feed's."""
        if channel == "ticks" and rows and self.clients and self.loop is not None:
            self.loop.call_soon_threadsafe(self._dispatch, symbol, rows)

    def _dispatch(self, symbol: str, rows: list[dict]) -> None:
        frames = b"".join(frame(self.message(symbol, row)) for row in rows)
        for client in list(self.clients):
            if client.closed:
                continue
            if not client.offer(frames, len(rows)):
                self.clients.discard(client)
                asyncio.ensure_future(client.close(TOO_SLOW, "too slow: queue full"))

    def message(self, symbol: str, row: dict) -> bytes:
        """One tick row (``ts`` ISO, ``price``, ``bid``, ``volume``) as the seed's event."""
        ns = parse_ts(row["ts"])
        d = self.decimals[symbol]
        request_id = hashlib.blake2b(f"{symbol}|{ns}".encode(), digest_size=16).hexdigest()
        return orjson.dumps({"request_id": request_id, "results": {
            "P": round(row["price"], d), "S": row["volume"], "T": symbol, "X": EXCHANGE,
            "p": round(row["bid"], d), "q": ns, "s": row["volume"], "t": ns, "x": EXCHANGE,
            "y": ns, "z": 1}, "status": "OK"})

    async def _app(self, scope, receive, send) -> None:
        """The ASGI app of the push's port: a WebSocket at any path, 426 to plain HTTP."""
        if scope["type"] == "websocket":
            ws = WebSocket(scope, receive, send)
            await ws.accept()
            await self._serve(ws)
        elif scope["type"] == "http":
            await PlainTextResponse("the tick push is a WebSocket: connect with ws://",
                                    status_code=426, headers={"Upgrade": "websocket"})(
                scope, receive, send)

    async def _serve(self, ws: WebSocket) -> None:
        client = Client(ws, self.queue_size, self.send_timeout)
        client.handler = asyncio.current_task()
        client.offer(frame(orjson.dumps({
            "status": "connected", "message": "trapsim tick push: every tick of "
            + ", ".join(self.decimals), "timestamp": iso(time.time_ns() // 1000 * 1000)})))
        self.clients.add(client)
        sender = asyncio.create_task(client.sender())
        try:
            while not client.closed:  # read (and drop) what the client sends, until it closes
                if (await ws.receive())["type"] == "websocket.disconnect":
                    break
        except asyncio.CancelledError:
            if not client.closed:
                raise  # the server is stopping, not this client
        except Exception:  # noqa: BLE001 - the connection failed: it is gone
            pass
        finally:
            self.clients.discard(client)
            await client.end(sender)
