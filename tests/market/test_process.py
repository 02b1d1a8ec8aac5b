import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.core.time import HOUR_NS, NS, day_of_week, hour_of_day, parse_ts
from trapsim.market.params import DEFAULT_PARAMS, MarketParams
from trapsim.market.process import SECONDS_PER_YEAR, SyntheticMarket, week_profile
from trapsim.market.realism import minute_bars
from trapsim.market.regimes import BEARISH, BULLISH, REGIMES

START = parse_ts("2025-01-06T00:00:00Z")  # a Monday
DAY = 86_400


def with_changes(**sections) -> MarketParams:
    """DEFAULT_PARAMS with some fields of some sections replaced (validated)."""
    data = DEFAULT_PARAMS.model_dump(mode="json")
    for section, fields in sections.items():
        data[section].update(fields)
    return MarketParams.model_validate(data)


def generate(params=DEFAULT_PARAMS, seed=1, ticks=DAY, chunk=21_600, **kw):
    market = SyntheticMarket(params, seed=seed, start_ts=kw.pop("start_ts", START), **kw)
    parts = [market.next_chunk(min(chunk, ticks - i)) for i in range(0, ticks, chunk)]
    return {f: np.concatenate([getattr(p, f) for p in parts])
            for f in ("ts", "price", "volume", "regime")}


def test_ticks_are_one_second_apart_from_start_at_the_initial_price():
    market = SyntheticMarket(DEFAULT_PARAMS, seed=3, start_ts=START)
    assert market.symbol == "BTC-USD" and market.regime_names == REGIMES
    first, second = market.next_chunk(1000), market.next_chunk(7)
    assert np.all(np.diff(first.ts) == NS) and first.ts[0] == START
    assert second.ts[0] == START + 1000 * NS and len(second) == 7
    assert first.price[0] == DEFAULT_PARAMS.initial_price
    for chunk in (first, second):
        assert chunk.regime.dtype == np.int8
        assert set(np.unique(chunk.regime)) <= set(range(len(REGIMES)))
        assert np.all(np.isfinite(chunk.price) & (chunk.price > 0))
        assert np.all(np.isfinite(chunk.volume) & (chunk.volume > 0))


def test_same_seed_gives_the_same_ticks_and_another_seed_others():
    a, b = generate(seed=5), generate(seed=5)
    c = generate(seed=6)
    for field in a:
        assert np.array_equal(a[field], b[field])
    assert not np.array_equal(a["price"], c["price"])
    assert not np.array_equal(a["volume"], c["volume"])


# Frequent jumps and a start off the hour, so chunk edges meet jumps, factor steps
# and hour changes.
BUSY = with_changes(jumps={"rate_per_day": 5000.0})


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(1, 4000), min_size=1, max_size=6))
def test_the_stream_does_not_depend_on_the_chunk_sizes(sizes):
    start = START + 1234 * NS
    whole = SyntheticMarket(BUSY, seed=9, start_ts=start).next_chunk(sum(sizes))
    market = SyntheticMarket(BUSY, seed=9, start_ts=start)
    parts = [market.next_chunk(n) for n in sizes]
    for field in ("ts", "price", "volume", "regime"):
        assert np.array_equal(getattr(whole, field),
                              np.concatenate([getattr(p, field) for p in parts]))


def test_volatility_scales_returns_and_leaves_volume_alone():
    base = generate(seed=4, ticks=2 * DAY)
    r = np.diff(np.log(base["price"]))
    for scale in (0.5, 3.0):
        run = generate(seed=4, ticks=2 * DAY, volatility=scale)
        ratio = np.std(np.diff(np.log(run["price"]))) / np.std(r)
        assert ratio == pytest.approx(scale, rel=0.01)
        assert np.allclose(run["volume"], base["volume"], rtol=1e-9)
        assert np.array_equal(run["regime"], base["regime"])


@pytest.mark.parametrize("volatility", [0.0, -1.0, math.nan, math.inf])
def test_volatility_must_be_positive_and_finite(volatility):
    with pytest.raises(ConfigError, match="volatility"):
        SyntheticMarket(DEFAULT_PARAMS, seed=1, start_ts=START, volatility=volatility)


@pytest.mark.parametrize("n", [0, -5, 2.5, True])
def test_chunk_size_must_be_a_positive_integer(n):
    with pytest.raises(ConfigError, match="chunk size"):
        SyntheticMarket(DEFAULT_PARAMS, seed=1, start_ts=START).next_chunk(n)


