"""The gRPC server of ``trapsim serve``: ``PriceFeedService`` and ``HistoricalDataService``.

Both services read the same :class:`~trapsim.service.live.LiveState` as the REST
API, with the same computations and the same answers (prices as strings with the
symbol's decimals). ``SubscribePrices`` streams take the ticks the live state
publishes for the WebSocket hub: each stream has a queue of at most ``queue_size``
updates; a stream whose queue is full (its client does not read fast enough) is
dropped from the fan-out at once and ended with ``RESOURCE_EXHAUSTED``, so a slow
client never grows the server's memory. Every stream ends (OK) when the run ends,
once what it has waiting is sent.

The server runs ``grpc.aio`` on an event loop of its own, in a thread: it binds in
:class:`RpcServer`'s constructor (before the run starts) and is independent of the
HTTP server's loop. Status codes: an unknown symbol is ``NOT_FOUND``; a bad
interval, window or count ``INVALID_ARGUMENT``; nothing to answer from yet
(no tick, no book, too few returns) ``UNAVAILABLE``; each with a detail naming it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from collections import deque
from collections.abc import Iterable

import grpc
import numpy as np
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha import reflection

from trapsim.core.errors import ConfigError
from trapsim.core.time import NS, parse_ts
from trapsim.market.ohlcv import INTERVALS
from trapsim.market.symbols import SymbolSpec
from trapsim.service.api import MAX_HISTORY_ROWS, correlation, money, within
from trapsim.service.live import LiveState
from trapsim.service.rpc import historical_data_pb2 as hd
from trapsim.service.rpc import historical_data_pb2_grpc as hd_grpc
from trapsim.service.rpc import price_feed_pb2 as pf
from trapsim.service.rpc import price_feed_pb2_grpc as pf_grpc

QUEUE_SIZE = 10_000
"""Price updates a stream may have waiting (``--grpc-queue-size``)."""
MAX_CALLS = 1_000
"""Calls served at once (the seed's ``MAX_SUBSCRIBERS``); more get ``RESOURCE_EXHAUSTED``."""
PROFILE_BINS = 24
MAX_PROFILE_BINS = 1_000
Code = grpc.StatusCode


class Refused(Exception):
    """A call answered with a non-OK status ``code`` and a ``detail`` naming the problem."""

    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


def _ts(ns: int) -> Timestamp:
    return Timestamp(seconds=ns // NS, nanos=ns % NS)


def _window(request) -> tuple[int | None, int | None]:
    """The request's ``[start, end)`` in ns (None where unset)."""
    lo = request.start.ToNanoseconds() if request.HasField("start") else None
    hi = request.end.ToNanoseconds() if request.HasField("end") else None
    if lo is not None and hi is not None and hi <= lo:
        raise Refused(Code.INVALID_ARGUMENT, "end must be after start")
    return lo, hi


def _ticks(state: LiveState, symbol: str, lo: int | None, hi: int | None,
           ) -> dict[str, np.ndarray]:
    """The kept ticks of ``symbol`` in ``[lo, hi)`` (oldest first)."""
    cols = state.recent(symbol)
    a, b = np.searchsorted(cols["ts"], [lo if lo is not None else np.iinfo(np.int64).min,
                                        hi if hi is not None else np.iinfo(np.int64).max])
    return {f: c[a:b] for f, c in cols.items()}


class PriceFeed:
    """Fans the published ticks out to the open ``SubscribePrices`` streams.

    :meth:`publish` is called from the run's thread (it is the live state's
    publisher, beside the hub); the streams live on the gRPC event loop.

    Parameters
    ----------
    specs : dict of str to SymbolSpec
        The run's symbols and their decimals.
    queue_size : int, default :data:`QUEUE_SIZE`
        Updates a stream may have waiting before it is dropped.
    """

    def __init__(self, specs: dict[str, SymbolSpec], queue_size: int = QUEUE_SIZE) -> None:
        self.specs = specs
        self.queue_size = queue_size
        self.streams: set[_Stream] = set()
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ended = False  # the run has ended: streams end, new ones end at once
        self.dropped = 0  # streams ended for being too slow

    def listening(self) -> bool:
        """Whether any stream is open (the live state builds tick rows only then)."""
        return bool(self.streams)

    def publish(self, channel: str, symbol: str | None, rows: list[dict]) -> None:
        """Take one message of the live state (any thread): ticks and the run's end."""
        if self.loop is None:
            return
        if channel == "ticks" and self.streams:
            self.loop.call_soon_threadsafe(self._dispatch, symbol, rows)
        elif channel == "status" and any(r.get("event") == "ended" for r in rows):
            self.loop.call_soon_threadsafe(self._end)

    def open(self, symbols: frozenset[str]) -> _Stream:
        """A new stream of ``symbols`` (on the loop)."""
        stream = _Stream(symbols)
        if self.ended:
            stream.end()
        else:
            self.streams.add(stream)
        return stream

    def close(self, stream: _Stream) -> None:
        self.streams.discard(stream)

    def _dispatch(self, symbol: str, rows: list[dict]) -> None:
        wanting = [s for s in self.streams if symbol in s.symbols]
        if not wanting:
            return
        d = self.specs[symbol].decimals
        updates = [pf.PriceUpdate(symbol=symbol, ts=_ts(parse_ts(r["ts"])),
                                  price=money(r["price"], d), bid=money(r["bid"], d),
                                  ask=money(r["ask"], d), volume=r["volume"]) for r in rows]
        for stream in wanting:
            if len(stream.queue) + len(updates) > self.queue_size:
                self.streams.discard(stream)
                self.dropped += 1
                stream.drop()
            else:
                stream.queue.extend(updates)
                stream.ready.set()

    def _end(self) -> None:
        self.ended = True
        for stream in self.streams:
            stream.end()
        self.streams.clear()


class _Stream:
    """One ``SubscribePrices`` call: its symbols and its queue of updates."""

    def __init__(self, symbols: frozenset[str]) -> None:
        self.symbols = symbols
        self.queue: deque = deque()
        self.ready = asyncio.Event()
        self.live = True
        self.dropped = False

    def drop(self) -> None:
        """End at once: what is waiting is discarded."""
        self.dropped = True
        self.queue.clear()
        self.end()

    def end(self) -> None:
        """End once what is waiting is sent."""
        self.live = False
        self.ready.set()

    async def next(self):
        """The next update; None once the stream is ended (and drained) or dropped."""
        while not self.queue and self.live:
            self.ready.clear()
            await self.ready.wait()
        return self.queue.popleft() if self.queue else None


class _Service:
    """What both services read, and the checks they share."""

    def __init__(self, state: LiveState, specs: dict[str, SymbolSpec]) -> None:
        self.state = state
        self.specs = specs

    def symbol(self, name: str) -> str:
        if not name:
            raise Refused(Code.INVALID_ARGUMENT, "symbol is required; the run has "
                          f"{', '.join(self.state.symbols)}")
        if name not in self.state.symbols:
            raise Refused(Code.NOT_FOUND, f"unknown symbol {name!r}; the run has "
                          f"{', '.join(self.state.symbols)}")
        return name

    def symbols(self, names: Iterable[str]) -> tuple[str, ...]:
        """``names`` checked, or every symbol of the run if none."""
        return tuple(self.symbol(s) for s in names) or self.state.symbols

    def money(self, x: float, symbol: str) -> str:
        return money(float(x), self.specs[symbol].decimals)

    def candles(self, symbol: str, interval: str, lo: int | None, hi: int | None,
                limit: int = MAX_HISTORY_ROWS) -> list[dict]:
        """Kept candles of ``symbol`` opened in ``[lo, hi)``, the last ``limit``."""
        if interval not in INTERVALS:
            raise Refused(Code.INVALID_ARGUMENT, f"unknown interval {interval!r}; use one of "
                          f"{', '.join(INTERVALS)}")
        return [r for r in self.state.candle_rows(symbol, interval)
                if within(r["ts"], lo, hi)][-limit:]


def _unary(compute):
    """An async gRPC handler running ``compute(self, request)`` off the loop; a
    :class:`Refused` becomes the call's status."""

    async def handler(self, request, context):
        try:
            return await asyncio.to_thread(compute, self, request)
        except Refused as refused:
            await context.abort(refused.code, refused.detail)

    handler.__name__ = compute.__name__
    handler.__doc__ = compute.__doc__
    return handler


class PriceFeedServicer(_Service, pf_grpc.PriceFeedServiceServicer):
    """``trapsim.v1.PriceFeedService`` over a live state and a :class:`PriceFeed`."""

    def __init__(self, state: LiveState, specs: dict[str, SymbolSpec], feed: PriceFeed) -> None:
        super().__init__(state, specs)
        self.feed = feed

    async def SubscribePrices(self, request, context):
        """Stream the requested symbols' ticks until the run ends or the client falls behind."""
        try:
            symbols = frozenset(self.symbols(request.symbols))
        except Refused as refused:
            await context.abort(refused.code, refused.detail)
        stream = self.feed.open(symbols)
        try:
            while (update := await stream.next()) is not None:
                await context.write(update)
        finally:
            self.feed.close(stream)
        if stream.dropped:
            await context.abort(Code.RESOURCE_EXHAUSTED, "too slow: more than "
                                f"{self.feed.queue_size} price updates waiting "
                                "(--grpc-queue-size); subscribe again")

    @_unary
    def GetCurrentPrice(self, request):
        """The last tick of a symbol."""
        symbol = self.symbol(request.symbol)
        cols = self.state.recent(symbol, 1)
        if not len(cols["ts"]):
            raise Refused(Code.UNAVAILABLE, f"no {symbol} tick yet")
        return pf.Price(symbol=symbol, ts=_ts(int(cols["ts"][0])),
                        **{k: self.money(cols[k][0], symbol) for k in ("price", "bid", "ask")},
                        volume=float(cols["volume"][0]),
                        regime=self.state.regime.get(symbol, ""))

    @_unary
    def GetPriceHistory(self, request):
        """Ticks ("1s") or candle closes of a symbol in a window."""
        symbol = self.symbol(request.symbol)
        interval = request.interval or "1m"
        lo, hi = _window(request)
        if interval == "1s":
            cols = {f: c[-MAX_HISTORY_ROWS:] for f, c in _ticks(self.state, symbol, lo, hi)
                    .items()}
            points = [pf.PricePoint(ts=_ts(t), price=self.money(p, symbol), volume=v)
                      for t, p, v in zip(cols["ts"].tolist(), cols["price"].tolist(),
                                         cols["volume"].tolist(), strict=True)]
        else:
            if interval not in INTERVALS:
                raise Refused(Code.INVALID_ARGUMENT, f"unknown interval {interval!r}; use 1s "
                              f"or one of {', '.join(INTERVALS)}")
            points = [pf.PricePoint(ts=_ts(parse_ts(r["ts"])), price=self.money(r["close"],
                                                                                 symbol),
                                    volume=r["volume"])
                      for r in self.candles(symbol, interval, lo, hi)]
        return pf.PriceHistoryResponse(symbol=symbol, interval=interval, points=points)

    @_unary
    def GetMarketDepth(self, request):
        """The latest L2 snapshot of a symbol, best levels first."""
        symbol = self.symbol(request.symbol)
        book = self.state.books.get(symbol)
        if book is None:
            raise Refused(Code.UNAVAILABLE, f"no {symbol} book yet (the run takes depth "
                          "snapshots every --depth-every seconds; 0 turns them off)")
        n = request.levels or None
        return pf.MarketDepthResponse(symbol=symbol, ts=_ts(parse_ts(book["ts"])), **{
            side: [pf.DepthLevel(price=self.money(p, symbol), quantity=q)
                   for p, q in book[side][:n]] for side in ("bids", "asks")})


class HistoricalDataServicer(_Service, hd_grpc.HistoricalDataServiceServicer):
    """``trapsim.v1.HistoricalDataService`` over a live state."""

    @_unary
    def GetOHLCV(self, request):
        """Candles of one interval in a window."""
        symbol = self.symbol(request.symbol)
        interval = request.interval or "1m"
        lo, hi = _window(request)
        rows = self.candles(symbol, interval, lo, hi, min(request.limit or MAX_HISTORY_ROWS,
                                                          MAX_HISTORY_ROWS))
        return hd.OHLCVResponse(symbol=symbol, interval=interval, candles=[
            hd.Candle(ts=_ts(parse_ts(r["ts"])), volume=r["volume"],
                      **{k: self.money(r[k], symbol) for k in ("open", "high", "low", "close")})
            for r in rows])

    @_unary
    def GetVolumeProfile(self, request):
        """Volume per equal-width price bin over the ticks of a window."""
        symbol = self.symbol(request.symbol)
        bins = request.bins or PROFILE_BINS
        if bins > MAX_PROFILE_BINS:
            raise Refused(Code.INVALID_ARGUMENT, f"bins must be at most {MAX_PROFILE_BINS}, "
                          f"got {bins}")
        lo, hi = _window(request)
        if not len(self.state.recent(symbol, 1)["ts"]):
            raise Refused(Code.UNAVAILABLE, f"no {symbol} tick yet")
        cols = _ticks(self.state, symbol, lo, hi)
        price, volume = cols["price"], cols["volume"]
        if not len(price):
            return hd.VolumeProfileResponse(symbol=symbol)
        # At least one price increment wide: a pegged symbol can sit on one price.
        low = price.min()
        high = max(price.max(), low + 10.0 ** -self.specs[symbol].decimals)
        totals, edges = np.histogram(price, bins=bins, range=(low, high), weights=volume)
        top = int(np.argmax(totals))
        return hd.VolumeProfileResponse(
            symbol=symbol, first_ts=_ts(int(cols["ts"][0])), last_ts=_ts(int(cols["ts"][-1])),
            ticks=len(price), total_volume=float(volume.sum()),
            bins=[hd.VolumeBin(price_low=self.money(a, symbol), price_high=self.money(b, symbol),
                               volume=float(v))
                  for a, b, v in zip(edges[:-1], edges[1:], totals, strict=True)],
            point_of_control=self.money((edges[top] + edges[top + 1]) / 2, symbol))

    @_unary
    def GetCorrelationMatrix(self, request):
        """Correlation of 1-minute log returns of the requested symbols."""
        names = self.symbols(request.symbols)
        corr = correlation(self.state, names)
        if corr["matrix"] is None:
            raise Refused(Code.UNAVAILABLE, "fewer than 3 one-minute returns kept yet")
        return hd.CorrelationResponse(symbols=names, interval="1m", returns=corr["returns"],
                                      rows=[hd.CorrelationRow(values=[np.nan if x is None else x
                                                                      for x in row])
                                            for row in corr["matrix"]])


def _probe(host: str, port: int) -> None:
    """Raise a :class:`ConfigError` naming why ``host:port`` cannot be bound, if it cannot
    (gRPC's own bind failure says only that it failed, and logs the reason)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC binds
        try:
            probe.bind((host, port))
        except OSError as err:
            raise ConfigError(f"cannot listen on {host}:{port} for gRPC: {err.strerror} "
                              "(--grpc-port; 0 turns gRPC off)") from None


class RpcServer:
    """The gRPC server, bound at construction, serving from its own event-loop thread.

    Parameters
    ----------
    host : str
        Address to listen on.
    port : int
        Port to listen on.
    specs : dict of str to SymbolSpec
        The run's symbols and their decimals.
    queue_size : int, default :data:`QUEUE_SIZE`
        Updates a ``SubscribePrices`` stream may have waiting.

    Raises
    ------
    ConfigError
        If the address cannot be bound.
    """

    def __init__(self, host: str, port: int, specs: dict[str, SymbolSpec],
                 queue_size: int = QUEUE_SIZE) -> None:
        _probe(host, port)
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.feed = PriceFeed(specs, queue_size)
        self.loop = asyncio.new_event_loop()
        self.feed.loop = self.loop
        self.thread = threading.Thread(target=self.loop.run_forever, name="trapsim-grpc",
                                       daemon=True)
        self.thread.start()
        try:
            self.server = self._call(self._bind())
        except BaseException:
            self._close_loop()
            raise

    def _call(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result()

    async def _bind(self) -> grpc.aio.Server:
        # No SO_REUSEPORT: a second server on the same port must fail, not share it.
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)],
                                 maximum_concurrent_rpcs=MAX_CALLS)
        try:
            server.add_insecure_port(self.address)
        except RuntimeError:
            raise ConfigError(f"cannot listen on {self.address} for gRPC (--grpc-port; 0 "
                              "turns gRPC off)") from None
        return server

    def start(self, state: LiveState) -> None:
        """Serve both services (and server reflection) over ``state``."""
        specs = self.feed.specs
        pf_grpc.add_PriceFeedServiceServicer_to_server(
            PriceFeedServicer(state, specs, self.feed), self.server)
        hd_grpc.add_HistoricalDataServiceServicer_to_server(
            HistoricalDataServicer(state, specs), self.server)
        reflection.enable_server_reflection((
            pf.DESCRIPTOR.services_by_name["PriceFeedService"].full_name,
            hd.DESCRIPTOR.services_by_name["HistoricalDataService"].full_name,
            reflection.SERVICE_NAME), self.server)
        self._call(self.server.start())

    def stop(self, grace: float = 2.0) -> None:
        """Stop serving: calls still going get ``grace`` seconds, then are cancelled."""
        self._call(self.server.stop(grace))
        self._call(self.loop.shutdown_default_executor())
        self._close_loop()

    def _close_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join()
        self.loop.close()
