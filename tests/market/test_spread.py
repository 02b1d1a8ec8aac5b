import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import DataError
from trapsim.core.time import HOUR_NS, NS, parse_ts
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.process import SyntheticMarket
from trapsim.market.spread import SpreadModel

START = parse_ts("2025-01-06T00:00:00Z")


def path(seed: int, n: int, vol_bps: float, jump_every: int = 0):
    """Ticks with normal log returns of ``vol_bps`` per second (plus rare big jumps)."""
    rng = np.random.default_rng(seed)
    r = rng.standard_normal(n) * vol_bps * 1e-4
    if jump_every:
        r[::jump_every] *= 50
    price = 60_000 * np.exp(np.cumsum(r))
    volume = rng.exponential(0.2, n)
    volume[rng.random(n) < 0.1] = 0.0
    return START + np.arange(n) * NS, price, volume


def bps(bid, ask):
    return (ask - bid) / ((ask + bid) / 2) * 1e4


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), vol_bps=st.floats(0.0, 50.0),
       jump_every=st.sampled_from([0, 7, 500]))
def test_quotes_bracket_the_price_within_one_to_five_bps(seed, vol_bps, jump_every):
    ts, price, volume = path(seed, 3000, vol_bps, jump_every)
    bid, ask = SpreadModel(DEFAULT_PARAMS, seed=seed).quotes(ts, price, volume)
    assert np.all(bid <= price) and np.all(price <= ask) and np.all(bid < ask)
    s = bps(bid, ask)
    assert np.all((s >= 1) & (s <= 5))


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), vol_bps=st.floats(0.3, 2.0),
       factor=st.floats(1.2, 10.0))
def test_spread_is_wider_when_realised_volatility_is_higher(seed, vol_bps, factor):
    # Volatility near the calibrated level keeps most calm spreads inside the bounds.
    ts, price, volume = path(seed, 2000, vol_bps)
    wild = price[0] * (price / price[0]) ** factor  # the same moves, `factor` times larger
    calm_bps = bps(*SpreadModel(DEFAULT_PARAMS, seed=seed).quotes(ts, price, volume))
    wild_bps = bps(*SpreadModel(DEFAULT_PARAMS, seed=seed).quotes(ts, wild, volume))
    assert np.all(wild_bps >= calm_bps * (1 - 1e-9))
    inside = (calm_bps > 1.001) & (calm_bps < 4.99)
    inside[:100] = False  # after the averages have seen a few moves
    assert inside.sum() > 500
    assert np.all(wild_bps[inside] > calm_bps[inside])


def test_spread_is_wider_in_thin_trading_and_off_hours():
    ts, price, volume = path(1, 4000, 1.0)
    base = bps(*SpreadModel(DEFAULT_PARAMS, seed=1).quotes(ts, price, volume))
    thin = bps(*SpreadModel(DEFAULT_PARAMS, seed=1).quotes(ts, price, volume / 20))
    assert np.all(thin >= base * (1 - 1e-9)) and thin[1000:].mean() > base[1000:].mean()
    # The same ticks at 04:00 UTC (thin) and 14:00 UTC (busiest hour) of a weekday.
    profile = DEFAULT_PARAMS.seasonality.hour_volume
    assert profile[4] < profile[14]
    early = bps(*SpreadModel(DEFAULT_PARAMS, seed=1).quotes(ts + 4 * HOUR_NS, price, volume))
    busy = bps(*SpreadModel(DEFAULT_PARAMS, seed=1).quotes(ts + 14 * HOUR_NS, price, volume))
    assert early[:3000].mean() > busy[:3000].mean()


def test_last_trade_sits_at_the_ask_after_an_uptick_and_at_the_bid_after_a_downtick():
    ts, price, volume = path(2, 1000, 2.0)
    bid, ask = SpreadModel(DEFAULT_PARAMS, seed=2).quotes(ts, price, volume)
    up = np.r_[False, np.diff(price) > 0]
    down = np.r_[False, np.diff(price) < 0]
    assert np.array_equal(ask[up], price[up]) and np.array_equal(bid[down], price[down])


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 700), min_size=1, max_size=6))
def test_quotes_do_not_depend_on_how_the_ticks_are_split(sizes):
    ts, price, volume = path(3, sum(sizes), 1.5)
    whole = SpreadModel(DEFAULT_PARAMS, seed=3).quotes(ts, price, volume)
    model = SpreadModel(DEFAULT_PARAMS, seed=3)
    cuts = np.cumsum([0, *sizes])
    parts = [model.quotes(ts[a:b], price[a:b], volume[a:b])
             for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    for side in (0, 1):
        assert np.array_equal(whole[side], np.concatenate([p[side] for p in parts]))


def test_default_market_spreads_are_typical_of_a_btc_usd_venue():
    market = SyntheticMarket(DEFAULT_PARAMS, seed=5, start_ts=START)
    model = SpreadModel(DEFAULT_PARAMS, seed=5)
    s = np.concatenate([bps(*model.quotes(c.ts, c.price, c.volume))
                        for c in (market.next_chunk(21_600) for _ in range(8))])
    assert 1.3 < np.median(s) < 3.0
    assert np.quantile(s, 0.99) > 1.3 * np.median(s)


@pytest.mark.parametrize(
    ("price", "volume", "match"),
    [
        ([1.0, 2.0], [1.0], "shape"),
        ([1.0, 0.0, 2.0], [1.0, 1.0, 1.0], "price"),
        ([1.0, np.nan, 2.0], [1.0, 1.0, 1.0], "price"),
        ([1.0, 2.0, 3.0], [1.0, -1.0, 1.0], "volume"),
    ],
)
def test_bad_ticks_raise_data_error(price, volume, match):
    ts = START + np.arange(len(price)) * NS
    with pytest.raises(DataError, match=match):
        SpreadModel(DEFAULT_PARAMS, seed=0).quotes(ts, np.asarray(price), np.asarray(volume))
