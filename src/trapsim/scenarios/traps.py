r"""Price and volume templates of the five trap types of TRAPS.md.

A trap type drafts the overlay of its window, then, once the draft is
measured (:mod:`trapsim.scenarios.contract`), says where to add volume.

Price model. Inside a trap's window the fake move dominates, as when a market
maker takes the book: the final log price is the type's template (in σ units,
relative to the price before the trap) plus a damped share ``d`` of the base's
fast fluctuations,

.. math::

    x_t = \ln p_0 + \sigma\, y(t) + d\,\big(h_t - h_{t_0}\big), \qquad
    h_t = \ln P_t - \tfrac{1}{w}\textstyle\sum_{k<w} \ln P_{t-k},

with :math:`P` the base price and :math:`h` its log price minus a trailing
``w``-tick mean: the base keeps its tick-to-tick texture while its slow
wander is replaced by the template (a Fibonacci swing keeps more of it, see
:class:`FibonacciTrap`). The overlay is :math:`x_t - \ln P_t`. Drafts stop at
the last tick searched for the end condition; the injector then fades the
overlay left there back to 0 (:mod:`trapsim.scenarios.injector`). Template
sizes and durations are drawn well inside the ranges of ``docs/labels.md`` so
that the measured trap keeps clear of every bound.

Needs. What a type needs from the market before it is drafted (a level to
break, room below the 240-min extreme) is a row of numbers, :attr:`Trap.need`,
that :func:`feasible` tests: the injector walks an arrival's retries without
drafting until the market offers what one of its types needs.

Each draft is one ``numba.njit(cache=True)`` kernel over the buffer's arrays;
the type's random parameters are drawn first, as uniforms scaled to the
ranges in :attr:`Trap.bounds`. Backward scans for prior-range extremes skip
whole blocks of ticks through
:func:`~trapsim.scenarios.contract.block_extremes`.

Volume. Each trap adds aggressive flow on top of the base volume: a burst whose
mean over a window of the measured trap hits a target multiple of the 30-min
baseline, with random tick jitter and an exponential decay after.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from trapsim.core.time import MINUTE_NS, NS
from trapsim.scenarios.contract import (
    BEAR_TRAP,
    BLOCK,
    BULL_TRAP,
    END,
    FIB_RATIOS,
    FIBONACCI_TRAP,
    LIQUIDITY_GRAB,
    PEAK,
    RETRACE,
    START,
    STOP_HUNT,
    T_FALL,
    T_TOUCH,
    VOLUME_BASE_NS,
    minute_closes,
    range_extreme,
    reblock,
    sigma_at,
    sigma_of_closes,
    total,
)

KAPPA = 0.35
"""Initial share of the speed of an accelerating ramp ``y = κu + (1-κ)u²``."""

NOISE_TICKS = 60
"""Trailing window ``w`` of the base's fast fluctuations inside a trap, ticks."""

SWING_NOISE_TICKS = 300
"""Trailing window ``w`` of the base's fluctuations a Fibonacci swing keeps, ticks."""

QUICK = "quick"
"""Family of the short trap types that HF clusters are made of."""

RECENT_MIN = 3
"""A broken level must not have been touched in the last 3 minutes."""

RANGE_MIN = 240
"""Prior range (minutes) whose extreme a liquidity grab must not take out."""

ANY, ROOM, LEVEL = 0, 1, 2
"""Kinds of :attr:`Trap.need`: nothing; room (σ) below the 240-min extreme; a level to break."""


@numba.njit(cache=True)
def _next_beyond(x, extremes, s, i, lo, level):
    """Last tick in ``lo … i-1`` with ``s * x > level``, or -1; ``extremes`` as for
    :func:`~trapsim.scenarios.contract.range_extreme`."""
    r = i - 1
    while r >= lo:
        b = r // BLOCK
        if (r % BLOCK == BLOCK - 1 and r - BLOCK + 1 >= lo and b < len(extremes)
                and s * extremes[b] <= level):
            r -= BLOCK
        elif s * x[r] > level:
            return r
        else:
            r -= 1
    return -1


