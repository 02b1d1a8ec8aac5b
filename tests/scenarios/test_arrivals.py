"""Hawkes arrivals: rate, clustering, exactness (time rescaling), determinism, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.core.time import HOUR_NS, NS
from trapsim.scenarios.arrivals import HawkesArrivals

START = 1_700_000_000 * NS


def arrivals(rate, branching, decay_s, seed, hours):
    """All arrival times (ns) in the first ``hours`` hours."""
    process = HawkesArrivals(rate_per_hour=rate, branching=branching, decay_s=decay_s,
                             start_ts=START, rng=np.random.default_rng(seed))
    end = START + hours * HOUR_NS
    out = []
    for t in process:
        if t >= end:
            break
        out.append(t)
    return np.array(out, dtype=np.int64)


def rescaled_gaps(times, rate, branching, decay_s):
    """Compensator increments between arrivals; Exp(1) iid for the true process (Ogata 1988)."""
    mu = rate * (1 - branching) / 3600.0
    beta = 1.0 / decay_s
    t = (times - START) / NS
    gaps = np.empty(len(t))
    excess, last = 0.0, 0.0
    for i, ti in enumerate(t):
        dt = ti - last
        gaps[i] = mu * dt + excess / beta * -math.expm1(-beta * dt)
        excess = excess * math.exp(-beta * dt) + branching * beta
        last = ti
    return gaps


def ks_exponential(x):
    """Kolmogorov-Smirnov distance of a sample from Exp(1)."""
    x = np.sort(x)
    n = len(x)
    cdf = -np.expm1(-x)
    return max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))


@pytest.mark.parametrize(("rate", "branching", "decay_s"), [(2.0, 0.4, 90.0), (6.0, 0.7, 300.0)])
def test_mean_rate_within_hawkes_sampling_error(rate, branching, decay_s):
    hours = 2000
    n = len(arrivals(rate, branching, decay_s, 1, hours))
    mean = rate * hours
    sd = math.sqrt(mean) / (1 - branching)  # long-window count variance of a Hawkes process
    assert abs(n - mean) < 4 * sd


def test_counts_are_overdispersed_like_a_hawkes_process():
    rate, branching = 2.0, 0.4
    times = arrivals(rate, branching, 90.0, 2, 4000)
    counts = np.bincount(((times - START) // (24 * HOUR_NS)).astype(int))
    dispersion = counts.var(ddof=1) / counts.mean()
    # Poisson gives 1; a Hawkes process 1 / (1 - n)^2 ≈ 2.8 for windows >> the decay time.
    assert 1.8 < dispersion < 4.5


def test_time_rescaled_gaps_are_unit_exponential():
    rate, branching, decay_s = 4.0, 0.5, 120.0
    times = arrivals(rate, branching, decay_s, 3, 1000)
    gaps = rescaled_gaps(times, rate, branching, decay_s)
    assert ks_exponential(gaps) < 1.95 / math.sqrt(len(gaps))  # KS at the 0.1 % level


def test_time_rescaling_rejects_a_poisson_process():
    # The same check on unclustered arrivals must fail, or it proves nothing.
    rate, branching, decay_s = 4.0, 0.5, 120.0
    times = arrivals(rate, 0.0, decay_s, 3, 1000)
    gaps = rescaled_gaps(times, rate, branching, decay_s)
    assert ks_exponential(gaps) > 1.95 / math.sqrt(len(gaps))


def test_zero_rate_has_no_arrivals():
    assert len(arrivals(0.0, 0.4, 90.0, 1, 100)) == 0


def test_same_generator_seed_same_arrivals():
    a = arrivals(3.0, 0.5, 60.0, 7, 200)
    b = arrivals(3.0, 0.5, 60.0, 7, 200)
    c = arrivals(3.0, 0.5, 60.0, 8, 200)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@settings(max_examples=30, deadline=None)
@given(rate=st.floats(0.01, 50.0), branching=st.floats(0.0, 0.95),
       decay_s=st.floats(1.0, 3600.0), seed=st.integers(0, 2**32 - 1))
def test_times_start_after_start_and_never_decrease(rate, branching, decay_s, seed):
    times = arrivals(rate, branching, decay_s, seed, 50)
    assert np.all(times >= START)
    assert np.all(np.diff(times) >= 0)


@pytest.mark.parametrize("kwargs", [
    {"rate_per_hour": -1.0}, {"rate_per_hour": math.inf}, {"rate_per_hour": math.nan},
    {"branching": 1.0}, {"branching": -0.1}, {"decay_s": 0.0}, {"decay_s": math.nan},
])
def test_bad_parameters_raise_config_error(kwargs):
    params = {"rate_per_hour": 2.0, "branching": 0.4, "decay_s": 90.0} | kwargs
    with pytest.raises(ConfigError):
        HawkesArrivals(**params, start_ts=START, rng=np.random.default_rng(0))
