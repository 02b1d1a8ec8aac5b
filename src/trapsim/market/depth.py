r"""L2 depth snapshots around the quoted bid and ask: price levels and resting quantities.

Every ``every_s`` seconds of market time (at the first tick of each period) a
snapshot of ``levels`` price levels per side is taken from the tick's quote:

- **Prices.** Level 0 is the tick's bid (ask); level ``i`` lies ``i`` steps of
  ``δ`` further out, ``δ`` half the quoted spread rounded up to the symbol's
  tick size (at least one tick), so the book's granularity follows the spread
  and the two sides can never cross (``bid < ask`` holds for every quote).
- **Quantities.** ``q_i = Q\,s_i\,e^{\eta_i}`` with the hump-shaped mean
  profile :math:`s_i \propto (i+1)^{a} e^{-i/b}` (queues grow away from the
  touch, then thin out: Bouchaud, Mézard & Potters 2002, "Statistical properties
  of stock order books: empirical results and models", Quantitative Finance 2(4);
  Bouchaud et al. 2018, *Trades, Quotes and Prices*, ch. 4), independent
  lognormal noise :math:`\eta_i` (sd :data:`SIZE_NOISE_SD`), and a scale
  :math:`Q` proportional to the recent volume rate (an EWMA of tick volume) and
  inversely to the spread: a busy market has deep queues, and a wide spread
  goes with thin ones (Glosten 1994, "Is the electronic open limit order book
  inevitable?", J. Finance 49; the depth–spread trade-off of market makers).

The snapshots of a series do not depend on how it is split into calls.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pyarrow as pa

from trapsim.core.errors import ConfigError
from trapsim.core.schemas import DEPTH
from trapsim.core.seeding import rng_for
from trapsim.core.time import NS
from trapsim.market.symbols import load_symbol_settings

LEVELS = 10
"""Default price levels per side."""
EVERY_S = 10.0
"""Default market seconds between snapshots."""
PROFILE_POWER = 1.0
"""``a`` of the mean queue profile."""
PROFILE_DECAY = 4.0
"""``b`` of the mean queue profile, levels."""
DEPTH_SECONDS = 80.0
"""Mean quantity on the first ten levels of a side, in seconds of recent volume at a 2 bps
spread (scaled by 2 bps / spread; ten half-spread steps reach 10 bps from the mid). The
Binance BTC/USDT snapshot of 2024-08-08 23:54 (``btcusdt_20240808.gz``) rests 78-81 s of
that recording's trade volume within 10 bps of the mid on either side."""
SIZE_NOISE_SD = 0.5
"""Standard deviation of the log noise of each queue."""
VOLUME_HALFLIFE_S = 300.0
"""Half-life of the volume rate average, seconds."""
REF_SPREAD_BPS = 2.0


