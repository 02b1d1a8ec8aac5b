r"""Price and volume templates of the five trap types of TRAPS.md.

A trap type drafts the final log price of its window, then, once the draft is
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
:class:`FibonacciTrap`). Drafts stop at the last tick searched for the end
condition; the injector then fades the overlay left there back to 0
(:mod:`trapsim.scenarios.injector`). Template sizes and
durations are drawn well inside the ranges of ``docs/labels.md`` so that the
measured trap keeps clear of every bound.

Volume. Each trap adds aggressive flow on top of the base volume: a burst whose
mean over a window of the measured trap hits a target multiple of the 30-min
baseline, with random tick jitter and an exponential decay after.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np

from trapsim.core.time import MINUTE_NS, NS
from trapsim.scenarios.contract import FIB_RATIOS, Measure, prior_extreme, sigma_at

KAPPA = 0.35
"""Initial share of the speed of an accelerating ramp ``y = κu + (1-κ)u²``."""

NOISE_TICKS = 60
"""Trailing window ``w`` of the base's fast fluctuations inside a trap, ticks."""

QUICK = "quick"
"""Family of the short trap types that HF clusters are made of."""

RECENT_MIN = 3
"""A broken level must not have been touched in the last 3 minutes."""


@dataclass(slots=True)
class Site:
    """Where a trap is drafted: the buffer, the span start and σ there.

    ``price`` is the base price, ``final`` the final price (base times the
    overlay already written), both shape (n,), over ticks ``ts``.
    """

    ts: np.ndarray
    price: np.ndarray
    final: np.ndarray
    j: int
    sigma: float
    dirty: int = 0  # end (exclusive) of the final prices written since the last undo

    def after(self, i: int, seconds: float) -> int:
        """Index of the first tick at or after ``ts[i] + seconds``."""
        return int(self.ts.searchsorted(self.ts[i] + round(seconds * NS)))

    def seconds(self, lo: int, hi: int, ref: int) -> np.ndarray:
        """Seconds from tick ``ref`` to each tick ``lo … hi-1``."""
        return (self.ts[lo:hi] - self.ts[ref]) / NS

    def fluctuation(self, lo: int, hi: int, ref: int, w: int) -> np.ndarray:
        """``h_t - h_ref`` for ticks ``lo … hi-1`` (``ref <= lo``), ``h`` the base log price
        minus its trailing ``w``-tick mean."""
        return _fluctuation(self.price, lo, hi, ref, w)

    def apply(self, lo: int, overlay: np.ndarray) -> None:
        """Set the final price of ticks ``lo …`` to ``price * exp(overlay)``.

        This is exactly how the stream's consumer computes the final price.
        """
        hi = lo + len(overlay)
        self.final[lo:hi] = self.price[lo:hi] * np.exp(overlay)
        self.dirty = max(self.dirty, hi)

    def write(self, lo: int, log_price: np.ndarray) -> np.ndarray:
        """Set the final price of ticks ``lo …`` to ``exp(log_price)``; return the overlay."""
        overlay = log_price - np.log(self.price[lo:lo + len(log_price)])
        self.apply(lo, overlay)
        return overlay


@numba.njit(cache=True)
def _fluctuation(price, lo, hi, ref, w):
    """Kernel of :meth:`Site.fluctuation`: a running sum over the trailing window."""
    logp = np.log(price[ref - w + 1:hi])
    total = logp[:w].sum()
    h_ref = logp[w - 1] - total / w
    out = np.empty(hi - lo)
    for i in range(w - 1, len(logp)):
        if i >= w:
            total += logp[i] - logp[i - w]
        k = i - (w - 1) + ref - lo  # tick ref + i - (w - 1), relative to lo
        if k >= 0:
            out[k] = logp[i] - total / w - h_ref
    return out


@dataclass(slots=True)
class Draft:
    """A drafted trap: its final log price over ticks ``span_start … stop`` and what to measure.

    ``stop`` is the last tick searched for the end condition.
    """

    type: str
    s: int
    start: int
    span_start: int
    log_price: np.ndarray
    stop: int
    lookback_min: int = 0
    ratio: float = 0.0


Burst = tuple[int, int, float, float]
"""Volume burst: first and last tick of its window, target volume ×k there, decay after (s)."""


def _uniform(rng: np.random.Generator, *bounds: tuple[float, float]) -> list[float]:
    """One uniform draw in each ``(lo, hi)`` of ``bounds``, in a single call to ``rng``."""
    draws = rng.random(len(bounds)).tolist()
    return [lo + (hi - lo) * u for (lo, hi), u in zip(bounds, draws, strict=True)]


