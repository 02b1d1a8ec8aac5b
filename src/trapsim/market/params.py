"""Parameters of the synthetic market: a frozen pydantic model, read from and written to YAML.

:data:`DEFAULT_PARAMS` is package data (``btc_default.yaml``), the output of
:func:`trapsim.market.calibration.calibrate` on real Binance BTC/USDT 1-minute
candles; the file's header names the data. The model and the meaning of every
number are described in :mod:`trapsim.market.process`.
"""

from __future__ import annotations

import os
import tempfile
from importlib.resources import files
from pathlib import Path
from typing import Annotated

import numpy as np
import yaml
from pydantic import Field, field_validator, model_validator

from trapsim.core.config import FrozenModel, read_yaml, validate
from trapsim.core.errors import ConfigError, SinkError
from trapsim.market.regimes import BEARISH, BULLISH, REGIMES, stationary_distribution

_K = len(REGIMES)
Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
PerRegime = Annotated[tuple[Finite, ...], Field(min_length=_K, max_length=_K)]
PositivePerRegime = Annotated[tuple[Positive, ...], Field(min_length=_K, max_length=_K)]
Hourly = Annotated[tuple[Positive, ...], Field(min_length=24, max_length=24)]
Weekly = Annotated[tuple[Positive, ...], Field(min_length=7, max_length=7)]


class RegimeParams(FrozenModel):
    """The regime chain and each regime's volatility and drift, indexed like ``REGIMES``."""

    mean_duration_h: PositivePerRegime = Field(
        description="Mean time spent in a regime per visit, hours (calibrated: mean run length "
        "of the regime codes of classify_regimes)."
    )
    jump_chain: tuple[PerRegime, ...] = Field(
        min_length=_K,
        max_length=_K,
        description="jump_chain[i][j]: probability that the regime after i is j; zero diagonal, "
        "rows sum to 1 (calibrated: counted regime changes, with half a count added to "
        "every off-diagonal cell so no change is impossible).",
    )
    ann_vol: PositivePerRegime = Field(
        description="Diffusive volatility in each regime, annualised from 1-minute log returns "
        "(std × sqrt(525,600)) with seasonality and jumps taken out (calibrated: root mean "
        "square of deseasonalised non-jump 1-minute returns in the regime, times the trap "
        "allowance calibration.BASE_LEVEL, so runs with and without default traps bracket the "
        "data's level)."
    )
    drift_per_day: PerRegime = Field(
        description="Mean drift of the log price in each regime, per day: > 0 bullish, < 0 "
        "bearish, 0 for the neutral regime; the instantaneous drift is proportional to the "
        "variance (calibrated: mean slope of the 12-hour centred trend over the regime's "
        "minutes × 1440)."
    )

    @field_validator("jump_chain")
    @classmethod
    def _jump_chain(cls, rows: tuple[tuple[float, ...], ...]) -> tuple[tuple[float, ...], ...]:
        for i, row in enumerate(rows):
            if any(p < 0 or p > 1 for p in row):
                raise ValueError(f"row {i}: probabilities must lie in [0, 1]")
            if row[i] != 0:
                raise ValueError(f"row {i}: the diagonal must be 0 (a change goes elsewhere)")
            if abs(sum(row) - 1.0) > 1e-6:
                raise ValueError(f"row {i}: must sum to 1, sums to {sum(row):.6g}")
        return rows

    @field_validator("drift_per_day")
    @classmethod
    def _drift_signs(cls, drift: tuple[float, ...]) -> tuple[float, ...]:
        for i in BULLISH:
            if drift[i] <= 0:
                raise ValueError(f"{REGIMES[i]} needs a positive drift, got {drift[i]}")
        for i in BEARISH:
            if drift[i] >= 0:
                raise ValueError(f"{REGIMES[i]} needs a negative drift, got {drift[i]}")
        return drift

    @model_validator(mode="after")
    def _irreducible(self) -> RegimeParams:
        try:
            self.stationary()
        except ConfigError as err:
            raise ValueError(str(err)) from None
        return self

    def stationary(self) -> np.ndarray:
        """Long-run share of time in each regime, shape ``(5,)`` (``stationary_distribution``)."""
        return stationary_distribution(
            [3600.0 * d for d in self.mean_duration_h], [list(r) for r in self.jump_chain]
        )


class VolatilityParams(FrozenModel):
    """Multi-timescale log-volatility: a sum of independent Ornstein-Uhlenbeck factors."""

    factor_timescale_s: tuple[Positive, ...] = Field(
        min_length=1,
        description="Mean-reversion time of each log-volatility factor, seconds (fixed grid "
        "from minutes to days).",
    )
    factor_variance: tuple[NonNegative, ...] = Field(
        min_length=1,
        description="Stationary variance of each factor, (log units)^2 (calibrated: "
        "non-negative least squares fit of the autocovariance of log 1-minute high/low "
        "ranges, seasonality and regime levels removed, at lags of 1 minute to 2 days).",
    )

    @model_validator(mode="after")
    def _same_length(self) -> VolatilityParams:
        if len(self.factor_timescale_s) != len(self.factor_variance):
            raise ValueError("factor_timescale_s and factor_variance need the same length")
        return self


class JumpParams(FrozenModel):
    """Compound Poisson jumps with normal sizes (Merton 1976), in units of regime volatility."""

    rate_per_day: NonNegative = Field(
        description="Mean number of jumps per day (calibrated: 1-minute returns beyond 8 local "
        "standard deviations per day; see calibration.JUMP_THRESHOLD_SIGMA)."
    )
    size_sd: NonNegative = Field(
        description="Standard deviation of a jump's log size in units of the regime's seasonal "
        "1-minute volatility (calibrated: (mean z^4 / 3)^(1/4) over the detected jumps, z the "
        "jump minute's return in those units, so jumps add the data's fourth moment)."
    )