@numba.njit(cache=True, nogil=True)
def apply_overlay(price, overlay, out):
    """Set ``out`` to the final prices ``price * exp(overlay)``, ``price`` itself where the
    overlay is 0.

    Every final price of a run, measured or emitted, comes from here, so the
    prices a label is measured on are exactly the ones emitted.
    """
    for i in range(len(price)):
        x = overlay[i]
        out[i] = price[i] * math.exp(x) if x != 0.0 else price[i]


def final_prices(price: np.ndarray, overlay: np.ndarray) -> np.ndarray:
    """Final prices of a base ``price`` under a log ``overlay`` (float64 arrays of one shape):
    the prices a run emits."""
    out = np.empty(len(price))
    apply_overlay(np.ascontiguousarray(price, dtype=np.float64),
                  np.ascontiguousarray(overlay, dtype=np.float64), out)
    return out


@numba.njit(cache=True)
def write_final(price, final, highs, lows, lo, overlay):
    """Set the final price of ticks ``lo …`` to ``price * exp(overlay)`` (:func:`apply_overlay`),
    keeping the block extremes ``highs`` and ``lows`` of ``final`` in step."""
    hi = lo + len(overlay)
    apply_overlay(price[lo:hi], overlay, final[lo:hi])
    reblock(final, highs, lows, lo, hi)


@numba.njit(cache=True)
def add_bursts(ts, volume, start, bursts, hi, exponential):
    """Add the flow of a trap's volume bursts to ``volume``, in place.

    Each burst ``(a, b, target, decay_s)`` adds flow on ticks ``a … hi-1`` so
    that ticks ``a … b`` average ``target`` times the mean volume of
    ``[ts[start] - 30 min, ts[start])`` (nothing if they already do). The
    flow has tick jitter of mean 1 and spread 0.5 (half constant, half
    exponential) and decays exponentially, ``decay_s`` seconds, after ``b``.

    Parameters
    ----------
    ts, volume : numpy.ndarray, shape (n,)
        Tick times (int64 ns) and final volume.
    start : int
        First tick of the trap.
    bursts : numpy.ndarray of float64, shape (k, 4)
        One row ``(a, b, target, decay_s)`` per burst, applied in order.
    hi : int
        End (exclusive) of every burst's flow: the tick after the span.
    exponential : numpy.ndarray of float64
        Standard exponential draws, ``hi - a`` per burst, burst after burst.
    """
    lo = np.searchsorted(ts, ts[start] - VOLUME_BASE_NS)
    base = total(volume[lo:start]) / (start - lo)
    used = 0
    for k in range(bursts.shape[0]):
        a, b, target, decay_s = int(bursts[k, 0]), int(bursts[k, 1]), bursts[k, 2], bursts[k, 3]
        jitter = exponential[used:used + hi - a]  # flow: 0.5 + 0.5 * jitter, decayed after b
        used += hi - a
        need = target * base * (b - a + 1) - total(volume[a:b + 1])
        if not need > 0:
            continue
        scale = need / (0.5 * (b - a + 1) + 0.5 * total(jitter[:b - a + 1]))
        decay = _decay(ts, b, b + 1, hi, 0.0, 1.0 / decay_s)
        for i in range(a, hi):
            flow = 0.5 + 0.5 * jitter[i - a]
            volume[i] += scale * (flow if i <= b else flow * decay[i - b - 1])


@numba.njit(cache=True)
def _sides(flip):
    """Both directions, in the order a uniform ``flip`` in [-1, 1] picks."""
    return (1, -1) if flip > 0 else (-1, 1)


@numba.njit(cache=True)
def _after(ts, i, seconds):
    """Index of the first tick at or after ``ts[i] + seconds``."""
    return np.searchsorted(ts, ts[i] + round(seconds * NS))


@numba.njit(cache=True)
def _ramp(u):
    """Accelerating ramp from 0 to 1 with a non-zero initial speed, as stops cascade."""
    return KAPPA * u + (1.0 - KAPPA) * u * u


