"""Trap injection: each label keeps docs/labels.md on the final stream; run invariants."""

from __future__ import annotations

import functools
import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.core.time import DAY_NS, HOUR_NS, MINUTE_NS, NS, parse_ts
from trapsim.scenarios.contract import label_problem
from trapsim.scenarios.injector import BRANCHING, MARGIN, TRAPS_PER_HOUR, TrapInjector
from trapsim.scenarios.traps import TRAP_TYPES, TRAPS, final_prices

START = 1_700_006_400 * NS  # a UTC midnight


def gbm_market(seed: int, days: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """1-second ticks of a GBM whose log volatility is an AR(1) of 4-hour memory per minute.

    Volume grows with volatility and with the tick's move, times lognormal noise.
    """
    rng = np.random.default_rng(seed)
    n = int(days * 86_400)
    a = math.exp(-1 / 240)
    shocks = rng.standard_normal(n // 60 + 1) * 0.5 * math.sqrt(1 - a * a)
    log_vol = np.empty_like(shocks)
    x = 0.0
    for k, e in enumerate(shocks):
        x = a * x + e
        log_vol[k] = x
    vol = np.repeat(np.exp(log_vol - 0.125), 60)[:n]
    z = rng.standard_normal(n)
    sigma = 0.5 / math.sqrt(365 * 86_400) * vol  # 50 % a year on average
    price = 60_000.0 * np.exp(np.cumsum(sigma * z))
    volume = vol * (0.3 + np.abs(z)) * rng.lognormal(0.0, 0.5, n)
    return START + np.arange(n, dtype=np.int64) * NS, price, volume


def run(ts, price, volume, *, seed=1, frequency=0.2, steps=None, **kwargs):
    """Inject over the whole buffer in one call, or in calls at the ``steps`` ``upto_ts``.

    Chunked calls get fresh copies of exactly the window the runner guarantees,
    as a runner with a re-allocated ring buffer would pass.
    """
    injector = TrapInjector(symbol="BTC-USD", frequency=frequency, seed=seed,
                            start_ts=int(ts[0]), **kwargs)
    overlay, volume = np.zeros_like(price), volume.copy()
    if steps is None:
        return injector.inject(ts, price, overlay, volume, int(ts[-1]) + 1), overlay, volume
    labels, prev = [], int(ts[0])
    for upto in steps:
        lo = np.searchsorted(ts, prev - injector.lookback_ns)
        hi = np.searchsorted(ts, upto + injector.max_span_ns, side="right")
        o, v = overlay[lo:hi].copy(), volume[lo:hi].copy()
        labels += injector.inject(ts[lo:hi].copy(), price[lo:hi].copy(), o, v, upto)
        overlay[lo:hi], volume[lo:hi] = o, v
        prev = upto
    return labels, overlay, volume


def spans(labels):
    return [(parse_ts(lb["params"]["span_start_ts"]), parse_ts(lb["params"]["span_end_ts"]))
            for lb in labels]


def hf_activations(starts, window=5 * MINUTE_NS, min_traps=3):
    """HF mode activations (docs/labels.md) from sorted trap start times: (start_ts, trap_count)."""
    out, i = [], 0
    while i < len(starts):
        first = int(np.searchsorted(starts, starts[i] - window, side="right"))
        if i - first + 1 < min_traps:
            i += 1
            continue
        last = i
        while last + 1 < len(starts) and starts[last + 1] - starts[last] < window:
            last += 1
        out.append((int(starts[i]), last - first + 1))
        i = last + 1
    return out


@functools.cache
def injected_case(name: str):
    """A base path and its injection: 30 days at the default frequency ("month"), or
    five days at a higher frequency for another seed ("week-<seed>")."""
    if name == "month":
        ts, price, volume = gbm_market(11, 30)
        return ts, price, volume, *run(ts, price, volume, seed=5)
    seed = int(name.split("-")[1])
    ts, price, volume = gbm_market(seed, 5)
    return ts, price, volume, *run(ts, price, volume, seed=seed, frequency=0.6)


@pytest.fixture
def month():
    return injected_case("month")


@pytest.fixture(params=["month", "week-21", "week-22", "week-23"])
def injected(request):
    return injected_case(request.param)


PARAMS = {
    "liquidity_grab": {"range_extreme", "volume_ratio"},
    "stop_hunt": {"level", "lookback_min", "volume_ratio"},
    "bull_trap": {"level", "lookback_min", "volume_ratio"},
    "bear_trap": {"level", "lookback_min", "volume_ratio"},
    "fibonacci_trap": {"swing_start_ts", "swing_from", "swing_to", "ratio", "level"},
}


def check_contract(ts, price, labels, overlay, volume):
    """Every label keeps docs/labels.md, with the injector's margin, on the final stream."""
    final = final_prices(price, overlay)
    problems = Counter(label_problem(lb, ts, final, volume, margin=MARGIN) for lb in labels)
    assert problems == {None: len(labels)}


def check_labels(ts, labels):
    """Labels are JSON with the documented params, numbered, ordered and never overlap."""
    assert [lb["id"] for lb in labels] == list(range(len(labels)))
    for lb in labels:
        assert lb["kind"] == "trap" and lb["symbol"] == "BTC-USD"
        assert json.loads(json.dumps(lb)) == lb
        assert {"sigma", "pct", "span_start_ts", "span_end_ts"} | PARAMS[lb["type"]] <= set(
            lb["params"])
    bounds = spans(labels)
    for (a, b), lb in zip(bounds, labels, strict=True):
        assert a <= lb["start_ts"] <= lb["peak_ts"] <= lb["end_ts"] < b <= ts[-1]
        assert a == (lb["start_ts"] if lb["type"] != "fibonacci_trap"
                     else parse_ts(lb["params"]["swing_start_ts"]))
    assert all(b0 < a1 for (_, b0), (a1, _) in zip(bounds, bounds[1:], strict=False))


def check_overlay(ts, base_volume, labels, overlay, volume):
    """Overlay and volume change only inside spans, and the overlay is 0 at each span end."""
    inside = np.zeros(len(ts), bool)
    for a, b in spans(labels):
        lo, hi = np.searchsorted(ts, [a, b])
        inside[lo:hi + 1] = True
        assert overlay[hi] == 0.0
    assert np.all(overlay[~inside] == 0.0)
    assert np.array_equal(volume[~inside], base_volume[~inside])
    assert np.all(volume >= base_volume)
    assert np.count_nonzero(overlay[inside]) > 0.9 * inside.sum()


def test_every_label_keeps_the_contract_with_margin(injected):
    ts, price, _, labels, overlay, volume = injected
    assert labels
    check_contract(ts, price, labels, overlay, volume)


def test_labels_are_json_numbered_ordered_and_disjoint(injected):
    check_labels(injected[0], injected[3])


def test_overlay_and_volume_change_only_inside_spans(injected):
    ts, _, base_volume, labels, overlay, volume = injected
    check_overlay(ts, base_volume, labels, overlay, volume)


@functools.cache
def _short_base():
    return gbm_market(12, 1.5)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**31), frequency=st.floats(0.05, 1.0))
