"""The detector's compiled state machine: ticks in, detection records out.

Every rule of ``TRAPS.md`` is checked on the stream itself, in σ units, with the
measures of ``docs/labels.md``:

- ``σ`` of a minute ``M`` is the sample standard deviation (ddof 1) of the 60 log
  returns between the closes of minutes ``M-61 … M-1`` (the last price of each UTC
  minute); a move is measured in the σ of the minute it starts in.
- Volume ×k is volume per second over the move divided by volume per second over
  the 30 minutes before the move starts (for 1-second ticks: mean tick volumes).
- A prior range over ``W`` minutes before time ``t`` is the ticks in
  ``[t − W min, t)``, taken exactly at one-second resolution (each minute keeps its
  per-second extremes as suffix maxima and minima).

A trap is emitted on the tick at which some reading of the data first meets its
whole definition (a start, a level, a swing anchor: whichever the type needs), so
``detected_at`` is that tick. A move that is a liquidity grab is reported as one
only: a stop-hunt or Fibonacci reading of the same peak waits for the liquidity
grab's decision (at most 60 s after the peak) and is dropped if it is taken.

The state lives in plain arrays (:func:`new_state`). :func:`run` feeds any number
of ticks through it, so the batch path (many ticks) and the online path (one tick)
are the same code over the same state and cannot drift apart. Nothing looks ahead.

Work per tick is constant: ring writes, a few running extremes, the open
candidates' comparisons. Lookbacks over the prior 240 minutes (ladders of range
extremes, Fibonacci swing anchors) run only when a candidate opens or is judged.
The per-tick steps are inlined into :func:`run`: a call that passes the state's
arrays costs more than the step itself.

Time limits in seconds are widened by how much the current tick spacing exceeds
1 s (``tol``), so that candles, whose events are only known to the minute, can meet
them; for 1-second ticks they are exact.

Prices are natural logs; a trap of direction ``s`` (+1 up, −1 down) is handled in
``s``-space, ``z = s · ln p``, so one code path serves both directions: the
"extreme" of a tick is its high (``s = +1``) or low, the "reversal" extreme the other.
"""

from __future__ import annotations

import math

import numba
import numpy as np

NS = 1_000_000_000
MIN = 60 * NS

NT = 1 << 14
"""Tick ring length: 4.5 hours of 1-second ticks (a move's start lies at most ~1 h back)."""
NM = 1 << 9
"""Minute ring length: 512 minutes (prior ranges reach 240 minutes before a move)."""
TMASK = NT - 1
MMASK = NM - 1
DQN = 1 << 10
"""Capacity of each liquidity-grab start window (56 s of ticks at most 1 per second)."""
PB = 8
"""Open bull/bear-trap candidates per direction."""
KB = 16
"""Range levels followed per bull/bear candidate."""
LG_READINGS = 64
"""Readings (possible starts) kept per armed liquidity-grab spike."""
OUT_CAP = 256
"""Records one call of :func:`run` may write before it returns to be drained."""
MAX_PER_TICK = 11
"""Most records one tick can write: one per type and direction, plus four held ones."""

# Trap type codes, in TRAPS.md order.
LIQUIDITY_GRAB, STOP_HUNT, BULL_TRAP, BEAR_TRAP, FIBONACCI_TRAP = range(5)
TYPES = ("liquidity_grab", "stop_hunt", "bull_trap", "bear_trap", "fibonacci_trap")

# ---- TRAPS.md bounds (σ, ns, minutes, volume multiples) ----
LG_MAG_LO, LG_MAG_HI = 5.0, 12.0
LG_RISE_LO, LG_RISE_HI = 5 * NS, 60 * NS
LG_VOL = 3.0
LG_RETRACE = 0.7
LG_BACK_LO, LG_BACK_HI = 60 * NS, 600 * NS
LG_RANGE_MIN = 240

SH_W_LO, SH_W_HI = 30, 240
SH_MAG_LO, SH_MAG_HI = 1.0, 4.0
SH_BEYOND = 120 * NS
SH_VOL = 2.0
SH_BACK = 3.0
SH_WITHIN = 300 * NS
SH_LADDER = SH_W_HI - SH_W_LO + 1

BT_W_LO, BT_W_HI = 60, 240
BT_MAG_LO, BT_MAG_HI = 2.0, 8.0
BT_HOLD_LO, BT_HOLD_HI = 120 * NS, 1200 * NS
BT_VOL = 1.5
BT_PAST = 4.0
BT_WITHIN = 1800 * NS
BT_LADDER = BT_W_HI - BT_W_LO + 1

FIB_SWING = 15.0
FIB_SWING_LO, FIB_SWING_HI = 30 * MIN, 240 * MIN
FIB_RATIOS = (0.618, 0.786)
FIB_OVER_LO, FIB_OVER_HI = 1.0, 3.0
FIB_TOUCH = 180 * NS
FIB_REVERSAL = 4.0
FIB_WITHIN = 600 * NS

VOLUME_BASE = 1800 * NS
SIGMA_MINUTES = 61
MOVE_LOOKBACK = 120 * NS
"""How far before a range break the start of the breaking move is looked for."""
BT_WAIT = 1200 * NS
"""A bull/bear candidate's unbroken levels expire this long after the move's start."""
LEVEL_GAP = 0.2
"""Bull/bear levels closer than this (σ) are followed as one."""
MTF_MINUTES = (1, 5, 15, 60)
"""Timeframes of the context features (minutes)."""

# ---- state layout ----
# ints
I_N = 0  # ticks seen
I_LAST_T = 1  # time of the last tick
I_MIN = 2  # minute index of the last tick
I_FIRST_MIN = 3  # minute index of the first tick
I_NEXT_MIN = 4  # start time of the minute after I_MIN
I_LG_INS = 5  # next tick counter to enter the liquidity-grab start windows
I_BEYOND30 = 6  # 2 slots: last tick was beyond the prior 30-minute range (per direction)
I_BEYOND60 = 8  # 2 slots: same for 60 minutes
I_FIRST_T = 10  # time of the first tick
I_SIZE = 11
# floats
F_SIGMA, F_SIG_LO = range(2)  # σ of this minute; min of it and the previous minute's
F_SIZE = 2
# tick ring rows (rx)
R_CLOSE, R_HIGH, R_LOW, R_CUMVOL = range(4)
# minute ring rows (mx float, mt int); msx holds per-second suffix extremes
M_HIGH, M_LOW, M_CLOSE, M_SIGMA, M_MAX30, M_MIN30, M_MAX60, M_MIN60 = range(8)
MX_ROWS = 8
MT_THIGH, MT_TLOW = range(2)
MT_ROWS = 2
# liquidity grab, per direction
LGI_ARMED, LGI_TPEAK, LGI_HEAD, LGI_TAIL, LGI_EMITTED, LGI_NREAD, LGI_PICK = range(7)
LGI_SIZE = 7
LGF_ZPK, LGF_DEPTH = range(2)
LGF_SIZE = 2
LGR_Z0, LGR_SIGMA, LGR_VR, LGR_ROOM = range(4)
LGR_SIZE = 4
# stop hunt, per direction
SHI_ALIVE, SHI_BREAK, SHI_TPEAK, SHI_LADDER_AT, SHI_START = range(5)
SHI_SIZE = 5
SHF_SIGMA, SHF_ZPK, SHF_SIG_S, SHF_VR, SHF_JUDGED = range(5)
SHF_SIZE = 5
# bull/bear trap, per direction and candidate, and per level
(
    BTI_ALIVE,
    BTI_START,
    BTI_TSTART,
    BTI_TPEAK,
    BTI_NLEV,
    BTI_NBROKEN,
    BTI_NSTACK,
    BTI_NWAIT,
    BTI_WAKE_T,
) = range(9)
BTI_SIZE = 9
BTF_SIGMA, BTF_ZPK, BTF_WAKE_Z = range(3)
BTF_SIZE = 3
BLI_STATE, BLI_TBREAK, BLI_TFALL, BLI_TPEAK, BLI_W = range(5)
BLI_SIZE = 5
BLF_LEVEL, BLF_ZPK, BLF_VR = range(3)
BLF_SIZE = 3
LV_WAITING, LV_BEYOND, LV_FALLEN, LV_DEAD = range(4)
# zigzag (Fibonacci)
ZI_LEG, ZI_TEXT, ZI_TLAST, ZI_TPIV, ZI_TPREV = range(5)  # extreme: first and last tick at it
ZI_SIZE = 5
ZF_EXT, ZF_PIV, ZF_SIGMA, ZF_PREV, ZF_PREV_SIGMA = range(5)
ZF_SIZE = 5
# output record
O_DETECTED, O_START, O_PEAK, O_TYPE, O_DIR, O_T2, O_T3, O_END = range(8)
O_INTS = 8
OF_CONF, OF_SIGMA, OF_MAG, OF_VR, OF_LEVEL, OF_A, OF_B, OF_C = range(8)
OF_MTF = 8  # trend for each of MTF_MINUTES, then range for each
O_FLOATS = OF_MTF + 2 * len(MTF_MINUTES)


