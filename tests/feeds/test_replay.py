"""Replaying candles as 1-second ticks: exact OHLCV, determinism, chunking."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError, DataError
from trapsim.core.seeding import rng_for
from trapsim.core.time import MINUTE_NS, NS, parse_ts
from trapsim.feeds.candles import Candles, read_candles
from trapsim.feeds.replay import BLOCK_CANDLES, ReplayMarket, bridge_ticks
from trapsim.market.base import BaseChunk
from trapsim.market.calibration import classify_regimes
from trapsim.market.regimes import REGIMES

RAW = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "raw"
BTC_2024 = RAW / "BTC_USDT-1m_2024-08.feather"
BTC_2025 = RAW / "BTC_USDT-1m.feather"
BTC_USDC = RAW / "binanceus_BTCUSDC_1m_20230301_20230321.csv"


@pytest.fixture(scope="module")
def btc_2025() -> Candles:
    return read_candles(BTC_2025)


@pytest.fixture(scope="module")
def ath_slice(btc_2025) -> Candles:
    """8,000 minutes around the all-time high of 2025-08-14 00:32 UTC."""
    at = int(np.searchsorted(btc_2025.ts, parse_ts("2025-08-14T00:32:00Z")))
    return btc_2025.slice(at - 4000, at + 4000)


def assert_reproduces(candles: Candles, ts, price, volume, n: int = 60) -> None:
    """Ticks ``n`` per candle whose OHLCV equals ``candles`` bit for bit."""
    m = len(candles)
    assert ts.shape == price.shape == volume.shape == (m * n,)
    step = candles.interval_ns // n
    assert np.array_equal(ts.reshape(m, n), candles.ts[:, None] + np.arange(n) * step)
    p, v = price.reshape(m, n), volume.reshape(m, n)
    assert np.array_equal(p[:, 0], candles.open)
    assert np.array_equal(p.max(axis=1), candles.high)
    assert np.array_equal(p.min(axis=1), candles.low)
    assert np.array_equal(p[:, -1], candles.close)
    assert np.all(v >= 0)
    # Exact in any order: pairwise, left to right, right to left, smallest first.
    assert np.array_equal(v.sum(axis=1), candles.volume)
    assert np.array_equal(np.cumsum(v, axis=1)[:, -1], candles.volume)
    assert np.array_equal(np.cumsum(v[:, ::-1], axis=1)[:, -1], candles.volume)
    assert np.array_equal(np.cumsum(np.sort(v, axis=1), axis=1)[:, -1], candles.volume)


def drain(market: ReplayMarket, sizes) -> BaseChunk:
    """All of ``market``'s ticks, asked for with chunk sizes cycling through ``sizes``."""
    chunks = []
    i = 0
    while (chunk := market.next_chunk(sizes[i % len(sizes)])) is not None:
        assert 1 <= len(chunk) <= sizes[i % len(sizes)]
        chunks.append(chunk)
        i += 1
    fields = ("ts", "price", "volume", "regime")
    return BaseChunk(*(np.concatenate([getattr(c, f) for c in chunks]) for f in fields))


# ----------------------------------------------------------------------------- hypothesis candles


@st.composite
def candles(draw, max_size: int = 40) -> Candles:
    """Valid 1-minute candles: flat ones, one-ulp ranges, zero, subnormal and huge volumes."""
    m = draw(st.integers(1, max_size))
    lo = np.array(draw(st.lists(st.floats(1e-6, 1e7), min_size=m, max_size=m)))
    shape = draw(st.lists(st.sampled_from(["flat", "ulp", "wide"]), min_size=m, max_size=m))
    width = np.array(draw(st.lists(st.floats(0.0, 0.2), min_size=m, max_size=m)))
    hi = np.where(
        np.array(shape) == "flat",
        lo,
        np.where(np.array(shape) == "ulp", np.nextafter(lo, np.inf), lo * (1.0 + width)),
    )
    fo, fc = (np.array(draw(st.lists(st.floats(0, 1), min_size=m, max_size=m))) for _ in "oc")
    volume = draw(
        st.lists(
            st.one_of(
                st.just(0.0),
                st.just(5e-324),
                st.floats(0.0, 1e-300),
                st.floats(0.0, 1e6),
                st.floats(1e290, 1e300),
            ),
            min_size=m,
            max_size=m,
        )
    )
    return Candles(
        ts=parse_ts("2024-08-05T00:00:00Z") + np.arange(m) * MINUTE_NS,
        open=np.clip(lo + fo * (hi - lo), lo, hi),
        high=hi,
        low=lo,
        close=np.clip(lo + fc * (hi - lo), lo, hi),
        volume=volume,
        interval_ns=MINUTE_NS,
    )


