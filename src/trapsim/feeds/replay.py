"""Replaying 1-minute candles as 1-second ticks that reproduce every candle exactly.

Each candle becomes ``ticks_per_candle`` ticks whose first, highest, lowest and
last prices are the candle's open, high, low and close, and whose volumes sum to
the candle's volume, all with bitwise float equality. Between those four anchors
the price follows Brownian bridges, so the path is random but pinned.
"""

from __future__ import annotations

import math
from pathlib import Path

import numba
import numpy as np

from trapsim.core.errors import ConfigError, DataError
from trapsim.core.seeding import rng_for
from trapsim.core.time import MINUTE_NS, NS
from trapsim.feeds.candles import Candles, read_candles
from trapsim.market.base import BaseChunk

TICKS_PER_MINUTE = 60
"""Ticks per 1-minute candle in :class:`ReplayMarket` (one per second)."""

BLOCK_CANDLES = 2048
"""Candles bridged per random draw; fixing it makes the output independent of chunking."""

# Per-tick bridge volatility from the candle's range by Parkinson (1980), "The
# Extreme Value Method for Estimating the Variance of the Rate of Return",
# J. Business 53(1): E[range**2] = 4 ln 2 * sigma**2 * T for Brownian motion.
_PARKINSON = 4.0 * math.log(2.0)

# Volume weight of a tick = |price change| + this share of the candle's mean
# |price change|, so volume follows volatility without quiet seconds going to zero.
_VOLUME_FLOOR_SHARE = 0.5

# Volume quantum q = 2**(floor(log2 V) - _QUANTUM_BITS): fine enough that rounding
# the split to it is invisible, coarse enough that sums of quanta stay exact.
_QUANTUM_BITS = 40


