import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.core.seeding import rng_for
from trapsim.core.time import parse_ts
from trapsim.market.params import DEFAULT_PARAMS, MarketParams
from trapsim.market.process import SyntheticMarket
from trapsim.market.regimes import (
    BEARISH,
    BULLISH,
    REGIMES,
    RegimeChain,
    generator_matrix,
    stationary_distribution,
)

CHAIN = np.asarray(DEFAULT_PARAMS.regimes.jump_chain)


def spells(path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Code and length of each run of equal codes, the two cut ones dropped."""
    starts = np.flatnonzero(np.r_[True, path[1:] != path[:-1]])
    lengths = np.diff(np.r_[starts, len(path)])
    return path[starts][1:-1], lengths[1:-1]


def test_regime_names_and_order():
    assert REGIMES == (
        "low_volatility_neutral",
        "moderate_volatility_bullish",
        "moderate_volatility_bearish",
        "high_volatility_bullish",
        "high_volatility_bearish",
    )
    assert all("bullish" in REGIMES[i] for i in BULLISH)
    assert all("bearish" in REGIMES[i] for i in BEARISH)


def test_stationary_distribution_solves_the_balance_equations():
    duration = np.array([10.0, 20.0, 5.0, 40.0, 1.0])
    q = generator_matrix(duration, CHAIN)
    assert np.allclose(q.sum(axis=1), 0)
    pi = stationary_distribution(duration, CHAIN)
    assert pi.sum() == pytest.approx(1) and np.all(pi > 0)
    assert np.allclose(pi @ q, 0, atol=1e-12)
    # Equivalently: the jump chain's stationary law weighted by mean durations.
    w, v = np.linalg.eig(CHAIN.T)
    nu = np.real(v[:, np.argmin(np.abs(w - 1))])
    assert np.allclose(pi, nu * duration / (nu * duration).sum())


def test_a_reducible_chain_has_no_stationary_distribution():
    split = np.array([[0, 1, 0, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 1, 0],
                      [0, 0, 0.5, 0, 0.5], [0, 0, 1, 0, 0]], float)
    with pytest.raises(ConfigError, match="stationary"):
        stationary_distribution(np.ones(5), split)


def test_default_durations_are_hours_to_days():
    assert all(1 <= d <= 72 for d in DEFAULT_PARAMS.regimes.mean_duration_h)


def test_chain_occupancy_durations_and_moves_match_its_parameters():
    duration = np.array([300.0, 120.0, 200.0, 60.0, 90.0])
    path = RegimeChain(duration, CHAIN, rng_for(4, "test")).path(3_000_000)
    code, length = spells(path)
    pi = stationary_distribution(duration, CHAIN)
    # Occupancy: within 5 standard errors, counting spells as the independent units.
    for i in range(5):
        n_i = np.sum(code == i)
        se = pi[i] * math.sqrt(2 / max(n_i, 1))
        assert np.mean(path == i) == pytest.approx(pi[i], abs=5 * se)
        # Holding times are exponential (whole seconds, at least 1): sd = mean.
        assert length[code == i].mean() == pytest.approx(
            duration[i] + 0.5, abs=5 * duration[i] / math.sqrt(n_i))
    moves = np.zeros((5, 5))
    np.add.at(moves, (code[:-1], code[1:]), 1)
    freq = moves / moves.sum(axis=1, keepdims=True)
    assert np.allclose(freq, CHAIN, atol=0.03)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.integers(1, 500), min_size=1, max_size=8))
def test_chain_path_does_not_depend_on_call_sizes(sizes):
    duration = np.array([30.0, 12.0, 20.0, 6.0, 9.0])
    whole = RegimeChain(duration, CHAIN, rng_for(1, "c")).path(sum(sizes))
    chain = RegimeChain(duration, CHAIN, rng_for(1, "c"))
    assert np.array_equal(whole, np.concatenate([chain.path(n) for n in sizes]))


def test_market_regimes_follow_the_configured_chain():
    # The default chain with durations shrunk to minutes, so a few weeks hold
    # thousands of spells.
    data = DEFAULT_PARAMS.model_dump(mode="json")
    data["regimes"]["mean_duration_h"] = [d / 120 for d in data["regimes"]["mean_duration_h"]]
    params = MarketParams.model_validate(data)
    market = SyntheticMarket(params, seed=17, start_ts=parse_ts("2025-01-06T00:00:00Z"))
    path = np.concatenate([market.next_chunk(21_600).regime for _ in range(100)])
    code, length = spells(path)
    pi = params.regimes.stationary()
    duration_s = 3600 * np.asarray(params.regimes.mean_duration_h)
    for i in range(5):
        n_i = np.sum(code == i)
        assert n_i > 200
        assert np.mean(path == i) == pytest.approx(pi[i], abs=5 * pi[i] * math.sqrt(2 / n_i))
        assert length[code == i].mean() == pytest.approx(
            duration_s[i] + 0.5, abs=5 * duration_s[i] / math.sqrt(n_i))
