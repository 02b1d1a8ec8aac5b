"""Compiled scans behind trap drafting and measuring agree with their plain definitions."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.time import MINUTE_NS, NS
from trapsim.scenarios.contract import (
    block_extremes,
    prior_extreme,
    range_extreme,
    reblock,
    sigma_at,
    sigma_pair,
    total,
)
from trapsim.scenarios.traps import RECENT_MIN, _level_window

START = 1_700_006_400 * NS


@functools.cache
def walk() -> tuple[np.ndarray, np.ndarray]:
    """Two days of 1-second prices: a random walk with a stale stretch and a coarse tick."""
    rng = np.random.default_rng(5)
    n = 2 * 86_400
    price = 60_000.0 * np.exp(np.cumsum(rng.standard_normal(n) * 2e-4))
    price[40_000:43_000] = price[40_000]
    price[90_000:100_000] = np.round(price[90_000:100_000])
    return START + np.arange(n, dtype=np.int64) * NS, price


@settings(max_examples=200, deadline=None)
@given(lo=st.integers(0, 170_000), length=st.integers(0, 20_000), s=st.sampled_from([1, -1]))
def test_block_index_scans_equal_plain_extremes(lo, length, s):
    ts, price = walk()
    hi = min(lo + length, len(price))
    highs, lows = block_extremes(price)
    expect = (s * price[lo:hi]).max() if hi > lo else -math.inf
    assert range_extreme(price, highs if s > 0 else lows, lo, hi, s) == expect
    assert range_extreme(price, np.empty(0), lo, hi, s) == expect


def test_reblock_keeps_the_index_in_step_with_writes():
    _, price = walk()
    price = price.copy()
    highs, lows = block_extremes(price)
    price[1000:1500] *= 1.01
    reblock(price, highs, lows, 1000, 1500)
    fresh = block_extremes(price)
    assert np.array_equal(highs, fresh[0]) and np.array_equal(lows, fresh[1])


@pytest.mark.parametrize("minutes", [3, 35, 240])
def test_prior_extreme_with_and_without_the_index(minutes):
    ts, price = walk()
    highs, lows = block_extremes(price)
    for start in range(20_000, 170_000, 9_973):
        lo = np.searchsorted(ts, ts[start] - minutes * MINUTE_NS)
        assert prior_extreme(ts, price, highs, start, minutes, 1) == price[lo:start].max()
        assert prior_extreme(ts, price, np.empty(0), start, minutes, -1) == price[lo:start].min()


def level_window(ts, price, j, s, lo, hi, near_lo, near_hi, sigma):
    """Plain definition: every W in ``lo … hi`` whose extreme is a level to break."""
    def extreme(minutes):
        a = np.searchsorted(ts, ts[j] - minutes * MINUTE_NS)
        return (s * price[a:j]).max()

    recent = extreme(RECENT_MIN)
    fit = [w for w in range(lo, hi + 1)
           if extreme(w) > recent
           and near_lo <= s * math.log(s * extreme(w) / price[j - 1]) / sigma <= near_hi]
    assert fit == list(range(fit[0], fit[-1] + 1)) if fit else True  # a run
    return (fit[0], fit[-1]) if fit else (0, 0)


def test_level_window_equals_its_definition():
    ts, price = walk()
    highs, lows = block_extremes(price)
    rng = np.random.default_rng(1)
    found = 0
    for _ in range(300):
        j = int(rng.integers(15_000, len(ts) - 1))
        s = int(rng.choice([1, -1]))
        lo, hi = (35, 215) if rng.random() < 0.5 else (68, 214)
        near_hi = 2.5 if rng.random() < 0.7 else 12.0
        sigma = sigma_at(ts, price, j)
        got = _level_window(ts, price, highs if s > 0 else lows, j, s, lo, hi, 0.3, near_hi,
                            sigma)
        assert got == level_window(ts, price, j, s, lo, hi, 0.3, near_hi, sigma)
        found += got != (0, 0)
    assert found  # the comparison saw levels to break, not only empty runs


def test_sigma_pair_is_sigma_at_of_each_stream():
    ts, price = walk()
    other = price.copy()
    other[50_000:60_000] *= np.exp(np.linspace(0.0, 0.01, 10_000))
    for start in range(4_000, 170_000, 7_919):
        a, b = sigma_pair(ts, price, other, start)
        assert a == sigma_at(ts, price, start)
        assert b == sigma_at(ts, other, start)


def test_total_is_the_sum():
    x = np.random.default_rng(2).standard_exponential(1_803)
    for n in (0, 1, 7, 8, 9, 1_803):
        assert math.isclose(total(x[:n]), x[:n].sum(), rel_tol=1e-12, abs_tol=0.0)
