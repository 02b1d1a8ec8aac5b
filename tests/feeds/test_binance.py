"""Binance spot: the wire decimals, the local book, the recorded stream through the adapter."""

import asyncio
import bisect
import gzip
import json
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import DataError
from trapsim.feeds.binance import (
    SCALE,
    BinanceSpotAdapter,
    BookTop,
    L2Book,
    Quote,
    SpotStream,
    Trade,
    fetch_klines,
    read_recording,
    units,
)
from trapsim.feeds.candles import read_candles
from trapsim.feeds.venue import RecordedVenue

RAW = Path(__file__).resolve().parents[3] / "shared" / "data" / "raw"
RECORDING = RAW / "btcusdt_20240808.gz"


def agreement(events) -> tuple[int, int]:
    """(agreeing, disagreeing) book tops against the recording's bookTicker.

    The bookTicker stream reports every change of the best levels, so the best
    levels at book update ``u`` are those of the last bookTicker with an update id
    at or before ``u``; ids, not arrival order, line the two streams up.
    """
    quotes = sorted((e.update_id, e) for e in events if isinstance(e, Quote))
    ids = [u for u, _ in quotes]
    agree = disagree = 0
    for top in (e for e in events if isinstance(e, BookTop)):
        i = bisect.bisect_right(ids, top.update_id) - 1
        if i < 0:
            continue
        q = quotes[i][1]
        if (q.bid, q.bid_qty, q.ask, q.ask_qty) == (top.bid, top.bid_qty, top.ask, top.ask_qty):
            agree += 1
        else:
            disagree += 1
    return agree, disagree


@pytest.mark.parametrize("text, value", [
    ("61837.63000000", 6_183_763_000_000), ("0.00000000", 0), ("1", SCALE), ("0.5", SCALE // 2),
    ("12.12345678", 1_212_345_678),
])
def test_decimals_become_exact_units(text, value):
    assert units(text) == value


@pytest.mark.parametrize("text", ["", "1.123456789", "-1.00000000", "1e5", "abc", "1.2.3"])
def test_malformed_decimals_are_data_errors(text):
    with pytest.raises(DataError, match="Binance decimal"):
        units(text)


def level(price: int, qty: int) -> list[str]:
    return [f"{price // SCALE}.{price % SCALE:08d}", f"{qty // SCALE}.{qty % SCALE:08d}"]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(1, 40), st.integers(0, 3)), max_size=300))
def test_book_best_levels_follow_every_update_and_never_cross(updates):
    book = L2Book()
    book.reset(1, [level(100 * SCALE, SCALE)], [level(101 * SCALE, SCALE)])
    model = ({100 * SCALE: SCALE}, {101 * SCALE: SCALE})
    for is_bid, offset, qty in updates:
        # Bids below 101 and asks above 100 by construction, as a venue's book in sync.
        price = (101 - offset if is_bid else 100 + offset) * SCALE
        side = model[0] if is_bid else model[1]
        if qty:
            side[price] = qty * SCALE
        else:
            side.pop(price, None)
        lv = [level(price, qty * SCALE)]
        book.apply(lv, []) if is_bid else book.apply([], lv)
        assert book.bids == model[0] and book.asks == model[1]
        assert book.best_bid == max(model[0], default=None)
        assert book.best_ask == min(model[1], default=None)
        assert not book.crossed
        bids, asks = book.depth(10)
        assert bids == sorted(model[0].items(), reverse=True)[:10]
        assert asks == sorted(model[1].items())[:10]


@pytest.fixture(scope="module")
def recorded_events():
    stream = SpotStream()
    events = [e for ts, body in read_recording(RECORDING) for e in stream.on_message(body, ts)]
    return stream, events


def test_recorded_stream_rebuilds_the_book_the_venue_reported(recorded_events):
    stream, events = recorded_events
    assert stream.synced and stream.resyncs == 0
    assert not stream.book.crossed
    tops = [e for e in events if isinstance(e, BookTop)]
    # One diff spans the snapshot and the 3,448 after it follow without a gap (SOURCES.md).
    assert len(tops) == 3449
    assert agreement(events) == (3449, 0)
    trades = [e for e in events if isinstance(e, Trade)]
    assert len(trades) == 9757
    assert all(t.taker in ("buy", "sell") and t.price > 0 and t.qty > 0 for t in trades)


