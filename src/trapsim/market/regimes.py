"""Market regimes and the continuous-time Markov chain that switches between them.

The regime is a hidden state in the sense of Hamilton (1989), "A New Approach to
the Economic Analysis of Nonstationary Time Series and the Business Cycle",
Econometrica 57(2): the drift and volatility level of the price process depend on
it. Time in a regime is exponential with the regime's mean duration; on leaving,
the next regime is drawn from the row of the jump-chain matrix (Norris 1997,
*Markov Chains*, §2.6). Switch times fall on whole seconds, one tick per second.
"""

from __future__ import annotations

import numpy as np

from trapsim.core.errors import ConfigError

REGIMES: tuple[str, ...] = (
    "low_volatility_neutral",
    "moderate_volatility_bullish",
    "moderate_volatility_bearish",
    "high_volatility_bullish",
    "high_volatility_bearish",
)
"""Regime names; a regime code is an index into this tuple."""

BULLISH: tuple[int, ...] = (1, 3)
"""Codes of the regimes whose drift is positive."""
BEARISH: tuple[int, ...] = (2, 4)
"""Codes of the regimes whose drift is negative."""


def generator_matrix(mean_duration_s: np.ndarray, jump_chain: np.ndarray) -> np.ndarray:
    """Transition-rate matrix ``Q`` of the chain.

    Parameters
    ----------
    mean_duration_s : ndarray, shape (k,)
        Mean holding time of each regime, seconds (> 0).
    jump_chain : ndarray, shape (k, k)
        Probability of moving to regime ``j`` when leaving ``i``; zero diagonal,
        rows sum to 1.

    Returns
    -------
    ndarray, shape (k, k)
        ``Q[i, j] = jump_chain[i, j] / mean_duration_s[i]`` off the diagonal and
        ``Q[i, i] = -1 / mean_duration_s[i]``, in 1/s.
    """
    rate = 1.0 / np.asarray(mean_duration_s, float)
    q = np.asarray(jump_chain, float) * rate[:, None]
    np.fill_diagonal(q, -rate)
    return q


def stationary_distribution(mean_duration_s: np.ndarray, jump_chain: np.ndarray) -> np.ndarray:
    """Long-run share of time spent in each regime.

    Solves ``pi Q = 0``, ``sum(pi) = 1`` for the generator of
    :func:`generator_matrix`. Equivalently ``pi_i`` is proportional to the
    stationary distribution of the jump chain times the mean duration of ``i``.

    Returns
    -------
    ndarray, shape (k,)
        Occupancy probabilities, summing to 1.

    Raises
    ------
    ConfigError
        If the chain has no unique stationary distribution (it is reducible).
    """
    q = generator_matrix(mean_duration_s, jump_chain)
    k = len(q)
    a = np.vstack([q.T, np.ones(k)])
    b = np.r_[np.zeros(k), 1.0]
    pi, _, rank, _ = np.linalg.lstsq(a, b, rcond=None)
    if rank < k or np.any(pi < -1e-12):
        raise ConfigError("regimes: the transition structure has no unique stationary distribution")
    return np.clip(pi, 0.0, None) / np.clip(pi, 0.0, None).sum()


class RegimeChain:
    """A regime path, one code per second, carried across consecutive calls.

    Parameters
    ----------
    mean_duration_s : ndarray, shape (k,)
        Mean holding time of each regime, seconds.
    jump_chain : ndarray, shape (k, k)
        Jump-chain probabilities (zero diagonal, rows summing to 1).
    rng : numpy.random.Generator
        The chain's own generator; consumed one switch at a time, so the path
        does not depend on how it is split into calls.

    Notes
    -----
    The first regime is drawn from the stationary distribution and its
    remaining time from the exponential law (memoryless), so the path is
    stationary from its first second.
    """

    def __init__(self, mean_duration_s: np.ndarray, jump_chain: np.ndarray,
                 rng: np.random.Generator) -> None:
        self._duration = np.asarray(mean_duration_s, float)
        self._cum = np.cumsum(np.asarray(jump_chain, float), axis=1)
        self._rng = rng
        pi = stationary_distribution(self._duration, jump_chain)
        self._state = int(np.searchsorted(np.cumsum(pi), rng.random(), side="right"))
        self._state = min(self._state, len(pi) - 1)
        self._left = self._holding(self._state)

    def _holding(self, state: int) -> int:
        # Whole seconds, at least one: a switch happens at a tick boundary.
        return max(1, int(np.ceil(self._rng.exponential(self._duration[state]))))

    def path(self, n: int) -> np.ndarray:
        """The next ``n`` seconds of the path.

        Returns
        -------
        ndarray of int8, shape (n,)
            Regime code of each second.
        """
        codes, lengths = [], []
        todo = n
        while todo > 0:
            take = min(todo, self._left)
            codes.append(self._state)
            lengths.append(take)
            todo -= take
            self._left -= take
            if self._left == 0:
                row = self._cum[self._state]
                nxt = int(np.searchsorted(row, self._rng.random() * row[-1], side="right"))
                self._state = min(nxt, len(row) - 1)
                self._left = self._holding(self._state)
        return np.repeat(np.asarray(codes, np.int8), lengths)