class SeasonalityParams(FrozenModel):
    """Relative intraday and weekly profiles (UTC); the model normalises them."""

    hour_vol: Hourly = Field(
        description="Volatility multiplier of each UTC hour 0-23 (calibrated: mean absolute "
        "1-minute return by hour, weekday profile divided out)."
    )
    weekday_vol: Weekly = Field(
        description="Volatility multiplier of each weekday, Monday first (calibrated: mean "
        "absolute 1-minute return by weekday, hour profile divided out)."
    )
    hour_volume: Hourly = Field(
        description="Volume multiplier of each UTC hour 0-23 (calibrated: mean 1-minute volume "
        "by hour, weekday profile divided out)."
    )
    weekday_volume: Weekly = Field(
        description="Volume multiplier of each weekday, Monday first (calibrated likewise)."
    )


class VolumeParams(FrozenModel):
    """Traded volume per tick: seasonal level × volatility link × own noise × move share."""

    mean_per_minute: Positive = Field(
        description="Mean traded volume per minute, base units (calibrated: mean 1-minute volume)."
    )
    vol_elasticity: Finite = Field(
        description="Elasticity of volume to the non-seasonal volatility level (calibrated: "
        "covariance of deseasonalised log volume and log high/low range over the model's "
        "variance of log volatility)."
    )
    noise_variance: NonNegative = Field(
        description="Stationary variance of the log-volume noise factor (calibrated: log-volume "
        "variance not explained by volatility)."
    )
    noise_timescale_s: Positive = Field(
        description="Mean-reversion time of the log-volume noise factor, seconds (calibrated "
        "from its lag-1-minute autocorrelation)."
    )
    move_share: Finite = Field(
        ge=0,
        le=1,
        description="Share of a tick's volume proportional to the tick's absolute standardised "
        "move; the rest is flat within a volatility step (fixed by calibrate at "
        "calibration.MOVE_SHARE: candles do not show ticks).",
    )


class SpreadParams(FrozenModel):
    """Bid/ask spread in bps of mid: widens with realised volatility, off-hours and low volume.

    Not calibrated from candles (they carry no quotes): the defaults put BTC-USD
    spreads in the 1-5 bps band of a retail USD venue, about 2 bps in normal trading.
    """

    base_bps: Positive = Field(2.0, description="Spread at reference volatility and volume, bps.")
    min_bps: Positive = Field(1.0, description="Smallest spread, bps.")
    max_bps: Positive = Field(5.0, description="Largest spread, bps.")
    vol_elasticity: NonNegative = Field(
        0.6, description="Elasticity of the spread to realised volatility over its reference."
    )
    volume_elasticity: NonNegative = Field(
        0.25, description="Elasticity of the spread to realised volume under its reference."
    )
    season_elasticity: NonNegative = Field(
        0.5, description="Elasticity of the spread to the seasonal liquidity (volume) profile."
    )
    halflife_s: Positive = Field(
        60.0, description="Half-life of the realised volatility and volume averages, seconds."
    )
    noise_sd: NonNegative = Field(0.1, description="Stationary std of the log-spread noise.")
    noise_timescale_s: Positive = Field(
        30.0, description="Mean-reversion time of the log-spread noise, seconds."
    )

    @model_validator(mode="after")
    def _ordered(self) -> SpreadParams:
        if not self.min_bps < self.max_bps:
            raise ValueError("min_bps must be below max_bps")
        if not self.min_bps <= self.base_bps <= self.max_bps:
            raise ValueError("base_bps must lie in [min_bps, max_bps]")
        return self


class MarketParams(FrozenModel):
    """Every number of the synthetic market (see :mod:`trapsim.market.process`)."""

    initial_price: Positive = Field(
        description="Price of the first tick, quote currency (calibrated: last close)."
    )
    regimes: RegimeParams
    volatility: VolatilityParams
    jumps: JumpParams
    seasonality: SeasonalityParams
    volume: VolumeParams
    spread: SpreadParams = SpreadParams()

    def to_yaml(self, path: str | Path, comment: str | None = None) -> None:
        """Write the parameters as YAML, atomically (temp file, then ``os.replace``).

        Parameters
        ----------
        path : str or Path
            File to write; its directory must exist.
        comment : str, optional
            Text written as ``#`` comment lines at the top (e.g. the data source).

        Raises
        ------
        SinkError
            If the file cannot be written.
        """
        path = Path(path)
        head = "".join(f"# {line}".rstrip() + "\n" for line in (comment or "").splitlines())
        body = yaml.safe_dump(
            self.model_dump(mode="json"), sort_keys=False, default_flow_style=None, width=100
        )
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w") as fh:
                    fh.write(head + body)
                os.replace(tmp, path)
            except BaseException:
                os.unlink(tmp)
                raise
        except OSError as err:
            raise SinkError(f"{path}: cannot write market parameters: {err.strerror}") from None


def load_params(path: str | Path) -> MarketParams:
    """Read market parameters from a YAML file.

    Raises
    ------
    ConfigError
        If the file is unreadable or not YAML, or a key is missing, unknown or out
        of range (the message names the key, e.g. ``regimes.ann_vol.2``).
    """
    return validate(MarketParams, read_yaml(path), str(path))


DEFAULT_PARAMS: MarketParams = load_params(files("trapsim.market") / "btc_default.yaml")
"""BTC-USD parameters calibrated on real Binance BTC/USDT 1-minute candles."""
