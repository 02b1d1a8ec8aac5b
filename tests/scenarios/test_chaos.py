"""Chaos scenarios: each effect measured on the output, labels, guard rails, chunk invariance."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.process import SyntheticMarket
from trapsim.scenarios.chaos import ChaosInjector, Scenario, load_scenario
from trapsim.service.config import RunConfig
from trapsim.service.simulation import Simulation

NS = 1_000_000_000
HOUR = 3600


def scenario(*phases, **kw) -> Scenario:
    return Scenario.model_validate({"name": "t", "phases": list(phases), **kw})


def run(sc: Scenario | None, hours: float = 40, seed: int = 5):
    """Ticks and labels of a run without traps, with and without the scenario."""
    cfg = RunConfig(duration=hours, sleep=0, seed=seed, frequency=0.0, market=DEFAULT_PARAMS,
                    scenario=sc)
    ts, price, volume, labels = [], [], [], []
    for step in Simulation(cfg).batches():
        batch = step.ticks["BTC-USD"]
        ts.append(batch.ts)
        price.append(batch.price)
        volume.append(batch.volume)
        labels += step.labels
    return np.concatenate(ts), np.concatenate(price), np.concatenate(volume), labels


@pytest.fixture(scope="module")
def base():
    return run(None)


def test_price_shock_reaches_its_size_and_recovers(base):
    sc = scenario({"type": "price_shock", "at": "2h", "shock_percentage": -15,
                   "duration_seconds": 300, "pattern": "sudden_drop",
                   "recovery_time_seconds": 1800})
    ts, price, volume, labels = run(sc)
    ratio = price / base[1]
    assert np.allclose(ratio[:2 * HOUR], 1.0)
    assert ratio[2 * HOUR + 300] == pytest.approx(0.85, rel=1e-9)  # full effect at 300 s
    assert ratio.min() == pytest.approx(0.85, rel=1e-9)
    assert np.allclose(ratio[2 * HOUR + 2100:], 1.0)  # recovered after 1,800 s more
    assert np.array_equal(volume, base[2])
    (lab,) = labels
    assert (lab["kind"], lab["type"], lab["direction"], lab["magnitude"]) == (
        "chaos", "price_shock", "down", 15.0)
    assert lab["start_ts"] == ts[2 * HOUR] and lab["peak_ts"] == ts[2 * HOUR + 300]
    assert lab["end_ts"] == ts[2 * HOUR + 2100]


def test_market_crash_falls_surges_and_bounces_half_back(base):
    sc = scenario({"type": "market_crash", "at": "1h", "crash_percentage": -18,
                   "crash_duration_minutes": 240, "volume_spike_multiplier": 5,
                   "volatility_multiplier": 3, "recovery_pattern": "slow_bounce"})
    ts, price, volume, labels = run(sc)
    bottom, end = HOUR + 4 * HOUR, HOUR + 28 * HOUR
    ratio = price / base[1]
    # Log offsets are exact; the volatility surge adds noise around them, so compare levels
    # over an hour.
    assert np.median(ratio[bottom - 600:bottom]) == pytest.approx(0.82, abs=0.02)
    assert np.median(ratio[end:end + HOUR]) == pytest.approx(math.sqrt(0.82), abs=0.02)
    assert np.allclose(volume[HOUR:bottom] / base[2][HOUR:bottom], 5.0)
    r = np.diff(np.log(price))
    r0 = np.diff(np.log(base[1]))
    # Typical 1-second moves triple (the median ignores the cascades' few big ones).
    surge = np.median(np.abs(r[HOUR:bottom])) / np.median(np.abs(r0[HOUR:bottom]))
    assert surge == pytest.approx(3.0, rel=0.1)
    assert labels[0]["type"] == "market_crash" and labels[0]["end_ts"] == ts[0] + end * NS


def test_volatility_spike_scales_returns_and_leaves_no_trend(base):
    sc = scenario({"type": "volatility_spike", "at": "4h", "volatility_multiplier": 10,
                   "duration_hours": 2, "pattern": "constant", "preserve_trend": True})
    ts, price, _, labels = run(sc)
    a, b = 4 * HOUR + 600, 6 * HOUR - 600  # inside the flat top
    r, r0 = np.diff(np.log(price)), np.diff(np.log(base[1]))
    assert np.allclose(r[a:b], 10 * r0[a:b])
    assert np.allclose(price[6 * HOUR + 720 + 1:] / base[1][6 * HOUR + 720 + 1:], 1.0)
    assert labels[0]["direction"] == "none" and labels[0]["magnitude"] == 10


@settings(max_examples=15, deadline=None)
@given(st.lists(st.integers(1, 9000), min_size=1, max_size=5))
def test_chaos_does_not_depend_on_chunk_cuts(sizes):
    sc = scenario(
        {"type": "price_shock", "at": "30m", "shock_percentage": 10, "duration_seconds": 600,
         "recovery_time_seconds": 600},
        {"type": "volatility_spike", "at": "1h", "volatility_multiplier": 4,
         "duration_hours": 1, "pattern": "random_walk"},
        {"type": "market_crash", "at": "90m", "crash_percentage": -10,
         "crash_duration_minutes": 20, "recovery_pattern": "v_shape"})
    n = sum(sizes)
    chunk = SyntheticMarket(DEFAULT_PARAMS, seed=2, start_ts=0).next_chunk(n)
    whole = ChaosInjector(sc, symbol="BTC-USD", start_ts=0, seed=2)
    inj = ChaosInjector(sc, symbol="BTC-USD", start_ts=0, seed=2)
    parts, lo = [], 0
    for k in sizes:
        part = type(chunk)(*(getattr(chunk, f)[lo:lo + k] for f in ("ts", "price", "volume",
                                                                      "regime")))
        parts.append(inj.apply(part))
        lo += k
    full = whole.apply(chunk)
    assert np.array_equal(np.concatenate([p.price for p in parts]), full.price)
    assert np.array_equal(np.concatenate([p.volume for p in parts]), full.volume)


@pytest.mark.parametrize("phase, needle", [
    ({"type": "price_shock", "at": "1h", "shock_percentage": -30, "duration_seconds": 60},
     "exceeds max_deviation 25%"),
    ({"type": "volatility_spike", "at": "1h", "volatility_multiplier": 2, "duration_hours": 50},
     "beyond timeout_hours 48"),
    ({"type": "price_shock", "at": "soon", "shock_percentage": -5, "duration_seconds": 60},
     "not an offset"),
])
def test_guard_rails_refuse_out_of_range_requests(phase, needle):
    with pytest.raises(ConfigError, match=needle):
        ChaosInjector(scenario(phase), symbol="BTC-USD", start_ts=0, seed=0)


def test_guard_rails_are_configurable(tmp_path):
    phase = {"type": "price_shock", "at": "1h", "shock_percentage": -30, "duration_seconds": 60}
    ChaosInjector(scenario(phase, max_deviation=0.4), symbol="BTC-USD", start_ts=0, seed=0)
    path = tmp_path / "s.yaml"
    path.write_text("name: x\nphases:\n  - {type: price_crash, at: 1h}\n")
    with pytest.raises(ConfigError, match="s.yaml"):
        load_scenario(path)


def test_default_depeg_falls_about_9_percent_in_12_hours_and_is_back_in_3_days():
    from trapsim.market.multi import MultiAssetMarket

    sc = scenario({"type": "stablecoin_depeg", "at": "1h"})
    market = MultiAssetMarket(("USDT-USD",), seed=3, start_ts=0)
    inj = ChaosInjector(sc, symbol="USDT-USD", start_ts=0, seed=3)
    chunks = [inj.apply(market.next_chunks(3600)[0]["USDT-USD"]) for _ in range(80)]
    p = np.concatenate([c.price for c in chunks])
    hourly = p.reshape(-1, 3600).mean(axis=1)
    assert hourly[12] == pytest.approx(0.91, abs=0.005)  # the trough, 12 h after the start
    # About 0.2 % after 3 days: the depeg's own 0.17 % plus the peg's everyday noise.
    assert abs(hourly[1 + 72] - 1) < 0.0025
    assert np.std(np.diff(p[12 * 3600:13 * 3600])) > 5 * np.std(np.diff(p[:3600]))
    (lab,) = inj.labels()
    assert (lab["type"], lab["direction"], lab["magnitude"]) == ("stablecoin_depeg", "down", 9.0)


def test_a_crash_moves_each_symbol_by_its_loading_in_cascades(base):
    sc = scenario({"type": "market_crash", "at": "1h", "crash_percentage": -20,
                   "crash_duration_minutes": 120, "volatility_multiplier": 1,
                   "volume_spike_multiplier": 1, "recovery_pattern": "none"})
    ts, price, volume, _ = run(sc, hours=8)
    one = ChaosInjector(sc, symbol="BTC-USD", start_ts=int(ts[0]), seed=5, beta=1.5)
    ratio = price / base[1][:len(price)]
    assert ratio[-1] == pytest.approx(0.8, rel=1e-9)  # the level reached stays
    chunk = SyntheticMarket(DEFAULT_PARAMS, seed=5, start_ts=int(ts[0])).next_chunk(len(ts))
    eth_like = one.apply(chunk).price / chunk.price
    assert eth_like[-1] == pytest.approx(0.8**1.5, rel=1e-9)
    assert one.labels()[0]["magnitude"] == pytest.approx(100 * (1 - 0.8**1.5))
    r = np.diff(np.log(ratio[59::60]))  # the crash's own minute moves
    assert r.min() < -0.01 and np.sum(r < -0.005) >= 4  # cascades, not a smooth slide



@pytest.mark.parametrize("seed", [1, 4])
def test_traps_after_a_chaos_jump_stay_within_the_largest_trap_move(seed):
    """σ right after a 24 % step is the step's; traps sized by it must not double the price."""
    sc = scenario({"type": "price_shock", "at": "1h", "shock_percentage": -24,
                   "duration_seconds": 30, "pattern": "step", "recovery_time_seconds": 1800})
    paths = []
    for frequency in (0.0, 1.0):
        cfg = RunConfig(duration=5, sleep=0, seed=seed, frequency=frequency, scenario=sc)
        paths.append(np.concatenate([s.ticks["BTC-USD"].price
                                     for s in Simulation(cfg).batches()]))
    plain, trapped = paths
    assert not np.array_equal(plain, trapped)  # traps were placed
    assert np.max(np.abs(np.log(trapped / plain))) <= math.log(1.15) + 1e-12