def new_state() -> tuple[np.ndarray, ...]:
    """Fresh detector state: a tuple of arrays, passed whole to :func:`run`."""
    ints = np.zeros(I_SIZE, np.int64)
    ints[I_MIN] = -1
    ints[I_NEXT_MIN] = np.iinfo(np.int64).min
    lgi = np.zeros((2, LGI_SIZE), np.int64)
    lgi[:, LGI_EMITTED] = -1
    held = np.zeros((2, 2, O_INTS), np.int64)
    held[:, :, O_TYPE] = -1
    return (
        ints,
        np.full(F_SIZE, np.nan),
        np.zeros(NT, np.int64),
        np.zeros((4, NT)),
        np.zeros((MT_ROWS, NM), np.int64),
        np.full((MX_ROWS, NM), np.nan),
        np.full((2, NM, 60), np.nan),
        np.zeros((2, DQN), np.int64),
        lgi,
        np.zeros((2, LGF_SIZE)),
        np.zeros((2, LG_READINGS, LGR_SIZE)),
        np.zeros((2, LG_READINGS), np.int64),
        np.zeros((2, SHI_SIZE), np.int64),
        np.zeros((2, SHF_SIZE)),
        np.zeros((2, SH_LADDER)),
        np.zeros((2, PB, BTI_SIZE), np.int64),
        np.zeros((2, PB, BTF_SIZE)),
        np.zeros((2, PB, KB, BLI_SIZE), np.int64),
        np.zeros((2, PB, KB, BLF_SIZE)),
        np.zeros((2, PB, KB), np.int64),
        np.zeros(ZI_SIZE, np.int64),
        np.full(ZF_SIZE, np.nan),
        held,
        np.zeros((2, 2, O_FLOATS)),
    )


# ---------------------------------------------------------------- small helpers


@numba.njit(cache=True, inline="always")
def _sz(s, hi, lo):
    """``s``-space extreme of a tick in the trap's direction (its high up, its low down)."""
    return hi if s > 0 else -lo


@numba.njit(cache=True, inline="always")
def _sr(s, hi, lo):
    """``s``-space extreme of a tick against the trap's direction."""
    return lo if s > 0 else -hi


@numba.njit(cache=True)
def _clip01(x):
    return 0.0 if x < 0.0 else (1.0 if x > 1.0 else x)


@numba.njit(cache=True)
def _band(x, lo, hi):
    """Margin of ``x`` inside the bound ``[lo, hi]``: 0 at an edge, 1 in its middle half."""
    return _clip01(min(x - lo, hi - x) / (0.25 * (hi - lo)))


@numba.njit(cache=True)
def _within(x, hi):
    """Margin of ``x >= 0`` under the limit ``hi``: 0 at the limit, 1 at half of it."""
    return _clip01((hi - x) / (0.5 * hi))


@numba.njit(cache=True)
def _above(x, lo, scale):
    """Margin of ``x`` over the floor ``lo``: 0 at the floor, 1 at ``lo + scale``."""
    return _clip01((x - lo) / scale)


@numba.njit(cache=True)
def _multiple(x, k):
    """Margin of a multiple ``x`` over the required ``k``: 0 at ``k``, 1 at ``2 k``."""
    return _clip01(math.log2(x / k)) if x > 0.0 else 0.0


@numba.njit(cache=True)
def _oldest(n):
    """Oldest tick counter still in the ring after ``n`` ticks."""
    return n - NT if n > NT else 0


@numba.njit(cache=True)
def _first_at(rt, n, t):
    """Smallest tick counter ``j`` still in the ring with ``ts[j] >= t`` (``n`` if none)."""
    lo = _oldest(n)
    hi = n
    while lo < hi:
        mid = (lo + hi) >> 1
        if rt[mid & TMASK] < t:
            lo = mid + 1
        else:
            hi = mid
    return lo


@numba.njit(cache=True)
def _cumvol_before(rt, rx, n, t):
    """Cumulative volume of the ticks before time ``t`` (from the oldest kept tick on)."""
    j = _first_at(rt, n, t)
    if j == 0:
        return 0.0
    if j <= _oldest(n):
        return rx[R_CUMVOL, j & TMASK]
    return rx[R_CUMVOL, (j - 1) & TMASK]


@numba.njit(cache=True)
def _rate(rt, rx, n, a, b):
    """Volume per second over ticks ``a … b`` (each tick covers the time since the one
    before it); 0 if ``a > b`` or tick ``a - 1`` is gone."""
    if b < a or a < 1 or a - 1 < _oldest(n):
        return 0.0
    span = rt[b & TMASK] - rt[(a - 1) & TMASK]
    if span <= 0:
        return 0.0
    return (rx[R_CUMVOL, b & TMASK] - rx[R_CUMVOL, (a - 1) & TMASK]) / span


@numba.njit(cache=True)
def _volume_ratio(ints, rt, rx, a, b):
    """Volume ×k of ticks ``a … b``: their volume per second over that of the 30 minutes
    before tick ``a`` (less at the very start of a stream)."""
    n = ints[I_N]
    rate = _rate(rt, rx, n, a, b)
    ta = rt[a & TMASK]
    t0 = max(ta - VOLUME_BASE, ints[I_FIRST_MIN] * MIN)
    if ta <= t0:
        return np.inf
    base = (_cumvol_before(rt, rx, n, ta) - _cumvol_before(rt, rx, n, t0)) / (ta - t0)
    if base <= 0.0:
        return np.inf if rate > 0.0 else 0.0
    return rate / base


@numba.njit(cache=True)
def _sigma_at(ints, mx, t):
    """σ of the minute holding ``t`` (NaN if that minute is out of the ring or too early)."""
    m = t // MIN
    if m > ints[I_MIN] or m <= ints[I_MIN] - NM:
        return np.nan
    return mx[M_SIGMA, m & MMASK]


@numba.njit(cache=True)
def _scan_ext(rt, rx, n, ta, tb, s):
    """Largest ``s``-space extreme of the ticks with ``ta <= ts < tb`` still in the ring."""
    best = -np.inf
    j = _first_at(rt, n, ta)
    while j < n and rt[j & TMASK] < tb:
        k = j & TMASK
        z = _sz(s, rx[R_HIGH, k], rx[R_LOW, k])
        if z > best:
            best = z
        j += 1
    return best


@numba.njit(cache=True)
def _known(ints, m):
    return ints[I_FIRST_MIN] <= m < ints[I_MIN] and m > ints[I_MIN] - NM


@numba.njit(cache=True)
def _minute_ext(ints, mx, m, s):
    """``s``-space extreme of the finished minute ``m`` (``-inf`` if unknown)."""
    if not _known(ints, m):
        return -np.inf
    k = m & MMASK
    return _sz(s, mx[M_HIGH, k], mx[M_LOW, k])


