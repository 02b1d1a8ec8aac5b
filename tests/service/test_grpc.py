"""The gRPC services of `trapsim serve` through a real channel: a real server process, the
stubs generated from the repository's .proto files, answers checked against the REST API."""

import signal
import socket

import grpc
import numpy as np
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from trapsim.core.time import NS, iso, parse_ts
from trapsim.market.regimes import REGIMES
from trapsim.service.rpc import historical_data_pb2 as hd
from trapsim.service.rpc import historical_data_pb2_grpc as hd_grpc
from trapsim.service.rpc import price_feed_pb2 as pf
from trapsim.service.rpc import price_feed_pb2_grpc as pf_grpc

from .conftest import trapsim
from .serving import Server, free_port, wait_market

ALL = "BTC-USD,ETH-USD,USDT-USD,BTC-ETH,BTC-USD-PERP"
QUEUE = 2000
TIMEOUT = 60  # seconds a call may take on a loaded machine


def ts(ns: int) -> Timestamp:
    return Timestamp(seconds=ns // NS, nanos=ns % NS)


def market_now(server) -> int:
    return parse_ts(server.get("/health").json()["market_time"])


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    grpc_port = free_port()
    s = Server(tmp_path_factory.mktemp("grpc"), "--symbols", ALL, "--sleep", "0.005",
               "--depth-every", "60", "--grpc-port", grpc_port, "--grpc-queue-size", QUEUE)
    s.target = f"127.0.0.1:{grpc_port}"
    s.channel = grpc.insecure_channel(s.target)
    grpc.channel_ready_future(s.channel).result(timeout=TIMEOUT)
    s.feed = pf_grpc.PriceFeedServiceStub(s.channel)
    s.history = hd_grpc.HistoricalDataServiceStub(s.channel)
    wait_market(s, market_now(s) + 1800 * NS)  # half an hour of candles to compare
    yield s
    s.channel.close()
    if s.proc.poll() is None:
        s.stop()


def past_window(server) -> tuple[int, int]:
    """The 20 market minutes that ended 5 minutes ago (whole minutes): settled data."""
    end = (market_now(server) // (60 * NS) - 5) * 60 * NS
    return end - 1200 * NS, end


def test_current_price_is_the_last_tick_as_rest_gives_it(server):
    now = server.feed.GetCurrentPrice(pf.PriceRequest(symbol="BTC-USD"), timeout=TIMEOUT)
    t = now.ts.ToNanoseconds()
    rows = server.get("/api/v1/prices/BTC-USD/history", params={
        "interval": "1s", "start": iso(t), "end": iso(t + NS)}).json()["rows"]
    assert rows == [{"ts": iso(t), "price": now.price, "volume": now.volume}]
    assert float(now.bid) <= float(now.price) <= float(now.ask)
    assert now.price == f"{float(now.price):.2f}" and now.regime in REGIMES
    usdt = server.feed.GetCurrentPrice(pf.PriceRequest(symbol="USDT-USD"), timeout=TIMEOUT)
    assert len(usdt.price.split(".")[1]) == 5  # the symbol's decimals, as REST


@pytest.mark.parametrize("interval", ["1s", "1m", "5m"])
def test_price_history_matches_rest(server, interval):
    lo, hi = past_window(server)
    got = server.feed.GetPriceHistory(pf.HistoryRequest(
        symbol="ETH-USD", interval=interval, start=ts(lo), end=ts(hi)), timeout=TIMEOUT)
    rest = server.get("/api/v1/prices/ETH-USD/history", params={
        "interval": interval, "start": iso(lo), "end": iso(hi)}).json()["rows"]
    assert got.interval == interval and len(got.points) == len(rest) > 0
    for p, r in zip(got.points, rest, strict=True):
        assert (iso(p.ts.ToNanoseconds()), p.price, p.volume) == (
            r["ts"], r["price"] if interval == "1s" else r["close"], r["volume"])
    times = [p.ts.ToNanoseconds() for p in got.points]
    assert times == sorted(times) and lo <= times[0] and times[-1] < hi
    default = server.feed.GetPriceHistory(pf.HistoryRequest(
        symbol="ETH-USD", start=ts(lo), end=ts(hi)), timeout=TIMEOUT)
    assert default.interval == "1m"


def test_ohlcv_matches_rest_and_limit_keeps_the_last(server):
    lo, hi = past_window(server)
    got = server.history.GetOHLCV(hd.OHLCVRequest(symbol="BTC-USD", interval="5m",
                                                  start=ts(lo), end=ts(hi)), timeout=TIMEOUT)
    rest = server.get("/api/v1/prices/BTC-USD/history", params={
        "interval": "5m", "start": iso(lo), "end": iso(hi)}).json()["rows"]
    assert [{"ts": iso(c.ts.ToNanoseconds()), "open": c.open, "high": c.high, "low": c.low,
             "close": c.close, "volume": c.volume} for c in got.candles] == rest
    assert len(rest) == 4 and all(float(r["low"]) <= float(r["open"]) <= float(r["high"])
                                  for r in rest)
    last = server.history.GetOHLCV(hd.OHLCVRequest(symbol="BTC-USD", interval="5m",
                                                   start=ts(lo), end=ts(hi), limit=2),
                                   timeout=TIMEOUT)
    assert list(last.candles) == list(got.candles[-2:])


def test_market_depth_is_the_rest_order_book(server):
    for _ in range(50):  # a snapshot every 60 market seconds: retry when one came between
        got = server.feed.GetMarketDepth(pf.MarketDepthRequest(symbol="BTC-USD"),
                                         timeout=TIMEOUT)
        book = server.get("/api/v1/orderbook/BTC-USD").json()
        if parse_ts(book["ts"]) == got.ts.ToNanoseconds():
            break
    else:
        pytest.fail("never the same snapshot twice in a row")
    for side in ("bids", "asks"):
        assert [[lv.price, lv.quantity] for lv in getattr(got, side)] == book[side]
    bids = [float(lv.price) for lv in got.bids]
    asks = [float(lv.price) for lv in got.asks]
    assert bids == sorted(bids, reverse=True) and asks == sorted(asks) and bids[0] < asks[0]
    top = server.feed.GetMarketDepth(pf.MarketDepthRequest(symbol="BTC-USD", levels=3),
                                     timeout=TIMEOUT)
    assert len(top.bids) == len(top.asks) == 3


def test_volume_profile_adds_up_to_the_window_ticks(server):
    lo, hi = past_window(server)
    got = server.history.GetVolumeProfile(hd.VolumeProfileRequest(
        symbol="ETH-USD", start=ts(lo), end=ts(hi), bins=10), timeout=TIMEOUT)
    rows = server.get("/api/v1/prices/ETH-USD/history", params={
        "interval": "1s", "start": iso(lo), "end": iso(hi)}).json()["rows"]
    ticks = [(float(r["price"]), r["volume"]) for r in rows]
    prices = [p for p, _ in ticks]
    volume = sum(v for _, v in ticks)
    assert got.ticks == len(rows) and got.total_volume == pytest.approx(volume)
    assert iso(got.first_ts.ToNanoseconds()) == rows[0]["ts"]
    assert iso(got.last_ts.ToNanoseconds()) == rows[-1]["ts"]
    assert len(got.bins) == 10 and sum(b.volume for b in got.bins) == pytest.approx(volume)
    assert float(got.bins[0].price_low) == pytest.approx(min(prices), abs=0.01)
    assert float(got.bins[-1].price_high) == pytest.approx(max(prices), abs=0.01)
    assert all(a.price_high == b.price_low
               for a, b in zip(got.bins, got.bins[1:], strict=False))
    top = max(got.bins, key=lambda b: b.volume)
    assert float(top.price_low) <= float(got.point_of_control) <= float(top.price_high)
    # Each bin holds the volume of the ticks priced in it (edges are rounded to 0.01).
    for b in got.bins:
        low, high = float(b.price_low), float(b.price_high)
        surely = sum(v for p, v in ticks if low + 0.01 < p < high - 0.01)
        maybe = sum(v for p, v in ticks if low - 0.01 <= p <= high + 0.01)
        assert surely - 1e-6 <= b.volume <= maybe + 1e-6
    default = server.history.GetVolumeProfile(hd.VolumeProfileRequest(symbol="ETH-USD"),
                                              timeout=TIMEOUT)
    assert len(default.bins) == 24


def test_correlation_matrix_matches_rest(server):
    for _ in range(50):  # a new return every market minute: retry when one came between
        got = server.history.GetCorrelationMatrix(hd.CorrelationRequest(
            symbols=["BTC-USD", "ETH-USD"]), timeout=TIMEOUT)
        rest = server.get("/api/v1/correlations", params={"symbols": "BTC-USD,ETH-USD"}).json()
        if rest["returns"] == got.returns:
            break
    else:
        pytest.fail("never the same number of returns twice in a row")
    assert list(got.symbols) == ["BTC-USD", "ETH-USD"] and got.interval == "1m"
    assert [list(r.values) for r in got.rows] == rest["matrix"]
    every = server.history.GetCorrelationMatrix(hd.CorrelationRequest(), timeout=TIMEOUT)
    m = np.array([list(r.values) for r in every.rows])
    assert list(every.symbols) == ALL.split(",") and m.shape == (5, 5)
    assert np.allclose(m, m.T) and np.allclose(np.diag(m), 1) and np.all(np.abs(m) <= 1 + 1e-9)


def test_the_stream_gives_the_requested_symbols_in_time_order(server):
    wanted = {"ETH-USD", "USDT-USD"}
    call = server.feed.SubscribePrices(pf.SubscribeRequest(symbols=sorted(wanted)),
                                       timeout=TIMEOUT)
    updates = [next(call) for _ in range(400)]
    call.cancel()
    assert {u.symbol for u in updates} == wanted
    for symbol in wanted:
        times = [u.ts.ToNanoseconds() for u in updates if u.symbol == symbol]
        assert all(b > a for a, b in zip(times, times[1:], strict=False))
    assert all(float(u.bid) <= float(u.price) <= float(u.ask) for u in updates)
    assert all(len(u.price.split(".")[1]) == 5 for u in updates if u.symbol == "USDT-USD")
    last = updates[-1]  # what was streamed is what REST keeps
    t = last.ts.ToNanoseconds()
    rows = server.get(f"/api/v1/prices/{last.symbol}/history", params={
        "interval": "1s", "start": iso(t), "end": iso(t + NS)}).json()["rows"]
    assert rows == [{"ts": iso(t), "price": last.price, "volume": last.volume}]


def test_a_slow_stream_is_ended_with_resource_exhausted_and_others_go_on(server):
    # A client that reads nothing: no window growth, so what it is sent backs up on the server.
    slow_channel = grpc.insecure_channel(server.target, options=[("grpc.http2.bdp_probe", 0)])
    slow = pf_grpc.PriceFeedServiceStub(slow_channel).SubscribePrices(
        pf.SubscribeRequest(), timeout=10 * TIMEOUT)
    fast = server.feed.SubscribePrices(pf.SubscribeRequest(symbols=["BTC-USD"]),
                                       timeout=10 * TIMEOUT)
    first = next(fast).ts.ToNanoseconds()
    span = 3600  # market seconds: 5 updates each, far more than the queue and the window
    while next(fast).ts.ToNanoseconds() < first + span * NS:
        pass  # the fast client keeps getting updates all along
    received = 0
    with pytest.raises(grpc.RpcError) as ended:
        for _ in slow:
            received += 1
    assert ended.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"more than {QUEUE} price updates waiting" in ended.value.details()
    assert received < 5 * span  # what was in flight, not everything published since
    times = [next(fast).ts.ToNanoseconds() for _ in range(100)]
    assert times == sorted(times) and times[0] >= first + span * NS
    fast.cancel()
    slow_channel.close()


def test_reflection_lists_both_services(server):
    services = ProtoReflectionDescriptorDatabase(server.channel).get_services()
    assert {"trapsim.v1.PriceFeedService", "trapsim.v1.HistoricalDataService"} <= set(services)


BAD = [
    ("GetCurrentPrice", pf.PriceRequest(symbol="XRP-USD"), "NOT_FOUND",
     "unknown symbol 'XRP-USD'"),
    ("GetCurrentPrice", pf.PriceRequest(), "INVALID_ARGUMENT", "symbol is required"),
    ("GetPriceHistory", pf.HistoryRequest(symbol="BTC-USD", interval="7m"), "INVALID_ARGUMENT",
     "unknown interval '7m'"),
    ("GetPriceHistory", pf.HistoryRequest(symbol="BTC-USD", start=ts(2 * NS), end=ts(NS)),
     "INVALID_ARGUMENT", "end must be after start"),
    ("GetMarketDepth", pf.MarketDepthRequest(symbol="ETH"), "NOT_FOUND", "unknown symbol"),
    ("GetOHLCV", hd.OHLCVRequest(symbol="BTC-USD", interval="1s"), "INVALID_ARGUMENT",
     "unknown interval '1s'"),
    ("GetVolumeProfile", hd.VolumeProfileRequest(symbol="BTC-USD", bins=5000),
     "INVALID_ARGUMENT", "at most 1000"),
    ("GetCorrelationMatrix", hd.CorrelationRequest(symbols=["BTC-USD", "DOGE-USD"]),
     "NOT_FOUND", "DOGE-USD"),
]


@pytest.mark.parametrize(("method", "request_", "code", "words"), BAD,
                         ids=[f"{m}-{c}" for m, _, c, _ in BAD])
def test_bad_requests_get_a_status_naming_the_problem(server, method, request_, code, words):
    stub = server.feed if hasattr(server.feed, method) else server.history
    with pytest.raises(grpc.RpcError) as refused:
        getattr(stub, method)(request_, timeout=TIMEOUT)
    assert refused.value.code() == grpc.StatusCode[code] and words in refused.value.details()


def test_subscribing_to_an_unknown_symbol_is_not_found(server):
    call = server.feed.SubscribePrices(pf.SubscribeRequest(symbols=["BTC-USD", "SOL-USD"]),
                                       timeout=TIMEOUT)
    with pytest.raises(grpc.RpcError) as refused:
        next(call)
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
    assert "SOL-USD" in refused.value.details()


def test_nothing_to_answer_yet_is_unavailable_and_sigterm_ends_the_streams(tmp_path):
    grpc_port = free_port()
    s = Server(tmp_path, "--symbols", "BTC-USD,ETH-USD", "--sleep", "0.5", "--depth-every", "0",
               "--grpc-port", grpc_port)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        feed = pf_grpc.PriceFeedServiceStub(channel)
        history = hd_grpc.HistoricalDataServiceStub(channel)
        for call, words in (
                (lambda: feed.GetMarketDepth(pf.MarketDepthRequest(symbol="BTC-USD")),
                 "no BTC-USD book yet"),  # depth snapshots are off
                (lambda: history.GetCorrelationMatrix(hd.CorrelationRequest()),
                 "fewer than 3 one-minute returns")):  # 3 market minutes take 90 s here
            with pytest.raises(grpc.RpcError) as refused:
                call()
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert words in refused.value.details()
        stream = feed.SubscribePrices(pf.SubscribeRequest(), timeout=10 * TIMEOUT)
        assert next(stream).symbol in ("BTC-USD", "ETH-USD")
        s.proc.send_signal(signal.SIGTERM)
        rest = list(stream)  # ends without an error: the run ended
        assert stream.code() == grpc.StatusCode.OK and len(rest) < 1000
    out, err = s.proc.communicate(timeout=TIMEOUT)
    assert s.proc.returncode == 0, err
    assert f"serving gRPC 127.0.0.1:{grpc_port}" in out + err


def test_a_grpc_port_in_use_is_a_clear_error(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = trapsim("serve", "--port", free_port(), "--grpc-port", port, "--out", tmp_path / "r")
    assert r.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port} for gRPC: Address already in use" in r.stderr
    assert not (tmp_path / "r").exists()
