"""``POST /ingest`` and ``GET /recent``: MarketSimulator's (seed 002) real-time I/O.

External ticks (a venue's, another simulator's) are pushed into the served run
with ``POST /ingest``: each is checked (a symbol of the run, an ISO 8601 time, a
finite price > 0, a finite volume ≥ 0), kept in memory (the last
:data:`KEEP_INGESTED`, not in the run directory), shown by ``GET
/recent?source=ingested`` and published on the WebSocket's ``ingest`` channel. They
never change the simulated market: trapsim's prices come from its own model, and an
ingested tick is a record next to them (to compare a live feed with the run, or to
hand a feed through to the WebSocket's subscribers).

``GET /recent?n=50`` is the seed's ring buffer of the latest events: the last ``n``
ticks, oldest first, as a JSON list; simulated ticks by default (every symbol's,
merged in time order, or one ``symbol``'s), the ingested ones with
``source=ingested``.
"""

import threading
import time
from collections import deque
from decimal import Decimal
from typing import Annotated, Literal

import numpy as np
from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from trapsim.core.time import iso, iso_many, parse_ts

KEEP_INGESTED = 10_000
"""Ingested ticks kept (the oldest go first)."""
MAX_RECENT = 10_000
"""Largest ``n`` of ``GET /recent``."""
MAX_BATCH = 1_000
"""Most ticks in one ``POST /ingest``."""


class IngestTick(BaseModel):
    """One external tick (its ``symbol`` is one of the run's: :func:`request_model`)."""

    model_config = ConfigDict(extra="forbid")
    symbol: str = Field(max_length=32, description="A symbol of the served run.")
    ts: str = Field(max_length=64, description="Time of the tick, ISO 8601 (no offset: UTC).",
                    json_schema_extra={"format": "date-time"})
    price: Decimal = Field(gt=0, lt=10**12, decimal_places=12, description="Last price, "
                           "quote currency: a number or a decimal string.")
    volume: float = Field(0.0, ge=0, lt=1e15, allow_inf_nan=False, strict=True,
                          description="Traded volume, base units.")

    @field_validator("ts")
    @classmethod
    def _iso(cls, text: str) -> str:
        try:
            return iso(parse_ts(text.upper()))  # RFC 3339 allows a lower-case t and z
        except (ValueError, OverflowError):
            raise ValueError(f"{text!r} is not an ISO 8601 time") from None


def request_model(symbols: tuple[str, ...]) -> type[BaseModel]:
    """The body of ``POST /ingest`` for a run of ``symbols``: ``{"ticks": [IngestTick]}``."""
    tick = create_model("IngestTick", __base__=IngestTick,
                        symbol=(Literal[symbols], Field(description="A symbol of the run.")))
    return create_model("IngestRequest", __config__=ConfigDict(extra="forbid"),
                        ticks=(list[tick], Field(min_length=1, max_length=MAX_BATCH)))


class IngestAccepted(BaseModel):
    """The answer of ``POST /ingest`` (the seed's ``status`` and ``buffer_size``)."""

    status: Literal["ok"] = "ok"
    accepted: int = Field(description="Ticks taken from this request.")
    buffer_size: int = Field(description="Ingested ticks kept now.")


class IngestLog:
    """The ingested ticks kept, newest last (safe from any thread).

    Parameters
    ----------
    capacity : int, default :data:`KEEP_INGESTED`
    """

    def __init__(self, capacity: int = KEEP_INGESTED) -> None:
        self.rows: deque[dict] = deque(maxlen=capacity)
        self.lock = threading.Lock()

    def add(self, ticks: list) -> list[dict]:
        """Keep ``ticks``; returns them as rows (``price`` as the decimal text given)."""
        received = iso(time.time_ns() // 1000 * 1000)
        rows = [{"source": "ingested", "symbol": t.symbol, "ts": t.ts,
                 "price": format(t.price, "f"), "volume": t.volume, "received_at": received}
                for t in ticks]
        with self.lock:
            self.rows.extend(rows)
        return rows

    def recent(self, n: int, symbol: str | None = None) -> list[dict]:
        """The last ``n`` rows (of ``symbol`` only, if given), oldest first."""
        with self.lock:
            rows = list(self.rows)
        if symbol is not None:
            rows = [r for r in rows if r["symbol"] == symbol]
        return rows[-n:]

    def __len__(self) -> int:
        return len(self.rows)


def add_ingest_routes(app: FastAPI, served, writer) -> IngestLog:
    """Add ``POST /ingest`` (needs ``writer``) and ``GET /recent`` to ``app``; returns the log
    the ingested ticks go to."""
    log = IngestLog()
    state, specs, symbols = served.state, served.specs, served.state.symbols
    body_model = request_model(symbols)

    @app.post("/ingest", dependencies=[Depends(writer)], summary="Record external ticks "
              "(kept apart from the simulated market; WebSocket channel `ingest`)")
    def ingest(body: body_model) -> IngestAccepted:  # type: ignore[valid-type]
        rows = log.add(body.ticks)
        for symbol in dict.fromkeys(r["symbol"] for r in rows):
            served.hub.publish("ingest", symbol, [r for r in rows if r["symbol"] == symbol])
        return IngestAccepted(accepted=len(rows), buffer_size=len(log))

    @app.get("/recent", summary="The last n ticks, oldest first (the seed's ring buffer)")
    def recent(n: Annotated[int, Query(ge=1, le=MAX_RECENT)] = 50,
               symbol: Annotated[Literal[symbols] | None,  # type: ignore[valid-type]
                                 Query(description="Default: every symbol")] = None,
               source: Literal["simulated", "ingested"] = "simulated") -> list[dict]:
        if source == "ingested":
            return log.recent(n, symbol)
        return _simulated(state, specs, (symbol,) if symbol else symbols, n)

    return log


def _simulated(state, specs, names: tuple[str, ...], n: int) -> list[dict]:
    """The last ``n`` simulated ticks of ``names``, merged in time order (ties in the order of
    ``names``)."""
    cols = [state.recent(s, n) for s in names]
    ts = np.concatenate([c["ts"] for c in cols])
    which = np.concatenate([np.full(len(c["ts"]), i) for i, c in enumerate(cols)])
    at = np.concatenate([np.arange(len(c["ts"])) for c in cols])
    keep = np.lexsort((which, ts))[-n:]
    rows = []
    for i, j, text in zip(which[keep].tolist(), at[keep].tolist(),
                          iso_many(ts[keep]) if len(keep) else [], strict=True):
        c, d = cols[i], specs[names[i]].decimals
        rows.append({"source": "simulated", "symbol": names[i], "ts": text,
                     **{k: f"{c[k][j]:.{d}f}" for k in ("price", "bid", "ask")},
                     "volume": float(c["volume"][j])})
    return rows

