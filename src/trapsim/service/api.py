"""The REST and WebSocket API of ``trapsim serve`` (FastAPI; OpenAPI at ``/docs``).

Paths follow the seeds: the Market Data Simulator's ``/api/v1/…``, ``/chaos/…`` and
``/debug/…``; the trap visualizer's ``/api/metrics``, ``/api/traps`` and
``/api/timeline``; MarketSimulator's ``/health``. Every write endpoint needs the
bearer token (:class:`Access`). Times are ISO 8601 UTC; prices are strings with
the symbol's decimals (DESIGN.md §3: money in JSON is never a binary float).
"""


import secrets
import time
from dataclasses import dataclass
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request, WebSocket
from fastapi.responses import ORJSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST
from pydantic import BaseModel, ConfigDict, create_model

from trapsim.core.errors import ConfigError
from trapsim.core.time import NS, iso, parse_ts
from trapsim.market.ohlcv import INTERVALS
from trapsim.market.symbols import SymbolSpec
from trapsim.scenarios.chaos import (
    CorrelationBreak,
    FeedDisruption,
    GradualDivergence,
    MarketCrash,
    PriceShock,
    StablecoinDepeg,
    VolatilitySpike,
)
from trapsim.service.dashboard import add_dashboard
from trapsim.service.guard import document_errors
from trapsim.service.hub import Hub
from trapsim.service.ingest import add_ingest_routes
from trapsim.service.live import LiveState
from trapsim.service.metrics import exposition
from trapsim.service.replica import Replica
from trapsim.service.runner import Runner
from trapsim.service.scenario_api import add_scenario_route

CHAOS = {"price-shock": PriceShock, "gradual-divergence": GradualDivergence,
         "feed-disruption": FeedDisruption, "stablecoin-depeg": StablecoinDepeg,
         "correlation-break": CorrelationBreak, "volatility-spike": VolatilitySpike,
         "market-crash": MarketCrash}
"""``POST /chaos/<path>`` → the phase it starts (:mod:`trapsim.scenarios.chaos`)."""
MAX_HISTORY_ROWS = 10_000


@dataclass(slots=True)
class Access:
    """Who may write: ``token`` (``TRAPSIM_API_TOKEN``) as ``Authorization: Bearer``; with no
    token, writes are refused unless ``insecure_dev``."""

    token: str | None
    insecure_dev: bool = False


@dataclass(slots=True)
class Served:
    """What the app serves: the running simulation (or, on a replica, its view of the
    primary's), its live state and hub, and access."""

    runner: Runner | Replica
    state: LiveState
    hub: Hub
    specs: dict[str, SymbolSpec]
    access: Access
    started: float


def _request_model(cls):
    """The body of ``POST /chaos/…``: the phase's fields but ``type`` and ``at`` (now)."""
    fields = {name: (f.annotation, f) for name, f in cls.model_fields.items()
              if name not in ("type", "at")}
    return create_model(f"{cls.__name__}Request", __config__=ConfigDict(extra="forbid"),
                        **fields)


def money(x: float, decimals: int) -> str:
    """A price as text with the symbol's ``decimals`` (money in JSON is never a binary float)."""
    return f"{x:.{decimals}f}"


class ScenarioStarted(BaseModel):
    scenario_id: str
    type: str
    status: str = "starting"


