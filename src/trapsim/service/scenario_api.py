"""``POST /scenario``: a free-text narrative → chaos phases and projected candles (seed 002).

The narrative is read by the keyword rules of :mod:`trapsim.scenarios.narrative`;
the phases they build are checked as a ``POST /chaos/…`` phase is (parameter
ranges, the run's symbols, the guard rails), projected from the current prices
(:mod:`trapsim.scenarios.projection`) and, with ``"start": true`` and the API
token, started now through the runner. Without ``start`` the call changes nothing
and needs no token (a projection only).
"""

import hashlib
from typing import Literal

import numpy as np
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from trapsim.core.config import describe
from trapsim.core.errors import ConfigError
from trapsim.core.time import HOUR_NS, NS, iso, iso_many
from trapsim.market.ohlcv import INTERVALS
from trapsim.scenarios.chaos import Phase
from trapsim.scenarios.narrative import KEYWORDS, interpret
from trapsim.scenarios.projection import project
from trapsim.service.replica import Replica

MAX_HOURS = 72
"""Longest projection (``steps`` × ``interval``), hours."""
MAX_PHASES = 8
"""Most phases one narrative may describe (each is applied to every projected tick)."""
PHASE = TypeAdapter(Phase)


class ScenarioRequest(BaseModel):
    """The body of ``POST /scenario`` (the seed's ``text`` and ``steps``)."""

    model_config = ConfigDict(extra="forbid")
    text: str = Field(min_length=1, max_length=2000, description="The narrative.",
                      examples=["what if a major stablecoin loses its peg",
                                "a mild flash crash of ETH, then exchanges go offline"])
    steps: int = Field(24, ge=1, le=MAX_HOURS * 60, strict=True,
                       description="Candles projected.")
    interval: Literal[tuple(INTERVALS)] = Field(  # type: ignore[valid-type]
        "1h", description="Candle interval of the projection.")
    start: bool = Field(False, strict=True,
                        description="Also start the phases now (needs the token).")

    @model_validator(mode="after")
    def _horizon(self):
        if self.steps * INTERVALS[self.interval] > MAX_HOURS * HOUR_NS:
            raise ValueError(f"steps × interval covers more than {MAX_HOURS} hours")
        return self


def add_scenario_route(app: FastAPI, served, writer) -> None:
    """Add ``POST /scenario`` to ``app``; ``writer`` guards ``start``."""
    runner, state, specs = served.runner, served.state, served.specs
    symbols = state.symbols

    @app.post("/scenario", summary="Narrative → chaos phases and projected candles "
              "(start them with \"start\": true and the token)")
    def scenario(body: ScenarioRequest, request: Request) -> dict:
        if isinstance(runner, Replica):  # projecting needs the run's market model
            raise HTTPException(409, runner.refusal())
        if body.start:
            writer(request)
        fired = interpret(body.text)
        if not fired:
            known = "; ".join(f"{rule}: {', '.join(words)}" for rule, words in KEYWORDS.items())
            raise HTTPException(422, f"no scenario rule matched the text; known keywords "
                                f"(word starts) — {known}")
        if len(fired) > MAX_PHASES:
            raise HTTPException(422, f"the text describes {len(fired)} phases; at most "
                                f"{MAX_PHASES}")
        phases = []
        for i, f in enumerate(fired):
            where = f"rule {f.rule} (keyword {f.keyword!r})"
            try:
                phase = PHASE.validate_python({**f.phase, "at": "0s"})
                runner.sim.check_phase(phase, f"narrative-{i}")
            except ValidationError as err:
                raise HTTPException(422, describe(err, where)) from None
            except ConfigError as exc:
                raise HTTPException(422, f"{where}: {exc}") from None
            phases.append(phase)
        # The run writes the symbols' ticks one after the other: project from the newest
        # time every symbol has reached, each at its price then.
        last = {s: state.recent(s) for s in symbols}
        if any(not len(c["ts"]) for c in last.values()):
            raise HTTPException(503, "no tick of every symbol yet to project from")
        common = min(int(c["ts"][-1]) for c in last.values())
        prices = {s: float(c["price"][np.searchsorted(c["ts"], common, "right") - 1])
                  for s, c in last.items()}
        now = common + NS
        step = INTERVALS[body.interval]
        seconds = (now // step * step + body.steps * step - now) // NS
        digest = hashlib.blake2b(f"{runner.cfg.seed}|{now}|{body.text}".encode(),
                                 digest_size=8).digest()
        out = project(phases, symbols=symbols, prices=prices, start_ts=now,
                      seconds=int(seconds), interval_ns=step, seed=int.from_bytes(digest) >> 1,
                      volatility=runner.cfg.volatility, btc_params=runner.cfg.market)
        started = []
        if body.start:
            started = [{"scenario_id": runner.start_scenario(p), "type": p.type,
                        "status": "starting"} for p in phases]
        impacts = sorted(out.values(), key=lambda p: -abs(p.peak_move))
        return {"scenario": body.text, "generated_at": iso(now), "interval": body.interval,
                "rules": [{"rule": f.rule, "keyword": f.keyword, "clause": f.clause,
                           "phase": p.model_dump(mode="json", exclude={"at"})}
                          for f, p in zip(fired, phases, strict=True)],
                "impacts": [{"ticker": p.symbol, "peak_move_pct": 100 * p.peak_move,
                             "peak_ts": iso(p.peak_ts),
                             "projection": _rows(p.projected, specs[p.symbol].decimals),
                             "baseline": _rows(p.baseline, specs[p.symbol].decimals)}
                            for p in impacts],
                "started": started}


def _rows(c: dict, decimals: int) -> list[dict]:
    """Candles as JSON rows: ``ts`` ISO, prices as strings with the symbol's decimals."""
    return [{"ts": t, **{k: f"{c[k][i]:.{decimals}f}" for k in ("open", "high", "low", "close")},
             "volume": float(c["volume"][i])} for i, t in enumerate(iso_many(c["ts"]))]
