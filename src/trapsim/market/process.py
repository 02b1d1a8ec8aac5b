r"""Synthetic BTC-USD: 1-second ticks of a regime-switching stochastic-volatility jump process.

Model
-----
Tick ``t`` (one per second) moves the log price by

.. math::

    r_t = \mu_t + \sigma_t \varepsilon_t + J_t, \qquad
    \sigma_t = v \, \bar\sigma_{R_t} \, S_t, \qquad
    S_t = s_{h(t)} \, w_{d(t)} \exp\Big(\sum_k X_{k,t} - \sum_k V_k\Big), \qquad
    \mu_t = \bar\mu_{R_t} S_t^2,

with :math:`\varepsilon_t` standard normal and

- :math:`R_t` the regime (:mod:`trapsim.market.regimes`): a continuous-time
  Markov chain over five regimes with exponential holding times of hours to days,
  after Hamilton (1989), "A new approach to the economic analysis of
  nonstationary time series and the business cycle", Econometrica 57(2). Each
  regime has its own diffusive volatility :math:`\bar\sigma_R` and mean drift
  :math:`\bar\mu_R` (> 0 bullish, < 0 bearish, 0 neutral).
- :math:`X_k` independent Ornstein-Uhlenbeck factors of log volatility with
  mean-reversion times from minutes to days and stationary variances
  :math:`V_k`: the multi-factor stochastic volatility of LeBaron (2001),
  "Stochastic volatility as a simple generator of apparent financial power laws
  and long memory", Quantitative Finance 1(6), and Chernov, Gallant, Ghysels &
  Tauchen (2003), "Alternative models for stock price dynamics", J. Econometrics
  116. A few timescales spread over decades reproduce the slow, near power-law
  decay of the autocorrelation of absolute returns (Cont 2001, "Empirical
  properties of asset returns", Quantitative Finance 1(2)) and, as in rough
  volatility (Gatheral, Jaisson & Rosenbaum 2018, "Volatility is rough",
  Quantitative Finance 18(6)), make short-horizon returns far more fat-tailed
  than long-horizon ones. Subtracting :math:`\sum_k V_k` keeps the mean of
  :math:`S_t^2` at 1 (lognormal moments). Factors move by their exact AR(1)
  transition every :data:`STEP_S` seconds and hold in between.
- :math:`s_h, w_d` the intraday (24 UTC hours) and weekly (7 days)
  multiplicative volatility profiles of Andersen & Bollerslev (1997), "Intraday
  periodicity and volatility persistence in financial markets", J. Empirical
  Finance 4, normalised so that the mean of :math:`(s_h w_d)^2` over the week is 1.
- :math:`\mu_t`: the drift is proportional to the variance (volatility in mean,
  Engle, Lilien & Robins 1987, "Estimating time varying risk premia in the term
  structure: the ARCH-M model", Econometrica 55(2)), so a trending regime moves
  most in its volatile hours, as the data show; its mean is :math:`\bar\mu_R`.
- :math:`J_t` compound Poisson jumps with normal sizes (Merton 1976, "Option
  pricing when underlying stock returns are discontinuous", J. Financial
  Economics 3), sized in units of the regime's seasonal 1-minute volatility
  :math:`v \bar\sigma_R s_h w_d \sqrt{60}`: jumps scale with the market's level
  but not with its fleeting factors.
- :math:`v` the run's ``volatility`` scale (1 = calibrated level).

Volume of tick ``t`` (base units) is

.. math::

    q_t = \bar q \, p_{h(t)} \, u_{d(t)}
          \exp\Big(\beta \big(\ell_{R_t} + \textstyle\sum_k X_{k,t}\big) + \eta_t - c\Big)
          \big(1 - m + m \sqrt{\pi/2}\, |z_t|\big),

where :math:`p, u` are the hourly and weekday volume profiles (mean 1 over the
week), :math:`\ell_R` the regime's log volatility centred on its stationary
mean, :math:`\beta` the volume-volatility elasticity (the mixture of
distributions of Clark 1973, Econometrica 41, and Tauchen & Pitts 1983,
Econometrica 51: one flow of information drives both), :math:`\eta` an OU
noise factor, :math:`c` the constant that makes the mean volume :math:`\bar q`,
and :math:`z_t` the tick's standardised move (:math:`\varepsilon_t` plus the
jump in units of :math:`\sigma_t`), so a larger move carries more volume; the
share :math:`m` of volume follows the move.

Every number comes from :class:`~trapsim.market.params.MarketParams`, fitted by
:func:`~trapsim.market.calibration.calibrate` on real 1-minute candles.

Level and traps
---------------
This is the base market under the trap overlay of :mod:`trapsim.scenarios`.
The traps of a default run (frequency 0.2) are sized in local σ and about
double the variance of 1-minute returns, so the calibrated level is the data's
times ``TRAP_VARIANCE_FACTOR ** -0.25`` (the trap allowance of
:mod:`trapsim.market.calibration`): a default run lands about 17 % above the
data's volatility and a run without traps about 15 % below (annualised 0.40
and 0.29 against 0.33 for the 2025 BTC file). The shape of the returns
(kurtosis, clustering, seasonality, volume link) does not depend on the level;
the drift, which the traps do not add to, keeps its calibrated size.

Sampling noise of the 30-day facts
----------------------------------
Over 30 days the hourly kurtosis rests on the few most volatile of 720 hours,
so it varies widely from seed to seed: with lognormal-type volatility its
logarithm has a standard deviation near 0.5, as in the data (30-day windows of
BTC/USDT: 4.7 to 10.8 in 2025, 16.5 in 2024-08). Trap injection adds about as
much again, independently of the base path (one base path under 30 trap
seeds: log sd 0.3-0.6), mostly through clusters of traps sized by a σ that
earlier traps inflated. The weekend ratio rests on 8 weekend days and moves with the
multi-day volatility level (here mostly the regime chain): log sd near 0.12,
against about 0.17 implied by the week-to-week spread of the real data.

Randomness
----------
Four generators from :func:`~trapsim.core.seeding.rng_for` (regime chain,
shocks, factors, jumps), each consumed in an order that does not depend on the
chunk sizes, so the ticks are the same however the stream is split into chunks.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from trapsim.core.errors import ConfigError
from trapsim.core.seeding import rng_for
from trapsim.core.time import DAY_NS, HOUR_NS, NS
from trapsim.market.base import BaseChunk
from trapsim.market.params import MarketParams
from trapsim.market.regimes import REGIMES, RegimeChain

STEP_S = 20
"""Seconds between updates of the volatility and volume factors."""
SECONDS_PER_YEAR = 525_600 * 60
"""Seconds in the 365-day year that annualises volatility (as ``realism.MINUTES_PER_YEAR``)."""
_SECONDS_PER_DAY = DAY_NS // NS
_HOURS_PER_WEEK = 168


def base_variance_per_s(params: MarketParams) -> float:
    """Long-run mean variance of 1-second base log returns at volatility 1: the regimes'
    diffusive variances weighted by their stationary shares (seasonality and factors have
    mean 1)."""
    ann = np.asarray(params.regimes.ann_vol)
    return float(params.regimes.stationary() @ ann**2) / SECONDS_PER_YEAR


def week_profile(hourly, weekday) -> np.ndarray:
    """Product profile of each hour of the week, hour 0 = Monday 00:00 UTC.

    Parameters
    ----------
    hourly : array_like, shape (24,)
    weekday : array_like, shape (7,)
        Monday first.

    Returns
    -------
    ndarray, shape (168,)
        ``weekday[d] * hourly[h]`` at index ``24 * d + h``.
    """
    return (np.asarray(weekday, float)[:, None] * np.asarray(hourly, float)[None, :]).ravel()


def hour_of_week(ts_ns):
    """Hour of the week (Monday 00:00 UTC = 0) of ns timestamps (scalar or array)."""
    # The epoch fell on a Thursday: hour 72 of its week.
    return (np.asarray(ts_ns, dtype=np.int64) // HOUR_NS + 72) % _HOURS_PER_WEEK


@numba.njit(cache=True, nogil=True)
def _ou_steps(x0, a, b, eps):
    """Exact OU transitions: row i+1 = a * row i + b * eps[i], from row ``x0``."""
    m, k = eps.shape
    out = np.empty((m, k))
    x = x0.copy()
    for i in range(m):
        for j in range(k):
            x[j] = a[j] * x[j] + b[j] * eps[i, j]
            out[i, j] = x[j]
    return out


@numba.njit(cache=True, nogil=True)
def _ticks(z, regime, skip_first, phase, how, to_hour, log_sig_step, log_vol_step,
           log_sig_regime, drift, log_vol_regime, log_sig_week, log_vol_week,
           jump_at, jump_size, lp, mean_volume, move_share, log_price, volume):
    """Fill ``log_price`` and ``volume`` for one chunk; return the last log price.

    ``phase`` is the position of the first tick in its factor step, ``how`` its
    hour of the week and ``to_hour`` the ticks left in that hour. Jump sizes are
    in units of the regime's seasonal 1-minute volatility.
    """
    n = z.shape[0]
    root60 = math.sqrt(60.0)
    flat = 1.0 - move_share
    slope = move_share * math.sqrt(math.pi / 2.0)
    row = 0
    reg = regime[0]
    nj = jump_at.shape[0]
    j = 0
    rel = log_sig_week[how] + log_sig_step[row]
    sig = math.exp(log_sig_regime[reg] + rel)
    mu = drift[reg] * math.exp(2.0 * rel)
    vb = mean_volume * math.exp(log_vol_week[how] + log_vol_regime[reg] + log_vol_step[row])
    for t in range(n):
        if t > 0:
            dirty = False
            if phase == STEP_S:
                phase = 0
                row += 1
                dirty = True
            if to_hour == 0:
                how = (how + 1) % _HOURS_PER_WEEK
                to_hour = 3600
                dirty = True
            if regime[t] != reg:
                reg = regime[t]
                dirty = True
            if dirty:
                rel = log_sig_week[how] + log_sig_step[row]
                sig = math.exp(log_sig_regime[reg] + rel)
                mu = drift[reg] * math.exp(2.0 * rel)
                vb = mean_volume * math.exp(
                    log_vol_week[how] + log_vol_regime[reg] + log_vol_step[row]
                )
        move = abs(z[t])
        ret = mu + sig * z[t]
        if j < nj and jump_at[j] == t:
            jump = jump_size[j] * root60 * math.exp(log_sig_week[how] + log_sig_regime[reg])
            ret += jump
            move += abs(jump) / sig
            j += 1
        if not (skip_first and t == 0):
            lp += ret
        log_price[t] = lp
        volume[t] = vb * (flat + slope * move)
        phase += 1
        to_hour -= 1
    return lp


class SyntheticMarket:
    """Infinite synthetic BTC-USD base ticks (the model of this module's docstring).

    Parameters
    ----------
    params : MarketParams
        Calibrated model parameters.
    seed : int
        Run seed; the same seed and the same sequence of ``n`` give the same
        ticks bit for bit (in fact the ticks do not depend on the ``n`` at all).
    start_ts : int
        Time of the first tick, ns UTC; tick ``i`` is at ``start_ts + i`` seconds.
    volatility : float, default 1.0
        Scale on volatility (diffusive and jumps); drift and volume are unchanged.
    symbol : str, default "BTC-USD"
        Symbol; also names the random streams.

    Attributes
    ----------
    symbol : str
    regime_names : tuple of str
        :data:`~trapsim.market.regimes.REGIMES`.
    start_ts : int

    Raises
    ------
    ConfigError
        If ``volatility`` is not a finite number > 0.
    """

    def __init__(self, params: MarketParams, *, seed: int, start_ts: int,
                 volatility: float = 1.0, symbol: str = "BTC-USD") -> None:
        if not (math.isfinite(volatility) and volatility > 0):
            raise ConfigError(f"volatility must be a finite number > 0, got {volatility}")
        self.symbol = symbol
        self.regime_names = REGIMES
        self.start_ts = int(start_ts)
        self.params = params
        self.volatility = float(volatility)
        reg, vol, jumps = params.regimes, params.volatility, params.jumps
        season, vp = params.seasonality, params.volume

        pi = reg.stationary()
        self._chain = RegimeChain(
            3600.0 * np.asarray(reg.mean_duration_h), np.asarray(reg.jump_chain),
            rng_for(seed, f"market/{symbol}/regime"),
        )
        self._shocks = rng_for(seed, f"market/{symbol}/shocks")
        self._factor_rng = rng_for(seed, f"market/{symbol}/factors")
        self._jump_rng = rng_for(seed, f"market/{symbol}/jumps")

        ann = np.asarray(reg.ann_vol)
        self._log_sig_regime = np.log(self.volatility * ann / math.sqrt(SECONDS_PER_YEAR))
        self._drift = np.asarray(reg.drift_per_day) / _SECONDS_PER_DAY
        centred = np.log(ann) - pi @ np.log(ann)
        self._log_vol_regime = vp.vol_elasticity * centred

        sig_week = week_profile(season.hour_vol, season.weekday_vol)
        self._log_sig_week = np.log(sig_week / math.sqrt(np.mean(sig_week**2)))
        vol_week = week_profile(season.hour_volume, season.weekday_volume)
        self._log_vol_week = np.log(vol_week / vol_week.mean())

        # Factors 0..k-1 drive log volatility; the last one is the volume noise.
        tau = np.r_[vol.factor_timescale_s, vp.noise_timescale_s]
        var = np.r_[vol.factor_variance, vp.noise_variance]
        self._a = np.exp(-STEP_S / tau)
        self._b = np.sqrt(var * (1.0 - self._a**2))
        self._k = len(vol.factor_variance)
        self._sig_shift = float(np.sum(vol.factor_variance))
        self._beta = vp.vol_elasticity
        # log E[exp(beta * (l_R + sum X) + eta)]: the parts are independent, X and eta Gaussian.
        self._vol_shift = (
            math.log(pi @ np.exp(self._log_vol_regime))
            + 0.5 * self._beta**2 * self._sig_shift
            + 0.5 * vp.noise_variance
        )
        self._row = np.sqrt(var) * self._factor_rng.standard_normal(len(var))
        self._step = 0

        self._jump_rate = jumps.rate_per_day / _SECONDS_PER_DAY
        self._jump_sd = jumps.size_sd
        self._next_jump = self._draw_jump_gap()

        self._mean_volume = vp.mean_per_minute / 60.0
        self._move_share = vp.move_share
        self._lp = math.log(params.initial_price)
        self._i = 0

    def _draw_jump_gap(self) -> float:
        if self._jump_rate == 0:
            return math.inf
        return math.ceil(self._jump_rng.exponential(1.0 / self._jump_rate))

    def _jumps(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Jumps falling in ticks ``[i, i + n)``: positions in the chunk and sizes."""
        at, size = [], []
        while self._next_jump < self._i + n:
            at.append(int(self._next_jump) - self._i)
            size.append(self._jump_sd * self._jump_rng.standard_normal())
            self._next_jump += self._draw_jump_gap()
        return np.asarray(at, np.int64), np.asarray(size, float)

    def _factor_rows(self, n: int) -> np.ndarray:
        """Factor values of every step touched by ticks ``[i, i + n)``, shape (steps, k + 1)."""
        first, last = self._i // STEP_S, (self._i + n - 1) // STEP_S
        eps = self._factor_rng.standard_normal((last - self._step, len(self._a)))
        new = _ou_steps(self._row, self._a, self._b, eps)
        rows = np.vstack([self._row[None, :], new])
        if len(new):
            self._row = new[-1].copy()
        rows = rows[first - self._step:]
        self._step = last
        return rows

    def next_chunk(self, n: int) -> BaseChunk:
        """The next ``n`` ticks.

        Parameters
        ----------
        n : int
            Number of ticks (seconds), > 0.

        Returns
        -------
        BaseChunk
            ``ts`` int64 ns, ``price`` float64 (quote currency), ``volume``
            float64 (base units), ``regime`` int8 codes into :attr:`regime_names`.

        Raises
        ------
        ConfigError
            If ``n`` is not a positive integer.
        """
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n <= 0:
            raise ConfigError(f"chunk size n must be a positive integer, got {n!r}")
        n = int(n)
        i0 = self._i
        ts = np.arange(self.start_ts + i0 * NS, self.start_ts + (i0 + n) * NS, NS, dtype=np.int64)
        regime = self._chain.path(n)
        z = self._shocks.standard_normal(n)
        rows = self._factor_rows(n)
        x = rows[:, : self._k].sum(axis=1)
        log_sig_step = x - self._sig_shift
        log_vol_step = self._beta * x + rows[:, self._k] - self._vol_shift
        jump_at, jump_size = self._jumps(n)
        t0 = int(ts[0])
        to_hour = -(-((t0 // HOUR_NS + 1) * HOUR_NS - t0) // NS)
        log_price = np.empty(n)
        volume = np.empty(n)
        self._lp = _ticks(
            z, regime, i0 == 0, i0 % STEP_S, int(hour_of_week(t0)), to_hour,
            log_sig_step, log_vol_step, self._log_sig_regime, self._drift,
            self._log_vol_regime, self._log_sig_week, self._log_vol_week,
            jump_at, jump_size, self._lp, self._mean_volume, self._move_share,
            log_price, volume,
        )
        self._i += n
        return BaseChunk(ts=ts, price=np.exp(log_price), volume=volume, regime=regime)