def _sides(flip: float) -> tuple[int, int]:
    """Both directions, in the order a uniform ``flip`` in [-1, 1] picks."""
    return (1, -1) if flip > 0 else (-1, 1)


def _ramp(u: np.ndarray) -> np.ndarray:
    """Accelerating ramp from 0 to 1 with a non-zero initial speed, as stops cascade."""
    return KAPPA * u + (1.0 - KAPPA) * u * u


@numba.njit(cache=True)
def _breakable(ts, price, j, s, minutes, sigma, near_lo, near_hi):
    """The range lengths W of ``minutes[1:]`` whose extreme on side ``s`` is a level to break.

    One backward pass from tick ``j`` tracks the high (``s = +1``) or low of
    ``[ts[j] - m min, ts[j])`` for each ``m`` of the increasing ``minutes``;
    ``minutes[0]`` is the recent window that must not reach the level.
    """
    ok = np.zeros(len(minutes), np.bool_)
    best = -np.inf
    recent = 0.0
    i = j - 1
    for k in range(len(minutes)):
        edge = ts[j] - minutes[k] * MINUTE_NS
        while i >= 0 and ts[i] >= edge:
            best = max(best, s * price[i])
            i -= 1
        if k == 0:
            recent = best
        else:
            dist = s * math.log(s * best / price[j - 1]) / sigma
            ok[k] = best > recent and near_lo <= dist <= near_hi
    return minutes[ok]


def _lookbacks(lo: int, hi: int) -> np.ndarray:
    """:data:`RECENT_MIN`, then the range lengths ``lo … hi`` (minutes) a level is drawn from."""
    return np.r_[RECENT_MIN, np.arange(lo, hi + 1)]


def _lookback(site: Site, s: int, minutes: np.ndarray, near: tuple[float, float],
              rng: np.random.Generator) -> int:
    """A prior-range length W (minutes) whose extreme on side ``s`` is a level to break.

    ``minutes`` is :func:`_lookbacks` of the allowed W. The level must lie
    ``near`` σ beyond the reference price, and the last :data:`RECENT_MIN`
    minutes must not have touched it. Returns 0 if no W fits.
    """
    ok = _breakable(site.ts, site.final, site.j, s, minutes, site.sigma, *near)
    return int(ok[int(rng.integers(len(ok)))]) if len(ok) else 0


class Trap:
    """A trap type: drafts its price path and plans its volume.

    Class attributes: ``name``; ``family`` (:data:`QUICK` for the types HF
    clusters are made of; the injector tries a family's types together);
    ``nominal_s``, the typical span (s); ``window_s``, the longest time from the
    span start to the last tick searched for the end condition (s);
    ``max_tail_s``, the longest recovery tail (s); ``tail_s_per_sigma``, the
    tail's length per σ of overlay left at the end (s).
    """

    name = ""
    family = ""
    nominal_s = 0.0
    window_s = 0.0
    max_tail_s = 0.0
    tail_s_per_sigma = 25.0

    def draft(self, site: Site, rng: np.random.Generator, quick: bool) -> Draft | None:
        """Draft the trap at ``site``; None if the market there does not allow it.

        ``quick`` asks for the shortest timings (inside an HF cluster).
        """
        raise NotImplementedError

    def bursts(self, m: Measure) -> tuple[Burst, ...]:
        """Volume bursts of the measured trap ``m``."""
        raise NotImplementedError

    def _span(self, site: Site, search_s: float) -> tuple[int, np.ndarray]:
        """Window of a draft whose end is searched up to ``search_s`` (<= ``window_s``) after
        its start: the last tick searched, and the seconds from the reference tick (the one
        before the start) to each tick of the window."""
        stop = site.after(site.j, search_s)
        return stop, site.seconds(site.j, stop + 1, site.j - 1)

    def _noise(self, site: Site, stop: int, damp: float) -> np.ndarray:
        return damp * site.fluctuation(site.j, stop + 1, site.j - 1, NOISE_TICKS)