@numba.njit(cache=True)
def _decay(ts, ref, lo, hi, t0, rate):
    """``exp(-rate * (t - t0))`` for ticks ``lo … hi-1``, ``t`` in seconds from tick ``ref``;
    1 where ``t <= t0``.

    Past the first tick, each value is the last one times the factor of the
    tick gap, so regular ticks cost one ``exp`` in all.
    """
    out = np.empty(hi - lo)
    value, last, gap, factor = 1.0, t0, 0.0, 1.0
    for i in range(lo, hi):
        t = (ts[i] - ts[ref]) / NS
        if t > t0:
            if last == t0:
                value = math.exp(-rate * (t - t0))
            else:
                if t - last != gap:
                    gap = t - last
                    factor = math.exp(-rate * gap)
                value *= factor
            last = t
        out[i - lo] = value
    return out


@numba.njit(cache=True)
def _fluctuation(lp, lo, hi, ref, w):
    """``h_t - h_ref`` for ticks ``lo … hi-1`` (``ref <= lo``), ``h`` the base log price
    ``lp`` minus its trailing ``w``-tick mean."""
    trailing = 0.0  # sum of the last w log prices
    for i in range(ref - w + 1, ref + 1):
        trailing += lp[i]
    h_ref = lp[ref] - trailing / w
    out = np.empty(hi - lo)
    for i in range(ref, hi):
        if i > ref:
            trailing += lp[i] - lp[i - w]
        if i >= lo:
            out[i - lo] = lp[i] - trailing / w - h_ref
    return out


@numba.njit(cache=True)
def _level_window(ts, price, extremes, j, s, lo, hi, near_lo, near_hi, sigma):
    """The range lengths W in ``lo … hi`` (minutes, ``lo`` > :data:`RECENT_MIN`) whose extreme
    on side ``s`` is a level to break, as ``(first, last)``; ``(0, 0)`` if none.

    The level (the high for ``s = +1``, the low for -1, of ``[ts[j] - W min, ts[j])``)
    must lie ``near_lo … near_hi`` σ beyond ``price[j - 1]``, and the last
    :data:`RECENT_MIN` minutes must not reach it. Both conditions only tighten
    or loosen one way as W grows, so the W that fit are a run. Past W = ``lo``
    the extreme changes only at the ticks that beat it going back (found
    block-wise by :func:`_next_beyond`), so the pass walks those and stops
    once the level is too far.
    """
    ref = price[j - 1]
    recent = range_extreme(price, extremes, np.searchsorted(ts, ts[j] - RECENT_MIN * MINUTE_NS),
                           j, s)
    i = np.searchsorted(ts, ts[j] - lo * MINUTE_NS)
    best = range_extreme(price, extremes, i, j, s)
    edge = np.searchsorted(ts, ts[j] - hi * MINUTE_NS)
    first = last = 0
    since = lo  # the extreme `best` holds for W from `since` until the next tick that beats it
    while True:
        r = _next_beyond(price, extremes, s, i, edge, best)
        until = hi if r < 0 else (ts[j] - ts[r] + MINUTE_NS - 1) // MINUTE_NS - 1
        if since <= until:
            dist = s * math.log(s * best / ref) / sigma
            if dist > near_hi:
                break
            if best > recent and dist >= near_lo:
                if not first:
                    first = since
                last = until
        if r < 0:
            break
        best, since, i = s * price[r], until + 1, r
    return first, last


@numba.njit(cache=True)
def _room(ts, price, extremes, j, s, sigma):
    """Distance (σ) from ``price[j - 1]`` to the 240-min extreme on side ``s``, less 1 σ."""
    edge = np.searchsorted(ts, ts[j] - RANGE_MIN * MINUTE_NS)
    best = range_extreme(price, extremes, edge, j, s)
    return s * math.log(s * best / price[j - 1]) / sigma - 1.0


@numba.njit(cache=True)
def _level(ts, final, highs, lows, j, s, lo, hi, near_lo, near_hi, sigma, pick):
    """A range length W (minutes) whose extreme on side ``s`` is a level to break (see
    :func:`_level_window`), drawn uniformly by ``pick`` in [0, 1), and that extreme;
    ``(0, nan)`` if none."""
    extremes = highs if s > 0 else lows
    first, last = _level_window(ts, final, extremes, j, s, lo, hi, near_lo, near_hi, sigma)
    if not first:
        return 0, math.nan
    w = first + int(pick * (last - first + 1))
    edge = np.searchsorted(ts, ts[j] - w * MINUTE_NS)
    return w, s * range_extreme(final, extremes, edge, j, s)