@settings(max_examples=150, deadline=None)
@given(
    c=candles(),
    n=st.sampled_from([4, 5, 6, 10, 12, 15, 20, 30, 60, 120]),
    seed=st.integers(0, 2**32),
)
def test_bridged_ticks_reproduce_candles_exactly(c, n, seed):
    ts, price, volume = bridge_ticks(c, rng_for(seed, "test"), ticks_per_candle=n)
    assert_reproduces(c, ts, price, volume, n)
    v = volume.reshape(len(c), n)
    assert [math.fsum(row) for row in v] == c.volume.tolist()
    assert np.all(v[c.volume == 0] == 0)


# ----------------------------------------------------------------------------- real data


def test_whole_2024_08_btc_file_replays_exactly():
    market = ReplayMarket(BTC_2024, seed=11)
    ticks = drain(market, [65_536])
    assert_reproduces(market.candles, ticks.ts, ticks.price, ticks.volume)
    assert len(ticks) == market.n_ticks == 60 * 43_209
    assert market.start_ts == parse_ts("2024-07-26T14:15:00Z") == ticks.ts[0]
    assert np.all(np.diff(ticks.ts) == NS)


def test_2025_btc_slice_replays_exactly(ath_slice):
    ticks = drain(ReplayMarket(ath_slice, seed=3), [100_000])
    assert_reproduces(ath_slice, ticks.ts, ticks.price, ticks.volume)
    assert ticks.price.max() == 124_474.0  # the all-time high of 2025-08-14


def test_thin_venue_with_flat_and_zero_volume_minutes_replays_exactly():
    c = read_candles(BTC_USDC)
    ts, price, volume = bridge_ticks(c, rng_for(5, "test"))
    assert_reproduces(c, ts, price, volume)
    p, v = price.reshape(-1, 60), volume.reshape(-1, 60)
    flat = c.high == c.low
    assert flat.any() and (c.volume == 0).any()
    assert np.all(p[flat] == c.open[flat, None])
    assert np.all(v[c.volume == 0] == 0)


def test_regime_of_each_tick_is_that_of_its_minute(ath_slice):
    market = ReplayMarket(ath_slice, seed=1)
    ticks = drain(market, [7_777])
    assert market.regime_names == tuple(REGIMES)
    expected = np.repeat(classify_regimes(ath_slice.ts, ath_slice.close), 60)
    assert ticks.regime.dtype == np.int8
    assert np.array_equal(ticks.regime, expected)
    assert ticks.regime.max() < len(market.regime_names)


def test_volume_follows_price_moves_within_a_candle(ath_slice):
    _, price, volume = bridge_ticks(ath_slice, rng_for(2, "test"))
    p, v = price.reshape(-1, 60), volume.reshape(-1, 60)
    moves = np.abs(np.diff(p, axis=1))[:, :-1]  # ticks 1..58; tick 59 takes the remainder
    inner = v[:, 1:-1]
    corr = [np.corrcoef(a, b)[0, 1] for a, b in zip(moves, inner, strict=True) if a.std() > 0]
    assert np.mean(corr) > 0.99


def test_low_comes_first_when_the_candle_rises():
    # O at 10 % and C at 90 % of the range: the low comes first with probability 0.9.
    m = 4000
    low, high = np.full(m, 100.0), np.full(m, 110.0)
    c = Candles(
        ts=np.arange(m) * MINUTE_NS,
        open=np.full(m, 101.0),
        high=high,
        low=low,
        close=np.full(m, 109.0),
        volume=np.ones(m),
        interval_ns=MINUTE_NS,
    )
    _, price, _ = bridge_ticks(c, rng_for(0, "test"))
    p = price.reshape(m, 60)
    low_first = np.mean(np.argmin(p, axis=1) < np.argmax(p, axis=1))
    assert 0.87 < low_first < 0.93
    # Mirrored candle: the high comes first as often.
    _, price, _ = bridge_ticks(
        Candles(c.ts, c.close, high, low, c.open, c.volume, MINUTE_NS), rng_for(0, "test")
    )
    p = price.reshape(m, 60)
    assert 0.87 < np.mean(np.argmax(p, axis=1) < np.argmin(p, axis=1)) < 0.93


