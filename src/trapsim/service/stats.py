"""Running statistics of a run: traps, HF activations, regimes, prices, returns."""

from __future__ import annotations

from collections import Counter

import numpy as np

from trapsim.core.schemas import TickBatch
from trapsim.core.time import iso
from trapsim.market.realism import MINUTES_PER_YEAR, excess_kurtosis


class RunStats:
    """Accumulates the statistics report of a run batch by batch.

    Parameters
    ----------
    regime_names : tuple of str
        Regime names, indexed by the ticks' regime codes.
    trap_types : tuple of str
        Trap types reported (zero counts included).
    symbols : tuple of str, default ("BTC-USD",)
        The run's symbols; the headline figures (ticks, price, regimes) are the first's,
        ``symbols`` in the report has each one's prices and traps.
    """

    def __init__(self, regime_names: tuple[str, ...], trap_types: tuple[str, ...],
                 symbols: tuple[str, ...] = ("BTC-USD",)) -> None:
        self.headline = symbols[0]
        self.prices = {s: [None, None, np.inf, -np.inf] for s in symbols}  # first last lo hi
        self.symbol_traps: Counter[str] = Counter(dict.fromkeys(symbols, 0))
        self.regime_names = regime_names
        self.regime_ticks = np.zeros(len(regime_names), np.int64)
        self.traps: Counter[str] = Counter(dict.fromkeys(trap_types, 0))
        self.chaos: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()  # publication alerts by event
        self.hf_activations = 0
        self.ticks = 0
        self.first_ts = self.last_ts = None
        self.first_price = self.last_price = None
        self.low = np.inf
        self.high = -np.inf
        self.minute_closes: list[np.ndarray] = []

    def add_ticks(self, batch: TickBatch) -> None:
        if not len(batch):
            return
        p = self.prices[batch.symbol]
        p[0] = float(batch.price[0]) if p[0] is None else p[0]
        p[1] = float(batch.price[-1])
        p[2] = min(p[2], float(batch.price.min()))
        p[3] = max(p[3], float(batch.price.max()))
        if batch.symbol != self.headline:
            return
        if self.first_ts is None:
            self.first_ts, self.first_price = int(batch.ts[0]), float(batch.price[0])
        self.last_ts, self.last_price = int(batch.ts[-1]), float(batch.price[-1])
        self.ticks += len(batch)
        self.low = min(self.low, float(batch.price.min()))
        self.high = max(self.high, float(batch.price.max()))
        self.regime_ticks += np.bincount(batch.regime, minlength=len(self.regime_names))

    def add_candles(self, close: np.ndarray) -> None:
        """Closes of completed 1-minute candles, for the return statistics."""
        self.minute_closes.append(np.asarray(close, np.float64))

    def add_labels(self, labels: list[dict]) -> None:
        self.traps.update(lb["type"] for lb in labels if lb["kind"] == "trap")
        self.symbol_traps.update(lb["symbol"] for lb in labels if lb["kind"] == "trap")
        self.chaos.update(lb["type"] for lb in labels if lb["kind"] != "trap")

    def add_alerts(self, alerts: list[dict]) -> None:
        self.alerts.update(a["event"] for a in alerts)

    def report(self) -> dict:
        """The report as a JSON-ready dict (``None`` where a number is undefined)."""
        hours = self.ticks / 3600
        total = sum(self.traps.values())
        out: dict = {
            "ticks": self.ticks,
            "market_start": iso(self.first_ts) if self.first_ts is not None else None,
            "market_end": iso(self.last_ts) if self.last_ts is not None else None,
            "market_hours": hours,
            "traps": {
                "total": total,
                "per_hour": total / hours if hours else 0.0,
                "per_type": dict(self.traps),
            },
            "chaos": dict(self.chaos),
            "alerts": dict(self.alerts),
            "hf_activations": self.hf_activations,
            "regime_share": {
                name: float(n / self.ticks) if self.ticks else 0.0
                for name, n in zip(self.regime_names, self.regime_ticks, strict=True)
            },
            "price": {
                "first": self.first_price,
                "last": self.last_price,
                "low": self.low if self.ticks else None,
                "high": self.high if self.ticks else None,
            },
            "returns_1m": _return_stats(self.minute_closes),
        }
        if len(self.prices) > 1:
            out["symbols"] = {
                s: {"first": p[0], "last": p[1], "low": p[2] if p[0] is not None else None,
                    "high": p[3] if p[0] is not None else None, "traps": self.symbol_traps[s]}
                for s, p in self.prices.items()}
        return out


def _return_stats(closes: list[np.ndarray]) -> dict:
    c = np.concatenate(closes) if closes else np.empty(0)
    r = np.diff(np.log(c))
    if len(r) < 2:
        return {"count": int(len(r))}
    kurt = excess_kurtosis(r)
    return {
        "count": int(len(r)),
        "mean": float(r.mean()),
        "std": float(r.std()),
        "annualised_volatility": float(r.std() * np.sqrt(MINUTES_PER_YEAR)),
        "excess_kurtosis": kurt if np.isfinite(kurt) else None,
        "min": float(r.min()),
        "max": float(r.max()),
    }