def bridge_ticks(
    candles: Candles, rng: np.random.Generator, ticks_per_candle: int = TICKS_PER_MINUTE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn every candle into ticks that reproduce its OHLCV exactly.

    Tick ``j`` of a candle opening at ``t`` is at ``t + j * interval_ns /
    ticks_per_candle``. Tick 0 is priced at the open and the last tick at the
    close; the high and the low sit at two distinct random interior ticks, the low
    first with probability ``((H - O) + (C - L)) / (2 (H - L))`` (one half for a
    flat candle): the average of the gambler's-ruin chance that Brownian motion
    from the open meets the low before the high (Feller 1968, "An Introduction to
    Probability Theory and Its Applications" I, §XIV.2) and the same for the
    time-reversed path from the close. Between consecutive anchors the price is a
    Brownian bridge built from one random walk (Glasserman 2003, "Monte Carlo
    Methods in Financial Engineering", §3.1) with per-tick volatility
    ``(H - L) / sqrt(4 ln 2 * ticks_per_candle)`` (Parkinson 1980), reflected and
    then clipped into ``[L, H]``.

    The volume is split in proportion to ``|price change| + floor`` (volume
    follows volatility). Ticks ``0 .. n-2`` get whole multiples of the quantum
    ``q = 2**(floor(log2 V) - 40)`` and the last tick ``V`` minus their sum, so the
    tick volumes add up to ``V`` exactly in any order; a zero-volume candle gives
    zero-volume ticks.

    Parameters
    ----------
    candles : Candles
        ``m`` candles; ``interval_ns`` must be divisible by ``ticks_per_candle``.
    rng : numpy.random.Generator
        Source of all randomness. Draws are taken per block of
        :data:`BLOCK_CANDLES` candles, so bridging consecutive block-aligned
        slices with one generator gives the same ticks as one call.
    ticks_per_candle : int, default 60
        Ticks per candle, ``n >= 4`` (open, high, low and close need their own).

    Returns
    -------
    ts : ndarray of int64, shape (m * n,)
        Tick times, ns UTC.
    price : ndarray of float64, shape (m * n,)
        Tick prices (quote currency).
    volume : ndarray of float64, shape (m * n,)
        Tick volumes (base units), ``>= 0``.

    Raises
    ------
    ConfigError
        If ``ticks_per_candle < 4`` or does not divide the interval.
    """
    n = _check_ticks(candles, ticks_per_candle)
    m = len(candles)
    ts = np.empty(m * n, np.int64)
    price = np.empty(m * n)
    volume = np.empty(m * n)
    for lo in range(0, m, BLOCK_CANDLES):
        hi = min(lo + BLOCK_CANDLES, m)
        ts[lo * n : hi * n], price[lo * n : hi * n], volume[lo * n : hi * n] = _bridge_block(
            candles, lo, hi, rng, n
        )
    return ts, price, volume


class ReplayMarket:
    """A :class:`~trapsim.market.base.Market` replaying a 1-minute candle file as 1-second ticks.

    Ticks are those of :func:`bridge_ticks` with ``rng_for(seed,
    "feeds.replay:" + symbol)``, generated lazily per block of
    :data:`BLOCK_CANDLES` candles, so memory stays bounded and the stream is the
    same whatever chunk sizes are asked for. Each tick carries the regime of its
    minute, as classified by ``trapsim.market.calibration.classify_regimes`` on
    the minute closes.

    Parameters
    ----------
    path_or_candles : str, Path or Candles
        A candle file (see :func:`~trapsim.feeds.candles.read_candles`) or candles.
    seed : int
        Run seed.
    symbol : str, default "BTC-USD"
        Symbol of the stream.

    Attributes
    ----------
    symbol : str
    regime_names : tuple of str
        Names of the regime codes.
    candles : Candles
        The replayed candles.
    start_ts : int
        Time of the first tick, ns UTC (the first candle's open time).
    n_ticks : int
        Ticks in the whole stream, ``60 * len(candles)``.

    Raises
    ------
    DataError
        If the file is invalid, holds no candles or its interval is not 1 minute;
        or if ``classify_regimes`` rejects the closes (fewer than 2, or one <= 0).
    """

    def __init__(
        self, path_or_candles: str | Path | Candles, *, seed: int, symbol: str = "BTC-USD"
    ) -> None:
        # Imported here so that reading candle files does not load the market models.
        from trapsim.market.calibration import classify_regimes
        from trapsim.market.regimes import REGIMES

        candles = (
            path_or_candles
            if isinstance(path_or_candles, Candles)
            else read_candles(path_or_candles)
        )
        if len(candles) == 0:
            raise DataError(f"{candles.source}: no candles to replay")
        if candles.interval_ns != MINUTE_NS:
            raise DataError(
                f"{candles.source}: replay needs 1-minute candles, "
                f"not {candles.interval_ns / NS:g}-second ones"
            )
        self.symbol = symbol
        self.regime_names = tuple(REGIMES)
        self.candles = candles
        self.start_ts = int(candles.ts[0])
        self.n_ticks = len(candles) * TICKS_PER_MINUTE
        self._minute_regime = np.asarray(classify_regimes(candles.ts, candles.close), np.int8)
        self._rng = rng_for(seed, f"feeds.replay:{symbol}")
        self._pos = 0
        self._block_start = 0
        self._block_end = 0
        self._block: tuple[np.ndarray, ...] = ()

    def next_chunk(self, n: int) -> BaseChunk | None:
        """The next ``n`` ticks (fewer at the end), or ``None`` once all were returned.

        Raises
        ------
        ConfigError
            If ``n < 1``.
        """
        if n < 1:
            raise ConfigError(f"chunk size must be at least 1, got {n}")
        if self._pos >= self.n_ticks:
            return None
        stop = min(self._pos + n, self.n_ticks)
        parts = []
        while self._pos < stop:
            if self._pos == self._block_end:
                self._next_block()
            hi = min(stop, self._block_end)
            a, b = self._pos - self._block_start, hi - self._block_start
            parts.append([column[a:b] for column in self._block])
            self._pos = hi
        if len(parts) == 1:
            return BaseChunk(*parts[0])
        return BaseChunk(*(np.concatenate(column) for column in zip(*parts, strict=True)))

    def _next_block(self) -> None:
        lo = self._block_end // TICKS_PER_MINUTE
        hi = min(lo + BLOCK_CANDLES, len(self.candles))
        ts, price, volume = _bridge_block(self.candles, lo, hi, self._rng, TICKS_PER_MINUTE)
        regime = np.repeat(self._minute_regime[lo:hi], TICKS_PER_MINUTE)
        self._block = (ts, price, volume, regime)
        self._block_start = self._block_end
        self._block_end = hi * TICKS_PER_MINUTE


def _check_ticks(candles: Candles, ticks_per_candle: int) -> int:
    n = int(ticks_per_candle)
    if n < 4:
        raise ConfigError(f"ticks_per_candle must be at least 4, got {ticks_per_candle}")
    if candles.interval_ns % n:
        raise ConfigError(
            f"ticks_per_candle {n} does not divide the {candles.interval_ns} ns candle interval"
        )
    return n


def _bridge_block(
    candles: Candles, lo: int, hi: int, rng: np.random.Generator, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ticks of candles ``lo:hi``; the draws depend only on ``hi - lo`` and ``n``."""
    m = hi - lo
    steps = rng.standard_normal((m, n - 1))
    order = rng.random(m)
    # Two distinct interior ticks, uniform over pairs: draw the second from n - 3
    # places and skip over the first.
    first = rng.integers(1, n - 1, size=m)
    second = rng.integers(1, n - 2, size=m)
    second += second >= first
    price = np.empty((m, n))
    volume = np.empty((m, n))
    _bridge_kernel(
        candles.open[lo:hi],
        candles.high[lo:hi],
        candles.low[lo:hi],
        candles.close[lo:hi],
        candles.volume[lo:hi],
        steps,
        order,
        np.minimum(first, second),
        np.maximum(first, second),
        price,
        volume,
    )
    step_ns = candles.interval_ns // n
    ts = candles.ts[lo:hi, None] + np.arange(n, dtype=np.int64) * step_ns
    return ts.ravel(), price.ravel(), volume.ravel()


@numba.njit(cache=True, nogil=True)
def _bridge_kernel(o, h, lo, c, v, steps, order, at_a, at_b, price, volume):
    """Fill ``price`` and ``volume``, shape (m, n), for candles ``o, h, lo, c, v``, shape (m,).

    ``steps`` (m, n - 1) are the walk's standard normal increments, ``order`` (m,)
    uniforms choosing which extreme comes first, ``at_a < at_b`` (m,) its and the
    other extreme's tick.
    """
    m, n = price.shape
    walk = np.empty(n)
    at = np.empty(4, np.int64)
    val = np.empty(4)
    sigma_per_range = 1.0 / math.sqrt(_PARKINSON * n)
    for i in range(m):
        low, high = lo[i], h[i]
        span = high - low
        p_low_first = 0.5 if span == 0.0 else ((high - o[i]) + (c[i] - low)) / (2.0 * span)
        first, second = (low, high) if order[i] < p_low_first else (high, low)
        at[0], at[1], at[2], at[3] = 0, at_a[i], at_b[i], n - 1
        val[0], val[1], val[2], val[3] = o[i], first, second, c[i]
        sigma = span * sigma_per_range

        walk[0] = 0.0
        for t in range(1, n):
            walk[t] = walk[t - 1] + steps[i, t - 1]
        for k in range(3):
            t0, t1 = at[k], at[k + 1]
            w0, dw = walk[t0], walk[t1] - walk[t0]
            for t in range(t0 + 1, t1):
                f = (t - t0) / (t1 - t0)
                x = val[k] + f * (val[k + 1] - val[k]) + sigma * (walk[t] - w0 - f * dw)
                # Reflect rather than clip first, so the path does not stick to a bound.
                if x > high:
                    x = 2.0 * high - x
                if x < low:
                    x = 2.0 * low - x
                price[i, t] = min(max(x, low), high)
        # Anchors are stored, not computed, so O, H, L, C hold bit for bit.
        for k in range(4):
            price[i, at[k]] = val[k]

        _split_volume(price[i], v[i], volume[i])


@numba.njit(cache=True, nogil=True)
def _split_volume(price, total, out):
    """Split ``total`` over ``out`` (n,) by ``|price change| + floor``, summing exactly.

    All ticks but the last get ``k_t * q`` with integers ``k_t`` whose sum is at
    most ``K = floor(total / q)``; the last gets ``total - sum``. Both ``k_t * q``
    and ``total`` are whole multiples of ``u = ulp(total)`` (``q`` is a power of
    two at least ``u``, or both are the smallest subnormal), so the subtraction is
    exact and non-negative, and every tick volume is a multiple of ``u``. Any
    partial sum, in any order, is then a multiple of ``u`` no larger than
    ``total < 2**53 * u``, hence representable: no addition ever rounds.
    """
    n = price.shape[0]
    moves = 0.0
    for t in range(1, n):
        moves += abs(price[t] - price[t - 1])
    floor = _VOLUME_FLOOR_SHARE * moves / (n - 1)
    if floor == 0.0:
        floor = 1.0  # a flat candle: equal weights
    weight_sum = n * floor + moves
    _, exponent = math.frexp(total)  # total = mantissa * 2**exponent, mantissa in [0.5, 1)
    q = math.ldexp(1.0, max(exponent - 1 - _QUANTUM_BITS, -1074))
    units = math.floor(total / q)
    cum_weight = 0.0
    given = 0.0
    for t in range(n - 1):
        cum_weight += floor + (abs(price[t] - price[t - 1]) if t > 0 else 0.0)
        # Rounding the running share, not each tick's, keeps the sum <= units.
        upto = min(math.floor(units * cum_weight / weight_sum), units)
        out[t] = (upto - given) * q
        given = upto
    out[n - 1] = total - given * q
