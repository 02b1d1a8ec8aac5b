"""L2 depth snapshots: structure, never crossed, split invariance, depth vs volume and spread."""

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.market.depth import DepthModel

NS = 1_000_000_000
T0 = 1_736_121_600 * NS


def quotes(n, seed=0, spread_bps=2.0, rate=0.5):
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(n, dtype=np.int64) * NS
    mid = 60_000 * np.exp(np.cumsum(rng.normal(0, 1e-4, n)))
    half = mid * spread_bps * 1e-4 / 2 * rng.uniform(0.5, 1.5, n)
    return ts, mid - half, mid + half, rng.exponential(rate, n)


def frames(table):
    """Snapshot times and (n, levels) arrays of bid/ask prices and quantities."""
    ts = table["ts"].cast(pa.int64()).to_numpy()
    return ts, *(np.array(table[c].to_pylist(), float).reshape(len(ts), -1)
                 for c in ("bid_price", "bid_qty", "ask_price", "ask_qty"))


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 30), st.integers(1, 12), st.floats(0.1, 20))
def test_snapshots_are_ordered_uncrossed_and_start_at_the_quote(seed, every, levels, spread):
    ts, bid, ask, vol = quotes(600, seed, spread)
    table = DepthModel("BTC-USD", seed, every_s=every, levels=levels).update(ts, bid, ask, vol)
    t, b, bq, a, aq = frames(table)
    assert len(t) > 0 and b.shape == a.shape == bq.shape == aq.shape == (len(t), levels)
    assert np.all(bq > 0) and np.all(aq > 0) and np.all(np.isfinite(b) & np.isfinite(a))
    i = np.searchsorted(ts, t)
    assert np.array_equal(b[:, 0], bid[i]) and np.array_equal(a[:, 0], ask[i])
    assert np.all(b[:, 0] < a[:, 0])  # never crossed
    assert np.all(np.diff(b, axis=1) < 0) and np.all(np.diff(a, axis=1) > 0)
    # One snapshot per period begun, at its first tick.
    periods = np.unique(t // round(every * NS))
    assert len(periods) == len(t)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=6))
def test_snapshots_do_not_depend_on_how_the_ticks_are_split(sizes):
    ts, bid, ask, vol = quotes(sum(sizes), 3)
    whole = DepthModel("BTC-USD", 3).update(ts, bid, ask, vol)
    model = DepthModel("BTC-USD", 3)
    cuts = np.cumsum([0, *sizes])
    parts = pa.concat_tables([model.update(ts[a:b], bid[a:b], ask[a:b], vol[a:b])
                              for a, b in zip(cuts[:-1], cuts[1:], strict=True)])
    assert parts.equals(whole)


def test_depth_grows_with_volume_and_thins_with_the_spread():
    def mean_depth(spread_bps, rate):
        ts, bid, ask, vol = quotes(20_000, 1, spread_bps, rate)
        _, _, bq, _, aq = frames(DepthModel("BTC-USD", 1).update(ts, bid, ask, vol))
        return np.concatenate([bq, aq]).mean()

    base = mean_depth(2.0, 0.5)
    assert mean_depth(2.0, 2.0) == pytest.approx(4 * base, rel=0.15)
    assert mean_depth(4.0, 0.5) == pytest.approx(base / 2, rel=0.15)


@pytest.mark.parametrize("kw", [{"every_s": 0}, {"levels": 0}, {"symbol": "DOGE-USD"}])
def test_bad_parameters_are_config_errors(kw):
    args = {"symbol": "BTC-USD", "seed": 1} | kw
    with pytest.raises(ConfigError):
        DepthModel(**args)
