"""Fitting :class:`~trapsim.market.params.MarketParams` to real 1-minute candles.

Every step is a moment estimator on the candles, in this order:

1. Seasonality: multiplicative hour-of-day × weekday profiles of mean absolute
   return and of mean volume (Andersen & Bollerslev 1997, J. Empirical Finance 4),
   fitted by alternating means.
2. Regimes: :func:`classify_regimes` labels every minute; spell lengths give the
   mean durations, consecutive spells the jump chain, and the minutes of each
   regime its volatility and mean drift, the slope of the trend the classifier
   saw (Hamilton 1989 regime switching, estimated by classification rather
   than filtering).
3. Jumps: deseasonalised 1-minute returns beyond :data:`JUMP_THRESHOLD_SIGMA` local
   standard deviations (the threshold test of Lee & Mykland 2008, "Jumps in
   financial markets", Review of Financial Studies 21(6)); their rate, and a
   normal size law with the same fourth moment in units of regime volatility.
4. Log-volatility factors: the autocovariance of the log high/low range, whose
   measurement noise is independent from minute to minute (Alizadeh, Brandt &
   Diebold 2002, "Range-based estimation of stochastic volatility models",
   J. Finance 57(3)), so at lags >= 1 it is that of log volatility; the
   stationary variances of OU factors at :data:`FACTOR_TIMESCALES_S` are fitted
   to it, regime levels taken out, by non-negative least squares.
5. Volume: the elasticity of log volume to log volatility that reproduces their
   contemporaneous covariance, and the variance and lag-1 persistence of the
   log volume left over.
6. Level: the regime volatilities (and with them the jumps, sized in their
   units) are scaled by :data:`BASE_LEVEL`, the trap allowance below.

The trap allowance
------------------
A default run (``trapsim run``) injects labelled traps on top of this market at
frequency 0.2 (:mod:`trapsim.scenarios.injector`). Their moves are sized in
units of the local 1-minute σ, so they multiply the variance of 1-minute
returns by a nearly constant :data:`TRAP_VARIANCE_FACTOR` whatever the level.
Calibrating the base to the real level would put every default run
``sqrt(TRAP_VARIANCE_FACTOR)`` ≈ 1.38 times above it (annualised volatility
0.47 against 0.33 on the 2025 file); calibrating base plus traps to it would
put runs without traps (``--frequency 0``) 1.38 times below (0.24, under the
0.25 floor of REALISM.md). The base serves both, so the factor is split evenly
in log: the base gets ``TRAP_VARIANCE_FACTOR ** -0.25`` of the real level and
a default run ``TRAP_VARIANCE_FACTOR ** +0.25``, both within 17 % of the data
(about 0.29 and 0.40 on the 2025 file). The traps add no drift, so the regime
drifts are not scaled (they are 1/BASE_LEVEL ≈ 1.17 times larger relative to
the base volatility). The shape statistics of the returns (kurtosis,
clustering, seasonality, volume link) do not depend on the level.

Numbers are rounded to 6 significant digits, far below their sampling error, so
the YAML is readable and round-trips exactly.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from trapsim.core.errors import DataError
from trapsim.core.time import day_of_week, hour_of_day
from trapsim.market.params import (
    JumpParams,
    MarketParams,
    RegimeParams,
    SeasonalityParams,
    VolatilityParams,
    VolumeParams,
)
from trapsim.market.regimes import BEARISH, BULLISH, REGIMES

MIN_MINUTES = 3 * 1440
"""Fewest candles :func:`calibrate` accepts (3 days): enough for both seasonal
profiles and for every volatility level to hold a spell."""
VOL_WINDOW_MIN = 360
"""Centred window of the rolling volatility of :func:`classify_regimes`, minutes."""
TREND_WINDOW_MIN = 720
"""Centred window of the trend (log return across it) of :func:`classify_regimes`, minutes."""
VOL_QUANTILES = (0.4, 0.8)
"""Rolling-volatility quantiles separating low, moderate and high volatility."""
MIN_RUN_MIN = 120
"""Shortest regime spell kept by :func:`classify_regimes`; shorter ones join the previous."""
FACTOR_TIMESCALES_S = (120.0, 1_800.0, 14_400.0, 172_800.0)
"""Mean-reversion times of the log-volatility factors: 2 min, 30 min, 4 h, 2 days."""
FIT_LAGS_MIN = (1, 2, 3, 5, 8, 13, 20, 30, 50, 80, 130, 200, 300, 500, 800, 1300, 2000, 2880)
"""Lags (minutes) at which the factor autocovariance is fitted, roughly log-spaced."""
JUMP_THRESHOLD_SIGMA = 8.0
"""A 1-minute return is a jump beyond this many robust local standard deviations."""
JUMP_WINDOW_MIN = 61
"""Centred window of the robust local standard deviation, minutes."""
MOVE_SHARE = 0.5
"""Volume share that follows the tick's own move (ticks are not in candles; fixed)."""
RANGE_FLOOR = 0.25
"""Ranges below this fraction of the median 1-minute range are raised to it: there
the range measures the price grid of a still market, not its volatility."""
TRAP_VARIANCE_FACTOR = 1.9
"""Variance of 1-minute returns with default trap injection (frequency 0.2) over
that of the same base path without: mean 1.92, median 1.89, sd 0.09 over 40 runs
of 30 days (seeds 2000-2039, the previous default market, the compiled injector
of commit 2fa87c2). Re-measure it when the injector's sizing changes."""
BASE_LEVEL = TRAP_VARIANCE_FACTOR ** -0.25
"""Scale of the calibrated volatility: the trap allowance of the module docstring."""