class LiquidityGrab(Trap):
    """``liquidity_grab``: a 5-12 σ spike inside the 240-min range that retraces >= 70 %.

    Template: an accelerating ramp of 6.3-9.5 σ over 9-25 s (kept 1 σ inside
    the 240-min extreme), a wick that gives back 52-60 % within seconds, then a
    grind that crosses 70 % 95-300 s after the peak.
    The quick wick keeps the spike out of most minute closes, so the trap
    barely inflates the σ of the traps after it. Volume ×5 over the spike.
    """

    name = "liquidity_grab"
    family = QUICK
    nominal_s = 200.0
    window_s = 25.0 + 2.5 * 300.0
    max_tail_s = 300.0

    def draft(self, site, rng, quick):
        j, sigma = site.j, site.sigma
        p0 = site.final[j - 1]
        size, rise, retrace, wick, wick_s, damp, flip = _uniform(
            rng, (6.3, 7.8) if quick else (6.8, 9.5), (9.0, 14.0) if quick else (10.0, 25.0),
            (95.0, 125.0) if quick else (120.0, 300.0), (0.52, 0.6), (4.0, 8.0), (0.2, 0.35),
            (-1.0, 1.0))
        for s in _sides(flip):
            room = s * math.log(prior_extreme(site.ts, site.final, j, 240, s) / p0) / sigma - 1.0
            if room >= 6.3:
                size = min(size, room)
                break
        else:
            return None
        stop, t = self._span(site, rise + 2.5 * retrace)
        after = np.maximum(t - rise, 0.0)
        share = wick * -np.expm1(-after / wick_s) + (0.7 - wick) * after / retrace
        y = size * np.where(t <= rise, _ramp(np.minimum(t / rise, 1.0)), 1.0 - share)
        x = math.log(p0) + s * sigma * y + self._noise(site, stop, damp)
        return Draft(self.name, int(s), j, j, x, stop)

    def bursts(self, m):
        return ((m.start, m.peak, 5.0, 40.0),)


class StopHunt(Trap):
    """``stop_hunt``: a pierce of 1.8-2.8 σ through the W-minute low or high and a snap back.

    W (35-215 min) is picked so the level sits 0.3-2.5 σ beyond the reference
    price and untouched for 3 min. The ramp takes 6-20 s; the snap back heads
    for 4.5 σ inside and crosses 3 σ inside 15-45 s after the peak. Volume
    ×3.5 to the peak.
    """

    name = "stop_hunt"
    family = QUICK
    lookbacks = _lookbacks(35, 215)
    nominal_s = 90.0
    window_s = 20.0 + 3.0 * 45.0
    max_tail_s = 300.0

    def draft(self, site, rng, quick):
        j, sigma = site.j, site.sigma
        over, rise, back, damp, flip = _uniform(
            rng, (1.8, 2.8), (6.0, 10.0) if quick else (8.0, 20.0),
            (15.0, 25.0) if quick else (20.0, 45.0), (0.25, 0.4), (-1.0, 1.0))
        for s in _sides(flip):
            w = _lookback(site, s, self.lookbacks, (0.3, 2.5), rng)
            if w:
                break
        else:
            return None
        p0 = site.final[j - 1]
        y_level = math.log(prior_extreme(site.ts, site.final, j, w, s) / p0) / sigma
        snap = 4.5
        stop, t = self._span(site, rise + 3.0 * back)
        after = np.maximum(t - rise, 0.0)
        tau = back / math.log((over + snap) / (snap - 3.0))
        # Distance inside the level (σ): from -over at the peak towards `snap`.
        inside = snap - (snap + over) * np.exp(-after / tau)
        y = np.where(t <= rise, (y_level + s * over) * _ramp(np.minimum(t / rise, 1.0)),
                     y_level - s * inside)
        x = math.log(p0) + sigma * y + self._noise(site, stop, damp)
        return Draft(self.name, int(s), j, j, x, stop, w)

    def bursts(self, m):
        return ((m.start, m.peak, 3.5, 30.0),)


class _Breakout(Trap):
    """Shared template of the bull and bear traps (``s`` = +1 bull, -1 bear).

    W (68-214 min) is picked so the range extreme sits 0.3-3.4 σ beyond the
    reference price, untouched for 3 min. Template: an accelerating breakout of
    3.5-5.5 σ past the level in 60-150 s, a hold that sags to 1.2-1.8 σ past it
    over 3-10 min, then a fall that crosses 4 σ on the other side 120-360 s
    after the level, heading for 6 σ. Volume ×3 over the breakout, fading in
    the hold, and ×2 again from the fall to the end (trapped traders' stops).
    """

    s = 1
    family = "breakout"
    lookbacks = _lookbacks(68, 214)
    nominal_s = 1000.0
    window_s = 150.0 + 600.0 + 3.0 * 360.0
    max_tail_s = 900.0
    tail_s_per_sigma = 60.0

    def draft(self, site, rng, quick):
        j, sigma, s = site.j, site.sigma, self.s
        w = _lookback(site, s, self.lookbacks, (0.3, 3.4), rng)
        if not w:
            return None
        p0 = site.final[j - 1]
        y_level = math.log(prior_extreme(site.ts, site.final, j, w, s) / p0) / sigma
        over, sag, rise, hold, drop, damp = _uniform(
            rng, (3.5, 5.5), (1.2, 1.8), (60.0, 150.0), (180.0, 600.0), (120.0, 360.0),
            (0.3, 0.5))
        settle = 6.0
        stop, t = self._span(site, rise + hold + 3.0 * drop)
        k = 3.0  # the hold loses most of the excess early, then drifts
        v = np.clip((t - rise) / hold, 0.0, 1.0)
        sagging = sag + (over - sag) * (np.exp(-k * v) - math.exp(-k)) / -math.expm1(-k)
        falling = sag - (sag + settle) * -np.expm1(-(t - rise - hold) * math.log(
            settle / (settle - 4.0)) / drop)
        y = np.where(t <= rise, (y_level + s * over) * _ramp(np.minimum(t / rise, 1.0)),
                     y_level + s * np.where(t <= rise + hold, sagging, falling))
        x = math.log(p0) + sigma * y + self._noise(site, stop, damp)
        return Draft(self.name, s, j, j, x, stop, w)

    def bursts(self, m):
        return ((m.start, m.peak, 3.0, 20.0), (m.values["t_fall"], m.end, 2.0, 60.0))