@numba.njit(cache=True)
def feasible(ts, final, highs, lows, j, sigma, needs):
    """Whether the market at tick ``j`` offers what one of the types ``needs`` needs.

    Parameters
    ----------
    ts, final : numpy.ndarray, shape (n,)
        Tick times (int64 ns) and final prices.
    highs, lows : numpy.ndarray
        :func:`~trapsim.scenarios.contract.block_extremes` of ``final``.
    j : int
        First tick of the span.
    sigma : float
        σ of the final stream at ``j`` (log-return units).
    needs : numpy.ndarray of float64, shape (k, 6)
        One :attr:`Trap.need` row per type; rows of another kind (such as -1)
        need what no market offers.

    Returns
    -------
    bool
    """
    for kind in (ANY, ROOM, LEVEL):  # the cheap tests first
        for k in range(needs.shape[0]):
            if needs[k, 0] != kind:
                continue
            if kind == ANY:
                return True
            for s in (1, -1):
                if needs[k, 1] != 0 and s != needs[k, 1]:
                    continue
                extremes = highs if s > 0 else lows
                if kind == ROOM and _room(ts, final, extremes, j, s, sigma) >= needs[k, 4]:
                    return True
                if kind == LEVEL and _level_window(ts, final, extremes, j, s, int(needs[k, 2]),
                                                   int(needs[k, 3]), needs[k, 4], needs[k, 5],
                                                   sigma)[0]:
                    return True
    return False


@numba.njit(cache=True)
def _draws(bounds, u):
    """Uniforms ``u`` in [0, 1) scaled to the ranges ``bounds`` (one ``(lo, hi)`` row each)."""
    return bounds[:, 0] + (bounds[:, 1] - bounds[:, 0]) * u


class Trap:
    """A trap type: what it needs from the market, its price path and its volume.

    Class attributes: ``name`` and ``kind``, its index in
    :data:`~trapsim.scenarios.contract.TYPES`; ``family`` (:data:`QUICK` for the types HF
    clusters are made of; the injector tries a family's types together);
    ``need``, ``(kind, side, lo, hi, near_lo, near_hi)``: :data:`ANY`;
    :data:`ROOM` of at least ``near_lo`` σ (see :func:`_room`); or a
    :data:`LEVEL` with W in ``lo … hi`` minutes ``near_lo … near_hi`` σ away
    (see :func:`_level_window`), on side ``side`` (0: either);
    ``bounds`` and ``quick_bounds``, shape (k, 2), the ranges of the random
    parameters of a draft (``quick``: inside an HF cluster), in the order the
    draft kernel reads them; ``nominal_s``, the typical span (s);
    ``window_s``, the longest time from the span start to the last tick
    searched for the end condition (s); ``max_tail_s``, the longest recovery
    tail (s); ``tail_s_per_sigma``, the tail's length per σ of overlay left
    at the end (s); ``bursts``, its volume bursts ``(first, last, target,
    decay_s)``: aggressive flow from the tick in record slot ``first`` of its
    measure (:data:`~trapsim.scenarios.contract.FIELDS`) so that the ticks
    up to slot ``last`` average ``target`` times the 30-min baseline, then
    decaying (see :func:`add_bursts`).
    """

    name = ""
    kind = -1
    family = ""
    need: tuple[float, ...] = (ANY, 0, 0, 0, 0.0, 0.0)
    bounds = np.empty((0, 2))
    quick_bounds = bounds
    nominal_s = 0.0
    window_s = 0.0
    max_tail_s = 0.0
    tail_s_per_sigma = 25.0
    bursts: tuple[tuple[int, int, float, float], ...] = ()


