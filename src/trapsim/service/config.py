"""The configuration of one run: everything needed to reproduce it bit for bit."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from trapsim.core.config import FrozenModel, read_yaml, validate
from trapsim.core.time import parse_ts
from trapsim.market.params import DEFAULT_PARAMS, MarketParams, load_params

DEFAULT_START = "2025-01-06T00:00:00Z"
"""Default market start: a Monday, 00:00 UTC, so seasonality starts on a weekday."""


class RunConfig(FrozenModel):
    """Options of ``trapsim run``; written to ``config.yaml`` in the run directory.

    ``trapsim run --config runs/x/config.yaml`` reads it back and reproduces the
    run: the market parameters are stored inline, never as a path.
    """

    duration: float | None = Field(
        None,
        gt=0,
        description="Hours of market time; None runs until stopped (or the replay ends).",
    )
    volatility: float = Field(1.0, gt=0, description="Scale factor on volatility.")
    frequency: float = Field(
        0.2,
        ge=0.0,
        le=1.0,
        description="Trap frequency: mean arrival rate is 10 × frequency per hour.",
    )
    sleep: float = Field(
        0.1, ge=0.0, description="Wall seconds per market second; 0 runs flat out."
    )
    seed: int = Field(
        ge=0, lt=2**63, description="Run seed; every random component derives from it."
    )
    start: str = Field(
        DEFAULT_START, description="Market start time, ISO 8601 UTC (synthetic runs)."
    )
    symbol: Literal["BTC-USD"] = "BTC-USD"
    replay: str | None = Field(
        None, description="Candle file replayed instead of the synthetic market."
    )
    hf_min_traps: int = Field(3, ge=1, description="Traps within hf_window that switch HF mode on.")
    hf_window: float = Field(300.0, gt=0, description="HF mode window, seconds.")
    market: MarketParams | None = Field(
        None, description="Market parameters (synthetic runs); None for a replay."
    )

    @field_validator("start")
    @classmethod
    def _iso(cls, value: str) -> str:
        try:
            parse_ts(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
        return value

    @property
    def start_ns(self) -> int:
        return parse_ts(self.start)


def build_config(*, config: Path | None, params: Path | None, **options) -> RunConfig:
    """Merge a run's options: explicit options over ``config`` file over defaults.

    ``params`` (a calibrated parameters YAML) is stored inline. A missing seed is
    drawn from the OS and recorded, so every run can be reproduced.

    Raises
    ------
    ConfigError
        On an unknown key, an out-of-range value or an unreadable file.
    """
    data = read_yaml(config) if config is not None else {}
    for key, value in options.items():
        if value is not None:
            data[key] = str(value) if isinstance(value, Path) else value
    if params is not None:
        data["market"] = load_params(params).model_dump(mode="json")
    if data.get("replay") is None and data.get("market") is None:
        data["market"] = DEFAULT_PARAMS.model_dump(mode="json")
    if data.get("replay") is not None:
        data.pop("market", None)
    data.setdefault("seed", secrets.randbelow(2**31))
    return validate(RunConfig, data, str(config) if config else "options")
