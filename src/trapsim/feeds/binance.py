"""Binance spot market data: stream messages, the local order book, and the live adapter.

Everything follows Binance's Spot API documentation
(https://developers.binance.com/docs/binance-spot-api-docs):

- *WebSocket Streams*: combined streams at ``/stream?streams=a/b/c`` deliver
  ``{"stream": name, "data": payload}``; ``<symbol>@trade`` (``t`` id, ``p``
  price, ``q`` quantity, ``T`` trade time ms, ``m`` buyer is the maker),
  ``<symbol>@bookTicker`` (``u`` book update id, ``b``/``B`` best bid and its
  quantity, ``a``/``A`` best ask and its quantity) and
  ``<symbol>@depth@100ms`` (``E`` event time ms, ``U`` first and ``u`` last
  update id, ``b``/``a`` changed price levels, quantity 0 = level removed).
- *How to manage a local order book correctly*: buffer the diffs, fetch a
  snapshot (``GET /api/v3/depth``), fetch again while its ``lastUpdateId`` is
  below the first buffered ``U``, drop the buffered diffs with ``u <=
  lastUpdateId``, then apply the diffs in order; the first applied one must
  satisfy ``U <= lastUpdateId + 1 <= u`` and each later one ``U = previous u +
  1``, else the book is out of sync and is rebuilt from a new snapshot.
- *Market Data endpoints*: ``GET /api/v3/klines`` (1-minute candles).

Prices and quantities travel as decimal strings with 8 decimals; the book keeps
them as exact integers of 1e-8 units (no float drift), events carry floats.
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import time
from collections.abc import AsyncIterator, Iterator
from typing import NamedTuple

import httpx
import numpy as np
import orjson
import pyarrow as pa
import websockets

from trapsim.core.errors import DataError
from trapsim.core.schemas import CANDLES
from trapsim.core.time import MINUTE_NS

SCALE = 10**8
"""Integer units per price or quantity unit: Binance's 8 decimals."""
MS = 1_000_000
"""Nanoseconds per millisecond (Binance times are epoch ms)."""
VENUE_SYMBOLS = {"BTC-USD": "BTCUSDT", "ETH-USD": "ETHUSDT"}
"""trapsim symbol → Binance spot symbol quoted in USDT (taken as USD)."""
SNAPSHOT_LIMIT = 1000
"""Levels per side asked of ``GET /api/v3/depth``."""


def units(text: str) -> int:
    """A Binance decimal string as an exact int of 1e-8 units.

    Raises
    ------
    DataError
        If ``text`` is not a non-negative decimal with at most 8 decimals.
    """
    if len(text) > 9 and text[-9] == "." and text[0] != "-":
        try:
            return int(text[:-9] + text[-8:])  # the wire format: exactly 8 decimals
        except ValueError:
            pass
    whole, _, frac = text.partition(".")
    if not (whole.isdigit() and (frac.isdigit() or frac == "") and len(frac) <= 8):
        raise DataError(f"not a Binance decimal with at most 8 decimals: {text!r}")
    return int(whole) * SCALE + int(frac.ljust(8, "0") or 0)


class Trade(NamedTuple):
    """One trade of the ``@trade`` stream."""

    ts: int  # trade time, ns UTC
    recv_ns: int  # when it was received, ns UTC
    symbol: str
    trade_id: int
    price: float
    qty: float
    taker: str  # "buy" or "sell": the aggressor's side


class Quote(NamedTuple):
    """Best bid and ask of the ``@bookTicker`` stream, as of book update ``update_id``."""

    recv_ns: int
    symbol: str
    update_id: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


class BookTop(NamedTuple):
    """Best bid and ask of the local book after a diff, as of book update ``update_id``."""

    ts: int  # the diff's event time, ns UTC
    recv_ns: int
    symbol: str
    update_id: int
    bid: float
    bid_qty: float
    ask: float
    ask_qty: float


