"""User-facing column schemas (DESIGN.md §3) as Arrow schemas, the in-memory tick batch, and
rows → table for detections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

TS = pa.timestamp("ns", tz="UTC")

TICKS = pa.schema(
    [
        ("ts", TS),
        ("symbol", pa.string()),
        ("price", pa.float64()),
        ("bid", pa.float64()),
        ("ask", pa.float64()),
        ("volume", pa.float64()),
        ("regime", pa.string()),
    ]
)
"""One row per tick: last price, best bid and ask (quote currency), volume (base units)."""

CANDLES = pa.schema(
    [
        ("ts", TS),
        ("symbol", pa.string()),
        ("interval", pa.string()),
        ("open", pa.float64()),
        ("high", pa.float64()),
        ("low", pa.float64()),
        ("close", pa.float64()),
        ("volume", pa.float64()),
    ]
)
"""OHLCV candles; ``ts`` is the candle's open time."""

LABELS = pa.schema(
    [
        ("id", pa.int64()),
        ("kind", pa.string()),
        ("type", pa.string()),
        ("symbol", pa.string()),
        ("direction", pa.string()),
        ("start_ts", TS),
        ("peak_ts", TS),
        ("end_ts", TS),
        ("magnitude", pa.float64()),
        ("params", pa.string()),
    ]
)
"""Ground-truth labels (TRAPS.md); ``params`` is a JSON object."""

DETECTIONS = pa.schema(
    [
        ("detected_at", TS),
        ("trap_type", pa.string()),
        ("direction", pa.string()),
        ("start", TS),
        ("confidence", pa.float64()),
        ("features", pa.string()),
    ]
)
"""Detector output (TRAPS.md): ``detected_at`` is the last tick seen when the row was
emitted; ``start`` the detected fake move's first tick; ``features`` a JSON object."""

DEPTH = pa.schema(
    [
        ("ts", TS),
        ("symbol", pa.string()),
        ("bid_price", pa.list_(pa.float64())),
        ("bid_qty", pa.list_(pa.float64())),
        ("ask_price", pa.list_(pa.float64())),
        ("ask_qty", pa.list_(pa.float64())),
    ]
)
"""L2 depth snapshots, one row per snapshot: each list holds one value per price level,
best first (element 0 = level 0); ``*_price`` in quote currency, ``*_qty`` resting base
units. One row per snapshot keeps a 10-level book at 20× fewer rows than one row per level."""

FUNDING = pa.schema(
    [("ts", TS), ("symbol", pa.string()), ("rate", pa.float64()), ("mark_price", pa.float64())]
)
"""Funding events of a perpetual: ``rate`` per funding interval as a fraction (longs pay
shorts when positive), ``mark_price`` the perpetual's price at ``ts``."""

ALERTS = pa.schema(
    [
        ("ts", TS),
        ("symbol", pa.string()),
        ("event", pa.string()),
        ("price", pa.float64()),
        ("value", pa.float64()),
    ]
)
"""Publication alerts of a symbol (:mod:`trapsim.feeds.guard`): ``event`` one of
``price_out_of_range``, ``price_in_range``, ``circuit_breaker_tripped``,
``circuit_breaker_reset``, ``depeg_alert``, ``depeg_cleared``; ``price`` the tick's;
``value`` the band edge crossed, the move, or the distance from the peg."""

CONSENSUS = pa.schema(
    [
        ("ts", TS),
        ("symbol", pa.string()),
        ("price", pa.float64()),
        ("confidence", pa.float64()),
        ("primary", pa.string()),
        ("sources", pa.string()),
    ]
)
"""Published consensus prices of a run on live sources: ``ts`` the arrival time of the
update, ``confidence`` in [0, 1], ``primary`` the source carrying the feed, ``sources`` the
sources averaged (comma-separated)."""

FEED = pa.schema(
    [
        ("ts", TS),
        ("recv_ts", TS),
        ("symbol", pa.string()),
        ("price", pa.float64()),
        ("bid", pa.float64()),
        ("ask", pa.float64()),
        ("volume", pa.float64()),
    ]
)
"""What subscribers received during a run with feed faults: each delivered tick with the
market time it describes (``ts``) and the time it arrived (``recv_ts``)."""

HF_ACTIVATIONS = pa.schema(
    [
        ("start_ts", TS),
        ("end_ts", TS),
        ("trap_count", pa.int64()),
        ("types", pa.string()),
    ]
)
"""HF mode activations (TRAPS.md); ``types`` is a JSON list of trap types in order."""


@dataclass(frozen=True, slots=True)
class TickBatch:
    """A columnar batch of ticks of one symbol.

    All arrays have shape ``(n,)``. ``ts`` is int64 ns UTC; ``price``, ``bid``,
    ``ask`` are float64 in quote currency; ``volume`` float64 in base units;
    ``regime`` int8 codes into ``regime_names``.
    """

    symbol: str
    ts: np.ndarray
    price: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    volume: np.ndarray
    regime: np.ndarray
    regime_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, lo: int, hi: int) -> TickBatch:
        """Rows ``lo:hi`` as a new batch (views, no copy)."""
        return TickBatch(
            self.symbol,
            self.ts[lo:hi],
            self.price[lo:hi],
            self.bid[lo:hi],
            self.ask[lo:hi],
            self.volume[lo:hi],
            self.regime[lo:hi],
            self.regime_names,
        )

    def take(self, rows: np.ndarray) -> TickBatch:
        """The rows a bool mask or an index array selects, as a new batch (copies)."""
        return TickBatch(self.symbol, *(getattr(self, f)[rows] for f in (
            "ts", "price", "bid", "ask", "volume", "regime")), self.regime_names)

    def to_arrow(self) -> pa.Table:
        """The batch as an Arrow table with the :data:`TICKS` schema."""
        return pa.table(
            {
                "ts": pa.array(self.ts, pa.int64()).cast(TS),
                "symbol": pa.repeat(pa.scalar(self.symbol), len(self.ts)),
                "price": self.price,
                "bid": self.bid,
                "ask": self.ask,
                "volume": self.volume,
                "regime": pa.array(self.regime_names, pa.string()).take(
                    pa.array(self.regime, pa.int8())),
            },
            schema=TICKS,
        )


def detections_table(rows: Sequence[dict]) -> pa.Table:
    """Detection dicts (times in int ns) as an Arrow table with the ``DETECTIONS`` schema."""
    cols = {name: [row[name] for row in rows] for name in DETECTIONS.names}
    return pa.table(
        {
            "detected_at": pa.array(cols["detected_at"], pa.int64()).cast(DETECTIONS.field(0).type),
            "trap_type": pa.array(cols["trap_type"], pa.string()),
            "direction": pa.array(cols["direction"], pa.string()),
            "start": pa.array(cols["start"], pa.int64()).cast(DETECTIONS.field(3).type),
            "confidence": pa.array(cols["confidence"], pa.float64()),
            "features": pa.array(cols["features"], pa.string()),
        },
        schema=DETECTIONS,
    )