def create_app(served: Served) -> FastAPI:
    """The FastAPI app over a served run."""
    app = FastAPI(title="trapsim", default_response_class=ORJSONResponse,
                  description="Live multi-asset market simulation with labelled traps and "
                  "chaos. Write endpoints need `Authorization: Bearer <TRAPSIM_API_TOKEN>`.")
    state, runner, specs = served.state, served.runner, served.specs
    symbols = state.symbols
    replica = runner if isinstance(runner, Replica) else None

    def known(symbol: str) -> str:
        if symbol not in symbols:
            raise HTTPException(404, f"unknown symbol {symbol!r}; the run has "
                                f"{', '.join(symbols)}")
        return symbol

    # Handlers that only look up the live state are coroutines, run on the event loop; those
    # that compute over the kept ticks are plain functions, run in the thread pool.
    async def symbol_of(symbol: str) -> str:
        return known(symbol)

    def writer(request: Request) -> None:
        if replica is not None:
            raise HTTPException(409, replica.refusal())
        access = served.access
        if access.token is None:
            if not access.insecure_dev:
                raise HTTPException(403, "write endpoints are off: set TRAPSIM_API_TOKEN "
                                    "(or run with --insecure-dev)")
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not secrets.compare_digest(
                given.encode(), access.token.encode()):
            raise HTTPException(401, "a valid 'Authorization: Bearer <token>' header is needed",
                                headers={"WWW-Authenticate": "Bearer"})

    Symbol = Annotated[str, Depends(symbol_of)]

    @app.get("/health")
    async def health() -> dict:
        t = runner.market_ts
        status = "ended" if state.ended else "ok"
        if replica is not None and not replica.live and not state.ended:
            status = "stale"  # the primary is not heard: what is served may be old
        return {"status": status, "uptime_s": time.monotonic() - served.started,
                "symbols": list(symbols), "market_time": iso(t) if t is not None else None,
                "websocket_clients": len(served.hub.clients),
                "role": "primary" if replica is None else "replica",
                **({"primary": replica.primary()} if replica is not None else {})}

    @app.get("/api/v1/prices/{symbol}/current")
    async def current(symbol: Symbol) -> dict:
        cols = state.recent(symbol, 1)
        if not len(cols["ts"]):
            raise HTTPException(503, f"no {symbol} tick yet")
        d = specs[symbol].decimals
        return {"symbol": symbol, "ts": iso(int(cols["ts"][0])),
                **{k: money(float(cols[k][0]), d) for k in ("price", "bid", "ask")},
                "volume": float(cols["volume"][0]), "regime": state.regime.get(symbol)}

    @app.get("/api/v1/prices/{symbol}/history")
    def history(symbol: Symbol,
                start: Annotated[str | None, Query(description="ISO 8601 UTC")] = None,
                end: Annotated[str | None, Query(description="ISO 8601 UTC, exclusive")] = None,
                interval: Annotated[str, Query(description="1s (ticks) or a candle interval: "
                                               + ", ".join(INTERVALS))] = "1m") -> dict:
        lo, hi = _time(start, "start"), _time(end, "end")
        if lo is not None and hi is not None and hi <= lo:
            raise HTTPException(422, "end must be after start")
        d = specs[symbol].decimals
        if interval == "1s":
            cols = state.recent(symbol)
            keep = np.ones(len(cols["ts"]), bool)
            if lo is not None:
                keep &= cols["ts"] >= lo
            if hi is not None:
                keep &= cols["ts"] < hi
            idx = np.flatnonzero(keep)[-MAX_HISTORY_ROWS:]
            rows = [{"ts": iso(int(cols["ts"][i])), "price": money(float(cols["price"][i]), d),
                     "volume": float(cols["volume"][i])} for i in idx]
        elif interval in INTERVALS:
            rows = [{"ts": r["ts"], "volume": r["volume"],
                     **{k: money(r[k], d) for k in ("open", "high", "low", "close")}}
                    for r in state.candle_rows(symbol, interval)
                    if within(r["ts"], lo, hi)][-MAX_HISTORY_ROWS:]
        else:
            raise HTTPException(422, f"unknown interval {interval!r}; use 1s or one of "
                                f"{', '.join(INTERVALS)}")
        return {"symbol": symbol, "interval": interval, "rows": rows}

    @app.get("/api/v1/regimes/{symbol}", summary="The symbol's regime changes kept (5,000)")
    async def regimes(symbol: Symbol) -> dict:
        return {"symbol": symbol, "changes": state.regime_changes(symbol)}

    @app.get("/api/v1/orderbook/{symbol}")
    async def orderbook(symbol: Symbol) -> dict:
        book = state.books.get(symbol)
        if book is None:
            raise HTTPException(503, f"no {symbol} book yet (the run takes depth snapshots "
                                "every --depth-every seconds; 0 turns them off)")
        d = specs[symbol].decimals
        return {**book, **{side: [[money(p, d), q] for p, q in book[side]]
                           for side in ("bids", "asks")}}

    @app.get("/api/v1/stats/{symbol}/24h")
    def stats_24h(symbol: Symbol) -> dict:
        cols = state.recent(symbol)
        if not len(cols["ts"]):
            raise HTTPException(503, f"no {symbol} tick yet")
        keep = cols["ts"] > cols["ts"][-1] - 86_400 * NS
        p, v = cols["price"][keep], cols["volume"][keep]
        d = specs[symbol].decimals
        return {"symbol": symbol, "from": iso(int(cols["ts"][keep][0])),
                "to": iso(int(cols["ts"][-1])), "open": money(p[0], d),
                "high": money(p.max(), d), "low": money(p.min(), d),
                "last": money(p[-1], d), "change_pct": float(100 * (p[-1] / p[0] - 1)),
                "volume": float(v.sum()), "vwap": money(float((p * v).sum() / v.sum()), d)
                if v.sum() > 0 else None, "ticks": int(keep.sum())}

    @app.get("/api/v1/correlations")
    def correlations(symbols_: Annotated[str | None, Query(
            alias="symbols", description="Comma-separated; default all")] = None) -> dict:
        names = symbols if not symbols_ else tuple(s.strip() for s in symbols_.split(","))
        for s in names:
            known(s)
        return {"symbols": list(names), "interval": "1m", **correlation(state, names)}

    @app.get("/api/metrics", summary="The run's statistics (refreshed every 2 wall seconds)")
    async def metrics() -> dict:
        report = dict(state.report) or {"ticks": 0, "traps": None}  # before the first
        report["hf"] = state.hf
        report["websocket"] = {"clients": len(served.hub.clients),
                               "dropped_slow": served.hub.dropped}
        return report

    @app.get("/api/traps")
    def traps(type: str | None = None, since: str | None = None, until: str | None = None,
              min_confidence: Annotated[float | None, Query(ge=0, le=1)] = None,
              source: Annotated[str, Query(pattern="^(injected|detected)$")] = "injected",
              ) -> dict:
        lo, hi = _time(since, "since"), _time(until, "until")
        if source == "injected":
            rows = [lb for lb in list(state.label_log) if lb["kind"] == "trap"]
            rows = [r for r in rows if (type is None or r["type"] == type)
                    and within(r["start_ts"], lo, hi)]
        else:
            rows = [r for r in list(state.detection_log)
                    if (type is None or r["trap_type"] == type) and within(r["start"], lo, hi)
                    and (min_confidence is None or r["confidence"] >= min_confidence)]
        return {"source": source, "count": len(rows), "traps": rows}

    @app.get("/api/timeline")
    def timeline() -> dict:
        events = [{"ts": lb["start_ts"], "kind": lb["kind"], "type": lb["type"],
                   "symbol": lb["symbol"], "end_ts": lb["end_ts"], "id": lb["id"]}
                  for lb in list(state.label_log)]
        events += [{"ts": r["detected_at"], "kind": "detection", "type": r["trap_type"],
                    "confidence": r["confidence"]} for r in list(state.detection_log)]
        events += [{"ts": a["ts"], "kind": "alert", "type": a["event"], "symbol": a["symbol"]}
                   for a in list(state.alert_log)]
        return {"events": sorted(events, key=lambda e: e["ts"])}

    for path, cls in CHAOS.items():
        _chaos_endpoint(app, path, cls, runner, writer)

    @app.get("/chaos/active-scenarios")
    async def active() -> dict:
        return {"scenarios": runner.scenarios()}

    @app.delete("/chaos/stop-scenario/{scenario_id}", dependencies=[Depends(writer)])
    async def stop(scenario_id: str) -> dict:
        if not any(s["scenario_id"] == scenario_id for s in runner.scenarios()):
            raise HTTPException(404, f"no active or scheduled scenario {scenario_id!r}")
        runner.stop_scenario(scenario_id)
        return {"scenario_id": scenario_id, "status": "stopping"}

    @app.get("/debug/price-buffers")
    async def buffers() -> dict:
        return {s: {"ticks_kept": len(state.rings[s]), "capacity": state.rings[s].capacity,
                    "ticks_published": state.counts[s]} for s in symbols}

    @app.get("/debug/scenario-timeline")
    async def scenario_timeline() -> dict:
        return {"scenarios": runner.scenarios(ended=True)}

    @app.get("/debug/correlation-matrix")
    def debug_correlations() -> dict:
        return {"symbols": list(symbols), **correlation(state, symbols)}

    @app.get("/debug/data-sources/status")
    async def sources() -> dict:
        t = runner.market_ts
        return {"sources": [{"name": "synthetic", "priority": 1, "status": "ended" if
                             state.ended else "live", "last_ts": iso(t) if t is not None
                             else None}]}

    @app.get("/metrics", response_class=PlainTextResponse,
             summary="Prometheus text format (market_data_* metrics)")
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(exposition(served), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/ws")
    async def ws(socket: WebSocket) -> None:
        await socket.accept()
        await served.hub.serve(socket)

    add_dashboard(app)
    add_ingest_routes(app, served, writer)
    add_scenario_route(app, served, writer)
    document_errors(app, symbols)
    return app


def _chaos_endpoint(app: FastAPI, path: str, cls, runner: Runner, writer) -> None:
    body_model = _request_model(cls)
    kind = cls.model_fields["type"].annotation.__args__[0]

    def start(body: body_model) -> ScenarioStarted:  # type: ignore[valid-type]
        try:
            phase = cls(type=kind, at="0s", **body.model_dump())
            key = runner.start_scenario(phase)
        except ConfigError as exc:
            raise HTTPException(422, str(exc)) from None
        return ScenarioStarted(scenario_id=key, type=kind)

    start.__name__ = f"start_{kind}"
    app.post(f"/chaos/{path}", status_code=202, dependencies=[Depends(writer)],
             summary=f"Start a {kind} now")(start)


def _time(text: str | None, name: str) -> int | None:
    if text is None:
        return None
    try:
        return parse_ts(text)
    except ValueError:
        raise HTTPException(422, f"{name}: {text!r} is not an ISO 8601 time") from None


def within(ts: str, lo: int | None, hi: int | None) -> bool:
    """Whether ISO time ``ts`` lies in ``[lo, hi)`` (ns; None: unbounded)."""
    t = parse_ts(ts)
    return (lo is None or t >= lo) and (hi is None or t < hi)


def correlation(state: LiveState, names: tuple[str, ...]) -> dict:
    """Correlation of 1-minute log returns over the kept ticks."""
    closes = []
    for s in names:
        cols = state.recent(s)
        closes.append(cols["price"][59::60])
    n = min(len(c) for c in closes)
    if n < 3:
        return {"matrix": None, "returns": 0}
    r = np.diff(np.log(np.vstack([c[-n:] for c in closes])), axis=1)
    m = np.corrcoef(r)
    return {"matrix": [[None if not np.isfinite(x) else float(x) for x in row] for row in m],
            "returns": int(r.shape[1])}
