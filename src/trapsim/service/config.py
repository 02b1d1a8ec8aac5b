"""The configuration of one run: everything needed to reproduce it bit for bit."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator, model_validator

from trapsim.core.config import FrozenModel, describe, read_yaml
from trapsim.core.errors import ConfigError
from trapsim.core.time import parse_ts
from trapsim.market.params import DEFAULT_PARAMS, MarketParams, load_params
from trapsim.market.symbols import SymbolSpec, load_symbol_settings
from trapsim.scenarios.chaos import Scenario, load_scenario

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
    symbols: tuple[str, ...] = Field(
        ("BTC-USD",),
        description="Symbols simulated together (BTC-USD, ETH-USD, USDT-USD, BTC-ETH, "
        "BTC-USD-PERP); BTC-USD is always one, and the first is the run's headline symbol.",
    )
    replay: str | None = Field(
        None, description="Candle file replayed instead of the synthetic market."
    )
    hf_min_traps: int = Field(3, ge=1, description="Traps within hf_window that switch HF mode on.")
    hf_window: float = Field(300.0, gt=0, description="HF mode window, seconds.")
    scenario: Scenario | None = Field(
        None, description="Chaos scenario applied to the market (stored inline)."
    )
    depth_every: float = Field(
        10.0, ge=0.0, description="Market seconds between L2 depth snapshots; 0 writes none."
    )
    depth_levels: int = Field(10, ge=1, le=1000, description="L2 depth levels per side.")
    detect: bool = Field(
        False, description="Run the trap detector live on the stream and score it as it goes."
    )
    market: MarketParams | None = Field(
        None, description="Market parameters (synthetic runs); None for a replay."
    )
    symbol_settings: dict[str, SymbolSpec] | None = Field(
        None, description="Per-symbol settings (decimals, price band, circuit breaker, depeg "
        "alert) by symbol, stored inline; None takes the shipped ones."
    )

    @field_validator("start")
    @classmethod
    def _iso(cls, value: str) -> str:
        try:
            parse_ts(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        return tuple(s.strip() for s in value.split(",")) if isinstance(value, str) else value

    @field_validator("symbols")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from trapsim.market.multi import SYMBOLS

        unknown = [s for s in value if s not in SYMBOLS]
        if unknown or not value or len(set(value)) != len(value):
            raise ValueError(f"symbols must be distinct names from {', '.join(SYMBOLS)}, "
                             f"got {', '.join(value) or 'none'}")
        if "BTC-USD" not in value:
            raise ValueError("symbols must include BTC-USD (the market the others move with)")
        if "BTC-ETH" in value and "ETH-USD" not in value:
            raise ValueError("BTC-ETH is BTC-USD / ETH-USD: add ETH-USD to symbols")
        return value

    @model_validator(mode="after")
    def _one_replayed(self) -> RunConfig:
        if self.replay is not None and self.symbols != ("BTC-USD",):
            raise ValueError("a replay runs one symbol: leave symbols at BTC-USD")
        return self

    @field_validator("symbol_settings")
    @classmethod
    def _every_symbol(cls, value: dict[str, SymbolSpec] | None) -> dict | None:
        from trapsim.market.multi import SYMBOLS

        if value is not None:
            wrong = [k for k, spec in value.items() if k != spec.symbol]
            if wrong or set(value) != set(SYMBOLS):
                raise ValueError(f"symbol_settings must map each of {', '.join(SYMBOLS)} to "
                                 "its settings, keyed by its own symbol")
        return value

    @property
    def specs(self) -> dict[str, SymbolSpec]:
        """The settings of every symbol."""
        return self.symbol_settings or load_symbol_settings()

    @property
    def symbol(self) -> str:
        """The headline symbol (the first)."""
        return self.symbols[0]

    @property
    def start_ns(self) -> int:
        return parse_ts(self.start)


def build_config(
    *,
    config: Path | None,
    over: Mapping[str, Any],
    under: Mapping[str, Any] | None = None,
    names: Mapping[str, str] | None = None,
) -> RunConfig:
    """Merge a run's options: ``over`` > the ``config`` file > ``under`` > defaults.

    Parameters
    ----------
    config : Path or None
        A run's ``config.yaml``; it reproduces that run, so it outranks the
        options a deployment sets for every run (``under``).
    over, under : Mapping[str, Any]
        Run option → value; None means not given. ``params`` is a calibrated
        parameters YAML, stored inline as ``market`` (read only if it is the
        market the run uses).
    names : Mapping[str, str], optional
        Run option → how an error names it (``--volatility``,
        ``TRAPSIM_VOLATILITY``); default ``options: <key>``.

    Returns
    -------
    RunConfig
        With a seed: a missing one is drawn from the OS and recorded, so every
        run can be reproduced.

    Raises
    ------
    ConfigError
        On an unknown key, an out-of-range value or an unreadable file, naming
        where the value came from.
    """
    names = names or {}
    data: dict[str, Any] = {}
    where: dict[str, str] = {}

    def given(options: Mapping[str, Any]) -> None:
        for key, value in options.items():
            if value is None:
                continue
            label = names.get(key, f"options: {key}")
            if key == "params":
                key = "market"
            elif isinstance(value, Path) and key not in ("scenario", "symbol_settings"):
                value = str(value)
            data[key] = value
            where[key] = label

    given(under or {})
    if config is not None:
        stored = read_yaml(config)
        data.update(stored)
        where.update({key: f"{config}: {key}" for key in stored})
    given(over)
    if data.get("replay") is not None:
        data.pop("market", None)
        # Checked here, not when the replay starts, so the error names the option or variable.
        if isinstance(data["replay"], str) and not Path(data["replay"]).is_file():
            raise ConfigError(f"{where['replay']}: no such file: {data['replay']}")
    elif data.get("market") is None:
        data["market"] = DEFAULT_PARAMS.model_dump(mode="json")
    elif isinstance(data["market"], Path):
        try:
            data["market"] = load_params(data["market"]).model_dump(mode="json")
        except ConfigError as err:
            raise ConfigError(f"{where['market']}: {err}") from None
    if isinstance(data.get("scenario"), Path):
        try:
            data["scenario"] = load_scenario(data["scenario"]).model_dump(mode="json")
        except ConfigError as err:
            raise ConfigError(f"{where['scenario']}: {err}") from None
    if isinstance(data.get("symbol_settings"), Path):
        try:
            specs = load_symbol_settings(data["symbol_settings"])
        except ConfigError as err:
            raise ConfigError(f"{where['symbol_settings']}: {err}") from None
        data["symbol_settings"] = {s: spec.model_dump() for s, spec in specs.items()}
    data.setdefault("seed", secrets.randbelow(2**31))
    try:
        return RunConfig.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(part) for part in first["loc"]]
        if not loc or loc[0] not in where:
            raise ConfigError(describe(err, str(config) if config else "options")) from None
        path = "".join("." + part for part in loc[1:])
        raise ConfigError(f"{where[loc[0]]}{path}: {first['msg']}") from None