@numba.njit(cache=True)
def _grab_draft(ts, lp, final, highs, lows, j, sigma, bounds, u, min_room):
    """Liquidity-grab :func:`draft`: ``(s, stop, overlay)``, ``s = 0`` if no side has the
    room."""
    x = _draws(bounds, u)
    size, rise, retrace, wick, wick_s, damp, flip = x[0], x[1], x[2], x[3], x[4], x[5], x[6]
    side = 0
    for s in _sides(flip):
        room = _room(ts, final, highs if s > 0 else lows, j, s, sigma)
        if room >= min_room:
            side, size = s, min(size, room)
            break
    if not side:
        return 0, 0, np.empty(0)
    stop = _after(ts, j, rise + 2.5 * retrace)
    noise = _fluctuation(lp, j, stop + 1, j - 1, NOISE_TICKS)
    snap = _decay(ts, j - 1, j, stop + 1, rise, 1.0 / wick_s)
    lp0 = math.log(final[j - 1])
    out = np.empty(stop + 1 - j)
    for i in range(j, stop + 1):
        t = (ts[i] - ts[j - 1]) / NS
        if t <= rise:
            y = size * _ramp(t / rise)
        else:
            share = wick * (1.0 - snap[i - j]) + (RETRACE - wick) * (t - rise) / retrace
            y = size * (1.0 - share)
        out[i - j] = lp0 + side * sigma * y + damp * noise[i - j] - lp[i]
    return side, stop, out


class LiquidityGrab(Trap):
    """``liquidity_grab``: a 5-12 σ spike inside the 240-min range that retraces >= 70 %.

    Template: an accelerating ramp of 6.3-9.5 σ over 9-25 s (kept 1 σ inside
    the 240-min extreme), a wick that gives back 52-60 % within seconds, then a
    grind that crosses 70 % 95-300 s after the peak.
    The quick wick keeps the spike out of most minute closes, so the trap
    barely inflates the σ of the traps after it. Volume ×5 over the spike.
    """

    name = "liquidity_grab"
    kind = LIQUIDITY_GRAB
    family = QUICK
    need = (ROOM, 0, 0, 0, 6.3, 0.0)  # room: σ to the 240-min extreme, less 1 σ
    # size σ, rise s, retrace s, wick share, wick s, noise damping, side flip
    bounds = np.array([(6.8, 9.5), (10.0, 25.0), (120.0, 300.0), (0.52, 0.6), (4.0, 8.0),
                       (0.2, 0.35), (-1.0, 1.0)])
    quick_bounds = np.array([(6.3, 7.8), (9.0, 14.0), (95.0, 125.0), (0.52, 0.6), (4.0, 8.0),
                             (0.2, 0.35), (-1.0, 1.0)])
    nominal_s = 200.0
    window_s = 25.0 + 2.5 * 300.0
    max_tail_s = 300.0
    bursts = ((START, PEAK, 5.0, 40.0),)


@numba.njit(cache=True)
def _hunt_draft(ts, lp, final, highs, lows, j, sigma, bounds, u, lo, hi, near_lo, near_hi):
    """Stop-hunt :func:`draft`: ``(s, W, stop, overlay)``, ``s = 0`` if no level."""
    x = _draws(bounds, u)
    over, rise, back, damp, flip, pick = x[0], x[1], x[2], x[3], x[4], x[5]
    side, w, level = 0, 0, math.nan
    for s in _sides(flip):
        w, level = _level(ts, final, highs, lows, j, s, lo, hi, near_lo, near_hi, sigma, pick)
        if w:
            side = s
            break
    if not side:
        return 0, 0, 0, np.empty(0)
    p0 = final[j - 1]
    y_level = math.log(level / p0) / sigma
    snap = 4.5  # heads this far (σ) inside the level, crossing 3 σ `back` s after the peak
    tau = back / math.log((over + snap) / (snap - 3.0))
    stop = _after(ts, j, rise + 3.0 * back)
    noise = _fluctuation(lp, j, stop + 1, j - 1, NOISE_TICKS)
    decay = _decay(ts, j - 1, j, stop + 1, rise, 1.0 / tau)
    lp0 = math.log(p0)
    out = np.empty(stop + 1 - j)
    for i in range(j, stop + 1):
        t = (ts[i] - ts[j - 1]) / NS
        if t <= rise:
            y = (y_level + side * over) * _ramp(t / rise)
        else:  # distance inside the level (σ): from -over at the peak towards `snap`
            y = y_level - side * (snap - (snap + over) * decay[i - j])
        out[i - j] = lp0 + sigma * y + damp * noise[i - j] - lp[i]
    return side, w, stop, out


