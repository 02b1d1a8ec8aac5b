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
:math:`n_t` an AR(1) noise. Spreads widen with volatility because market makers
price adverse selection and inventory risk (Glosten & Milgrom 1985, J. Financial
Economics 14; Ho & Stoll 1981, J. Financial Economics 9) and narrow with trading
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
from trapsim.market.params import MarketParams
from trapsim.market.process import SECONDS_PER_YEAR, hour_of_week, week_profile

# Spreads are kept this relative hair inside [min_bps, max_bps] so that the bounds
# still hold after the float rounding of bid, ask and mid.
_INSIDE = 1e-9


@numba.njit(cache=True)
def _quotes(price, volume, how, eps, state, decay, noise_a, noise_b, var_ref, vol_ref,
            liquidity, base, a_sigma, a_volume, lo, hi, bid, ask):
    """Fill ``bid`` and ``ask``; ``state`` = [last price (0: none), var, volume, noise, side]."""
    last, var, vol, noise, side = state[0], state[1], state[2], state[3], state[4]
    log_var_ref, log_vol_ref = math.log(var_ref), math.log(vol_ref)
    for t in range(price.shape[0]):
        p = price[t]
        r = math.log(p / last) if last > 0 else 0.0
        if r > 0:
            side = 1.0
        elif r < 0:
            side = 0.0
        var = decay * var + (1.0 - decay) * r * r
        vol = decay * vol + (1.0 - decay) * volume[t]
        noise = noise_a * noise + noise_b * eps[t]
        # The same product as base·(var/var_ref)^(a_σ/2)·(vol_ref/vol)^a_q·L·e^noise,
        # in logs: two logs and one exp per tick instead of two pows and an exp.
        bps = base * liquidity[how[t]] * math.exp(
            0.5 * a_sigma * (math.log(var) - log_var_ref)
            + a_volume * (log_vol_ref - math.log(max(vol, 1e-12 * vol_ref)))
            + noise
        )
        bps = min(max(bps, lo), hi)
        # Width w with w / mid = bps: mid = p + (0.5 - side) * w.
        w = bps * p / (1e4 - bps * (0.5 - side))
        bid[t] = p - side * w
        ask[t] = p + (1.0 - side) * w
        last = p
    state[0], state[1], state[2], state[3], state[4] = last, var, vol, noise, side


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
        ann = np.asarray(params.regimes.ann_vol)
        self._var_ref = float(params.regimes.stationary() @ ann**2) / SECONDS_PER_YEAR
        self._vol_ref = params.volume.mean_per_minute / 60.0
        season = week_profile(params.seasonality.hour_volume, params.seasonality.weekday_volume)
        self._liquidity = (season / season.mean()) ** -sp.season_elasticity
        self._decay = 0.5 ** (1.0 / sp.halflife_s)
        self._noise_a = math.exp(-1.0 / sp.noise_timescale_s)
        self._noise_b = sp.noise_sd * math.sqrt(1.0 - self._noise_a**2)
        self._sp = sp
        self._state = np.array(
            [0.0, self._var_ref, self._vol_ref, sp.noise_sd * self._rng.standard_normal(), 0.5]
        )

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
        how = hour_of_week(ts)
        eps = self._rng.standard_normal(len(ts))
        bid, ask = np.empty(len(ts)), np.empty(len(ts))
        sp = self._sp
        _quotes(price, volume, how, eps, self._state, self._decay, self._noise_a,
                self._noise_b, self._var_ref, self._vol_ref, self._liquidity, sp.base_bps,
                sp.vol_elasticity, sp.volume_elasticity, sp.min_bps * (1 + _INSIDE),
                sp.max_bps * (1 - _INSIDE), bid, ask)
        return bid, ask