def _as_arrays(minute_ts, *columns) -> list[np.ndarray]:
    ts = np.asarray(minute_ts)
    if ts.ndim != 1 or not np.issubdtype(ts.dtype, np.integer):
        raise DataError("minute_ts must be a 1-D array of int64 ns timestamps")
    out = [ts.astype(np.int64)]
    for name, col in columns:
        arr = np.asarray(col, dtype=float)
        if arr.shape != ts.shape:
            raise DataError(f"{name} has shape {arr.shape}, minute_ts has {ts.shape}")
        out.append(arr)
    if len(ts) > 1 and np.any(np.diff(ts) <= 0):
        raise DataError("minute_ts must be strictly increasing")
    return out


def _check_prices(name: str, x: np.ndarray) -> None:
    if not np.all(np.isfinite(x) & (x > 0)):
        raise DataError(f"{name} must be finite and > 0 in every candle")


def seasonal_profiles(ts: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicative hour-of-day and weekday profiles of a positive series.

    Fits ``x ≈ c · hourly[hour] · weekday[day]`` by alternating group means
    (three sweeps converge to well below sampling error).

    Parameters
    ----------
    ts : ndarray of int64, shape (m,)
        Times, ns UTC.
    x : ndarray of float64, shape (m,)
        Non-negative values, e.g. absolute returns or volumes.

    Returns
    -------
    (hourly, weekday) : ndarray, shapes (24,) and (7,)
        Each with mean 1; an hour or day without data gets 1.
    """
    h, d = hour_of_day(ts), day_of_week(ts)
    nh, nd = np.bincount(h, minlength=24), np.bincount(d, minlength=7)
    hourly, weekday = np.ones(24), np.ones(7)
    for _ in range(3):
        hourly = np.where(nh > 0, np.bincount(h, x / weekday[d], 24) / np.maximum(nh, 1), np.nan)
        hourly = np.nan_to_num(hourly / np.nanmean(hourly), nan=1.0)
        weekday = np.where(nd > 0, np.bincount(d, x / hourly[h], 7) / np.maximum(nd, 1), np.nan)
        weekday = np.nan_to_num(weekday / np.nanmean(weekday), nan=1.0)
    return hourly, weekday


def _centred_sum(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Sum and count of ``x`` over ``[i - window//2, i + window//2]``, truncated at the ends."""
    n, half = len(x), window // 2
    cs = np.r_[0.0, np.cumsum(x)]
    i = np.arange(n)
    lo, hi = np.maximum(i - half, 0), np.minimum(i + half + 1, n)
    return cs[hi] - cs[lo], hi - lo


def _runs(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index and length of each run of equal codes."""
    starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
    return starts, np.diff(np.r_[starts, len(codes)])


def _merge_short_runs(codes: np.ndarray, min_len: int) -> np.ndarray:
    """Give every run shorter than ``min_len`` (except a first one) the previous run's code."""
    starts, lengths = _runs(codes)
    run_code = codes[starts].copy()
    for i in range(1, len(starts)):
        if lengths[i] < min_len:
            run_code[i] = run_code[i - 1]
    return np.repeat(run_code, lengths).astype(np.int8)


def classify_regimes(minute_ts: np.ndarray, close: np.ndarray) -> np.ndarray:
    """Regime code of every minute from rolling volatility and trend.

    The volatility of minute ``i`` is the mean deseasonalised absolute 1-minute
    return over a centred :data:`VOL_WINDOW_MIN` window, its trend the log return
    across a centred :data:`TREND_WINDOW_MIN` window. Below the
    :data:`VOL_QUANTILES` [0] quantile of volatility the minute is
    ``low_volatility_neutral``; up to the [1] quantile moderate, above it high,
    bullish or bearish by the sign of the trend. Spells shorter than
    :data:`MIN_RUN_MIN` join the previous spell. Windows look ahead: this labels
    history in hindsight, as a smoothed regime estimate would.

    Parameters
    ----------
    minute_ts : ndarray of int64, shape (m,)
        Consecutive minute times, ns UTC, strictly increasing.
    close : ndarray of float64, shape (m,)
        1-minute closes, > 0.

    Returns
    -------
    ndarray of int8, shape (m,)
        Codes into :data:`~trapsim.market.regimes.REGIMES`. The volatility
        thresholds are quantiles of the series itself, so every file has all
        three levels. Series shorter than :data:`MIN_MINUTES` are not
        deseasonalised.

    Raises
    ------
    DataError
        If the arrays differ in shape, hold fewer than 2 minutes, ``minute_ts`` is
        not strictly increasing or a close is not finite and > 0.
    """
    ts, close = _as_arrays(minute_ts, ("close", close))
    if len(ts) < 2:
        raise DataError("classify_regimes needs at least 2 closes")
    _check_prices("close", close)
    logc = np.log(close)
    a = np.abs(np.diff(logc, prepend=logc[0]))
    if len(ts) >= MIN_MINUTES:
        hourly, weekday = seasonal_profiles(ts, a)
        a = a / (hourly[hour_of_day(ts)] * weekday[day_of_week(ts)])
    total, count = _centred_sum(a, VOL_WINDOW_MIN)
    vol = total / count
    lo, hi = np.quantile(vol, VOL_QUANTILES)
    level = np.where(vol < lo, 0, np.where(vol < hi, 1, 3))
    codes = np.where(level == 0, 0, level + (_trend(logc) < 0)).astype(np.int8)
    return _merge_short_runs(codes, MIN_RUN_MIN)


def _trend(logc: np.ndarray) -> np.ndarray:
    """Slope of the log price across a centred :data:`TREND_WINDOW_MIN` window, per minute."""
    n, half = len(logc), TREND_WINDOW_MIN // 2
    i = np.arange(n)
    hi, lo = np.minimum(i + half, n - 1), np.maximum(i - half, 0)
    return (logc[hi] - logc[lo]) / (hi - lo)


def _autocov(x: np.ndarray, max_lag: int) -> np.ndarray:
    """Autocovariance of ``x`` at lags ``0..max_lag`` (overall mean, divisor n)."""
    x = x - x.mean()
    size = 1 << int(math.ceil(math.log2(2 * len(x))))
    f = np.fft.rfft(x, size)
    return np.fft.irfft(f * np.conj(f), size)[: max_lag + 1] / len(x)


def _nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares by trying every support (the problem has a few columns)."""
    best, best_cost = np.zeros(a.shape[1]), float(b @ b)
    for size in range(1, a.shape[1] + 1):
        for cols in itertools.combinations(range(a.shape[1]), size):
            sol = np.linalg.lstsq(a[:, cols], b, rcond=None)[0]
            if np.all(sol >= 0):
                x = np.zeros(a.shape[1])
                x[list(cols)] = sol
                cost = float(np.sum((a @ x - b) ** 2))
                if cost < best_cost:
                    best, best_cost = x, cost
    return best


def _fit_factors(log_vol: np.ndarray) -> np.ndarray:
    """Variances of OU factors at :data:`FACTOR_TIMESCALES_S` fitting ``log_vol``'s autocovariance.

    Lags up to a quarter of the series are used.
    """
    lags = np.array([k for k in FIT_LAGS_MIN if k < len(log_vol) // 4])
    acov = _autocov(log_vol, int(lags.max()))[lags]
    design = np.exp(-60.0 * lags[:, None] / np.asarray(FACTOR_TIMESCALES_S)[None, :])
    return _nnls(design, acov)


def _jumps(r_season: np.ndarray) -> np.ndarray:
    """Jump size in local standard deviations, 0 where no jump.

    The local standard deviation is sqrt(pi/2) times the mean absolute return of
    the other minutes of a centred :data:`JUMP_WINDOW_MIN` window (a median
    would collapse to zero in the quiet spells where the price sits still).
    """
    a = np.abs(r_season)
    total, count = _centred_sum(a, JUMP_WINDOW_MIN)
    scale = (total - a) / np.maximum(count - 1, 1) * math.sqrt(math.pi / 2)
    z = np.divide(a, scale, out=np.zeros_like(a), where=scale > 0)
    return np.where(z > JUMP_THRESHOLD_SIGMA, z, 0.0)


def _chain(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean spell length (minutes) and jump chain of a code series.

    The first and last spells are cut by the ends of the data and count only when
    nothing else is known about their regime. Half a count on every
    off-diagonal cell keeps all changes possible and every row defined.
    """
    k = len(REGIMES)
    starts, lengths = _runs(codes)
    run_code = codes[starts]
    inner = np.zeros(len(starts), bool)
    inner[1:-1] = True
    total = np.zeros(k)
    count = np.zeros(k)
    for use in (inner, ~inner):
        missing = count == 0
        sel = use & missing[run_code]
        np.add.at(total, run_code[sel], lengths[sel])
        np.add.at(count, run_code[sel], 1)
    seen = count > 0
    mean = np.where(seen, total / np.maximum(count, 1), lengths.mean())
    moves = np.zeros((k, k))
    np.add.at(moves, (run_code[:-1], run_code[1:]), 1)
    moves += 0.5
    np.fill_diagonal(moves, 0.0)
    return mean, moves / moves.sum(axis=1, keepdims=True)


def _regime_moments(code, trend, r_season, jump) -> tuple[np.ndarray, np.ndarray]:
    """Diffusive annualised volatility and daily drift of each regime.

    The drift is the mean trend slope (:func:`_trend`) over the regime's minutes
    that trend its way (spells merged into it may not): the trend the classifier
    saw, so its sign is the regime's.

    A regime with no minute takes its mirror's numbers (bullish ↔ bearish at the
    same volatility level, drift negated).

    Raises
    ------
    DataError
        If a volatility level never occurs (the data are too short).
    """
    k = len(REGIMES)
    vol, drift = np.full(k, np.nan), np.full(k, np.nan)
    way = np.where(np.isin(code, BULLISH), trend > 0, np.where(np.isin(code, BEARISH), trend < 0,
                                                                 True))
    for i in range(k):
        calm = (code == i) & (jump == 0)
        trending = (code == i) & way
        if calm.any() and trending.any():
            vol[i] = math.sqrt(np.mean(r_season[calm] ** 2) * 525_600)
            drift[i] = 0.0 if i == 0 else np.mean(trend[trending]) * 1440
    for i, j in zip(BULLISH + BEARISH, BEARISH + BULLISH, strict=True):
        if np.isnan(vol[i]):
            vol[i], drift[i] = vol[j], -drift[j]
    for i in np.flatnonzero(np.isnan(vol)):
        raise DataError(f"regime {REGIMES[i]} never occurs in the data: too short to calibrate")
    return vol, drift


def _volume_fit(log_range, log_volume, var_log_vol, cov1_log_vol) -> tuple[float, float, float]:
    """Elasticity, noise variance and noise timescale (s) of log volume on log volatility.

    The elasticity reproduces the contemporaneous covariance of log volume and
    log range given the model's variance of log volatility ``var_log_vol``; the
    noise takes the rest of the log-volume variance and its lag-1-minute
    autocovariance beyond ``beta**2 * cov1_log_vol``.
    """
    x, y = log_range - log_range.mean(), log_volume - log_volume.mean()
    beta = float(np.mean(x * y) / var_log_vol)
    noise_var = max(float(np.var(y) - beta**2 * var_log_vol), 1e-4)
    rho = (np.mean(y[:-1] * y[1:]) - beta**2 * cov1_log_vol) / noise_var
    # Keep the timescale finite and positive: at most white noise, at most near-permanent.
    rho = min(max(rho, 0.01), 0.999)
    return beta, noise_var, -60.0 / math.log(rho)


def _round(x, digits: int = 6):
    """``x`` (a number or nested sequence) to ``digits`` significant digits."""
    if isinstance(x, np.ndarray | list | tuple):
        return tuple(_round(v, digits) for v in x)
    return float(f"{float(x):.{digits}g}")


def _round_rows(p: np.ndarray) -> tuple:
    """Rounded probability rows that still sum to 1: the largest entry absorbs the rest."""
    rows = []
    for row in p:
        out = list(_round(row))
        big = int(np.argmax(row))
        out[big] = _round(1.0 - (sum(out) - out[big]), 12)
        rows.append(tuple(out))
    return tuple(rows)


def calibrate(minute_ts, open, high, low, close, volume) -> MarketParams:
    """Market parameters fitted to consecutive 1-minute candles.

    Parameters
    ----------
    minute_ts : ndarray of int64, shape (m,)
        Candle open times, ns UTC, strictly increasing (consecutive minutes).
    open, high, low, close : ndarray of float64, shape (m,)
        Prices, quote currency, finite and > 0.
    volume : ndarray of float64, shape (m,)
        Volume, base units, finite and >= 0, not all zero.

    Returns
    -------
    MarketParams
        Fitted as the module docstring describes; ``initial_price`` is the last
        close; spread parameters are the defaults (candles hold no quotes).
        The regime volatilities carry the trap allowance (:data:`BASE_LEVEL`):
        a run with default trap injection lands about 17 % above the file's
        volatility level, a run without traps about 15 % below it.

    Raises
    ------
    DataError
        If the arrays differ in shape, hold fewer than :data:`MIN_MINUTES`
        candles, ``minute_ts`` is not strictly increasing, a price or volume is
        invalid, or a volatility level never occurs.
    """
    ts, op, hi, lo, cl, vo = _as_arrays(
        minute_ts, ("open", open), ("high", high), ("low", low), ("close", close),
        ("volume", volume),
    )
    if len(ts) < MIN_MINUTES:
        raise DataError(f"calibrate needs at least {MIN_MINUTES} 1-minute candles (3 days), "
                        f"got {len(ts)}")
    for name, col in (("open", op), ("high", hi), ("low", lo), ("close", cl)):
        _check_prices(name, col)
    if not (np.all(np.isfinite(vo) & (vo >= 0)) and vo.max() > 0):
        raise DataError("volume must be finite and >= 0 in every candle, and not all zero")
    if np.any(hi < lo):
        raise DataError("high is below low in some candle")

    # Returns belong to the minute they end in.
    r = np.diff(np.log(cl))
    t = ts[1:]
    hour_vol, weekday_vol = seasonal_profiles(t, np.abs(r))
    season = hour_vol[hour_of_day(t)] * weekday_vol[day_of_week(t)]
    # Deseasonalised returns keep the overall level: the profile has mean square 1.
    season_rms = math.sqrt(np.mean(season**2))
    season = season / season_rms
    r_season = r / season

    code = classify_regimes(ts, cl)[1:]
    jump = _jumps(r_season)
    ann_vol, drift = _regime_moments(code, _trend(np.log(cl))[1:], r_season, jump)
    duration_min, jump_chain = _chain(code)

    # Jump sizes in units of the regime's seasonal 1-minute volatility (the model's unit).
    is_jump = jump > 0
    unit = ann_vol[code[is_jump]] / math.sqrt(525_600)
    size = np.abs(r_season[is_jump]) / unit
    jump_params = JumpParams(
        rate_per_day=_round(is_jump.sum() * 1440 / len(r)),
        size_sd=_round((np.mean(size**4) / 3) ** 0.25 if len(size) else 0.0),
    )

    rel_range = (hi / lo)[1:] - 1.0
    floor = RANGE_FLOOR * np.median(rel_range)
    if not floor > 0:
        raise DataError("the median 1-minute high/low range is zero: the price never moves")
    log_range = np.log(np.maximum(rel_range, floor)) - np.log(season)
    level = np.array([log_range[code == i].mean() if np.any(code == i) else 0.0
                      for i in range(len(REGIMES))])
    factor_var = _fit_factors(log_range - level[code])

    hour_volume, weekday_volume = seasonal_profiles(t, vo[1:])
    positive = vo[1:][vo[1:] > 0]
    log_volume = np.log(np.maximum(vo[1:], positive.min())) - np.log(
        hour_volume[hour_of_day(t)] * weekday_volume[day_of_week(t)]
    )
    occupancy = np.bincount(code, minlength=len(REGIMES)) / len(code)
    log_level = np.log(ann_vol)
    var_regime = occupancy @ (log_level - occupancy @ log_level) ** 2
    decay = np.exp(-60.0 / np.asarray(FACTOR_TIMESCALES_S))
    beta, noise_var, noise_tau = _volume_fit(
        log_range, log_volume, var_regime + factor_var.sum(), var_regime + factor_var @ decay
    )

    regimes = RegimeParams(
        mean_duration_h=_round(duration_min / 60),
        jump_chain=_round_rows(jump_chain),
        ann_vol=_round(BASE_LEVEL * ann_vol),
        drift_per_day=_round(drift),
    )
    return MarketParams(
        initial_price=_round(cl[-1]),
        regimes=regimes,
        volatility=VolatilityParams(
            factor_timescale_s=FACTOR_TIMESCALES_S, factor_variance=_round(factor_var)
        ),
        jumps=jump_params,
        seasonality=SeasonalityParams(
            hour_vol=_round(hour_vol), weekday_vol=_round(weekday_vol),
            hour_volume=_round(hour_volume), weekday_volume=_round(weekday_volume),
        ),
        volume=VolumeParams(
            mean_per_minute=_round(vo.mean()), vol_elasticity=_round(beta),
            noise_variance=_round(noise_var), noise_timescale_s=_round(noise_tau),
            move_share=MOVE_SHARE,
        ),
    )