def test_invariants_hold_for_any_seed_and_frequency(seed, frequency):
    ts, price, base_volume = _short_base()
    labels, overlay, volume = run(ts, price, base_volume, seed=seed, frequency=frequency)
    check_contract(ts, price, labels, overlay, volume)
    check_labels(ts, labels)
    check_overlay(ts, base_volume, labels, overlay, volume)


def test_sigma_and_peak_follow_their_definitions(month):
    ts, price, _, labels, overlay, _ = month
    final = final_prices(price, overlay)
    closes = final[59::60]  # START is a UTC midnight: tick 60 k + 59 closes minute k
    for lb in labels:
        minute = (lb["start_ts"] - START) // MINUTE_NS
        sigma = np.std(np.diff(np.log(closes[minute - 61:minute])), ddof=1)
        assert math.isclose(sigma, lb["params"]["sigma"], rel_tol=1e-9)
        start, end = np.searchsorted(ts, [lb["start_ts"], lb["end_ts"]])
        window = final[start:end + 1]
        peak = np.argmax(window) if lb["direction"] == "up" else np.argmin(window)
        assert ts[start + peak] == lb["peak_ts"]


def test_rate_matches_the_frequency_within_hawkes_error(month):
    ts, _, _, labels, _, _ = month
    injector = TrapInjector(symbol="BTC-USD", frequency=0.2, seed=5, start_ts=int(ts[0]))
    # Traps start once the 240-min history exists and stop where spans no longer fit.
    hours = (ts[-1] - ts[0] - injector.lookback_ns - injector.max_span_ns) / HOUR_NS
    mean = TRAPS_PER_HOUR * 0.2 * hours
    assert abs(len(labels) - mean) < 4 * math.sqrt(mean) / (1 - BRANCHING)


def test_all_five_types_appear_with_their_directions(month):
    _, _, _, labels, _, _ = month
    kinds = Counter((lb["type"], lb["direction"]) for lb in labels)
    assert {t for t, _ in kinds} == set(TRAP_TYPES)
    assert kinds[("bull_trap", "down")] == kinds[("bear_trap", "up")] == 0
    for t in ("liquidity_grab", "stop_hunt", "fibonacci_trap"):
        assert kinds[(t, "up")] and kinds[(t, "down")]


