r"""Self-exciting (Hawkes) arrival times of injected events, in market time.

The conditional intensity is

.. math::

    \lambda(t) = \mu + \sum_{t_i < t} n \, \beta \, e^{-\beta (t - t_i)},

the exponential-kernel process of Hawkes (1971), "Spectra of some self-exciting
and mutually exciting point processes", Biometrika 58(1). ``n`` is the branching
ratio (mean number of events one event triggers), ``1 / beta`` the decay time of
the excitation, and the long-run mean rate is ``mu / (1 - n)``. Arrivals are
drawn exactly, one at a time, with the thinning-free algorithm of Dassios & Zhao
(2013), "Exact simulation of Hawkes process with exponentially decaying
intensity", Electronic Communications in Probability 18(62).
"""

from __future__ import annotations

import math

import numpy as np

from trapsim.core.errors import ConfigError
from trapsim.core.time import HOUR_NS, NS

DRAWS = 512
"""Uniforms fetched from the generator at a time (two per arrival)."""


class HawkesArrivals:
    """Iterator over the arrival times of an exponential-kernel Hawkes process.

    Parameters
    ----------
    rate_per_hour : float
        Long-run mean arrival rate ``mu / (1 - n)``, events per hour of market
        time, >= 0. Zero gives no arrivals.
    branching : float
        Branching ratio ``n`` in [0, 1): the mean number of arrivals each
        arrival triggers. The count in a long window of length ``T`` then has
        mean ``rate * T`` and variance about ``rate * T / (1 - n)**2``.
    decay_s : float
        Decay time ``1 / beta`` of the excitation, seconds, > 0.
    start_ts : int
        Market time the process starts at, int ns UTC; the process starts
        empty (intensity ``mu``).
    rng : numpy.random.Generator
        Source of randomness; two uniforms per arrival, fetched
        :data:`DRAWS` at a time (the arrival times do not depend on it).

    Raises
    ------
    ConfigError
        If a parameter is out of range.

    Notes
    -----
    ``next(arrivals)`` returns the next arrival time as int ns UTC, strictly
    non-decreasing; it raises :class:`StopIteration` at once when the rate is 0.
    """

    def __init__(self, *, rate_per_hour: float, branching: float, decay_s: float,
                 start_ts: int, rng: np.random.Generator) -> None:
        if not (math.isfinite(rate_per_hour) and rate_per_hour >= 0):
            raise ConfigError(f"rate_per_hour must be a finite number >= 0, got {rate_per_hour}")
        if not (math.isfinite(branching) and 0 <= branching < 1):
            raise ConfigError(f"branching must be in [0, 1), got {branching}")
        if not (math.isfinite(decay_s) and decay_s > 0):
            raise ConfigError(f"decay_s must be a finite number > 0, got {decay_s}")
        self.rate_per_hour = float(rate_per_hour)
        self.branching = float(branching)
        self.decay_s = float(decay_s)
        self._mu = self.rate_per_hour * (1.0 - self.branching) / (HOUR_NS / NS)  # per second
        self._beta = 1.0 / self.decay_s
        self._start = int(start_ts)
        self._t = 0.0  # seconds since start_ts of the last arrival
        self._excess = 0.0  # lambda(t+) - mu just after the last arrival
        self._rng = rng
        self._draws: list[float] = []  # uniforms fetched and not yet used, in reverse order

    def __iter__(self) -> HawkesArrivals:
        return self

    def __next__(self) -> int:
        if self._mu == 0.0:
            raise StopIteration
        if not self._draws:
            self._draws = self._rng.random(DRAWS).tolist()[::-1]
        u1, u2 = self._draws.pop(), self._draws.pop()
        wait = -math.log1p(-u2) / self._mu  # next immigrant
        if self._excess > 0.0:
            d = 1.0 + self._beta * math.log1p(-u1) / self._excess
            if d > 0.0:  # the excitation fires before it dies out
                wait = min(wait, -math.log(d) / self._beta)
        self._excess = self._excess * math.exp(-self._beta * wait) + self.branching * self._beta
        self._t += wait
        return self._start + round(self._t * NS)
