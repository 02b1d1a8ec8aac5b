"""A local venue that speaks Binance's spot wire protocol, replaying a recorded stream.

Point :class:`~trapsim.feeds.binance.BinanceSpotAdapter` (or any Binance client) at
``ws://127.0.0.1:<port>`` and ``http://127.0.0.1:<port>``: the combined stream
``/stream?streams=…`` sends the recording's stream messages one by one, paced by
their receive times divided by ``speed`` (or as fast as the client reads), and
``GET /api/v3/depth`` answers with the recording's REST snapshot. ``GET
/api/v3/klines`` answers from a candle table when one is given. Each connection
replays the recording from its start. There is no internet here, so this is how
the adapter is tested, and how a bot can be tested against a real venue's
messages.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pyarrow as pa
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from trapsim.core.errors import DataError
from trapsim.feeds.binance import MS, read_recording


class RecordedVenue:
    """Serves a recorded Binance stream on 127.0.0.1.

    Parameters
    ----------
    recording : path
        ``<receive time ns> <JSON>`` lines (:func:`~trapsim.feeds.binance.read_recording`),
        with at least one REST depth snapshot line.
    speed : float or None
        Replay speed (1 = as recorded); None sends as fast as the client reads.
    candles : pyarrow.Table, optional
        1-minute candles (``CANDLES`` columns) served by ``/api/v3/klines``.

    Raises
    ------
    DataError
        If the recording is malformed or holds no snapshot, or ``speed <= 0``.
    """

    def __init__(self, recording: str | Path, *, speed: float | None = None,
                 candles: pa.Table | None = None) -> None:
        if speed is not None and not speed > 0:
            raise DataError(f"replay speed must be > 0, got {speed}")
        self.speed = speed
        self.messages: list[tuple[int, bytes]] = []
        self.snapshot: bytes | None = None
        for ts, body in read_recording(recording):
            if body.lstrip().startswith(b'{"lastUpdateId"'):
                self.snapshot = self.snapshot or body.strip()
            else:
                self.messages.append((ts, body.strip()))
        if self.snapshot is None:
            raise DataError(f"{recording}: no REST depth snapshot line")
        self._klines = None
        if candles is not None:
            t = candles["ts"].cast(pa.int64()).to_numpy() // MS
            # Binance sends prices as decimal strings; repr keeps every float exact.
            self._klines = (t, *([repr(x) for x in candles[c].to_pylist()] for c in
                                 ("open", "high", "low", "close", "volume")))
        self._server: Server | None = None
        self.port: int | None = None

    async def start(self, port: int = 0) -> int:
        """Listen on 127.0.0.1 (``port`` 0: a free one); returns the port."""
        self._server = await serve(self._stream, "127.0.0.1", port,
                                   process_request=self._rest, max_size=2**24)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def stop(self) -> None:
        """Close the listener and every connection."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    @property
    def url(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _rest(self, connection: ServerConnection, request: Request) -> Response | None:
        parts = urlsplit(request.path)
        if parts.path == "/stream":
            return None  # the websocket handshake goes on
        if parts.path == "/api/v3/depth":
            return connection.respond(200, self.snapshot.decode())
        if parts.path == "/api/v3/klines" and self._klines is not None:
            return connection.respond(200, self._klines_page(parse_qs(parts.query)))
        return connection.respond(404, "not found\n")

    def _klines_page(self, q: dict) -> str:
        t, o, h, lo, c, v = self._klines
        start = int(q.get("startTime", [0])[0])
        end = int(q.get("endTime", [2**62])[0])
        limit = int(q.get("limit", [500])[0])
        i = int(np.searchsorted(t, start))
        j = min(int(np.searchsorted(t, end, side="right")), i + limit)
        return json.dumps([[int(t[k]), o[k], h[k], lo[k], c[k], v[k], int(t[k]) + 59_999]
                           for k in range(i, j)])

    async def _stream(self, ws: ServerConnection) -> None:
        t0 = asyncio.get_running_loop().time()
        first = self.messages[0][0] if self.messages else 0
        for ts, body in self.messages:
            if self.speed is not None:
                due = t0 + (ts - first) / 1e9 / self.speed
                delay = due - asyncio.get_running_loop().time()
                if delay > 0:
                    try:  # wait, unless the client leaves or the venue stops meanwhile
                        await asyncio.wait_for(ws.wait_closed(), delay)
                        return
                    except TimeoutError:
                        pass
            try:
                await ws.send(body, text=True)
            except ConnectionClosed:
                return  # the client left or the venue stopped
        await ws.close()