def test_hf_clusters_occur(month):
    ts, _, _, labels, _, _ = month
    starts = np.array([lb["start_ts"] for lb in labels])
    activations = hf_activations(starts)
    days = (ts[-1] - ts[0]) / DAY_NS
    assert len(activations) >= days / 10  # a few a week at the very least
    clustered = {lb["type"] for lb in labels
                 if any(0 <= lb["start_ts"] - t < 5 * MINUTE_NS for t, _ in activations)}
    assert clustered <= {"liquidity_grab", "stop_hunt"}


def test_same_seed_same_output_other_seed_other_output():
    ts, price, volume = gbm_market(3, 2)
    first = run(ts, price, volume, seed=9, frequency=1.0)
    again = run(ts, price, volume, seed=9, frequency=1.0)
    other = run(ts, price, volume, seed=10, frequency=1.0)
    assert first[0] == again[0]
    assert np.array_equal(first[1], again[1]) and np.array_equal(first[2], again[2])
    assert first[0] != other[0]


@functools.cache
def _two_days():
    ts, price, volume = gbm_market(4, 2)
    return ts, price, volume, run(ts, price, volume, seed=2, frequency=1.0)


@pytest.fixture
def two_days():
    return _two_days()


@pytest.mark.parametrize("step_s", [1, 61, 17 * 60, 3 * 3600])
def test_chunked_calls_equal_one_call(two_days, step_s):
    ts, price, volume, whole = two_days
    steps = list(range(int(ts[0]) + step_s * NS, int(ts[-1]) + 1, step_s * NS)) + [int(ts[-1]) + 1]
    if step_s == 1:  # one-second calls everywhere would be slow: do them around a few traps
        hot = [lb["start_ts"] for lb in whole[0][::7]]
        steps = sorted({*steps[::600], *(t + k * NS for t in hot for k in range(-3, 4))})
    chunked = run(ts, price, volume, seed=2, frequency=1.0, steps=steps)
    assert chunked[0] == whole[0]
    assert np.array_equal(chunked[1], whole[1]) and np.array_equal(chunked[2], whole[2])


