r"""Best bid and ask around the final tick price: a spread in bps, wider in risky or thin trading.

The quoted spread of tick ``t``, in bps of the mid, is

.. math::

    s_t = \mathrm{clip}\Big(b \,
        \big(\hat\sigma_t / \sigma_{\mathrm{ref}}\big)^{\alpha_\sigma}
        \big(q_{\mathrm{ref}} / \hat q_t\big)^{\alpha_q}
        L_{h(t)}^{-\alpha_L} \, e^{n_t},\ s_{\min},\ s_{\max}\Big),

where :math:`\hat\sigma_t` is an exponentially weighted realised volatility of
the 1-second log returns of the prices passed in (the final series, traps
included) and :math:`\hat q_t` the same average of volume, :math:`L_h` the
hour-of-week liquidity profile (the calibrated volume profile, mean 1), and
:math:`n_t` an AR(1) noise that steps every :data:`NOISE_STEP_S` seconds and
holds in between (as the market's own factors do). Spreads widen with
volatility because market makers price adverse selection and inventory risk
(Glosten & Milgrom 1985, J. Financial Economics 14; Ho & Stoll 1981, J.
Financial Economics 9) and narrow with trading
activity (Demsetz 1968, Quarterly J. Economics 82).

The last trade sits at the ask after an up-tick and at the bid after a
down-tick (the tick rule of Lee & Ready 1991, J. Finance 46), at its previous
side after a zero tick, and mid-spread before the first move, so that
``bid <= price <= ask`` always.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from trapsim.core.errors import DataError
from trapsim.core.seeding import rng_for
from trapsim.core.time import HOUR_NS, NS
from trapsim.market.params import MarketParams
from trapsim.market.process import base_variance_per_s, week_profile

# Spreads are kept this relative hair inside [min_bps, max_bps] so that the bounds
# still hold after the float rounding of bid, ask and mid.
_INSIDE = 1e-9

NOISE_STEP_S = 5
"""Seconds the spread noise holds between its AR(1) steps, aligned on the epoch."""
NOISE_STEP_NS = NOISE_STEP_S * NS


@numba.njit(cache=True, nogil=True)
def _states(ts, logp, volume, eps, fresh, state, decay, noise_a, noise_b, log_liquidity,
            vol_floor, var, vol, side, shift):
    """Fill the per-tick states of the spread law, with no transcendental call (numpy
    vectorises those) and no per-tick division (ticks are 1 s apart).

    ``var`` and ``vol`` get the averages of squared log returns and of volume,
    ``side`` 1 after an up-tick and 0 after a down-tick, and ``shift`` the
    noise plus the log liquidity factor. ``fresh``: the first tick begins a
    noise step. ``state`` = [last log price, var, volume, noise, side, noise
    step, whether there is a last price].
    """
    last, v, q, noise, s, seen = state[0], state[1], state[2], state[3], state[4], state[6] > 0
    t0 = ts[0]
    # The epoch fell on a Thursday: hour 72 of its week.
    how = (t0 // HOUR_NS + 72) % 168
    to_hour = -((t0 % HOUR_NS - HOUR_NS) // NS)  # ceil: ticks may sit off whole seconds
    to_step = 0 if fresh else -((t0 % NOISE_STEP_NS - NOISE_STEP_NS) // NS)
    k = 0
    for t in range(ts.shape[0]):
        lp = logp[t]
        r = lp - last if seen else 0.0
        s = (r > 0) + (r == 0) * s  # the tick rule, branch-free: returns are coin flips
        v = decay * v + (1.0 - decay) * r * r
        q = decay * q + (1.0 - decay) * volume[t]
        if to_step == 0:
            noise = noise_a * noise + noise_b * eps[k]
            k += 1
            to_step = -((ts[t] % NOISE_STEP_NS - NOISE_STEP_NS) // NS)
        if to_hour == 0:
            how = how + 1 if how < 167 else 0
            to_hour = HOUR_NS // NS
        var[t] = v
        vol[t] = max(q, vol_floor)
        side[t] = s
        shift[t] = noise + log_liquidity[how]
        to_step -= 1
        to_hour -= 1
        last = lp
        seen = True
    state[0], state[1], state[2], state[3], state[4], state[6] = last, v, q, noise, s, 1.0


@numba.njit(cache=True, nogil=True)
def _sides(price, bps, side, lo, hi, bid, ask):
    """Clip the spread to ``[lo, hi]`` bps and put the last trade at its side of the quote."""
    for t in range(price.shape[0]):
        b = min(max(bps[t], lo), hi)
        p, s = price[t], side[t]
        # Width w with w / mid = b: mid = p + (0.5 - s) * w.
        w = b * p / (1e4 - b * (0.5 - s))
        bid[t] = p - s * w
        ask[t] = p + (1.0 - s) * w


class SpreadModel:
    """Bid/ask quotes of one symbol, stateful across consecutive chunks.

    Parameters
    ----------
    params : MarketParams
        ``params.spread`` sets the spread law; the regime volatilities give the
        reference volatility (their stationary root mean square), the volume
        parameters the reference volume and the hour-of-week liquidity profile.
    seed : int
        Run seed; the noise stream is ``rng_for(seed, "spread/<symbol>")``.
    symbol : str, default "BTC-USD"

    Notes
    -----
    The quotes of a series do not depend on how it is split into calls.
    """

    def __init__(self, params: MarketParams, seed: int, symbol: str = "BTC-USD") -> None:
        sp = params.spread
        self.symbol = symbol
        self._rng = rng_for(seed, f"spread/{symbol}")
        self._var_ref = base_variance_per_s(params)
        self._vol_ref = params.volume.mean_per_minute / 60.0
        season = week_profile(params.seasonality.hour_volume, params.seasonality.weekday_volume)
        self._log_liquidity = -sp.season_elasticity * np.log(season / season.mean())
        self._decay = 0.5 ** (1.0 / sp.halflife_s)
        self._noise_a = math.exp(-NOISE_STEP_S / sp.noise_timescale_s)
        self._noise_b = sp.noise_sd * math.sqrt(1.0 - self._noise_a**2)
        self._sp = sp
        # log b − (α_σ/2)·log var_ref + α_q·log q_ref: the constant of the log spread.
        self._log_base = (math.log(sp.base_bps) - 0.5 * sp.vol_elasticity * math.log(self._var_ref)
                          + sp.volume_elasticity * math.log(self._vol_ref))
        self._state = np.array([0.0, self._var_ref, self._vol_ref,
                                sp.noise_sd * self._rng.standard_normal(), 0.5, -1.0, 0.0])

    def quotes(self, ts: np.ndarray, price: np.ndarray,
               volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Best bid and ask of each tick.

        Parameters
        ----------
        ts : ndarray of int64, shape (n,)
            Tick times, ns UTC, 1 second apart, continuing the previous call.
        price : ndarray of float64, shape (n,)
            Final last-trade prices (quote currency), > 0.
        volume : ndarray of float64, shape (n,)
            Tick volumes (base units), >= 0.

        Returns
        -------
        (bid, ask) : tuple of ndarray of float64, shape (n,)
            ``bid <= price <= ask``, ``bid < ask`` and
            ``min_bps <= (ask - bid) / mid * 1e4 <= max_bps``.

        Raises
        ------
        DataError
            If the arrays differ in shape, or a price is not finite and > 0, or a
            volume is not finite and >= 0.
        """
        ts = np.asarray(ts, dtype=np.int64)
        price = np.asarray(price, dtype=float)
        volume = np.asarray(volume, dtype=float)
        if not (ts.ndim == 1 and price.shape == ts.shape and volume.shape == ts.shape):
            raise DataError(f"quotes: ts, price and volume need one shape, got "
                            f"{ts.shape}, {price.shape}, {volume.shape}")
        if not np.all(np.isfinite(price) & (price > 0)):
            raise DataError("quotes: every price must be finite and > 0")
        if not np.all(np.isfinite(volume) & (volume >= 0)):
            raise DataError("quotes: every volume must be finite and >= 0")
        n = len(ts)
        if n == 0:
            return np.empty(0), np.empty(0)
        logp = np.log(price)
        # Noise steps begun in this call, from its first step on or the one after.
        first, last = int(ts[0]) // NOISE_STEP_NS, int(ts[-1]) // NOISE_STEP_NS
        fresh = first != self._state[5]
        eps = self._rng.standard_normal(last - first + fresh)
        self._state[5] = last
        var, vol, side, x = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
        sp = self._sp
        _states(ts, logp, volume, eps, fresh, self._state, self._decay, self._noise_a,
                self._noise_b, self._log_liquidity, 1e-12 * self._vol_ref, var, vol, side, x)
        # bps = exp(log_base + α_σ/2·log var − α_q·log q + shift), with numpy's SIMD log and exp.
        x += self._log_base
        x += 0.5 * sp.vol_elasticity * np.log(var, out=var)
        x -= sp.volume_elasticity * np.log(vol, out=vol)
        np.exp(x, out=x)
        bid, ask = var, vol  # reused as outputs
        _sides(price, x, side, sp.min_bps * (1 + _INSIDE), sp.max_bps * (1 - _INSIDE), bid, ask)
        return bid, ask