class L2Book:
    """Price levels of both sides, exact integers of 1e-8 units, best prices kept current.

    Each side is a dict price → quantity plus a heap of its prices with lazy
    deletion (removed prices leave the heap when they reach its top), so a level
    update costs O(log n) at most and finding the new best after the best level
    goes is amortised O(log n).
    """

    __slots__ = ("_ask_heap", "_bid_heap", "asks", "bids", "update_id")

    def __init__(self) -> None:
        self.bids: dict[int, int] = {}
        self.asks: dict[int, int] = {}
        self._bid_heap: list[int] = []  # negated bid prices
        self._ask_heap: list[int] = []
        self.update_id: int | None = None

    def reset(self, update_id: int, bids: list, asks: list) -> None:
        """Install a snapshot: ``bids``/``asks`` as ``[[price, qty], …]`` decimal strings."""
        self.bids, self.asks = {}, {}
        self._bid_heap, self._ask_heap = [], []
        self.apply(bids, asks)
        self.update_id = update_id

    def apply(self, bids: list, asks: list) -> None:
        """Apply changed levels (``[[price, qty], …]``; quantity 0 removes the level)."""
        self._side(bids, self.bids, self._bid_heap, -1)
        self._side(asks, self.asks, self._ask_heap, 1)

    @staticmethod
    def _side(levels: list, side: dict, heap: list, sign: int) -> None:
        push = heapq.heappush
        for p, q in levels:
            # The wire format has exactly 8 decimals; anything else takes units()'s checks.
            if len(p) > 9 and p[-9] == ".":
                price = int(p[:-9] + p[-8:])
            else:
                price = units(p)
            if q == "0.00000000":
                side.pop(price, None)
                continue
            qty = int(q[:-9] + q[-8:]) if len(q) > 9 and q[-9] == "." else units(q)
            if qty:
                if price not in side:
                    push(heap, sign * price)
                side[price] = qty
            else:
                side.pop(price, None)
        if len(heap) > 2 * len(side) + 64:  # drop the removed prices' entries
            heap[:] = [sign * price for price in side]
            heapq.heapify(heap)

    @property
    def best_bid(self) -> int | None:
        """Highest bid price (units), None for an empty side."""
        heap, side = self._bid_heap, self.bids
        while heap and -heap[0] not in side:
            heapq.heappop(heap)
        return -heap[0] if heap else None

    @property
    def best_ask(self) -> int | None:
        """Lowest ask price (units), None for an empty side."""
        heap, side = self._ask_heap, self.asks
        while heap and heap[0] not in side:
            heapq.heappop(heap)
        return heap[0] if heap else None

    def depth(self, n: int) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """The best ``n`` levels per side as ``(price, qty)`` units, best first."""
        bids = heapq.nlargest(n, self.bids)
        asks = heapq.nsmallest(n, self.asks)
        return [(p, self.bids[p]) for p in bids], [(p, self.asks[p]) for p in asks]

    @property
    def crossed(self) -> bool:
        """Best bid at or above best ask (never, for a book in sync)."""
        bid, ask = self.best_bid, self.best_ask
        return bid is not None and ask is not None and bid >= ask


