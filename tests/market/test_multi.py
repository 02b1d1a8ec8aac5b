"""Five symbols on one clock: cross-rate identity, BTC/ETH correlation, the USDT peg, the perp."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.core.time import HOUR_NS
from trapsim.market.depth import DepthModel
from trapsim.market.multi import (
    BASIS_MEAN,
    FUNDING_CLAMP,
    FUNDING_INTEREST,
    SPREAD_BPS,
    SYMBOLS,
    MultiAssetMarket,
    quote_params,
)
from trapsim.market.spread import SpreadModel

START = 1_736_121_600 * 1_000_000_000  # a Monday, 00:00 UTC


def stream(seed, days=30, chunk=86_400):
    m = MultiAssetMarket(SYMBOLS, seed=seed, start_ts=START)
    parts, funding = [], []
    for _ in range(days * 86_400 // chunk):
        c, f = m.next_chunks(chunk)
        parts.append(c)
        funding += f
    cols = {s: {f: np.concatenate([getattr(p[s], f) for p in parts])
                for f in ("ts", "price", "volume", "regime")} for s in SYMBOLS}
    return cols, funding


@pytest.fixture(scope="module")
def month():
    return {seed: stream(seed) for seed in (11, 12, 13)}


def test_cross_rate_is_btc_over_eth_at_every_tick(month):
    cols, _ = month[11]
    btc, eth, cross = (cols[s]["price"] for s in ("BTC-USD", "ETH-USD", "BTC-ETH"))
    assert np.array_equal(cross, btc / eth)
    for s in SYMBOLS:
        assert np.array_equal(cols[s]["ts"], cols["BTC-USD"]["ts"])


def test_btc_eth_correlation_and_volatility_ratio_match_the_real_files(month):
    corr, ratio = [], []
    for cols, _ in month.values():
        rb = np.diff(np.log(cols["BTC-USD"]["price"][59::60]))
        re = np.diff(np.log(cols["ETH-USD"]["price"][59::60]))
        corr.append(np.corrcoef(rb, re)[0, 1])
        ratio.append(re.std() / rb.std())
    # Real 2025 Binance files: 0.74 and 1.99; 30-day windows of a seed vary by a few points.
    assert 0.68 < np.mean(corr) < 0.80 and all(0.6 < c < 0.85 for c in corr)
    assert 1.6 < np.mean(ratio) < 2.4


def test_usdt_stays_pinned_and_reverts(month):
    cols, _ = month[12]
    p = cols["USDT-USD"]["price"]
    assert np.all(np.abs(p - 1) < 0.002)  # 20 bps is 10 sd of the calibrated deviation
    dev = p[59::60] - 1
    ac1 = np.corrcoef(dev[:-1], dev[1:])[0, 1]
    ac_day = np.corrcoef(dev[:-1440], dev[1440:])[0, 1]
    assert 0.2 < ac1 < 0.7 and abs(ac_day) < 0.2  # sticky for minutes, back to 1 within a day


def test_perp_basis_and_funding_follow_their_definitions(month):
    cols, funding = month[13]
    ts = cols["BTC-USD"]["ts"]
    basis = np.log(cols["BTC-USD-PERP"]["price"] / cols["BTC-USD"]["price"])
    assert basis.mean() == pytest.approx(BASIS_MEAN, abs=2e-4)
    assert [f.ts for f in funding] == list(range(START + 8 * HOUR_NS, int(ts[-1]) + 1,
                                                 8 * HOUR_NS))
    lo = 0
    for f in funding:
        i = int(np.searchsorted(ts, f.ts))
        premium = basis[lo:i].mean()
        want = premium + min(max(FUNDING_INTEREST - premium, -FUNDING_CLAMP), FUNDING_CLAMP)
        assert f.rate == pytest.approx(want, rel=1e-9, abs=1e-15)
        assert f.mark_price == cols["BTC-USD-PERP"]["price"][i]
        lo = i


@settings(max_examples=10, deadline=None)
@given(st.lists(st.integers(1, 30_000), min_size=1, max_size=4))
def test_streams_do_not_depend_on_chunk_sizes(sizes):
    whole, wf = MultiAssetMarket(SYMBOLS, seed=4, start_ts=START).next_chunks(sum(sizes))
    m = MultiAssetMarket(SYMBOLS, seed=4, start_ts=START)
    parts = [m.next_chunks(k) for k in sizes]
    for s in SYMBOLS:
        for f in ("price", "volume"):
            assert np.array_equal(np.concatenate([getattr(p[0][s], f) for p in parts]),
                                  getattr(whole[s], f)), (s, f)
    assert [e for p in parts for e in p[1]] == wf


def test_quotes_and_books_of_every_symbol_keep_their_spread_ranges(month):
    cols, _ = month[11]
    for s in SYMBOLS:
        c = cols[s]
        n = 6 * 3600
        bid, ask = SpreadModel(quote_params(s), seed=1, symbol=s).quotes(
            c["ts"][:n], c["price"][:n], c["volume"][:n])
        bps = (ask - bid) / ((ask + bid) / 2) * 1e4
        _, lo, hi = SPREAD_BPS[s]
        assert lo * (1 - 1e-6) <= bps.min() and bps.max() <= hi * (1 + 1e-6), s
        book = DepthModel(s, seed=1).update(c["ts"][:n], bid, ask, c["volume"][:n])
        best_bid = np.array([x[0] for x in book["bid_price"].to_pylist()])
        best_ask = np.array([x[0] for x in book["ask_price"].to_pylist()])
        assert len(best_bid) and np.all(best_bid < best_ask), s  # never crossed


def test_unknown_or_repeated_symbols_are_config_errors():
    with pytest.raises(ConfigError, match="symbols must be distinct"):
        MultiAssetMarket(("BTC-USD", "DOGE-USD"), seed=1, start_ts=START)
    with pytest.raises(ConfigError, match="symbols must be distinct"):
        MultiAssetMarket(("BTC-USD", "BTC-USD"), seed=1, start_ts=START)
    with pytest.raises(ConfigError):
        quote_params("XRP-USD")
    assert math.isfinite(quote_params("USDT-USD").regimes.ann_vol[0])
