"""Stylized facts of 1-minute returns and the bands synthetic BTC must fall in.

The facts and their measures follow Cont (2001), "Empirical properties of asset
returns: stylized facts and statistical issues", Quantitative Finance 1(2), and
the realism metrics of Vyetrenko et al. (2019), "Get Real: Realism Metrics for
Robust Limit Order Book Market Simulations", arXiv:1912.04941. The bands are the
project's acceptance bands for a default 30-day BTC-USD run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trapsim.core.time import MINUTE_NS, day_of_week, hour_of_day

MINUTES_PER_YEAR = 525_600


@dataclass(frozen=True, slots=True)
class Band:
    """An acceptance interval ``lo <= value <= hi`` for one fact."""

    fact: str
    lo: float
    hi: float

    def contains(self, value: float) -> bool:
        return bool(np.isfinite(value) and self.lo <= value <= self.hi)


BANDS: tuple[Band, ...] = (
    Band("kurt_1m", 6.0, 80.0),
    Band("kurt_1h", 3.0, 20.0),
    Band("abs_acf_r_1", 0.0, 0.05),
    Band("acf_abs_1", 0.20, 0.45),
    Band("acf_abs_60", 0.08, 0.30),
    Band("acf_abs_240", 0.04, 0.20),
    Band("season_peak_hour", 12, 16),
    Band("season_max_min", 1.6, 3.0),
    Band("weekend_ratio", 0.50, 0.85),
    Band("corr_volume_abs", 0.35, 0.75),
    Band("ann_vol", 0.25, 0.80),
)
"""The bands of a default 30-day run, plus ``kurt_1m > kurt_1h`` (see :func:`check`)."""


def minute_bars(ts: np.ndarray, price: np.ndarray, volume: np.ndarray):
    """Aggregate ticks to 1-minute closes and volumes.

    Parameters
    ----------
    ts : ndarray of int64, shape (n,)
        Tick times, ns UTC, sorted.
    price, volume : ndarray of float64, shape (n,)

    Returns
    -------
    (minute_ts, close, volume) : tuple of ndarray, shape (m,)
        Minute open times, last price in each minute, summed volume.
    """
    minute = ts // MINUTE_NS
    starts = np.flatnonzero(np.r_[True, minute[1:] != minute[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    return minute[starts] * MINUTE_NS, price[ends], np.add.reduceat(volume, starts)


def excess_kurtosis(x: np.ndarray) -> float:
    """Excess (Fisher) kurtosis of ``x``: NaN when ``x`` has no variance."""
    x = x - x.mean()
    var = np.mean(x * x)
    return float(np.mean(x**4) / var**2 - 3.0) if var > 0 else float("nan")


def acf(x: np.ndarray, lag: int) -> float:
    """Sample autocorrelation of ``x`` at ``lag`` (overall mean and variance)."""
    x = x - x.mean()
    den = float(np.dot(x, x))
    return float(np.dot(x[:-lag], x[lag:]) / den) if den > 0 and lag < len(x) else float("nan")


def stylized_facts(minute_ts: np.ndarray, close: np.ndarray, volume: np.ndarray) -> dict:
    """Measure the REALISM.md facts on a series of 1-minute closes.

    Parameters
    ----------
    minute_ts : ndarray of int64, shape (m,)
        Minute open times, ns UTC, consecutive minutes.
    close, volume : ndarray of float64, shape (m,)
        Minute closes (quote currency) and volumes (base units).

    Returns
    -------
    dict
        ``kurt_1m``, ``kurt_15m``, ``kurt_1h``, ``kurt_1d`` (excess kurtosis of
        log returns of every k-th close), ``acf_r_1``, ``abs_acf_r_1``,
        ``acf_abs_{1,10,60,240}``, ``season_peak_hour`` (UTC hour of the largest
        mean abs return), ``season_max_min``, ``weekend_ratio`` (mean abs return
        Sat+Sun over Mon-Fri), ``corr_volume_abs``, ``ann_vol`` (std of 1-minute
        log returns × sqrt(525,600)), and ``minutes``.
    """
    logc = np.log(close)
    r = np.diff(logc)
    a = np.abs(r)
    t = minute_ts[1:]
    facts = {"minutes": len(close)}
    for name, k in (("1m", 1), ("15m", 15), ("1h", 60), ("1d", 1440)):
        rk = np.diff(logc[::k])
        facts[f"kurt_{name}"] = excess_kurtosis(rk) if len(rk) > 3 else float("nan")
    facts["acf_r_1"] = acf(r, 1)
    facts["abs_acf_r_1"] = abs(facts["acf_r_1"])
    for lag in (1, 10, 60, 240):
        facts[f"acf_abs_{lag}"] = acf(a, lag)
    by_hour = np.bincount(hour_of_day(t), weights=a, minlength=24) / np.maximum(
        np.bincount(hour_of_day(t), minlength=24), 1
    )
    facts["season_peak_hour"] = int(np.argmax(by_hour))
    facts["season_max_min"] = float(by_hour.max() / by_hour.min()) if by_hour.min() > 0 else np.inf
    weekend = day_of_week(t) >= 5
    both = weekend.any() and (~weekend).any()
    facts["weekend_ratio"] = float(a[weekend].mean() / a[~weekend].mean()) if both else np.nan
    facts["corr_volume_abs"] = float(np.corrcoef(volume[1:], a)[0, 1])
    facts["ann_vol"] = float(np.std(r) * np.sqrt(MINUTES_PER_YEAR))
    facts["hourly_abs_return"] = by_hour.tolist()
    return facts


def check(facts: dict) -> list[tuple[str, float, Band | None, bool]]:
    """Each banded fact with its value, band and verdict.

    The extra row ``kurt_1m>kurt_1h`` has no band: it passes when the 1-minute
    kurtosis exceeds the 1-hour kurtosis.
    """
    rows = [(b.fact, facts[b.fact], b, b.contains(facts[b.fact])) for b in BANDS]
    rows.append(("kurt_1m>kurt_1h", facts["kurt_1m"] - facts["kurt_1h"], None,
                 bool(facts["kurt_1m"] > facts["kurt_1h"])))
    return rows
