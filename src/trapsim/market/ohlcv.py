"""OHLCV aggregation of ticks into candles, batch by batch or all at once.

A candle's ``ts`` is its open time: the tick time floored to the interval in UTC
(epoch-aligned, so ``1d`` candles open at 00:00 UTC and ``4h`` candles at 00, 04,
… 20 h UTC). Volume is summed left to right in tick order with a carried
accumulator, so the candles are bit-identical however the ticks are split into
batches.
"""

from __future__ import annotations

import numba
import numpy as np
import pyarrow as pa

from trapsim.core.errors import ConfigError, DataError
from trapsim.core.schemas import CANDLES, TS
from trapsim.core.time import DAY_NS, HOUR_NS, MINUTE_NS

INTERVALS: dict[str, int] = {
    "1m": MINUTE_NS,
    "5m": 5 * MINUTE_NS,
    "15m": 15 * MINUTE_NS,
    "1h": HOUR_NS,
    "4h": 4 * HOUR_NS,
    "1d": DAY_NS,
}
"""Supported candle intervals, name → length in ns."""

_FIELDS = ("ts", "open", "high", "low", "close", "volume")


@numba.njit(cache=True)
def _aggregate(ts, price, volume, interval_ns, state_i, state_f):
    """Fold ticks into candles, mutating the open-candle state in place.

    ``state_i`` is ``[has_open, open_ts]``; ``state_f`` is ``[open, high, low,
    close, volume]`` of the open candle. Returns the candles closed by these
    ticks (a tick in a later bucket closes the open candle), at most ``n``.
    """
    n = ts.shape[0]
    out_ts = np.empty(n, np.int64)
    out_f = np.empty((5, n), np.float64)
    k = 0
    has_open = state_i[0]
    cur = state_i[1]
    o, h, lo, c, v = state_f[0], state_f[1], state_f[2], state_f[3], state_f[4]
    for i in range(n):
        # numba's integer // floors like Python's, so pre-1970 ticks bucket correctly.
        b = (ts[i] // interval_ns) * interval_ns
        p = price[i]
        if has_open and b == cur:
            if p > h:
                h = p
            if p < lo:
                lo = p
            c = p
            v += volume[i]
            continue
        if has_open:
            out_ts[k] = cur
            out_f[0, k] = o
            out_f[1, k] = h
            out_f[2, k] = lo
            out_f[3, k] = c
            out_f[4, k] = v
            k += 1
        has_open = 1
        cur = b
        o = h = lo = c = p
        v = volume[i]
    state_i[0] = has_open
    state_i[1] = cur
    state_f[0] = o
    state_f[1] = h
    state_f[2] = lo
    state_f[3] = c
    state_f[4] = v
    return out_ts[:k], out_f[:, :k]


def _check(ts, price, volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts = np.ascontiguousarray(ts, dtype=np.int64)
    price = np.ascontiguousarray(price, dtype=np.float64)
    volume = np.ascontiguousarray(volume, dtype=np.float64)
    if ts.ndim != 1 or ts.shape != price.shape or ts.shape != volume.shape:
        raise DataError(
            f"ts, price and volume must be 1-d of one length, got shapes "
            f"{ts.shape}, {price.shape}, {volume.shape}"
        )
    if ts.size > 1 and np.any(ts[1:] < ts[:-1]):
        raise DataError("tick times must be non-decreasing")
    return ts, price, volume


def _new_state() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(2, np.int64), np.zeros(5, np.float64)


def _as_dict(out_ts: np.ndarray, out_f: np.ndarray) -> dict[str, np.ndarray]:
    return dict(zip(_FIELDS, (out_ts, *out_f), strict=True))


def candles(
    ts: np.ndarray, price: np.ndarray, volume: np.ndarray, interval_ns: int
) -> dict[str, np.ndarray]:
    """Aggregate a whole tick series into candles, the last (partial) one included.

    Parameters
    ----------
    ts : numpy.ndarray, shape (n,)
        Tick times, int64 ns UTC, non-decreasing.
    price : numpy.ndarray, shape (n,)
        Trade prices, float64 (quote currency).
    volume : numpy.ndarray, shape (n,)
        Traded volume per tick, float64 (base units).
    interval_ns : int
        Candle length in ns (> 0).

    Returns
    -------
    dict of numpy.ndarray
        ``ts`` (int64 ns, candle open time), ``open``, ``high``, ``low``,
        ``close``, ``volume``, each of shape ``(m,)`` with ``m`` the number of
        non-empty intervals; intervals without ticks produce no candle.

    Raises
    ------
    DataError
        If the arrays differ in shape or ``ts`` decreases.
    ConfigError
        If ``interval_ns`` is not positive.
    """
    if interval_ns <= 0:
        raise ConfigError(f"interval_ns must be > 0, got {interval_ns}")
    ts, price, volume = _check(ts, price, volume)
    state_i, state_f = _new_state()
    out_ts, out_f = _aggregate(ts, price, volume, np.int64(interval_ns), state_i, state_f)
    if state_i[0]:
        out_ts = np.append(out_ts, state_i[1])
        out_f = np.concatenate([out_f, state_f[:, None]], axis=1)
    return _as_dict(out_ts, out_f)


_NONE = CANDLES.empty_table()


class CandleAggregator:
    """Streaming OHLCV aggregation of one symbol's ticks into candles of one interval.

    Feed consecutive tick batches to :meth:`update`; it returns the candles the
    batch completed and carries the open candle to the next call. :meth:`flush`
    returns that open candle at the end. The concatenated output is identical
    however the ticks are split into batches, and equals :func:`candles` on the
    whole series.

    Parameters
    ----------
    symbol : str
        Symbol written in every candle's ``symbol`` column.
    interval : str
        One of ``1m``, ``5m``, ``15m``, ``1h``, ``4h``, ``1d``.

    Raises
    ------
    ConfigError
        If ``interval`` is not supported.
    """

    def __init__(self, symbol: str, interval: str = "1m") -> None:
        if interval not in INTERVALS:
            raise ConfigError(
                f"unknown candle interval {interval!r}; choose one of {', '.join(INTERVALS)}"
            )
        self.symbol = symbol
        self.interval = interval
        self.interval_ns = INTERVALS[interval]
        self._state_i, self._state_f = _new_state()

    def update(self, ts: np.ndarray, price: np.ndarray, volume: np.ndarray) -> pa.Table:
        """Add a batch of ticks; return the candles it completed.

        A candle is complete once a tick of a later interval arrives.

        Parameters
        ----------
        ts : numpy.ndarray, shape (n,)
            Tick times, int64 ns UTC, non-decreasing and not before any tick
            of an earlier call.
        price : numpy.ndarray, shape (n,)
            Trade prices, float64.
        volume : numpy.ndarray, shape (n,)
            Traded volume per tick, float64 (base units).

        Returns
        -------
        pyarrow.Table
            Completed candles with the :data:`~trapsim.core.schemas.CANDLES`
            schema, oldest first; zero rows if none completed.

        Raises
        ------
        DataError
            If the arrays differ in shape, ``ts`` decreases, or the batch starts
            before the open candle.
        """
        ts, price, volume = _check(ts, price, volume)
        if ts.size and self._state_i[0] and ts[0] < self._state_i[1]:
            raise DataError("tick times must be non-decreasing across batches")
        out_ts, out_f = _aggregate(
            ts, price, volume, np.int64(self.interval_ns), self._state_i, self._state_f
        )
        if not out_ts.size:
            return _NONE  # most updates complete no candle: no table to build
        return self._table(_as_dict(out_ts, out_f))

    def flush(self) -> pa.Table:
        """Return the open (partial) candle, if any, and forget it.

        Returns
        -------
        pyarrow.Table
            One row with the :data:`~trapsim.core.schemas.CANDLES` schema, or
            zero rows when no tick arrived since the last completed candle.
        """
        if not self._state_i[0]:
            return _NONE
        out = _as_dict(self._state_i[1:2].copy(), self._state_f[:, None].copy())
        self._state_i, self._state_f = _new_state()
        return self._table(out)

    def _table(self, c: dict[str, np.ndarray]) -> pa.Table:
        n = len(c["ts"])
        return pa.table(
            {
                "ts": pa.array(c["ts"], pa.int64()).cast(TS),
                "symbol": pa.repeat(pa.scalar(self.symbol, pa.string()), n),
                "interval": pa.repeat(pa.scalar(self.interval, pa.string()), n),
                "open": c["open"],
                "high": c["high"],
                "low": c["low"],
                "close": c["close"],
                "volume": c["volume"],
            },
            schema=CANDLES,
        )