def test_a_sequence_gap_throws_the_book_away_until_a_newer_snapshot(recorded_events):
    lines = list(read_recording(RECORDING))
    diffs = [i for i, (_, b) in enumerate(lines) if b"@depth" in b]
    dropped = diffs[len(diffs) // 2]
    stream = SpotStream()
    for i, (ts, body) in enumerate(lines):
        if i != dropped:
            stream.on_message(body, ts)
    assert stream.resyncs == 1 and not stream.synced and stream.needs_snapshot
    # The recording's snapshot predates the buffered diffs: it must be refused.
    snapshot = json.loads(next(b for _, b in lines if b.startswith(b'{"lastUpdateId"')))
    assert stream.on_snapshot(snapshot, 0) == [] and stream.needs_snapshot
    # A snapshot of the venue's book as of the dropped diff resumes the stream: the
    # diffs buffered since are applied and the book ends as the venue's.
    gap_end = json.loads(lines[dropped][1])["data"]["u"]
    full, _ = recorded_events
    venue = SpotStream()
    for ts, body in lines:
        venue.on_message(body, ts)
        if venue.synced and venue.book.update_id == gap_end:
            break
    bids, asks = venue.book.depth(10**6)
    snap = {"lastUpdateId": gap_end,
            "bids": [level(p, q) for p, q in bids], "asks": [level(p, q) for p, q in asks]}
    assert stream.on_snapshot(snap, 0)
    assert stream.synced and not stream.needs_snapshot
    assert stream.book.bids == full.book.bids and stream.book.asks == full.book.asks


@pytest.mark.parametrize("raw, needle", [
    (b"not json", "bad Binance message"),
    (b'{"stream": "btcusdt@kline_1m", "data": {}}', "unknown Binance stream"),
    (b'{"stream": "btcusdt@trade", "data": {"p": "1"}}', "bad Binance message"),
])
def test_malformed_messages_are_data_errors(raw, needle):
    with pytest.raises(DataError, match=needle):
        SpotStream().on_message(raw, 0)


def test_malformed_recording_names_the_line(tmp_path):
    path = tmp_path / "bad.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b'1 {"a": 1}\nnot-a-time {}\n')
    with pytest.raises(DataError, match="line 2"):
        list(read_recording(path))


def test_the_adapter_over_a_local_websocket_venue_rebuilds_the_same_book():
    async def main():
        venue = RecordedVenue(RECORDING)
        port = await venue.start()
        adapter = BinanceSpotAdapter(ws_url=f"ws://127.0.0.1:{port}",
                                     rest_url=f"http://127.0.0.1:{port}", timeout=10)
        events = [e async for e in adapter.events()]
        await venue.stop()
        return adapter, events

    adapter, events = asyncio.run(main())
    # The snapshot is fetched over REST after the stream opens, as against Binance.
    assert adapter.stream.synced and adapter.stream.resyncs == 0
    agree, disagree = agreement(events)
    assert disagree == 0 and agree > 3400
    assert sum(isinstance(e, Trade) for e in events) == 9757


def test_a_silent_venue_times_out():
    async def main():
        venue = RecordedVenue(RECORDING, speed=1e-6)  # the second message is days away
        port = await venue.start()
        adapter = BinanceSpotAdapter(ws_url=f"ws://127.0.0.1:{port}",
                                     rest_url=f"http://127.0.0.1:{port}", timeout=0.5)
        try:
            return [e async for e in adapter.events()]
        finally:
            await venue.stop()

    with pytest.raises(TimeoutError):
        asyncio.run(main())


def test_klines_are_paged_from_the_rest_endpoint():
    c = read_candles(RAW / "BTC_USDT-1m.feather")
    ts = c.ts[:2500]
    candles = pa.table({
        "ts": pa.array(ts).cast(pa.timestamp("ns", tz="UTC")),
        **{name: getattr(c, name)[:2500] for name in ("open", "high", "low", "close", "volume")},
    })

    async def main():
        venue = RecordedVenue(RECORDING, candles=candles)
        port = await venue.start()
        try:
            return await fetch_klines("BTC-USD", int(ts[0]), int(ts[-1]) + 60 * 10**9,
                                      rest_url=f"http://127.0.0.1:{port}")
        finally:
            await venue.stop()

    got = asyncio.run(main())
    assert got.num_rows == 2500
    for name in ("ts", "open", "high", "low", "close", "volume"):
        assert got[name].combine_chunks().equals(candles[name].combine_chunks()), name


def test_unknown_symbols_are_refused():
    with pytest.raises(DataError, match="no Binance spot market"):
        BinanceSpotAdapter("DOGE-USD")