class StopHunt(Trap):
    """``stop_hunt``: a pierce of 1.8-2.8 σ through the W-minute low or high and a snap back.

    W (35-215 min) is picked so the level sits 0.3-2.5 σ beyond the reference
    price and untouched for 3 min. The ramp takes 6-20 s; the snap back heads
    for 4.5 σ inside and crosses 3 σ inside 15-45 s after the peak. Volume
    ×3.5 to the peak.
    """

    name = "stop_hunt"
    kind = STOP_HUNT
    family = QUICK
    need = (LEVEL, 0, 35, 215, 0.3, 2.5)
    # pierce σ, rise s, snap-back s, noise damping, side flip, W pick
    bounds = np.array([(1.8, 2.8), (8.0, 20.0), (20.0, 45.0), (0.25, 0.4), (-1.0, 1.0),
                       (0.0, 1.0)])
    quick_bounds = np.array([(1.8, 2.8), (6.0, 10.0), (15.0, 25.0), (0.25, 0.4), (-1.0, 1.0),
                             (0.0, 1.0)])
    nominal_s = 90.0
    window_s = 20.0 + 3.0 * 45.0
    max_tail_s = 300.0
    bursts = ((START, PEAK, 3.5, 30.0),)


@numba.njit(cache=True)
def _breakout_draft(ts, lp, final, highs, lows, j, sigma, bounds, u, s, lo, hi, near_lo, near_hi):
    """Bull/bear :func:`draft` on side ``s``: ``(W, stop, overlay)``, ``W = 0`` if no level."""
    x = _draws(bounds, u)
    over, sag, rise, hold, drop, damp, pick = x[0], x[1], x[2], x[3], x[4], x[5], x[6]
    w, level = _level(ts, final, highs, lows, j, s, lo, hi, near_lo, near_hi, sigma, pick)
    if not w:
        return 0, 0, np.empty(0)
    p0 = final[j - 1]
    y_level = math.log(level / p0) / sigma
    settle = 6.0  # the fall heads this far (σ) past the level, crossing 4 σ `drop` s after it
    k = 3.0  # the hold loses most of the excess early, then drifts
    fall_rate = math.log(settle / (settle - 4.0)) / drop
    stop = _after(ts, j, rise + hold + 3.0 * drop)
    noise = _fluctuation(lp, j, stop + 1, j - 1, NOISE_TICKS)
    sagging = _decay(ts, j - 1, j, stop + 1, rise, k / hold)
    falling = _decay(ts, j - 1, j, stop + 1, rise + hold, fall_rate)
    lp0 = math.log(p0)
    out = np.empty(stop + 1 - j)
    for i in range(j, stop + 1):
        t = (ts[i] - ts[j - 1]) / NS
        if t <= rise:
            y = (y_level + s * over) * _ramp(t / rise)
        elif t <= rise + hold:
            y = y_level + s * (sag + (over - sag) * (sagging[i - j] - math.exp(-k))
                               / -math.expm1(-k))
        else:
            y = y_level + s * (sag - (sag + settle) * (1.0 - falling[i - j]))
        out[i - j] = lp0 + sigma * y + damp * noise[i - j] - lp[i]
    return w, stop, out


class _Breakout(Trap):
    """Shared template of the bull and bear traps (side +1 bull, -1 bear, in ``need``).

    W (68-214 min) is picked so the range extreme sits 0.3-3.4 σ beyond the
    reference price, untouched for 3 min. Template: an accelerating breakout of
    3.5-5.5 σ past the level in 60-150 s, a hold that sags to 1.2-1.8 σ past it
    over 3-10 min, then a fall that crosses 4 σ on the other side 120-360 s
    after the level, heading for 6 σ. Volume ×3 over the breakout, fading in
    the hold, and ×2 again from the fall to the end (trapped traders' stops).
    """

    family = "breakout"
    # breakout σ, sag σ, rise s, hold s, fall s, noise damping, W pick
    bounds = np.array([(3.5, 5.5), (1.2, 1.8), (60.0, 150.0), (180.0, 600.0), (120.0, 360.0),
                       (0.3, 0.5), (0.0, 1.0)])
    quick_bounds = bounds
    nominal_s = 1000.0
    window_s = 150.0 + 600.0 + 3.0 * 360.0
    max_tail_s = 900.0
    tail_s_per_sigma = 60.0
    bursts = ((START, PEAK, 3.0, 20.0), (T_FALL, END, 2.0, 60.0))