class SpotStream:
    """The events of one symbol's Binance combined stream, with its local order book.

    Feed every message with :meth:`on_message` in arrival order; when
    :attr:`needs_snapshot` is true, fetch ``GET /api/v3/depth`` and pass it to
    :meth:`on_snapshot` (a recording carries it in-line, and
    :meth:`on_message` takes it too).

    Parameters
    ----------
    symbol : str
        The trapsim symbol the events carry (``BTC-USD``).

    Attributes
    ----------
    book : L2Book
        The local book; in sync while :attr:`synced`.
    resyncs : int
        Times a sequence gap threw the book away.
    """

    def __init__(self, symbol: str = "BTC-USD") -> None:
        self.symbol = symbol
        self.book = L2Book()
        self.synced = False
        self.resyncs = 0
        self._buffer: list[tuple[int, dict]] = []

    @property
    def needs_snapshot(self) -> bool:
        """Diffs are buffered and no usable snapshot is installed."""
        return not self.synced and bool(self._buffer)

    def on_message(self, raw: bytes | str, recv_ns: int) -> list:
        """Events of one raw message: a :class:`Trade`, a :class:`Quote`, the
        :class:`BookTop` after a diff, or nothing (a buffered diff, a snapshot).

        Raises
        ------
        DataError
            If the message is not JSON of a known stream.
        """
        try:
            msg = orjson.loads(raw)
            stream = msg.get("stream")
            if stream is None and "lastUpdateId" in msg:
                return self.on_snapshot(msg, recv_ns)
            d = msg["data"]
            kind = stream[stream.index("@") + 1:]
            if kind == "bookTicker":
                return [Quote(recv_ns, self.symbol, d["u"], float(d["b"]), float(d["B"]),
                              float(d["a"]), float(d["A"]))]
            if kind == "trade":
                return [Trade(d["T"] * MS, recv_ns, self.symbol, d["t"], float(d["p"]),
                              float(d["q"]), "sell" if d["m"] else "buy")]
            if kind.startswith("depth"):
                return self._diff(recv_ns, d)
        except (orjson.JSONDecodeError, AttributeError, KeyError, TypeError, ValueError) as exc:
            raise DataError(f"bad Binance message: {exc}: {bytes(raw[:120])!r}") from None
        raise DataError(f"unknown Binance stream {stream!r}")

    def on_snapshot(self, snap: dict, recv_ns: int) -> list:
        """Install a ``GET /api/v3/depth`` snapshot and apply the buffered diffs after it.

        Returns the :class:`BookTop` after them (or nothing). Leaves
        :attr:`needs_snapshot` true if the snapshot is older than the first
        buffered diff (fetch another).
        """
        last = snap["lastUpdateId"]
        buffered = [(t, d) for t, d in self._buffer if d["u"] > last]
        if buffered and buffered[0][1]["U"] > last + 1:
            return []  # older than the diffs: the docs' "get a new snapshot"
        self.book.reset(last, snap["bids"], snap["asks"])
        self.synced = True
        self._buffer = []
        out: list = []
        for t, d in buffered:
            out = self._diff(t, d) or out
        return out[-1:]

    def _diff(self, recv_ns: int, d: dict) -> list:
        if not self.synced:
            self._buffer.append((recv_ns, d))
            return []
        book = self.book
        if d["u"] <= book.update_id:
            return []  # already in the book
        if d["U"] > book.update_id + 1:
            # A gap: the book is no longer the venue's; rebuild from a new snapshot.
            self.synced = False
            self.resyncs += 1
            self._buffer = [(recv_ns, d)]
            return []
        book.apply(d["b"], d["a"])
        book.update_id = d["u"]
        bid, ask = book.best_bid, book.best_ask
        if bid is None or ask is None:
            return []
        return [BookTop(d["E"] * MS, recv_ns, self.symbol, d["u"], bid / SCALE,
                        book.bids[bid] / SCALE, ask / SCALE, book.asks[ask] / SCALE)]