# ----------------------------------------------------------------------------- streaming


@pytest.fixture(scope="module")
def block_slice(btc_2025) -> Candles:
    """A slice spanning several bridge blocks, ending inside one."""
    return btc_2025.slice(1000, 1000 + 2 * BLOCK_CANDLES + 1234)


@settings(max_examples=20, deadline=None)
@given(sizes=st.lists(st.integers(1, 150_000), min_size=1, max_size=8))
def test_chunked_stream_equals_one_batch(block_slice, sizes):
    ticks = drain(ReplayMarket(block_slice, seed=42), sizes)
    ts, price, volume = bridge_ticks(block_slice, rng_for(42, "feeds.replay:BTC-USD"))
    assert np.array_equal(ticks.ts, ts)
    assert np.array_equal(ticks.price, price)
    assert np.array_equal(ticks.volume, volume)


def test_bridging_block_aligned_slices_equals_one_call(block_slice):
    rng = rng_for(9, "test")
    parts = [
        bridge_ticks(block_slice.slice(lo, lo + BLOCK_CANDLES), rng)
        for lo in range(0, len(block_slice), BLOCK_CANDLES)
    ]
    whole = bridge_ticks(block_slice, rng_for(9, "test"))
    for i, column in enumerate(whole):
        assert np.array_equal(np.concatenate([part[i] for part in parts]), column)


def test_same_seed_same_ticks_other_seed_or_symbol_other_ticks(block_slice):
    a = drain(ReplayMarket(block_slice, seed=1), [50_000])
    b = drain(ReplayMarket(block_slice, seed=1), [50_000])
    assert np.array_equal(a.price, b.price)
    assert np.array_equal(a.volume, b.volume)
    for other in (ReplayMarket(block_slice, seed=2), ReplayMarket(block_slice, seed=1, symbol="X")):
        c = drain(other, [50_000])
        assert not np.array_equal(a.price, c.price)
        assert np.array_equal(a.ts, c.ts)


def test_exhausted_market_returns_none(tmp_path):
    path = tmp_path / "three.csv"
    path.write_text(
        "open_time,open,high,low,close,volume\n"
        "2024-08-05T00:00:00Z,10,11,9,10.5,1\n"
        "2024-08-05T00:01:00Z,10.5,10.5,10.5,10.5,0\n"
        "2024-08-05T00:02:00Z,10.5,12,10,11,2\n"
    )
    market = ReplayMarket(path, seed=0, symbol="ETH-USD")
    assert market.symbol == "ETH-USD"
    assert market.n_ticks == 180
    assert len(market.next_chunk(100)) == 100
    assert len(market.next_chunk(100)) == 80
    assert market.next_chunk(100) is None
    assert market.next_chunk(1) is None


def test_replay_needs_one_minute_candles():
    five = Candles(
        ts=np.arange(3) * 5 * MINUTE_NS,
        open=np.ones(3),
        high=np.ones(3),
        low=np.ones(3),
        close=np.ones(3),
        volume=np.ones(3),
        interval_ns=5 * MINUTE_NS,
        source="five.csv",
    )
    with pytest.raises(DataError, match="five.csv: replay needs 1-minute candles, not 300-second"):
        ReplayMarket(five, seed=0)
    empty = Candles(*(np.empty(0),) * 6, interval_ns=MINUTE_NS, source="none")
    with pytest.raises(DataError, match="none: no candles to replay"):
        ReplayMarket(empty, seed=0)


def test_bad_parameters_are_config_errors(block_slice):
    with pytest.raises(ConfigError, match="at least 4"):
        bridge_ticks(block_slice, rng_for(0, "test"), ticks_per_candle=3)
    with pytest.raises(ConfigError, match="does not divide"):
        bridge_ticks(block_slice, rng_for(0, "test"), ticks_per_candle=7)
    with pytest.raises(ConfigError, match="chunk size"):
        ReplayMarket(block_slice, seed=0).next_chunk(0)