def test_drift_sign_follows_the_regime():
    # Low volatility so that 40 days resolve the drift of each regime.
    run = generate(seed=12, ticks=40 * DAY, volatility=0.2)
    r = np.diff(np.log(run["price"]))
    code = run["regime"][1:]
    drift = DEFAULT_PARAMS.regimes.drift_per_day
    for i in BULLISH + BEARISH:
        mean = r[code == i].mean() * DAY
        assert np.sign(mean) == np.sign(drift[i])
        assert mean == pytest.approx(drift[i], rel=0.5)
    neutral = r[code == 0]
    assert abs(neutral.mean()) < 4 * neutral.std() / math.sqrt(len(neutral) / 60)


def test_intraday_and_weekly_profiles_are_reproduced():
    # Without volatility factors, regime levels or jumps only seasonality is left.
    params = with_changes(
        volatility={"factor_variance": [0.0] * 4},
        regimes={"ann_vol": [0.3] * 5},
        jumps={"rate_per_day": 0.0},
    )
    run = generate(params, seed=21, ticks=14 * DAY)
    minute_ts, close, _ = minute_bars(run["ts"], run["price"], run["volume"])
    a, t = np.abs(np.diff(np.log(close))), minute_ts[1:]
    by_hour = np.bincount(hour_of_day(t), a, 24) / np.bincount(hour_of_day(t), minlength=24)
    season = params.seasonality
    assert np.corrcoef(by_hour, season.hour_vol)[0, 1] > 0.98
    weekend = day_of_week(t) >= 5
    wanted = np.mean(season.weekday_vol[5:]) / np.mean(season.weekday_vol[:5])
    assert a[weekend].mean() / a[~weekend].mean() == pytest.approx(wanted, rel=0.05)


def test_volume_level_and_link_to_absolute_returns():
    run = generate(seed=8, ticks=14 * DAY)
    _, close, volume = minute_bars(run["ts"], run["price"], run["volume"])
    assert volume.mean() == pytest.approx(DEFAULT_PARAMS.volume.mean_per_minute, rel=0.25)
    assert np.corrcoef(volume[1:], np.abs(np.diff(np.log(close))))[0, 1] > 0.3


def _return_gaps(jumps: dict) -> np.ndarray:
    """Tick log returns of a run with ``jumps`` minus those of the same seed without jumps."""
    quiet = generate(with_changes(jumps={"rate_per_day": 0.0}), seed=2, ticks=2 * DAY)
    noisy = generate(with_changes(jumps=jumps), seed=2, ticks=2 * DAY)
    return np.diff(np.log(noisy["price"])) - np.diff(np.log(quiet["price"])), noisy


def test_jumps_arrive_at_their_rate_with_sizes_in_regime_volatility_units():
    rate, sd = 400.0, 5.0
    gaps, run = _return_gaps({"rate_per_day": rate, "size_sd": sd})
    at = np.flatnonzero(np.abs(gaps) > 1e-12)
    expected = rate * 2
    assert abs(len(at) - expected) < 4 * math.sqrt(expected)
    # Standardise by the regime's seasonal 1-minute volatility at each jump.
    ts = run["ts"][1:][at]
    season = DEFAULT_PARAMS.seasonality
    week = week_profile(season.hour_vol, season.weekday_vol)
    week = week / math.sqrt(np.mean(week**2))
    how = 24 * day_of_week(ts) + hour_of_day(ts)
    unit = (np.asarray(DEFAULT_PARAMS.regimes.ann_vol)[run["regime"][1:][at]]
            * week[how] * math.sqrt(60 / SECONDS_PER_YEAR))
    z = gaps[at] / unit
    assert np.std(z) == pytest.approx(sd, rel=0.15)
    doubled, _ = _return_gaps({"rate_per_day": rate, "size_sd": 2 * sd})
    assert np.allclose(doubled[at], 2 * gaps[at], rtol=1e-6)


def test_hour_of_week_profile_switches_on_the_clock_hour():
    # Volume without noise or volatility link shows the profile exactly; the run
    # starts off the hour and off the minute.
    hourly = [1.0] * 24
    hourly[1] = 50.0
    params = with_changes(
        seasonality={"hour_volume": hourly},
        volume={"vol_elasticity": 0.0, "noise_variance": 0.0, "move_share": 0.0},
    )
    run = generate(params, ticks=3 * 3600, start_ts=START + HOUR_NS // 2 + 17 * NS)
    in_hour_1 = hour_of_day(run["ts"]) == 1
    assert in_hour_1.sum() == 3600
    quiet = run["volume"][~in_hour_1]
    assert np.allclose(run["volume"][in_hour_1], 50 * quiet[0], rtol=1e-12)
    assert np.allclose(quiet, quiet[0], rtol=1e-12)