def read_recording(path) -> Iterator[tuple[int, bytes]]:
    """Lines of a recorded Binance stream: ``<receive time ns> <JSON>`` per line, gzip or not.

    Yields
    ------
    (int, bytes)
        Receive time (ns UTC) and the raw JSON message.

    Raises
    ------
    DataError
        On a line without a time and a message, naming the line.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            for n, line in enumerate(fh, 1):
                head, _, body = line.partition(b" ")
                if not head.isdigit() or not body.strip():
                    raise DataError(f"{path}: line {n} is not '<time ns> <JSON>'")
                yield int(head), body
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


class BinanceSpotAdapter:
    """Live Binance spot market data of one symbol: trades, best quotes, and a local book.

    Connects to the combined stream of ``<s>@trade``, ``<s>@bookTicker`` and
    ``<s>@depth@100ms``, builds the book from a REST snapshot plus the diffs
    (refetching on a gap), and yields :class:`Trade`, :class:`Quote` and
    :class:`BookTop` events.

    Parameters
    ----------
    symbol : str
        trapsim symbol, a key of :data:`VENUE_SYMBOLS`.
    ws_url, rest_url : str
        Stream and REST base URLs (Binance's, or a local venue's).
    timeout : float
        Seconds to wait for a connection, a snapshot or the next message; a
        silent stream raises (the caller fails over).

    Raises
    ------
    DataError
        For an unknown symbol (construction) or a malformed message (while streaming).
    """

    def __init__(self, symbol: str = "BTC-USD", *, ws_url: str = "wss://stream.binance.com:9443",
                 rest_url: str = "https://api.binance.com", timeout: float = 30.0) -> None:
        if symbol not in VENUE_SYMBOLS:
            raise DataError(f"no Binance spot market for {symbol!r}; "
                            f"known: {', '.join(VENUE_SYMBOLS)}")
        self.symbol = symbol
        self.venue_symbol = VENUE_SYMBOLS[symbol]
        self.ws_url = ws_url.rstrip("/")
        self.rest_url = rest_url.rstrip("/")
        self.timeout = timeout
        self.stream = SpotStream(symbol)

    @property
    def stream_url(self) -> str:
        s = self.venue_symbol.lower()
        return f"{self.ws_url}/stream?streams={s}@trade/{s}@bookTicker/{s}@depth@100ms"

    async def snapshot(self, client: httpx.AsyncClient) -> dict:
        """``GET /api/v3/depth`` of the symbol."""
        resp = await client.get(f"{self.rest_url}/api/v3/depth",
                                params={"symbol": self.venue_symbol, "limit": SNAPSHOT_LIMIT})
        resp.raise_for_status()
        return resp.json()

    async def events(self) -> AsyncIterator[Trade | Quote | BookTop]:
        """Events as they arrive, until the venue closes the stream.

        Raises
        ------
        TimeoutError
            If no message comes for ``timeout`` seconds (a stale feed).
        websockets.ConnectionClosedError, OSError, httpx.HTTPError
            If the connection fails or drops, or the snapshot cannot be fetched.
        """
        stream = self.stream
        async with (
            httpx.AsyncClient(timeout=self.timeout) as client,
            websockets.connect(self.stream_url, open_timeout=self.timeout,
                               max_size=2**24) as ws,
        ):
            fetching: asyncio.Task | None = None
            while True:
                try:
                    raw = await asyncio.wait_for(ws.recv(decode=False), self.timeout)
                except websockets.ConnectionClosedOK:
                    return  # the venue closed the stream cleanly
                for event in stream.on_message(raw, time.time_ns()):
                    yield event
                if fetching is not None and fetching.done():
                    for event in stream.on_snapshot(fetching.result(), time.time_ns()):
                        yield event
                    fetching = None
                if stream.needs_snapshot and fetching is None:
                    fetching = asyncio.create_task(self.snapshot(client))


async def fetch_klines(symbol: str, start_ns: int, end_ns: int, *,
                       rest_url: str = "https://api.binance.com",
                       timeout: float = 30.0) -> pa.Table:
    """1-minute candles of ``[start_ns, end_ns)`` from ``GET /api/v3/klines`` (1000 a request).

    Returns
    -------
    pyarrow.Table
        Schema :data:`~trapsim.core.schemas.CANDLES`, ``interval`` ``1m``.

    Raises
    ------
    DataError
        For an unknown symbol or a malformed answer.
    httpx.HTTPError
        If the venue cannot be reached or answers with an error status.
    """
    if symbol not in VENUE_SYMBOLS:
        raise DataError(f"no Binance spot market for {symbol!r}")
    rows: list = []
    t = start_ns - start_ns % MINUTE_NS
    async with httpx.AsyncClient(timeout=timeout) as client:
        while t < end_ns:
            resp = await client.get(f"{rest_url.rstrip('/')}/api/v3/klines", params={
                "symbol": VENUE_SYMBOLS[symbol], "interval": "1m", "startTime": t // MS,
                "endTime": (end_ns - 1) // MS, "limit": 1000})
            resp.raise_for_status()
            page = resp.json()
            if not page:
                break
            rows += page
            t = int(page[-1][0]) * MS + MINUTE_NS
    try:
        ts = np.array([int(r[0]) for r in rows], np.int64) * MS
        cols = {name: np.array([float(r[i]) for r in rows]) for i, name in
                enumerate(("open", "high", "low", "close", "volume"), 1)}
    except (IndexError, TypeError, ValueError) as exc:
        raise DataError(f"malformed klines from {rest_url}: {exc}") from None
    return pa.table({
        "ts": pa.array(ts, pa.int64()).cast(CANDLES.field("ts").type),
        "symbol": pa.array([symbol] * len(ts), pa.string()),
        "interval": pa.array(["1m"] * len(ts), pa.string()),
        **cols,
    }, schema=CANDLES)