@numba.njit(cache=True)
def _tail_ext(ints, msx, m, sec, s):
    """``s``-space extreme of the finished minute ``m`` from second ``sec`` on."""
    if sec >= 60 or not _known(ints, m):
        return -np.inf
    k = m & MMASK
    return msx[0, k, sec] if s > 0 else -msx[1, k, sec]


@numba.njit(cache=True)
def _range_ext(ints, rt, rx, mx, msx, ta, tb, s):
    """Largest ``s``-space extreme over ``ta <= ts < tb``: the first minute from its
    second of ``ta`` on, whole minutes, and the ticks of ``tb``'s minute before it."""
    n = ints[I_N]
    ma = ta // MIN
    mb = tb // MIN
    if ma >= mb:
        return _scan_ext(rt, rx, n, ta, tb, s)
    best = (
        _tail_ext(ints, msx, ma, (ta - ma * MIN + NS - 1) // NS, s)
        if (ta > ma * MIN)
        else _minute_ext(ints, mx, ma, s)
    )
    for m in range(ma + 1, mb):
        z = _minute_ext(ints, mx, m, s)
        if z > best:
            best = z
    z = _scan_ext(rt, rx, n, mb * MIN, tb, s)
    return z if z > best else best


@numba.njit(cache=True)
def _ladder(ints, rt, rx, msx, mx, t, s, w_lo, out):
    """``out[k]`` = ``s``-space extreme of the prior range over ``w_lo + k`` minutes before
    time ``t`` (``docs/labels.md``), for every ``k`` of ``out``."""
    n = ints[I_N]
    m = t // MIN
    sec = (t - m * MIN + NS - 1) // NS
    best = _scan_ext(rt, rx, n, m * MIN, t, s)
    w_hi = w_lo + len(out) - 1
    for w in range(1, w_hi + 1):
        if w >= w_lo:
            tail = _tail_ext(ints, msx, m - w, sec, s)
            out[w - w_lo] = tail if tail > best else best
        z = _minute_ext(ints, mx, m - w, s)
        if z > best:
            best = z


@numba.njit(cache=True)
def _move_start(rt, rx, n, i, s):
    """Start of the move into tick ``i``: the tick after the lowest ``s``-space close in
    the :data:`MOVE_LOOKBACK` before it."""
    j = max(_first_at(rt, n, rt[i & TMASK] - MOVE_LOOKBACK), _oldest(n) + 1)
    if j >= i:
        return i
    best = np.inf
    at = j
    while j < i:
        z = s * rx[R_CLOSE, j & TMASK]
        if z <= best:
            best = z
            at = j
        j += 1
    return at + 1


@numba.njit(cache=True)
def _mtf(ints, rx, mx, sigma, of, row):
    """Multi-timeframe context at the last tick: for each of :data:`MTF_MINUTES`, the log
    return over that many minutes in σ·sqrt(minutes) (trend) and its high−low range in σ."""
    m = ints[I_MIN]
    zc = rx[R_CLOSE, (ints[I_N] - 1) & TMASK]
    first = ints[I_FIRST_MIN]
    for k in range(len(MTF_MINUTES)):
        w = MTF_MINUTES[k]
        hi = mx[M_HIGH, m & MMASK]
        lo = mx[M_LOW, m & MMASK]
        for j in range(1, w):
            if m - j < first:
                break
            hi = max(hi, mx[M_HIGH, (m - j) & MMASK])
            lo = min(lo, mx[M_LOW, (m - j) & MMASK])
        c0 = mx[M_CLOSE, max(m - w, first) & MMASK]
        of[row, OF_MTF + k] = (zc - c0) / (sigma * math.sqrt(w))
        of[row, OF_MTF + len(MTF_MINUTES) + k] = (hi - lo) / sigma


@numba.njit(cache=True)
def _emit(ints, rx, mx, oi, of, row, kind, s, t_start, t_peak, t2, t3, conf, sigma, mag, vr,
    level, a, b, c):  # fmt: skip
    """Write one detection record in row ``row``; returns ``row + 1``.

    ``t2``/``t3`` are type-specific times (ns, -1 if none), ``level`` a price and
    ``a``/``b``/``c`` type-specific numbers (see :mod:`trapsim.detect.detector`).
    """
    oi[row, O_DETECTED] = ints[I_LAST_T]
    oi[row, O_END] = ints[I_LAST_T]
    oi[row, O_START] = t_start
    oi[row, O_PEAK] = t_peak
    oi[row, O_TYPE] = kind
    oi[row, O_DIR] = s
    oi[row, O_T2] = t2
    oi[row, O_T3] = t3
    of[row, OF_CONF] = _clip01(conf)
    of[row, OF_SIGMA] = sigma
    of[row, OF_MAG] = mag
    of[row, OF_VR] = vr
    of[row, OF_LEVEL] = level
    of[row, OF_A] = a
    of[row, OF_B] = b
    of[row, OF_C] = c
    _mtf(ints, rx, mx, sigma, of, row)
    return row + 1


# ---------------------------------------------------------------- minute bars and σ


@numba.njit(cache=True)
def _open_minute(ints, floats, mx, mt, msx, m, t):
    """Close the last minute (its per-second extremes become suffix extremes), fill any
    minutes without ticks, and start minute ``m``: its σ and prior 30/60-minute extremes."""
    last = ints[I_MIN]
    if last < 0:
        ints[I_FIRST_MIN] = m
        ints[I_FIRST_T] = t
    else:
        k = last & MMASK
        for sec in range(58, -1, -1):
            msx[0, k, sec] = max(msx[0, k, sec], msx[0, k, sec + 1])
            msx[1, k, sec] = min(msx[1, k, sec], msx[1, k, sec + 1])
        c = mx[M_CLOSE, k]
        for g in range(max(last + 1, m - NM), m):
            k = g & MMASK
            mx[M_HIGH, k] = c
            mx[M_LOW, k] = c
            mx[M_CLOSE, k] = c
            mx[M_SIGMA, k] = np.nan
            mt[MT_THIGH, k] = g * MIN
            mt[MT_TLOW, k] = g * MIN
            msx[0, k, :] = c
            msx[1, k, :] = c
    ints[I_MIN] = m
    ints[I_NEXT_MIN] = (m + 1) * MIN
    k = m & MMASK
    mx[M_HIGH, k] = -np.inf
    mx[M_LOW, k] = np.inf
    msx[0, k, :] = -np.inf
    msx[1, k, :] = np.inf
    first = ints[I_FIRST_MIN]
    sig = np.nan
    # As for labels (docs/labels.md), no move starts before 62 minutes of stream: then
    # the 61 closes behind σ never include a partial first minute.
    if m * MIN - ints[I_FIRST_T] >= (SIGMA_MINUTES + 1) * MIN:
        mean = 0.0
        for j in range(m - SIGMA_MINUTES + 1, m):
            mean += mx[M_CLOSE, j & MMASK] - mx[M_CLOSE, (j - 1) & MMASK]
        mean /= SIGMA_MINUTES - 1
        ss = 0.0
        for j in range(m - SIGMA_MINUTES + 1, m):
            dev = mx[M_CLOSE, j & MMASK] - mx[M_CLOSE, (j - 1) & MMASK] - mean
            ss += dev * dev
        sig = math.sqrt(ss / (SIGMA_MINUTES - 2))
        if not sig > 0.0:
            sig = np.nan
    prev = floats[F_SIGMA]
    mx[M_SIGMA, k] = sig
    floats[F_SIGMA] = sig
    floats[F_SIG_LO] = min(sig, prev) if prev > 0.0 else sig
    hi30 = -np.inf
    lo30 = np.inf
    hi60 = -np.inf
    lo60 = np.inf
    for w in range(1, 61):
        j = m - w
        if j < first:
            break
        jk = j & MMASK
        if w <= 30:
            hi30 = max(hi30, mx[M_HIGH, jk])
            lo30 = min(lo30, mx[M_LOW, jk])
        hi60 = max(hi60, mx[M_HIGH, jk])
        lo60 = min(lo60, mx[M_LOW, jk])
    mx[M_MAX30, k] = hi30
    mx[M_MIN30, k] = lo30
    mx[M_MAX60, k] = hi60
    mx[M_MIN60, k] = lo60


# ---------------------------------------------------------------- liquidity grab


@numba.njit(cache=True, inline="always")
def _lg_window(ints, rt, rx, dq, lgi, t, tol):
    """Advance both start windows: ticks ``j`` whose successor lies 5–60 s before ``t``,
    kept as monotone deques (each entry below everything after it)."""
    n = ints[I_N]
    ins = ints[I_LG_INS]
    while ins + 1 < n and rt[(ins + 1) & TMASK] <= t - LG_RISE_LO + tol:
        if ins >= _oldest(n):
            zc = rx[R_CLOSE, ins & TMASK]
            for d in range(2):
                s = 1.0 if d == 0 else -1.0
                z = s * zc
                head = lgi[d, LGI_HEAD]
                tail = lgi[d, LGI_TAIL]
                while tail > head and s * rx[R_CLOSE, dq[d, (tail - 1) & (DQN - 1)] & TMASK] >= z:
                    tail -= 1
                dq[d, tail & (DQN - 1)] = ins
                tail += 1
                lgi[d, LGI_TAIL] = tail
                lgi[d, LGI_HEAD] = max(head, tail - DQN)
        ins += 1
    ints[I_LG_INS] = ins
    for d in range(2):
        head = lgi[d, LGI_HEAD]
        tail = lgi[d, LGI_TAIL]
        while tail > head and rt[(dq[d, head & (DQN - 1)] + 1) & TMASK] < t - LG_RISE_HI - tol:
            head += 1
        lgi[d, LGI_HEAD] = head


@numba.njit(cache=True)
def _lg_arm(ints, rt, rx, mx, dq, lgi, lgf, lgr, lgs, d, s, zh, t):
    """Arm direction ``d`` with every reading of the spike into this tick that meets the
    spike clauses (5–12 σ from a start 5–60 s back, volume ×3, this tick the first at
    the move's extreme), smallest rise first."""
    head = lgi[d, LGI_HEAD]
    tail = lgi[d, LGI_TAIL]
    n = ints[I_N]
    nr = 0
    top = -np.inf  # highest tick from the reading's start to the one before this
    seen = n - 1
    for e in range(tail - 1, head - 1, -1):
        if nr == LG_READINGS:
            break
        j0 = dq[d, e & (DQN - 1)]
        z0 = s * rx[R_CLOSE, j0 & TMASK]
        start = j0 + 1
        while seen > start:
            seen -= 1
            k = seen & TMASK
            top = max(top, _sz(s, rx[R_HIGH, k], rx[R_LOW, k]))
        if top >= zh:
            break  # this tick is not the spike's peak for this start or any earlier one
        sigma = _sigma_at(ints, mx, rt[start & TMASK])
        if not sigma > 0.0:
            continue
        mag = (zh - z0) / sigma
        if mag < LG_MAG_LO:
            continue
        if mag > LG_MAG_HI:
            break
        vr = _volume_ratio(ints, rt, rx, start, n - 1)
        if vr < LG_VOL:
            continue
        lgr[d, nr, LGR_Z0] = z0
        lgr[d, nr, LGR_SIGMA] = sigma
        lgr[d, nr, LGR_VR] = vr
        lgs[d, nr] = start
        nr += 1
    if nr == 0:
        return
    lgi[d, LGI_NREAD] = nr
    lgi[d, LGI_ARMED] = 1
    lgi[d, LGI_TPEAK] = t
    lgi[d, LGI_PICK] = -1
    lgf[d, LGF_ZPK] = zh
    lgf[d, LGF_DEPTH] = -np.inf


@numba.njit(cache=True)
def _lg_pick(ints, rt, rx, mx, msx, lgi, lgf, lgr, lgs, d, s):
    """At 60 s after the peak: the reading with the smallest rise whose 70 % retrace was not
    already reached (too fast) and whose peak stays short of the prior 240-minute extreme;
    -1 if none."""
    zpk = lgf[d, LGF_ZPK]
    depth = lgf[d, LGF_DEPTH]
    for r in range(lgi[d, LGI_NREAD]):
        if LG_RETRACE * (zpk - lgr[d, r, LGR_Z0]) <= depth:
            continue
        t_start = rt[lgs[d, r] & TMASK]
        ext = _range_ext(ints, rt, rx, mx, msx, t_start - LG_RANGE_MIN * MIN, t_start, s)
        if zpk < ext:
            lgr[d, r, LGR_ROOM] = (ext - zpk) / lgr[d, r, LGR_SIGMA]
            return r
    return -1


@numba.njit(cache=True, inline="always")
def _lg_step(ints, floats, rt, rx, mx, msx, dq, lgi, lgf, lgr, lgs, oi, of, n_out, t, hi, lo, tol):
    """Liquidity grabs: a new extreme (re)arms the spike's readings; from 60 s after the
    peak the first reading whose 70 % retrace is reached completes the trap."""
    for d in range(2):
        s = 1.0 if d == 0 else -1.0
        zh = _sz(s, hi, lo)
        zr = _sr(s, hi, lo)
        if lgi[d, LGI_ARMED] == 0 or zh > lgf[d, LGF_ZPK]:
            lgi[d, LGI_ARMED] = 0
            # Most ticks are no spike: the largest rise (from the window's lowest point)
            # against the smaller σ of this and the previous minute rules them out at once.
            head = lgi[d, LGI_HEAD]
            if lgi[d, LGI_TAIL] > head and zh - s * rx[
                R_CLOSE, dq[d, head & (DQN - 1)] & TMASK
            ] >= (LG_MAG_LO * floats[F_SIG_LO]):
                _lg_arm(ints, rt, rx, mx, dq, lgi, lgf, lgr, lgs, d, s, zh, t)
            continue
        zpk = lgf[d, LGF_ZPK]
        back = t - lgi[d, LGI_TPEAK]
        if back > LG_BACK_HI + tol:
            lgi[d, LGI_ARMED] = 0
            continue
        if lgi[d, LGI_PICK] < 0 and back >= LG_BACK_LO - tol:
            lgi[d, LGI_PICK] = _lg_pick(ints, rt, rx, mx, msx, lgi, lgf, lgr, lgs, d, s)
            if lgi[d, LGI_PICK] < 0:
                lgi[d, LGI_ARMED] = 0
                continue
        r = lgi[d, LGI_PICK]
        if r >= 0 and zpk - zr >= LG_RETRACE * (zpk - lgr[d, r, LGR_Z0]):
            lgi[d, LGI_ARMED] = 0
            lgi[d, LGI_EMITTED] = lgi[d, LGI_TPEAK]
            z0 = lgr[d, r, LGR_Z0]
            sigma = lgr[d, r, LGR_SIGMA]
            vr = lgr[d, r, LGR_VR]
            room = lgr[d, r, LGR_ROOM]
            mag = (zpk - z0) / sigma
            t_start = rt[lgs[d, r] & TMASK]
            rise = lgi[d, LGI_TPEAK] - t_start
            conf = (
                _band(mag, LG_MAG_LO, LG_MAG_HI)
                + _multiple(vr, LG_VOL)
                + _within(rise, LG_RISE_HI)
                + _above(room, 0.0, 1.0)
            ) / 4.0
            n_out = _emit(
                ints, rx, mx, oi, of, n_out, LIQUIDITY_GRAB, int(s), t_start, lgi[d, LGI_TPEAK], -1,
                -1, conf, sigma, mag, vr, math.exp(s * z0), (zpk - zr) / (zpk - z0), rise / NS,
                room,
            )  # fmt: skip
        elif zpk - zr > lgf[d, LGF_DEPTH]:
            lgf[d, LGF_DEPTH] = zpk - zr
    return n_out


@numba.njit(cache=True)
def _route(lgi, d, t_peak):
    """Where a stop-hunt or Fibonacci reading of the move that peaked at ``t_peak`` goes:
    0 drop (a liquidity grab took it), 1 emit, 2 hold (a liquidity grab is armed on it)."""
    if t_peak == lgi[d, LGI_EMITTED]:
        return 0
    if lgi[d, LGI_ARMED] == 1 and t_peak == lgi[d, LGI_TPEAK]:
        return 2
    return 1


@numba.njit(cache=True, inline="always")
def _release(ints, lgi, held_i, held_f, oi, of, n_out):
    """Emit (at this tick) or drop the held readings whose liquidity grab has decided."""
    for d in range(2):
        for slot in range(2):
            if held_i[d, slot, O_TYPE] < 0:
                continue
            t_peak = held_i[d, slot, O_PEAK]
            if lgi[d, LGI_ARMED] == 1 and t_peak == lgi[d, LGI_TPEAK]:
                continue
            if t_peak != lgi[d, LGI_EMITTED]:
                oi[n_out] = held_i[d, slot]
                of[n_out] = held_f[d, slot]
                oi[n_out, O_DETECTED] = ints[I_LAST_T]
                n_out += 1
            held_i[d, slot, O_TYPE] = -1
    return n_out


# ---------------------------------------------------------------- stop hunt


@numba.njit(cache=True)
def _spike_start(ints, rt, rx, mx, i_break, i_peak, s, need):
    """Start of the move that broke out at tick ``i_break`` and peaked at ``i_peak``.

    The possible starts are the ticks after the points of the :data:`MOVE_LOOKBACK`
    before the break that lie below everything up to the break (``s``-space closes);
    the earliest whose volume multiple up to the peak reaches ``need`` is the start.
    Returns (start, σ at start, volume multiple), start -1 if none qualifies.
    """
    n = ints[I_N]
    lo = max(_first_at(rt, n, rt[i_break & TMASK] - MOVE_LOOKBACK), _oldest(n) + 1)
    cands = np.empty(max(i_break - lo + 1, 1), np.int64)
    nc = 0
    low = np.inf
    for j in range(i_break - 1, lo - 2, -1):
        z = s * rx[R_CLOSE, j & TMASK]
        if z < low:
            low = z
            cands[nc] = j + 1
            nc += 1
    for c in range(nc - 1, -1, -1):
        start = cands[c]
        sigma = _sigma_at(ints, mx, rt[start & TMASK])
        if not sigma > 0.0:
            continue
        vr = _volume_ratio(ints, rt, rx, start, i_peak)
        if vr >= need:
            return start, sigma, vr
    return -1, np.nan, 0.0


@numba.njit(cache=True)
def _sh_judge(ints, rt, rx, lad, s, zpk, sigma, first_i, zr, t, tol):
    """Best level of ``lad`` whose stop-hunt end is first met at this tick.

    Returns (level, W, time beyond in ns, time of the first tick beyond), W -1 if none.
    ``first_i`` is the move's first tick.
    """
    n = ints[I_N]
    best_w = -1
    best_level = 0.0
    best_margin = -np.inf
    best_beyond = 0
    best_first = -1
    prev = np.nan
    for w in range(len(lad)):
        level = lad[w]
        if level == prev:
            continue
        prev = level
        mag = (zpk - level) / sigma
        if mag < SH_MAG_LO or mag > SH_MAG_HI or (level - zr) / sigma < SH_BACK:
            continue
        first = -1
        beyond = 0
        ended = False
        back_at = level - SH_BACK * sigma
        for j in range(max(first_i, _oldest(n) + 1), n - 1):
            k = j & TMASK
            if _sz(s, rx[R_HIGH, k], rx[R_LOW, k]) > level:
                if first < 0:
                    first = rt[k]
                beyond += rt[k] - rt[(j - 1) & TMASK]
            elif first >= 0 and _sr(s, rx[R_HIGH, k], rx[R_LOW, k]) <= back_at:
                ended = True  # this reading's end came earlier
                break
        if ended or first < 0 or beyond > SH_BEYOND + tol or t - first > SH_WITHIN + tol:
            continue
        margin = min(mag - SH_MAG_LO, SH_MAG_HI - mag)
        if margin > best_margin:
            best_margin = margin
            best_w = w + SH_W_LO
            best_level = level
            best_beyond = beyond
            best_first = first
    return best_level, best_w, best_beyond, best_first


@numba.njit(cache=True, inline="always")
def _sh_step(ints, floats, rt, rx, mx, msx, lgi, shi, shf, shl, held_i, held_f, oi, of, n_out,
    t, hi, lo, pre_hi, pre_lo, tol):  # fmt: skip
    """Stop hunts: each break of the prior 30-minute range (re)anchors the move of its
    direction; once the move has reversed 4 σ from its peak it is judged on each new low
    of the reversal (a level's end can only come then, and a level that fails then fails
    for good)."""
    m = ints[I_MIN] & MMASK
    n = ints[I_N]
    for d in range(2):
        s = 1.0 if d == 0 else -1.0
        zh = _sz(s, hi, lo)
        zr = _sr(s, hi, lo)
        if shi[d, SHI_ALIVE] == 1:
            if zh > shf[d, SHF_ZPK]:
                shf[d, SHF_ZPK] = zh
                shi[d, SHI_TPEAK] = t
                shi[d, SHI_START] = -2
                shf[d, SHF_JUDGED] = np.inf
            zpk = shf[d, SHF_ZPK]
            sigma = shf[d, SHF_SIGMA]
            if t - shi[d, SHI_TPEAK] > SH_WITHIN + tol or (
                zpk - shl[d, SH_LADDER - 1] > SH_MAG_HI * sigma
            ):
                shi[d, SHI_ALIVE] = 0
            elif zr <= zpk - (SH_MAG_LO + SH_BACK) * sigma and zr < shf[d, SHF_JUDGED]:
                shf[d, SHF_JUDGED] = zr
                if shi[d, SHI_START] == -2:
                    peak_i = _first_at(rt, n, shi[d, SHI_TPEAK])
                    start, sig_s, vr = _spike_start(
                        ints, rt, rx, mx, shi[d, SHI_BREAK], peak_i, s, SH_VOL
                    )
                    shi[d, SHI_START] = start
                    shf[d, SHF_SIG_S] = sig_s
                    shf[d, SHF_VR] = vr
                start = shi[d, SHI_START]
                if start >= 0:
                    sig_s = shf[d, SHF_SIG_S]
                    vr = shf[d, SHF_VR]
                    if shi[d, SHI_LADDER_AT] != start:
                        _ladder(ints, rt, rx, msx, mx, rt[start & TMASK], s, SH_W_LO, shl[d])
                        shi[d, SHI_LADDER_AT] = start
                    level, w, beyond_ns, first = _sh_judge(
                        ints, rt, rx, shl[d], s, zpk, sig_s, start, zr, t, tol
                    )
                    if w >= 0:
                        shi[d, SHI_ALIVE] = 0
                        mag = (zpk - level) / sig_s
                        conf = (
                            _band(mag, SH_MAG_LO, SH_MAG_HI)
                            + _multiple(vr, SH_VOL)
                            + _within(beyond_ns, SH_BEYOND)
                            + _within(t - first, SH_WITHIN)
                        ) / 4.0
                        route = _route(lgi, d, shi[d, SHI_TPEAK])
                        if route > 0:
                            held = route == 2
                            row = _emit(
                                ints, rx, mx, held_i[d] if held else oi,
                                held_f[d] if held else of, 0 if held else n_out, STOP_HUNT,
                                int(s), rt[start & TMASK], shi[d, SHI_TPEAK], first, -1, conf,
                                sig_s, mag, vr, math.exp(s * level), float(w), beyond_ns / NS,
                                (t - first) / NS,
                            )  # fmt: skip
                            if not held:
                                n_out = row
        prior = mx[M_MAX30, m] if s > 0 else -mx[M_MIN30, m]
        cur = _sz(s, pre_hi, pre_lo)
        beyond = 1 if zh > max(prior, cur) else 0
        if beyond == 1 and ints[I_BEYOND30 + d] == 0:
            _ladder(ints, rt, rx, msx, mx, t, s, SH_W_LO, shl[d])
            shi[d, SHI_ALIVE] = 1
            shi[d, SHI_BREAK] = n - 1
            shi[d, SHI_TPEAK] = t
            shi[d, SHI_LADDER_AT] = -1
            shi[d, SHI_START] = -2
            sig_early = _sigma_at(ints, mx, t - MOVE_LOOKBACK)
            sig = floats[F_SIGMA]
            shf[d, SHF_SIGMA] = min(sig, sig_early) if sig_early > 0.0 else sig
            shf[d, SHF_ZPK] = zh
            shf[d, SHF_JUDGED] = np.inf
        ints[I_BEYOND30 + d] = beyond
    return n_out


# ---------------------------------------------------------------- bull and bear traps


@numba.njit(cache=True, inline="always")
def _bt_tick(ints, rt, rx, bti, btf, bli, blf, bst, d, p, s, t, hi, lo, close, tol):
    """Advance one candidate's levels by one tick. Levels break in rising order as the
    peak grows; the unfallen broken ones form a stack whose top falls first, so each tick
    costs O(1) plus the levels that change state. A fall is judged at once (hold, magnitude,
    breakout volume and fade); a level that passes waits for its end."""
    zh = _sz(s, hi, lo)
    zc = s * close
    nlev = bti[d, p, BTI_NLEV]
    if zh > btf[d, p, BTF_ZPK]:
        btf[d, p, BTF_ZPK] = zh
        bti[d, p, BTI_TPEAK] = t
        nb = bti[d, p, BTI_NBROKEN]
        late = t - bti[d, p, BTI_TSTART] > BT_WAIT
        while nb < nlev and blf[d, p, nb, BLF_LEVEL] < zh:
            if late:
                bli[d, p, nb, BLI_STATE] = LV_DEAD
            else:
                bli[d, p, nb, BLI_STATE] = LV_BEYOND
                bli[d, p, nb, BLI_TBREAK] = t
                bst[d, p, bti[d, p, BTI_NSTACK]] = nb
                bti[d, p, BTI_NSTACK] += 1
            nb += 1
        bti[d, p, BTI_NBROKEN] = nb
        # A new peak after a fall moves the peak out of that level's hold.
        if bti[d, p, BTI_NWAIT] > 0:
            for k in range(nlev):
                if bli[d, p, k, BLI_STATE] == LV_FALLEN:
                    bli[d, p, k, BLI_STATE] = LV_DEAD
            bti[d, p, BTI_NWAIT] = 0
    ns = bti[d, p, BTI_NSTACK]
    sigma = btf[d, p, BTF_SIGMA]
    while ns > 0:
        k = bst[d, p, ns - 1]
        level = blf[d, p, k, BLF_LEVEL]
        if zc > level:
            break
        ns -= 1
        hold = t - bli[d, p, k, BLI_TBREAK]
        zpk = btf[d, p, BTF_ZPK]
        mag = (zpk - level) / sigma
        ok = BT_HOLD_LO - tol <= hold <= BT_HOLD_HI + tol and BT_MAG_LO <= mag <= BT_MAG_HI
        if ok:
            n = ints[I_N]
            start = bti[d, p, BTI_START]
            peak_i = _first_at(rt, n, bti[d, p, BTI_TPEAK])
            fall_i = _first_at(rt, n, t)
            vr = _volume_ratio(ints, rt, rx, start, peak_i)
            ok = vr >= BT_VOL and (
                _rate(rt, rx, n, peak_i + 1, fall_i - 1) < _rate(rt, rx, n, start, peak_i)
            )
            blf[d, p, k, BLF_VR] = vr
        if ok:
            bli[d, p, k, BLI_STATE] = LV_FALLEN
            bli[d, p, k, BLI_TFALL] = t
            bli[d, p, k, BLI_TPEAK] = bti[d, p, BTI_TPEAK]
            blf[d, p, k, BLF_ZPK] = zpk
            bti[d, p, BTI_NWAIT] += 1
        else:
            bli[d, p, k, BLI_STATE] = LV_DEAD
    bti[d, p, BTI_NSTACK] = ns


@numba.njit(cache=True)
def _bt_open(ints, rt, rx, mx, msx, bti, btf, bli, blf, bst, d, s):
    """Open a candidate at a break of the prior 60-minute range: the move's start, the
    prior range levels over 60–240 minutes before it, and the move so far replayed."""
    n = ints[I_N]
    start = _move_start(rt, rx, n, n - 1, s)
    for p in range(PB):
        if bti[d, p, BTI_ALIVE] == 1 and bti[d, p, BTI_START] == start:
            return
    t_start = rt[start & TMASK]
    sigma = _sigma_at(ints, mx, t_start)
    if not sigma > 0.0:
        return
    slot = 0
    for p in range(PB):
        if bti[d, p, BTI_ALIVE] == 0:
            slot = p
            break
        if bti[d, p, BTI_TSTART] < bti[d, slot, BTI_TSTART]:
            slot = p
    lad = np.empty(BT_LADDER)
    _ladder(ints, rt, rx, msx, mx, t_start, s, BT_W_LO, lad)
    nlev = 0
    last = -np.inf
    for w in range(BT_LADDER):
        if nlev == KB:
            break
        if lad[w] - last < LEVEL_GAP * sigma:
            continue
        last = lad[w]
        blf[d, slot, nlev, BLF_LEVEL] = last
        bli[d, slot, nlev, BLI_STATE] = LV_WAITING
        bli[d, slot, nlev, BLI_W] = w + BT_W_LO
        nlev += 1
    bti[d, slot, BTI_ALIVE] = 1
    bti[d, slot, BTI_START] = start
    bti[d, slot, BTI_TSTART] = t_start
    bti[d, slot, BTI_TPEAK] = t_start
    bti[d, slot, BTI_NLEV] = nlev
    bti[d, slot, BTI_NBROKEN] = 0
    bti[d, slot, BTI_NSTACK] = 0
    bti[d, slot, BTI_NWAIT] = 0
    btf[d, slot, BTF_SIGMA] = sigma
    btf[d, slot, BTF_ZPK] = -np.inf
    btf[d, slot, BTF_WAKE_Z] = np.inf
    for j in range(start, n):
        k = j & TMASK
        _bt_tick(
            ints,
            rt,
            rx,
            bti,
            btf,
            bli,
            blf,
            bst,
            d,
            slot,
            s,
            rt[k],
            rx[R_HIGH, k],
            rx[R_LOW, k],
            rx[R_CLOSE, k],
            0,
        )


@numba.njit(cache=True, inline="always")
def _bt_step(ints, rt, rx, mx, msx, bti, btf, bli, blf, bst, oi, of, n_out, t, hi, lo, close,
    pre_hi, pre_lo, tol):  # fmt: skip
    """Bull and bear traps: each break of the prior 60-minute range opens a candidate
    (unless one with the same start is open); its levels are followed by :func:`_bt_tick`
    and a fallen level is emitted once the price is 4 σ past it."""
    m = ints[I_MIN] & MMASK
    for d in range(2):
        s = 1.0 if d == 0 else -1.0
        kind = BULL_TRAP if d == 0 else BEAR_TRAP
        zh = _sz(s, hi, lo)
        zr = _sr(s, hi, lo)
        for p in range(PB):
            if bti[d, p, BTI_ALIVE] == 0:
                continue
            # Nothing can change before a new peak, a fall to the wake level or the wake time.
            if (
                zh <= btf[d, p, BTF_ZPK]
                and zr > btf[d, p, BTF_WAKE_Z]
                and (t <= bti[d, p, BTI_WAKE_T])
            ):
                continue
            _bt_tick(ints, rt, rx, bti, btf, bli, blf, bst, d, p, s, t, hi, lo, close, tol)
            emitted = False
            sigma = btf[d, p, BTF_SIGMA]
            wake_z = -np.inf
            wake_t = np.iinfo(np.int64).max
            if bti[d, p, BTI_NWAIT] > 0:
                for k in range(bti[d, p, BTI_NLEV]):
                    if bli[d, p, k, BLI_STATE] != LV_FALLEN:
                        continue
                    level = blf[d, p, k, BLF_LEVEL]
                    if t - bli[d, p, k, BLI_TFALL] > BT_WITHIN + tol:
                        bli[d, p, k, BLI_STATE] = LV_DEAD
                        bti[d, p, BTI_NWAIT] -= 1
                    elif (level - zr) / sigma >= BT_PAST:
                        zpk = blf[d, p, k, BLF_ZPK]
                        mag = (zpk - level) / sigma
                        hold = bli[d, p, k, BLI_TFALL] - bli[d, p, k, BLI_TBREAK]
                        fall = t - bli[d, p, k, BLI_TFALL]
                        vr = blf[d, p, k, BLF_VR]
                        conf = (
                            _band(mag, BT_MAG_LO, BT_MAG_HI)
                            + _multiple(vr, BT_VOL)
                            + _band(hold, BT_HOLD_LO, BT_HOLD_HI)
                            + _within(fall, BT_WITHIN)
                        ) / 4.0
                        n_out = _emit(
                            ints, rx, mx, oi, of, n_out, kind, int(s), bti[d, p, BTI_TSTART],
                            bli[d, p, k, BLI_TPEAK], bli[d, p, k, BLI_TBREAK],
                            bli[d, p, k, BLI_TFALL], conf, sigma, mag, vr, math.exp(s * level),
                            float(bli[d, p, k, BLI_W]), hold / NS, fall / NS,
                        )  # fmt: skip
                        emitted = True
                        break
                    else:
                        wake_z = max(wake_z, level - BT_PAST * sigma)
                        wake_t = min(wake_t, bli[d, p, k, BLI_TFALL] + BT_WITHIN + tol)
            if emitted:
                for q in range(PB):
                    bti[d, q, BTI_ALIVE] = 0
                break
            # Alive while a level may still break, hold or end.
            waiting = (
                bti[d, p, BTI_NBROKEN] < bti[d, p, BTI_NLEV]
                and t - bti[d, p, BTI_TSTART] <= BT_WAIT
            )
            if waiting:
                wake_t = min(wake_t, bti[d, p, BTI_TSTART] + BT_WAIT + 1)
            ns = bti[d, p, BTI_NSTACK]
            holding = False
            if ns > 0:
                top = bst[d, p, ns - 1]
                t_break = bli[d, p, top, BLI_TBREAK]
                holding = t - t_break <= BT_HOLD_HI + tol
                wake_z = max(wake_z, blf[d, p, top, BLF_LEVEL])
                wake_t = min(wake_t, t_break + BT_HOLD_HI + tol + 1)
            if not (waiting or holding or bti[d, p, BTI_NWAIT] > 0):
                bti[d, p, BTI_ALIVE] = 0
            btf[d, p, BTF_WAKE_Z] = wake_z
            bti[d, p, BTI_WAKE_T] = wake_t
        prior = mx[M_MAX60, m] if s > 0 else -mx[M_MIN60, m]
        cur = _sz(s, pre_hi, pre_lo)
        beyond = 1 if zh > max(prior, cur) else 0
        if beyond == 1 and ints[I_BEYOND60 + d] == 0:
            _bt_open(ints, rt, rx, mx, msx, bti, btf, bli, blf, bst, d, s)
        ints[I_BEYOND60 + d] = beyond
    return n_out


# ---------------------------------------------------------------- Fibonacci trap


@numba.njit(cache=True)
def _fib_judge(ints, rt, rx, mx, mt, msx, s, x_raw, t_x, zpk, t_pk, sigma):
    """Best Fibonacci reading of a fake move in direction ``s`` that starts at the swing
    end ``x_raw`` (log price, time ``t_x``) and peaks at ``zpk`` (``s``-space, ``t_pk``).

    Swing anchors ``F`` are the points 30–240 min before ``t_x`` that are the ``-s``
    extreme of everything from them to ``t_x`` while ``x_raw`` stays the ``s`` extreme;
    each gives two levels (0.618, 0.786 of the swing, in price). A level fits when the
    peak overshoots it by 1–3 σ and no tick touched it more than 3 min before the peak.
    Returns (ratio, level, overshoot, swing σ, F, t_F, t_touch), ratio 0 if none fits.
    """
    n = ints[I_N]
    xz = s * x_raw
    touch_ext = _range_ext(ints, rt, rx, mx, msx, t_x + 1, t_pk - FIB_TOUCH, s)
    best = (0.0, 0.0, 0.0, 0.0, 0.0, 0, 0)
    best_margin = -np.inf
    fz = -np.inf  # running s-space extreme back from t_x: the swing's far end
    m_x = t_x // MIN
    j = _first_at(rt, n, m_x * MIN)
    while j < n and rt[j & TMASK] < t_x:
        k = j & TMASK
        if _sr(s, rx[R_HIGH, k], rx[R_LOW, k]) < xz:
            return best
        fz = max(fz, _sz(s, rx[R_HIGH, k], rx[R_LOW, k]))
        j += 1
    px = math.exp(x_raw)
    for back in range(1, FIB_SWING_HI // MIN + 2):
        m = m_x - back
        if not _known(ints, m):
            break
        k = m & MMASK
        if _sr(s, mx[M_HIGH, k], mx[M_LOW, k]) < xz:
            break
        far = _sz(s, mx[M_HIGH, k], mx[M_LOW, k])
        if far <= fz:
            continue
        fz = far
        t_f = mt[MT_THIGH, k] if s > 0 else mt[MT_TLOW, k]
        if not FIB_SWING_LO <= t_x - t_f <= FIB_SWING_HI:
            continue
        f_raw = s * fz
        swing = abs(x_raw - f_raw) / sigma
        if swing < FIB_SWING:
            continue
        pf = math.exp(f_raw)
        for r in FIB_RATIOS:
            level = math.log(px - r * (px - pf))
            over = (zpk - s * level) / sigma
            if over < FIB_OVER_LO or over > FIB_OVER_HI or touch_ext >= s * level:
                continue
            margin = min(over - FIB_OVER_LO, FIB_OVER_HI - over)
            if margin > best_margin:
                best_margin = margin
                best = (r, level, over, swing, f_raw, t_f, 0)
    if best[0] > 0.0:
        j = _first_at(rt, n, max(t_x + 1, t_pk - FIB_TOUCH))
        while j < n and _sz(s, rx[R_HIGH, j & TMASK], rx[R_LOW, j & TMASK]) < s * best[1]:
            j += 1
        best = (best[0], best[1], best[2], best[3], best[4], best[5], rt[min(j, n - 1) & TMASK])
    return best


@numba.njit(cache=True, inline="always")
def _fib_step(
    ints, floats, rt, rx, mx, mt, msx, lgi, zi, zf, held_i, held_f, oi, of, n_out, t, hi, lo
):
    """Fibonacci traps: a zigzag whose legs reverse at 4 σ (σ of the leg's first minute).
    A leg that reverses is a fake-move candidate, judged on the tick its reversal completes
    (the end of ``TRAPS.md``): its start is the swing's end, its extreme the peak."""
    sigma_now = floats[F_SIGMA]
    leg = zi[ZI_LEG]
    if leg == 0:
        zi[ZI_LEG] = 1
        zf[ZF_EXT] = hi
        zi[ZI_TEXT] = t
        zi[ZI_TLAST] = t
        zf[ZF_PIV] = lo
        zi[ZI_TPIV] = t
        zf[ZF_SIGMA] = sigma_now
        zf[ZF_PREV] = np.nan
        return n_out
    s = float(leg)
    zh = _sz(s, hi, lo)
    zr = _sr(s, hi, lo)
    ext = s * zf[ZF_EXT]
    sigma = zf[ZF_SIGMA]
    if zh >= ext:
        if zh > ext:
            zf[ZF_EXT] = hi if s > 0 else lo
            zi[ZI_TEXT] = t
        zi[ZI_TLAST] = t
        return n_out
    if zr < s * zf[ZF_PIV]:
        # Back past the leg's own start: the previous leg goes on.
        if zf[ZF_PREV] == zf[ZF_PREV]:
            zf[ZF_PIV] = zf[ZF_PREV]
            zi[ZI_TPIV] = zi[ZI_TPREV]
            zf[ZF_SIGMA] = zf[ZF_PREV_SIGMA]
        else:
            zf[ZF_PIV] = zf[ZF_EXT]
            zi[ZI_TPIV] = zi[ZI_TLAST]
            zf[ZF_SIGMA] = sigma_now
        zf[ZF_PREV] = np.nan
        zi[ZI_LEG] = -leg
        zf[ZF_EXT] = lo if s > 0 else hi
        zi[ZI_TEXT] = t
        zi[ZI_TLAST] = t
        return n_out
    if not (sigma > 0.0) or ext - zr < FIB_REVERSAL * sigma:
        return n_out
    t_pk = zi[ZI_TEXT]
    d = 0 if s > 0 else 1
    route = _route(lgi, d, t_pk)
    if t - t_pk <= FIB_WITHIN and route > 0:
        r, level, over, swing, f_raw, t_f, t_touch = _fib_judge(
            ints, rt, rx, mx, mt, msx, s, zf[ZF_PIV], zi[ZI_TPIV], ext, t_pk, sigma
        )
        if r > 0.0:
            conf = (
                _band(over, FIB_OVER_LO, FIB_OVER_HI)
                + _above(swing, FIB_SWING, FIB_SWING)
                + _within(t_pk - t_touch, FIB_TOUCH)
                + _within(t - t_pk, FIB_WITHIN)
            ) / 4.0
            held = route == 2
            row = _emit(
                ints, rx, mx, held_i[d] if held else oi, held_f[d] if held else of,
                1 if held else n_out, FIBONACCI_TRAP, int(s), zi[ZI_TPIV], t_pk, t_f, t_touch,
                conf, sigma, over, np.nan, math.exp(level), r, swing, math.exp(f_raw),
            )  # fmt: skip
            if not held:
                n_out = row
    # The leg's extreme is a confirmed pivot; the next leg starts from its last tick there.
    zf[ZF_PREV] = zf[ZF_PIV]
    zi[ZI_TPREV] = zi[ZI_TPIV]
    zf[ZF_PREV_SIGMA] = sigma
    zf[ZF_PIV] = zf[ZF_EXT]
    zi[ZI_TPIV] = zi[ZI_TLAST]
    sig_next = _sigma_at(ints, mx, zi[ZI_TLAST])
    zf[ZF_SIGMA] = sig_next if sig_next > 0.0 else sigma_now
    zi[ZI_LEG] = -leg
    zf[ZF_EXT] = lo if s > 0 else hi
    zi[ZI_TEXT] = t
    zi[ZI_TLAST] = t
    return n_out


# ---------------------------------------------------------------- the tick loop


@numba.njit(cache=True)
def run(ts, close, high, low, volume, first, ints, floats, rt, rx, mt, mx, msx, dq, lgi, lgf,
    lgr, lgs, shi, shf, shl, bti, btf, bli, blf, bst, zi, zf, held_i, held_f, oi, of):  # fmt: skip
    """Feed ticks ``first …`` through the state until the end or the output buffer is full.

    Parameters
    ----------
    ts : ndarray of int64, shape (n,)
        Tick times, ns UTC, strictly increasing and after the state's last tick.
    close, high, low : ndarray of float64, shape (n,)
        Last price and the tick's (or candle's) high and low; all equal for plain ticks.
    volume : ndarray of float64, shape (n,)
        Volume of each tick or candle.
    first : int
        Index of the first tick to feed.
    ints, floats, rt, …, held_f : ndarray
        The state of :func:`new_state`, updated in place.
    oi, of : ndarray, shapes (OUT_CAP, O_INTS) and (OUT_CAP, O_FLOATS)
        Detection records, written from row 0.

    Returns
    -------
    (next, count) : (int, int)
        Index of the first tick not fed, and the number of records written.
    """
    n_out = 0
    i = first
    while i < len(ts) and n_out <= OUT_CAP - MAX_PER_TICK:
        t = ts[i]
        c = close[i]
        n = ints[I_N]
        tol = max(t - ints[I_LAST_T] - NS, 0) if n > 0 else 0
        if t >= ints[I_NEXT_MIN]:
            _open_minute(ints, floats, mx, mt, msx, t // MIN, t)
        y = math.log(c)
        hi = y if high[i] == c else math.log(high[i])
        lo = y if low[i] == c else math.log(low[i])
        k = n & TMASK
        cv = rx[R_CUMVOL, (n - 1) & TMASK] if n > 0 else 0.0
        rt[k] = t
        rx[R_CLOSE, k] = y
        rx[R_HIGH, k] = hi
        rx[R_LOW, k] = lo
        rx[R_CUMVOL, k] = cv + volume[i]
        ints[I_N] = n + 1
        ints[I_LAST_T] = t
        m = ints[I_MIN]
        mk = m & MMASK
        pre_hi = mx[M_HIGH, mk]
        pre_lo = mx[M_LOW, mk]
        if hi > pre_hi:
            mx[M_HIGH, mk] = hi
            mt[MT_THIGH, mk] = t
        if lo < pre_lo:
            mx[M_LOW, mk] = lo
            mt[MT_TLOW, mk] = t
        mx[M_CLOSE, mk] = y
        sec = (t - m * MIN) // NS
        if hi > msx[0, mk, sec]:
            msx[0, mk, sec] = hi
        if lo < msx[1, mk, sec]:
            msx[1, mk, sec] = lo
        _lg_window(ints, rt, rx, dq, lgi, t, tol)
        i += 1
        if not floats[F_SIGMA] > 0.0:
            continue
        n_out = _lg_step(
            ints, floats, rt, rx, mx, msx, dq, lgi, lgf, lgr, lgs, oi, of, n_out, t, hi, lo, tol
        )
        n_out = _release(ints, lgi, held_i, held_f, oi, of, n_out)
        n_out = _sh_step(
            ints,
            floats,
            rt,
            rx,
            mx,
            msx,
            lgi,
            shi,
            shf,
            shl,
            held_i,
            held_f,
            oi,
            of,
            n_out,
            t,
            hi,
            lo,
            pre_hi,
            pre_lo,
            tol,
        )
        n_out = _bt_step(
            ints,
            rt,
            rx,
            mx,
            msx,
            bti,
            btf,
            bli,
            blf,
            bst,
            oi,
            of,
            n_out,
            t,
            hi,
            lo,
            y,
            pre_hi,
            pre_lo,
            tol,
        )
        n_out = _fib_step(
            ints, floats, rt, rx, mx, mt, msx, lgi, zi, zf, held_i, held_f, oi, of, n_out, t, hi, lo
        )
    return i, n_out