@settings(max_examples=5, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # read-only fixture
@given(st.lists(st.integers(1, 4 * 3600), min_size=1, max_size=40))
def test_chunked_calls_at_random_steps_equal_one_call(two_days, steps_s):
    ts, price, volume, whole = two_days
    steps = [int(ts[0]) + NS * s for s in np.cumsum(steps_s)]
    steps = [t for t in steps if t <= ts[-1]] + [int(ts[-1]) + 1]
    chunked = run(ts, price, volume, seed=2, frequency=1.0, steps=steps)
    assert chunked[0] == whole[0]
    assert np.array_equal(chunked[1], whole[1])


def test_each_call_finalises_every_tick_before_upto(two_days):
    ts, price, volume, (labels, whole_overlay, whole_volume) = two_days
    injector = TrapInjector(symbol="BTC-USD", frequency=1.0, seed=2, start_ts=int(ts[0]))
    overlay, vol = np.zeros_like(price), volume.copy()
    prev = int(ts[0])
    for upto in range(int(ts[0]) + 5 * HOUR_NS, int(ts[-1]), 5 * HOUR_NS):
        new = injector.inject(ts, price, overlay, vol, upto)
        done = np.searchsorted(ts, upto)
        assert np.array_equal(overlay[:done], whole_overlay[:done])
        assert np.array_equal(vol[:done], whole_volume[:done])
        assert all(prev <= parse_ts(lb["params"]["span_start_ts"]) < upto for lb in new)
        prev = upto


def test_a_source_that_ends_keeps_the_traps_that_fit_and_drops_the_rest():
    ts, price, volume = gbm_market(6, 2)
    full, _, _ = run(ts, price, volume, seed=3, frequency=1.0)
    cut = int(1.5 * 86_400)
    short, overlay, _ = run(ts[:cut], price[:cut], volume[:cut], seed=3, frequency=1.0)
    max_span = TrapInjector(symbol="BTC-USD", frequency=1.0, seed=3, start_ts=START).max_span_ns
    fits = [lb for lb in full if parse_ts(lb["params"]["span_start_ts"]) + max_span <= ts[cut - 1]]
    assert short and short == fits
    assert len(fits) < len(full)


def test_stale_prices_empty_volume_and_jumps_keep_the_invariants():
    ts, price, volume = gbm_market(5, 3)
    price, volume = price.copy(), volume.copy()
    price[30_000:40_800] = price[30_000]  # three hours of a stale feed
    volume[50_000:57_200] = 0.0  # two hours without trades
    price[90_000:] *= 1.05  # a gap
    price[120_000:130_000] = np.round(price[120_000:130_000])  # a coarse tick size
    labels, overlay, final_volume = run(ts, price, volume, seed=3, frequency=1.0)
    assert labels
    check_contract(ts, price, labels, overlay, final_volume)
    check_labels(ts, labels)
    check_overlay(ts, volume, labels, overlay, final_volume)


def test_frequency_zero_injects_nothing():
    ts, price, volume = gbm_market(7, 1)
    labels, overlay, final_volume = run(ts, price, volume, frequency=0.0)
    assert labels == []
    assert not overlay.any()
    assert np.array_equal(final_volume, volume)


@pytest.mark.parametrize("kind", TRAP_TYPES)
def test_each_type_can_be_injected_alone(kind):
    ts, price, volume = gbm_market(8, 3)
    labels, overlay, final_volume = run(ts, price, volume, frequency=0.5, types=(kind,))
    final = final_prices(price, overlay)
    assert labels and {lb["type"] for lb in labels} == {kind}
    assert all(label_problem(lb, ts, final, final_volume) is None for lb in labels)


def test_registry_lists_the_five_types_in_order():
    assert TRAP_TYPES == ("liquidity_grab", "stop_hunt", "bull_trap", "bear_trap",
                          "fibonacci_trap")
    assert all(TRAPS[name].name == name for name in TRAP_TYPES)


def test_checker_rejects_labels_that_break_the_contract(month):
    ts, price, _, labels, overlay, volume = month
    final = final_prices(price, overlay)
    by_type = {lb["type"]: lb for lb in labels}
    for lb in by_type.values():
        broken = [
            lb | {"end_ts": lb["end_ts"] + NS},
            lb | {"peak_ts": lb["peak_ts"] - NS},
            lb | {"magnitude": lb["magnitude"] * 1.01},
            lb | {"direction": "down" if lb["direction"] == "up" else "up"},
            lb | {"params": lb["params"] | {"sigma": lb["params"]["sigma"] * 1.01}},
        ]
        assert all(label_problem(b, ts, final, volume) for b in broken)
        assert label_problem(lb, ts, price, volume) is not None  # the base stream has no trap


@pytest.mark.parametrize("frequency", [-0.1, 1.01, math.nan, math.inf, "0.2", None, True])
def test_bad_frequency_raises_config_error(frequency):
    with pytest.raises(ConfigError, match="frequency"):
        TrapInjector(symbol="BTC-USD", frequency=frequency, seed=1, start_ts=START)


@pytest.mark.parametrize("kwargs", [
    {"types": ()}, {"types": ("stop_hunt", "stop_hunt")}, {"types": ("head_fake",)},
    {"seed": -1}, {"seed": 1.5}, {"symbol": ""}, {"start_ts": "2024-01-01"},
])
def test_bad_parameters_raise_config_error(kwargs):
    params = {"symbol": "BTC-USD", "frequency": 0.2, "seed": 1, "start_ts": START} | kwargs
    with pytest.raises(ConfigError):
        TrapInjector(**params)


def test_upto_going_back_or_mismatched_arrays_raise_config_error():
    ts, price, volume = gbm_market(9, 0.5)
    injector = TrapInjector(symbol="BTC-USD", frequency=0.2, seed=1, start_ts=int(ts[0]))
    overlay = np.zeros_like(price)
    injector.inject(ts, price, overlay, volume, int(ts[1000]))
    with pytest.raises(ConfigError, match="upto_ts"):
        injector.inject(ts, price, overlay, volume, int(ts[10]))
    with pytest.raises(ConfigError, match="same length"):
        injector.inject(ts, price[:-1], overlay, volume, int(ts[2000]))
    with pytest.raises(ConfigError, match="float64"):
        injector.inject(ts, price, overlay.astype(np.float32), volume, int(ts[2000]))


def test_on_the_synthetic_market():
    process = pytest.importorskip("trapsim.market.process")
    params = pytest.importorskip("trapsim.market.params")
    market = process.SyntheticMarket(params.DEFAULT_PARAMS, seed=4, start_ts=START)
    chunk = market.next_chunk(4 * 86_400)
    labels, overlay, volume = run(chunk.ts, chunk.price, chunk.volume, seed=4, frequency=0.5)
    final = final_prices(chunk.price, overlay)
    assert len({lb["type"] for lb in labels}) >= 3
    assert all(label_problem(lb, chunk.ts, final, volume, margin=MARGIN) is None
               for lb in labels)