@numba.njit(cache=True, nogil=True)
def _count(ts, every_ns, due):
    """Snapshots :func:`_snapshots` takes in ``ts`` from the next due time ``due``."""
    k = 0
    for t in range(ts.shape[0]):
        if ts[t] >= due:
            k += 1
            due = (ts[t] // every_ns + 1) * every_ns
    return k


@numba.njit(cache=True, nogil=True)
def _snapshots(ts, bid, ask, volume, every_ns, state, eps, tick, profile, depth_s,
               decay, out_ts, out_px, out_qty):
    """Fill snapshot rows; ``state`` = [volume rate average (0: none yet), next snapshot time].

    Row ``k`` of the outputs holds snapshot ``k``: prices and quantities of the bids
    (columns ``0…L-1``, best first) then the asks (``L…2L-1``). Returns the count.
    """
    rate, due = state[0], state[1]
    levels = profile.shape[0]
    k = 0
    for t in range(ts.shape[0]):
        v = volume[t]
        rate = v if rate == 0.0 else decay * rate + (1.0 - decay) * v
        if ts[t] < due:
            continue
        b, a = bid[t], ask[t]
        mid = 0.5 * (a + b)
        spread_bps = (a - b) / mid * 1e4
        step = max(tick, math.ceil(0.5 * (a - b) / tick) * tick)
        scale = depth_s * rate * 2.0 / max(spread_bps, 1e-9)
        for i in range(levels):
            out_px[k, i] = b - i * step
            out_px[k, levels + i] = a + i * step
            out_qty[k, i] = scale * profile[i] * math.exp(eps[k, i])
            out_qty[k, levels + i] = scale * profile[i] * math.exp(eps[k, levels + i])
        out_ts[k] = ts[t]
        k += 1
        due = (ts[t] // every_ns + 1) * every_ns
    state[0], state[1] = rate, due
    return k


class DepthModel:
    """L2 depth snapshots of one symbol's ticks (the model of this module's docstring).

    Parameters
    ----------
    symbol : str
        A symbol of :mod:`trapsim.market.symbols`.
    seed : int
        Run seed; the noise is ``rng_for(seed, "depth/<symbol>")``.
    every_s : float, default 10
        Market seconds between snapshots, > 0.
    levels : int, default 10
        Levels per side, >= 1.
    tick_size : float, optional
        Price step of the book (quote currency); default the symbol's shipped
        ``decimals`` (:mod:`trapsim.market.symbols`).

    Raises
    ------
    ConfigError
        For an unknown symbol or an out-of-range parameter.
    """

    def __init__(self, symbol: str, seed: int, every_s: float = EVERY_S,
                 levels: int = LEVELS, tick_size: float | None = None) -> None:
        specs = load_symbol_settings()
        if symbol not in specs:
            raise ConfigError(f"no book tick size for {symbol!r}")
        if not every_s > 0 or int(levels) != levels or levels < 1:
            raise ConfigError(f"need every_s > 0 and levels >= 1, got {every_s}, {levels}")
        self.symbol = symbol
        self.tick_size = specs[symbol].tick_size if tick_size is None else tick_size
        self.every_ns = round(every_s * NS)
        self.levels = int(levels)
        self._rng = rng_for(seed, f"depth/{symbol}")
        i = np.arange(self.levels)
        profile = (i + 1.0) ** PROFILE_POWER * np.exp(-i / PROFILE_DECAY)
        # Normalised so the first ten levels (or all, if fewer) hold DEPTH_SECONDS of volume.
        self._profile = profile / profile[:10].sum()
        self._decay = 0.5 ** (1.0 / VOLUME_HALFLIFE_S)
        self._state = np.array([0.0, -math.inf])

    def update(self, ts: np.ndarray, bid: np.ndarray, ask: np.ndarray,
               volume: np.ndarray) -> pa.Table:
        """Snapshots due in a batch of consecutive ticks (1 s apart, continuing the last call).

        Parameters
        ----------
        ts : ndarray of int64, shape (n,)
            Tick times, ns UTC.
        bid, ask : ndarray of float64, shape (n,)
            Quotes, ``bid < ask``.
        volume : ndarray of float64, shape (n,)
            Tick volumes (base units).

        Returns
        -------
        pyarrow.Table
            Schema :data:`~trapsim.core.schemas.DEPTH`: one row per snapshot, its
            lists ``levels`` long (level 0 = best).
        """
        if len(ts) == 0:
            return _NONE
        ts = np.ascontiguousarray(ts, np.int64)
        count = _count(ts, self.every_ns, self._state[1])
        eps = SIZE_NOISE_SD * self._rng.standard_normal((count, 2 * self.levels))
        out_ts = np.empty(count, np.int64)
        px = np.empty((count, 2 * self.levels))
        qty = np.empty((count, 2 * self.levels))
        k = _snapshots(ts, bid, ask, volume, self.every_ns,
                       self._state, eps, self.tick_size, self._profile, DEPTH_SECONDS,
                       self._decay, out_ts, px, qty)
        assert k == count  # both kernels follow one rule
        if not count:
            return _NONE  # most ticks take no snapshot: no table to build
        return _table(self.symbol, out_ts, px, qty, self.levels)


_NONE = DEPTH.empty_table()


def _table(symbol: str, ts: np.ndarray, px: np.ndarray, qty: np.ndarray,
           levels: int) -> pa.Table:
    n = len(ts)
    offsets = pa.array(np.arange(0, (n + 1) * levels, levels, dtype=np.int32))

    def lists(values: np.ndarray) -> pa.ListArray:
        return pa.ListArray.from_arrays(offsets, pa.array(values.ravel()))

    return pa.table({
        "ts": pa.array(ts, pa.int64()).cast(DEPTH.field("ts").type),
        "symbol": pa.repeat(pa.scalar(symbol), n),
        "bid_price": lists(px[:, :levels]), "bid_qty": lists(qty[:, :levels]),
        "ask_price": lists(px[:, levels:]), "ask_qty": lists(qty[:, levels:]),
    }, schema=DEPTH)


def newest_book(table: pa.Table) -> dict:
    """The last snapshot of a :data:`~trapsim.core.schemas.DEPTH` table as a book.

    Parameters
    ----------
    table : pyarrow.Table
        Depth snapshots of one symbol, at least one row.

    Returns
    -------
    dict
        ``{"ts": int ns, "bids": [[price, qty], …], "asks": […]}``, best level first
        (the shape of Binance's ``GET /api/v3/depth``).
    """
    row = table.slice(table.num_rows - 1).to_pylist()[0]
    return {"ts": int(table["ts"].cast(pa.int64())[-1].as_py()),
            **{f"{side}s": [list(lv) for lv in zip(row[f"{side}_price"], row[f"{side}_qty"],
                                                   strict=True)] for side in ("bid", "ask")}}