class BullTrap(_Breakout):
    """``bull_trap`` (always ``up``): see the breakout template above."""

    name = "bull_trap"
    kind = BULL_TRAP
    need = (LEVEL, 1, 68, 214, 0.3, 3.4)


class BearTrap(_Breakout):
    """``bear_trap`` (always ``down``): see the breakout template above."""

    name = "bear_trap"
    kind = BEAR_TRAP
    need = (LEVEL, -1, 68, 214, 0.3, 3.4)


@numba.njit(cache=True)
def _fib_draft(ts, lp, price, final, j, sigma, bounds, u):
    """Fibonacci :func:`draft`: ``(s, start, stop, ratio, overlay)``, ``s = 0`` if σ at the
    swing's end does not exist."""
    x = _draws(bounds, u)
    minutes, size, over, gap, reverse, damp, pick, coin = (x[0], x[1], x[2], x[3], x[4], x[5],
                                                           x[6], x[7])
    start = _after(ts, j, minutes * 60.0)
    size *= max(sigma_at(ts, price, start), sigma)
    ratio = FIB_RATIOS[1] if pick > 0 else FIB_RATIOS[0]
    # Swing with the base's drift, so the overlay left to fade away is small; the fake
    # move goes against the swing.
    drift = math.log(price[_after(ts, start, 600.0)] / price[j])
    s = -1 if drift > 0 or (drift == 0 and coin > 0) else 1
    noise = _fluctuation(lp, j, start + 1, j, SWING_NOISE_TICKS)
    length = (ts[start] - ts[j]) / NS
    swing = np.empty(start + 1 - j)
    for i in range(j, start + 1):
        t = (ts[i] - ts[j]) / NS
        fade = min(min(t, length - t) / 600.0, 1.0) ** 2
        swing[i - j] = lp[j] - s * size * t / length + 0.7 * fade * noise[i - j] - lp[i]
    # σ at the trap's start includes the swing, whose log prices are lp + swing.
    closes = minute_closes(ts, start)
    if not len(closes):
        return 0, j, 0, 0.0, np.empty(0)
    log_closes = np.empty(len(closes))
    for k in range(len(closes)):
        i = closes[k]
        log_closes[k] = lp[i] + swing[i - j] if i >= j else math.log(final[i])
    sigma = sigma_of_closes(log_closes)
    if not (sigma > 0 and math.isfinite(sigma)):
        return 0, j, 0, 0.0, np.empty(0)
    swing_from, swing_to = math.exp(lp[j] + swing[0]), math.exp(lp[start] + swing[-1])
    y_level = math.log((swing_to - ratio * (swing_to - swing_from)) / swing_to) / sigma
    y_peak = y_level + s * over
    # Linear fall whose last `gap` s are the overshoot (shorter if the retrace is long).
    fall = min(gap * y_peak / (y_peak - y_level), 900.0)
    stop = _after(ts, start, fall + 3.0 * reverse)
    rebound = 6.0  # the reversal heads this far (σ), crossing 4 σ `reverse` s after the peak
    rate = math.log(rebound / (rebound - 4.0)) / reverse
    noise = _fluctuation(lp, start + 1, stop + 1, start, NOISE_TICKS)
    reversal = _decay(ts, start, start + 1, stop + 1, fall, rate)
    l_to = math.log(swing_to)
    out = np.empty(stop + 1 - j)
    out[:start + 1 - j] = swing
    for i in range(start + 1, stop + 1):
        tt = (ts[i] - ts[start]) / NS
        if tt <= fall:
            y = y_peak * tt / fall
        else:
            y = y_peak - s * rebound * (1.0 - reversal[i - start - 1])
        # The noise fades in over the first minute so the swing's end stays its extreme.
        fade = min(tt / 60.0, 1.0) ** 2
        out[i - j] = l_to + sigma * y + damp * fade * noise[i - start - 1] - lp[i]
    return s, start, stop, ratio, out


