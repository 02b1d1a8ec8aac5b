"""What subscribers receive of a symbol: its price grid, band, circuit breaker, depeg alert.

A :class:`PublicationGuard` applies one symbol's settings
(:class:`~trapsim.market.symbols.SymbolSpec`, the seed's ``supported_symbols``) to
the ticks on their way to subscribers:

- prices go out with the symbol's ``decimals`` (:meth:`PublicationGuard.quote`:
  bid rounded down, ask up, so a quote never crosses); the run directory's ticks keep
  full precision, as the trap labels are measured on them;
- a price outside ``[min_price, max_price]`` is withheld (``price_out_of_range``
  when the price leaves the band, ``price_in_range`` when it is back);
- a move above ``circuit_breaker_threshold`` within 60 s halts the symbol for 300 s
  (:class:`~trapsim.feeds.consensus.CircuitBreaker`: ``circuit_breaker_tripped``,
  ``circuit_breaker_reset``);
- a price further than ``depeg_alert_threshold`` from 1.0 raises ``depeg_alert``
  (``depeg_cleared`` once it is back within half of it); the ticks still go out.

Each event is an alert: a dict with ``ts`` (int ns), ``symbol``, ``event``,
``price`` and ``value`` (the move, the distance from the peg, or the band edge
crossed), also logged as one JSON line. The market itself is never changed.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from trapsim.core.schemas import TickBatch
from trapsim.core.time import iso
from trapsim.feeds.consensus import CircuitBreaker
from trapsim.market.symbols import SymbolSpec

log = logging.getLogger("trapsim.feeds")

PEG = 1.0
"""The price a stablecoin's depeg alert measures from."""
CLEAR_RATIO = 0.5
"""A depeg alert clears once the price is back within this share of the threshold."""


class PublicationGuard:
    """One symbol's publication rules (the module docstring), carried across batches.

    Parameters
    ----------
    spec : SymbolSpec
        The symbol's settings.
    """

    def __init__(self, spec: SymbolSpec) -> None:
        self.spec = spec
        threshold = spec.circuit_breaker_threshold
        self.breaker = (CircuitBreaker(threshold, symbol=spec.symbol) if threshold is not None
                        else None)
        self._outside = False  # the last price was outside the band
        self._edge = spec.max_price  # the band edge it crossed
        self._depegged = False

    def check(self, ticks: TickBatch) -> tuple[np.ndarray, list[dict]]:
        """Which ticks subscribers get, and the alerts they raise.

        Parameters
        ----------
        ticks : TickBatch
            The symbol's next ticks, continuing the last call.

        Returns
        -------
        keep : numpy.ndarray of bool, shape (len(ticks),)
        alerts : list of dict
            In time order (the module docstring).
        """
        s = self.spec
        price = ticks.price
        inside = (price >= s.min_price) & (price <= s.max_price)
        alerts = []
        for i, now_out in self._changes(~inside, "_outside"):
            if now_out:
                self._edge = s.min_price if price[i] < s.min_price else s.max_price
            alerts.append(self._alert(ticks, i, "price_out_of_range" if now_out
                                      else "price_in_range", self._edge))
        keep = inside
        if self.breaker is not None:
            # The breaker watches what would be published: a bad print is not a move.
            allowed = np.zeros(len(price), bool)
            allowed[inside] = self.breaker.allow_many(ticks.ts[inside], price[inside])
            keep = allowed
            for e in self.breaker.events:
                i = int(np.searchsorted(ticks.ts, e["ts"]))
                alerts.append(self._alert(ticks, i, e["event"], e.get("move", 0.0), log_it=False))
            self.breaker.events.clear()
        if s.depeg_alert_threshold is not None:
            dev = np.abs(price / PEG - 1.0)
            # Hysteresis: raised above the threshold, cleared below half of it, so noise
            # around the threshold does not flood subscribers with alerts.
            i = np.arange(len(dev))
            last_on = np.maximum.accumulate(np.where(dev > s.depeg_alert_threshold, i, -1))
            last_off = np.maximum.accumulate(
                np.where(dev < CLEAR_RATIO * s.depeg_alert_threshold, i, -1))
            state = np.where(np.maximum(last_on, last_off) < 0, self._depegged,
                             last_on > last_off)
            for i, now in self._changes(state, "_depegged"):
                alerts.append(self._alert(ticks, i, "depeg_alert" if now else "depeg_cleared",
                                          dev[i]))
        alerts.sort(key=lambda a: a["ts"])
        return keep, alerts

    def quote(self, ticks: TickBatch) -> TickBatch:
        """The ticks with price, bid and ask on the symbol's price grid."""
        price, bid, ask = self.spec.on_grid(ticks.price, ticks.bid, ticks.ask)
        return TickBatch(ticks.symbol, ticks.ts, price, bid, ask, ticks.volume, ticks.regime,
                         ticks.regime_names)

    def _changes(self, state: np.ndarray, attr: str) -> list[tuple[int, bool]]:
        """``(index, new state)`` where a flag changes, carried in ``attr`` across calls."""
        prev = np.concatenate([[getattr(self, attr)], state[:-1]])
        at = np.flatnonzero(state != prev)
        if len(state):
            setattr(self, attr, bool(state[-1]))
        return [(int(i), bool(state[i])) for i in at]

    def _alert(self, ticks: TickBatch, i: int, event: str, value: float,
               log_it: bool = True) -> dict:
        alert = {"ts": int(ticks.ts[i]), "symbol": ticks.symbol, "event": event,
                 "price": float(ticks.price[i]), "value": float(value)}
        if log_it:  # the breaker logs its own
            log.warning(json.dumps({**alert, "ts": iso(alert["ts"])}))
        return alert