class BullTrap(_Breakout):
    """``bull_trap`` (always ``up``): see the breakout template above."""

    name = "bull_trap"
    s = 1


class BearTrap(_Breakout):
    """``bear_trap`` (always ``down``): see the breakout template above."""

    name = "bear_trap"
    s = -1


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
    family = "swing"
    nominal_s = 4500.0
    window_s = 55.0 * 60.0 + 900.0 + 3.0 * 300.0
    max_tail_s = 1800.0
    tail_s_per_sigma = 60.0

    def draft(self, site, rng, quick):
        j, price = site.j, site.price
        minutes, size, over, gap, reverse, damp, pick, coin = _uniform(
            rng, (35.0, 55.0), (21.0, 26.0), (1.6, 2.4), (40.0, 110.0), (90.0, 300.0),
            (0.3, 0.5), (-1.0, 1.0), (-1.0, 1.0))
        start = site.after(j, minutes * 60.0)
        size *= max(sigma_at(site.ts, price, start), site.sigma)
        ratio = FIB_RATIOS[pick > 0]
        # Swing with the base's drift, so the overlay left to fade away is small; the fake
        # move goes against the swing.
        drift = math.log(price[site.after(start, 600.0)] / price[j])
        s = -1 if drift > 0 or (drift == 0 and coin > 0) else 1
        t = site.seconds(j, start + 1, j)
        fade = np.minimum(np.minimum(t, t[-1] - t) / 600.0, 1.0) ** 2
        swing = (math.log(price[j]) - s * size * t / t[-1]
                 + 0.7 * fade * site.fluctuation(j, start + 1, j, 300))
        site.write(j, swing)
        sigma = sigma_at(site.ts, site.final, start)
        if not (sigma > 0 and math.isfinite(sigma)):
            return None
        swing_from, swing_to = site.final[j], site.final[start]
        y_level = math.log((swing_to - ratio * (swing_to - swing_from)) / swing_to) / sigma
        y_peak = y_level + s * over
        # Linear fall whose last `gap` s are the overshoot (shorter if the retrace is long).
        fall = min(gap * y_peak / (y_peak - y_level), 900.0)
        stop = site.after(start, fall + 3.0 * reverse)
        tt = site.seconds(start + 1, stop + 1, start)
        rebound = 6.0
        y = np.where(tt <= fall, y_peak * tt / fall,
                     y_peak - s * rebound * -np.expm1(-(tt - fall) * math.log(
                         rebound / (rebound - 4.0)) / reverse))
        # The noise fades in over the first minute so the swing's end stays its extreme.
        noise = np.minimum(tt / 60.0, 1.0) ** 2 * site.fluctuation(
            start + 1, stop + 1, start, NOISE_TICKS)
        trap = math.log(swing_to) + sigma * y + damp * noise
        return Draft(self.name, s, start, j, np.concatenate((swing, trap)), stop, ratio=ratio)

    def bursts(self, m):
        return ((m.values["t_touch"], m.peak, 2.5, 60.0),)


TRAPS: dict[str, type[Trap]] = {
    cls.name: cls for cls in (LiquidityGrab, StopHunt, BullTrap, BearTrap, FibonacciTrap)
}
"""Registry: trap type name → its :class:`Trap` class, in TRAPS.md order."""

TRAP_TYPES: tuple[str, ...] = tuple(TRAPS)
"""The five trap types, in TRAPS.md order."""