class FibonacciTrap(Trap):
    """``fibonacci_trap``: a 15 σ+ swing, a retrace through its 0.618 or 0.786 level, a reversal.

    The swing lasts 35-55 min and spans 21-26 σ (the larger of the base's σ
    over its last hour and σ at its start), in the direction of the base's own
    move over it: a linear trend plus 70 % of the base's fluctuations around a
    5-min trailing mean, faded out over the swing's first and last 10 min so
    its ends are its extremes. From the swing's extreme the price falls back
    linearly (for at most 15 min) through the level and overshoots it by
    1.6-2.4 σ, the touch 40-110 s before the peak, then reverses 6 σ, crossing
    4 σ 90-300 s after the peak. Volume ×2.5 from the touch to the peak.
    """

    name = "fibonacci_trap"
    kind = FIBONACCI_TRAP
    family = "swing"
    # swing min, swing σ, overshoot σ, touch-to-peak s, reversal s, noise damping,
    # ratio pick, direction coin
    bounds = np.array([(35.0, 55.0), (21.0, 26.0), (1.6, 2.4), (40.0, 110.0), (90.0, 300.0),
                       (0.3, 0.5), (-1.0, 1.0), (-1.0, 1.0)])
    quick_bounds = bounds
    nominal_s = 4500.0
    window_s = 55.0 * 60.0 + 900.0 + 3.0 * 300.0
    max_tail_s = 1800.0
    tail_s_per_sigma = 60.0
    bursts = ((T_TOUCH, PEAK, 2.5, 60.0),)


@numba.njit(cache=True)
def draft(kind, ts, price, logs, final, highs, lows, j, sigma, bounds, u, need):
    """Draft a trap of type ``kind`` whose span starts at tick ``j``.

    Parameters
    ----------
    kind : int
        The type's index in :data:`~trapsim.scenarios.contract.TYPES`.
    ts, price, logs, final : numpy.ndarray, shape (n,)
        Tick times (int64 ns), base price and its log, final price.
    highs, lows : numpy.ndarray
        :func:`~trapsim.scenarios.contract.block_extremes` of ``final``.
    j : int
        First tick of the span.
    sigma : float
        σ of the final stream at ``j``.
    bounds : numpy.ndarray, shape (k, 2)
        Ranges of the draft's random parameters (:attr:`Trap.bounds` or
        :attr:`Trap.quick_bounds`).
    u : numpy.ndarray, shape (k,)
        Uniforms in [0, 1), one per parameter.
    need : numpy.ndarray, shape (6,)
        The type's :attr:`Trap.need`.

    Returns
    -------
    s, start, stop, lookback_min, ratio, overlay
        Direction (0 if the market does not allow the trap), first tick of the
        fake move, last tick searched for its end, W of a stop hunt or bull/bear
        trap (else 0), the ratio of a Fibonacci trap (else 0), and the overlay
        of ticks ``j … stop``.
    """
    if kind == LIQUIDITY_GRAB:
        s, stop, overlay = _grab_draft(ts, logs, final, highs, lows, j, sigma, bounds, u, need[4])
        return s, j, stop, 0, 0.0, overlay
    if kind == STOP_HUNT:
        s, w, stop, overlay = _hunt_draft(ts, logs, final, highs, lows, j, sigma, bounds, u,
                                          int(need[2]), int(need[3]), need[4], need[5])
        return s, j, stop, w, 0.0, overlay
    if kind == FIBONACCI_TRAP:
        s, start, stop, ratio, overlay = _fib_draft(ts, logs, price, final, j, sigma, bounds, u)
        return s, start, stop, 0, ratio, overlay
    side = int(need[1])
    w, stop, overlay = _breakout_draft(ts, logs, final, highs, lows, j, sigma, bounds, u, side,
                                       int(need[2]), int(need[3]), need[4], need[5])
    return side if w else 0, j, stop, w, 0.0, overlay


TRAPS: dict[str, type[Trap]] = {
    cls.name: cls for cls in (LiquidityGrab, StopHunt, BullTrap, BearTrap, FibonacciTrap)
}
"""Registry: trap type name → its :class:`Trap` class, in TRAPS.md order."""

TRAP_TYPES: tuple[str, ...] = tuple(TRAPS)
"""The five trap types, in TRAPS.md order."""
