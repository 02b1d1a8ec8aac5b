"""Swings, Fibonacci levels and trend per timeframe, from ticks or candles.

For each timeframe the ticks are aggregated into UTC-aligned OHLC bars, then:

- **Swings** come from a zigzag on the bars: a swing high (low) is confirmed once
  the price has come back :data:`SWING_ATR` × ATR from it, ATR being Wilder's
  average true range over :data:`PERIOD` bars (Wilder 1978, *New Concepts in
  Technical Trading Systems*). The last swing is the leg between the last
  confirmed swing high and swing low, in the order they happened.
- **Fibonacci levels** of that leg, as drawn in technical analysis: retracements
  ``to − r·(to − from)`` for ``r`` in 0.236 … 0.786 and extensions
  ``from + e·(to − from)`` for ``e`` in 1.272 and 1.618 (beyond the leg's end).
- **Trend**: Wilder's ADX with +DI and −DI over :data:`PERIOD` bars. The
  direction is ``flat`` while ADX < :data:`ADX_TREND` (Wilder's threshold for a
  trending market), else ``up`` if +DI > −DI and ``down`` otherwise; ``strength``
  is ADX / 100. ``slope_atr`` is the least-squares slope of the last
  :data:`PERIOD` closes per bar divided by the ATR, a scale-free steepness.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from trapsim.core.errors import DataError
from trapsim.market.ohlcv import INTERVALS

TIMEFRAMES = INTERVALS
"""Timeframe names and bar lengths (ns): the candle intervals."""
PERIOD = 14
"""Bars in Wilder's ATR and ADX (his default)."""
SWING_ATR = 2.0
"""Reversal, in ATRs, that confirms a swing high or low."""
ADX_TREND = 20.0
"""ADX below which the market is taken as trendless."""
RETRACEMENTS = (0.236, 0.382, 0.5, 0.618, 0.786)
EXTENSIONS = (1.272, 1.618)
MIN_BARS = 2 * PERIOD + 1
"""Bars a timeframe needs to be reported (ADX needs two smoothing periods)."""


def bars(ts: np.ndarray, close: np.ndarray, high: np.ndarray, low: np.ndarray, width_ns: int):
    """Aggregate ticks into UTC-aligned OHLC bars of ``width_ns``.

    Returns
    -------
    (open_ts, high, low, close) : tuple of ndarray, shape (m,)
        Bar open times (ns) and extremes and last close of each bar holding ticks.
    """
    bucket = ts // width_ns
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    return (
        bucket[starts] * width_ns,
        np.maximum.reduceat(high, starts),
        np.minimum.reduceat(low, starts),
        close[ends],
    )


@numba.njit(cache=True)
def wilder(high, low, close, period):
    """Wilder's ATR, +DI, −DI and ADX, each of shape (m,) (NaN until defined).

    True range and directional movements are smoothed with Wilder's running
    average (``x_t = x_{t−1} + (v_t − x_{t−1}) / period``), seeded by the mean of
    the first ``period`` values; ADX is the same average of DX.
    """
    m = len(close)
    atr = np.full(m, np.nan)
    pdi = np.full(m, np.nan)
    mdi = np.full(m, np.nan)
    adx = np.full(m, np.nan)
    tr_s = 0.0
    pdm_s = 0.0
    mdm_s = 0.0
    dx_s = 0.0
    n_dx = 0
    for i in range(1, m):
        tr = max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1]))
        up = high[i] - high[i - 1]
        down = low[i - 1] - low[i]
        pdm = up if up > down and up > 0.0 else 0.0
        mdm = down if down > up and down > 0.0 else 0.0
        if i <= period:
            tr_s += tr / period
            pdm_s += pdm / period
            mdm_s += mdm / period
            if i < period:
                continue
        else:
            tr_s += (tr - tr_s) / period
            pdm_s += (pdm - pdm_s) / period
            mdm_s += (mdm - mdm_s) / period
        atr[i] = tr_s
        if tr_s <= 0.0:
            continue
        pdi[i] = 100.0 * pdm_s / tr_s
        mdi[i] = 100.0 * mdm_s / tr_s
        tot = pdi[i] + mdi[i]
        dx = 100.0 * abs(pdi[i] - mdi[i]) / tot if tot > 0.0 else 0.0
        n_dx += 1
        if n_dx <= period:
            dx_s += dx / period
            if n_dx == period:
                adx[i] = dx_s
        else:
            dx_s += (dx - dx_s) / period
            adx[i] = dx_s
    return atr, pdi, mdi, adx


@numba.njit(cache=True)
def zigzag(high, low, atr, k):
    """Confirmed swing points of bars: a high (low) is confirmed once a later bar's low
    (high) lies ``k`` ATRs below (above) it. Bars before the ATR exists are skipped.

    Returns
    -------
    (index, kind) : (ndarray of int64, ndarray of int8), shape (p,)
        Bar index of each swing point in time order and its kind (+1 high, −1 low).
    """
    m = len(high)
    idx = np.empty(m, np.int64)
    kind = np.empty(m, np.int8)
    p = 0
    leg = 0  # 0 before the first swing (both extremes tracked), +1 tracking a high, −1 a low
    hi_i = -1
    lo_i = -1
    for i in range(m):
        a = atr[i]
        if not a > 0.0:
            continue
        if hi_i < 0:
            hi_i = i
            lo_i = i
            continue
        if leg >= 0:
            if high[i] >= high[hi_i]:
                hi_i = i
            elif high[hi_i] - low[i] >= k * a:
                idx[p] = hi_i
                kind[p] = 1
                p += 1
                leg = -1
                lo_i = i
                continue
        if leg <= 0:
            if low[i] <= low[lo_i]:
                lo_i = i
            elif high[i] - low[lo_i] >= k * a:
                idx[p] = lo_i
                kind[p] = -1
                p += 1
                leg = 1
                hi_i = i
    return idx[:p], kind[:p]


def fibonacci(frm: float, to: float) -> dict:
    """Fibonacci retracement and extension prices of a leg from ``frm`` to ``to``.

    Returns
    -------
    dict
        ``retracements`` {ratio: ``to − r·(to − frm)``} and ``extensions``
        {ratio: ``frm + e·(to − frm)``}, ratios as strings.
    """
    span = to - frm
    return {
        "retracements": {f"{r:g}": to - r * span for r in RETRACEMENTS},
        "extensions": {f"{e:g}": frm + e * span for e in EXTENSIONS},
    }


def _point(open_ts, price, i) -> dict:
    return {"ts": int(open_ts[i]), "price": float(price[i])}


def _slope(close: np.ndarray) -> float:
    x = np.arange(len(close), dtype=float)
    return float(np.polyfit(x, close, 1)[0])


def timeframe_levels(open_ts, high, low, close) -> dict:
    """Swings, Fibonacci levels and trend of one timeframe's bars (see the module notes).

    Parameters
    ----------
    open_ts : ndarray of int64, shape (m,)
        Bar open times, ns UTC.
    high, low, close : ndarray of float64, shape (m,)

    Returns
    -------
    dict
        ``bars``, ``last_ts``, ``close``, ``atr``; ``swing_high`` and ``swing_low``
        (``{"ts", "price"}`` of the last confirmed ones, the bar's open time, or None);
        ``swing`` (``direction``, ``from``, ``to``) with its ``retracements`` and
        ``extensions`` (None without two swing points); ``trend`` (``direction``,
        ``strength``, ``adx``, ``plus_di``, ``minus_di``, ``slope_atr``).
    """
    atr, pdi, mdi, adx = wilder(high, low, close, PERIOD)
    idx, kind = zigzag(high, low, atr, SWING_ATR)
    out = {
        "bars": len(close),
        "last_ts": int(open_ts[-1]),
        "close": float(close[-1]),
        "atr": float(atr[-1]),
        "swing_high": None,
        "swing_low": None,
        "swing": None,
        "retracements": None,
        "extensions": None,
    }
    highs = idx[kind > 0]
    lows = idx[kind < 0]
    if len(highs):
        out["swing_high"] = _point(open_ts, high, highs[-1])
    if len(lows):
        out["swing_low"] = _point(open_ts, low, lows[-1])
    if len(highs) and len(lows):
        up = lows[-1] < highs[-1]
        frm = out["swing_low"] if up else out["swing_high"]
        to = out["swing_high"] if up else out["swing_low"]
        out["swing"] = {"direction": "up" if up else "down", "from": frm, "to": to}
        out.update(fibonacci(frm["price"], to["price"]))
    a = float(adx[-1])
    direction = "flat"
    if math.isfinite(a) and a >= ADX_TREND:
        direction = "up" if pdi[-1] > mdi[-1] else "down"
    out["trend"] = {
        "direction": direction,
        "strength": a / 100.0 if math.isfinite(a) else float("nan"),
        "adx": a,
        "plus_di": float(pdi[-1]),
        "minus_di": float(mdi[-1]),
        "slope_atr": _slope(close[-PERIOD:]) / float(atr[-1]) if atr[-1] > 0 else float("nan"),
    }
    return out


def levels(ts, price, high=None, low=None) -> dict:
    """Swings, Fibonacci levels and trend for every timeframe the data allows.

    Parameters
    ----------
    ts : array-like of int64, shape (n,)
        Tick or candle times, ns UTC, increasing.
    price : array-like of float64, shape (n,)
        Last price (a candle's close).
    high, low : array-like of float64, shape (n,), optional
        Candle highs and lows (both or neither); default ``price``.

    Returns
    -------
    dict
        Timeframe name (``1m``, ``5m``, ``15m``, ``1h``, ``4h``, ``1d``) to the dict
        of :func:`timeframe_levels`, for each timeframe with at least
        :data:`MIN_BARS` bars.

    Raises
    ------
    DataError
        On mismatched shapes, unordered times or non-finite prices.
    """
    t = np.asarray(ts, dtype=np.int64)
    c = np.asarray(price, dtype=np.float64)
    if (high is None) != (low is None):
        raise DataError("give both high and low, or neither")
    h = c if high is None else np.asarray(high, dtype=np.float64)
    lo = c if low is None else np.asarray(low, dtype=np.float64)
    if not (t.shape == c.shape == h.shape == lo.shape) or t.ndim != 1:
        raise DataError("ts, price, high and low must have one and the same length")
    if len(t) and (
        np.any(np.diff(t) < 0) or not np.all(np.isfinite(c) & np.isfinite(h) & np.isfinite(lo))
    ):
        raise DataError("times must be increasing and prices finite")
    out = {}
    for name, width in TIMEFRAMES.items():
        if len(t) == 0:
            break
        open_ts, bh, bl, bc = bars(t, c, h, lo, width)
        if len(bc) < MIN_BARS:
            continue
        out[name] = timeframe_levels(open_ts, bh, bl, bc)
    return out
