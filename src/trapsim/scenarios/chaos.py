r"""Chaos scenarios: price shocks, crashes, volatility spikes, depegs, divergences,
correlation breaks and feed disruptions.

A scenario is a YAML list of phases, each a scenario type with the parameters of
the Market Data Simulator seed's chaos API, started at an offset from the run's
start::

    name: btc_crash
    phases:
      - at: 2h                       # offset from the run start: s, m, h or d
        type: market_crash
        crash_percentage: -18
        crash_duration_minutes: 240
        recovery_pattern: slow_bounce
      - at: 3d
        type: price_shock
        shock_percentage: -15
        duration_seconds: 300
        pattern: sudden_drop
        recovery_time_seconds: 1800

Each phase changes the base market before traps are injected (so traps and the
detector see the chaos) and writes one label of ``kind`` ``chaos``: ``type`` the
scenario, ``direction`` of the move, ``start_ts``, ``peak_ts`` (full effect),
``end_ts`` (recovery done), ``magnitude`` (percent), ``params`` the phase.

- ``price_shock`` (shock_percentage, duration_seconds, pattern ``sudden_drop``
  | ``gradual_linear`` | ``step``, recovery_time_seconds): the log price moves
  by ``ln(1 + shock/100)`` over ``duration_seconds`` (front-loaded, linear or at
  once), then back along a raised cosine over ``recovery_time_seconds``.
- ``market_crash`` (crash_percentage, crash_duration_minutes, recovery_pattern
  ``v_shape`` | ``slow_bounce`` | ``none``, volume_spike_multiplier,
  volatility_multiplier, symbols, correlation_increase): a fall of
  ``crash_percentage`` over ``crash_duration_minutes`` (a third as an
  accelerating drift, two thirds in :data:`CASCADES` one-minute liquidation
  cascades at random times, the same for every symbol) with volume and
  volatility multiplied (decaying over the recovery), then a full recovery over
  twice the crash (``v_shape``), half of it over 24 h with the rest kept
  (``slow_bounce``, as BTC after 2024-08-05), or none; the level reached at the
  end stays. It moves each listed symbol with a market of its own
  (:data:`MARKET_SYMBOLS`) by its loading; the cross and the perpetual follow
  their legs. The shared cascades are what raises the correlation.
- ``volatility_spike`` (volatility_multiplier, duration_hours, pattern
  ``constant`` | ``random_walk``, preserve_trend): 1-second log returns are
  multiplied by the multiplier (ramping over the first and last 5 % of the
  duration; ``random_walk`` also varies it by a lognormal factor each minute);
  with ``preserve_trend`` the offset this builds fades back to 0 over a tenth of
  the duration afterwards, so the spike adds noise, not a trend.
- ``stablecoin_depeg`` (symbol, target_deviation, duration_hours, pattern
  ``crisis`` | ``gradual_linear``, recovery_hours, volatility_increase): the
  peg falls to ``1 + target_deviation`` over ``duration_hours`` (a run: fast
  first), then recovers exponentially, all but 1.8 % of the deviation gone after
  ``recovery_hours``; the peg's noise is multiplied by up to
  ``volatility_increase``. The defaults follow USDC in March 2023 (about −9 %
  within 12 hours, back within 0.2 % after about three days).

- ``gradual_divergence`` (base_symbol, target_symbol, max_spread_bps,
  buildup_hours, sustain_hours, recovery_hours): the target's log price moves by
  ``ln(1 + max_spread_bps / 10^4)`` linearly over the build-up, stays, and comes
  back linearly over the recovery (the seed's spot-versus-perpetual example).
- ``correlation_break`` (ETH-USD against BTC-USD, target_correlation,
  duration_hours): see :meth:`ChaosInjector._decouple`; the level reached stays.
- ``feed_disruption`` changes what subscribers receive, not the market
  (:mod:`trapsim.scenarios.feed_faults`).

Guard rails (the seed's ``MAX_PRICE_DEVIATION`` and ``SCENARIO_TIMEOUT_HOURS``):
no phase may move the price more than ``max_deviation`` (default 25 %) or
manipulate it for longer than ``timeout_hours`` (default 48 h; the recovery that
follows is the market's own and not bounded); a request beyond them, or any
parameter out of range, is a :class:`~trapsim.core.errors.ConfigError` naming it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError

from trapsim.core.config import FrozenModel, describe, read_yaml
from trapsim.core.errors import ConfigError
from trapsim.core.seeding import rng_for
from trapsim.core.time import HOUR_NS, MINUTE_NS, NS, iso
from trapsim.market.base import BaseChunk
from trapsim.market.multi import RHO_1M

log = logging.getLogger("trapsim.scenarios")

MAX_DEVIATION = 0.25
"""Default largest price move a phase may make (the seed's MAX_PRICE_DEVIATION)."""
TIMEOUT_HOURS = 48.0
"""Default longest phase, hours (the seed's SCENARIO_TIMEOUT_HOURS)."""
CASCADES = 8
"""Liquidation cascades in a market crash."""
CASCADE_NS = 60 * NS
"""Length of one cascade's drop."""
LAG_S = 3600
"""A correlation break's uncorrelated stand-in for the reference's return: its return
this many seconds before (returns have no memory at an hour; their size does, so the
volatility stays)."""
STOP_FADE_NS = 300 * NS
"""A stopped phase's moves fade to 0 over this long (a raised cosine), not at once."""
_OFFSET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd])\s*$")
_UNIT_NS = {"s": NS, "m": MINUTE_NS, "h": HOUR_NS, "d": 24 * HOUR_NS}


class PriceShock(FrozenModel):
    type: Literal["price_shock"]
    at: str = Field(description="Start, as an offset from the run start: 90s, 30m, 2h, 1d.")
    symbol: str = "BTC-USD"
    shock_percentage: float = Field(ge=-99, le=1000, description="Move at full effect, %.")
    duration_seconds: float = Field(gt=0, description="Time to full effect, s.")
    pattern: Literal["sudden_drop", "gradual_linear", "step"] = "sudden_drop"
    recovery_time_seconds: float = Field(1800.0, ge=0, description="Time back to 0, s.")


class MarketCrash(FrozenModel):
    type: Literal["market_crash"]
    at: str
    crash_percentage: float = Field(-18.0, ge=-99, lt=0, description="Fall, %.")
    crash_duration_minutes: float = Field(240.0, gt=0)
    symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD", "BTC-ETH")
    correlation_increase: float = Field(0.95, ge=0, le=1)
    volume_spike_multiplier: float = Field(5.0, ge=1, le=100)
    volatility_multiplier: float = Field(3.0, ge=1, le=100)
    recovery_pattern: Literal["v_shape", "slow_bounce", "none"] = "slow_bounce"


class VolatilitySpike(FrozenModel):
    type: Literal["volatility_spike"]
    at: str
    symbol: str = "BTC-USD"
    volatility_multiplier: float = Field(gt=0, le=100)
    duration_hours: float = Field(gt=0)
    pattern: Literal["constant", "random_walk"] = "constant"
    preserve_trend: bool = True


class StablecoinDepeg(FrozenModel):
    type: Literal["stablecoin_depeg"]
    at: str
    symbol: str = "USDT-USD"
    target_deviation: float = Field(-0.09, ge=-0.99, le=0.99, description="Deviation at the "
                                    "trough, a fraction of the peg (-0.09: 0.91).")
    duration_hours: float = Field(12.0, gt=0, description="Time to the trough, hours.")
    pattern: Literal["crisis", "gradual_linear"] = "crisis"
    recovery_hours: float = Field(60.0, ge=0, description="Time for all but e^-4 (1.8 %) "
                                  "of the deviation to go, hours.")
    volatility_increase: float = Field(10.0, ge=1, le=100, description="Multiplier of the "
                                       "peg's noise at the trough.")


class GradualDivergence(FrozenModel):
    type: Literal["gradual_divergence"]
    at: str
    base_symbol: str = "BTC-USD"
    target_symbol: str = "BTC-USD-PERP"
    max_spread_bps: float = Field(500.0, ge=-9900, le=100_000, description="Move of the "
                                  "target against the base at full effect, bps.")
    buildup_hours: float = Field(4.0, gt=0)
    sustain_hours: float = Field(8.0, ge=0)
    recovery_hours: float = Field(2.0, ge=0)


class CorrelationBreak(FrozenModel):
    type: Literal["correlation_break"]
    at: str
    symbol: Literal["ETH-USD"] = "ETH-USD"
    reference_symbol: Literal["BTC-USD"] = "BTC-USD"
    target_correlation: float = Field(0.0, ge=-0.7, le=0.7, description="Correlation of "
                                      "1-second log returns with the reference during the "
                                      "break (normally 0.74).")
    duration_hours: float = Field(6.0, gt=0)


class FeedDisruption(FrozenModel):
    type: Literal["feed_disruption"]
    at: str
    source: str = Field("synthetic", description="The source whose feed fails: the run's "
                        "own (synthetic) or a named source of a consensus run.")
    affect_symbols: tuple[str, ...] = ("BTC-USD", "ETH-USD")
    mode: Literal["degraded", "stale", "outage"] = Field(
        "degraded", description="degraded: packet loss and latency; stale: the last price "
        "before the fault repeated; outage: nothing delivered.")
    packet_loss_percentage: float = Field(20.0, ge=0, le=100)
    latency_ms: float = Field(2000.0, ge=0, le=3_600_000)
    duration_seconds: float = Field(3600.0, gt=0)


Phase = Annotated[PriceShock | MarketCrash | VolatilitySpike | StablecoinDepeg
                  | GradualDivergence | CorrelationBreak | FeedDisruption,
                  Field(discriminator="type")]
MARKET_SYMBOLS = ("BTC-USD", "ETH-USD", "USDT-USD")
"""Symbols with a market of their own; BTC-ETH and the perpetual follow their legs."""


@dataclass(slots=True)
class Active:
    """One phase as a :class:`ChaosInjector` applies it."""

    key: str
    """Identifies the phase in the run (``<scenario>/<index>``, or a live start's id)."""
    start: int
    """Start, ns UTC."""
    phase: object
    scenario: str
    """Name of the scenario it came from (the id of a live start)."""
    stop: int | None = None
    """When it was stopped (ns UTC), if it was."""


class Scenario(FrozenModel):
    """A named list of chaos phases (the YAML file of this module's docstring)."""

    name: str = "scenario"
    max_deviation: float = Field(MAX_DEVIATION, gt=0, le=0.99)
    timeout_hours: float = Field(TIMEOUT_HOURS, gt=0)
    phases: tuple[Phase, ...] = Field(min_length=1)


def load_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario YAML file.

    Raises
    ------
    ConfigError
        On an unreadable file, an unknown key or type, or a parameter out of range
        (guard rails included), naming it.
    """
    data = read_yaml(Path(path))
    try:
        scenario = TypeAdapter(Scenario).validate_python(data)
    except ValidationError as err:
        raise ConfigError(describe(err, str(path))) from None
    check(scenario, str(path))
    return scenario


def offset_ns(text: str, where: str = "at") -> int:
    """``90s``/``30m``/``2h``/``1d`` as ns.

    Raises
    ------
    ConfigError
        If ``text`` is not such an offset.
    """
    m = _OFFSET.match(str(text))
    if not m:
        raise ConfigError(f"{where}: {text!r} is not an offset like 90s, 30m, 2h or 1d")
    return round(float(m[1]) * _UNIT_NS[m[2]])


def _extent(phase) -> tuple[float, float, float]:
    """(largest relative move, hours of active manipulation, hours until recovered) of a
    phase; the guard rails bound the first two, a label spans the last."""
    if isinstance(phase, PriceShock):
        active = phase.duration_seconds / 3600
        return (abs(phase.shock_percentage) / 100, active,
                active + phase.recovery_time_seconds / 3600)
    if isinstance(phase, MarketCrash):
        active = phase.crash_duration_minutes / 60
        recover = {"v_shape": 2 * active, "slow_bounce": 24.0, "none": 0.0}[
            phase.recovery_pattern]
        return abs(phase.crash_percentage) / 100, active, active + recover
    if isinstance(phase, StablecoinDepeg):
        return (abs(phase.target_deviation), phase.duration_hours,
                phase.duration_hours + phase.recovery_hours)
    if isinstance(phase, GradualDivergence):
        active = phase.buildup_hours + phase.sustain_hours
        return (abs(math.expm1(math.log1p(phase.max_spread_bps / 1e4))), active,
                active + phase.recovery_hours)
    if isinstance(phase, FeedDisruption):
        hours = phase.duration_seconds / 3600
        return 0.0, hours, hours
    if isinstance(phase, CorrelationBreak):
        return 0.0, phase.duration_hours, phase.duration_hours
    # A spike has no set move; its multiplier and length are its extent.
    return 0.0, phase.duration_hours, phase.duration_hours * (
        1.1 if phase.preserve_trend else 1.0)


def phase_symbols(phase) -> tuple[str, ...]:
    """The symbols a phase needs in the run (any one of them for a crash)."""
    if isinstance(phase, MarketCrash):
        return phase.symbols
    if isinstance(phase, GradualDivergence):
        return phase.base_symbol, phase.target_symbol
    if isinstance(phase, CorrelationBreak):
        return phase.symbol, phase.reference_symbol
    if isinstance(phase, FeedDisruption):
        return phase.affect_symbols
    return (phase.symbol,)


def check_symbols(scenario: Scenario, symbols: tuple[str, ...]) -> None:
    """Check that every phase can act on a run of ``symbols``.

    Raises
    ------
    ConfigError
        Naming the phase: a symbol it needs is not in the run, or it would move
        BTC-ETH, which is always BTC-USD / ETH-USD (move a leg instead).
    """
    for i, phase in enumerate(scenario.phases):
        name = f"scenario {scenario.name}: phases[{i}] ({phase.type})"
        need = phase_symbols(phase)
        if isinstance(phase, MarketCrash | FeedDisruption):
            if not set(need) & set(symbols):
                raise ConfigError(f"{name} lists {list(need)}, none of the run's symbols "
                                  f"{', '.join(symbols)}")
            continue
        missing = [sym for sym in need if sym not in symbols]
        if missing:
            raise ConfigError(f"{name} needs {', '.join(missing)} in the run's symbols "
                              f"({', '.join(symbols)})")
        moved = phase.target_symbol if isinstance(phase, GradualDivergence) else need[0]
        if moved == "BTC-ETH":
            raise ConfigError(f"{name}: BTC-ETH is always BTC-USD / ETH-USD; move a leg")
        if isinstance(phase, GradualDivergence) and phase.base_symbol == phase.target_symbol:
            raise ConfigError(f"{name}: base_symbol and target_symbol are the same")


def check(scenario: Scenario, where: str = "scenario") -> None:
    """Apply the guard rails to every phase.

    Raises
    ------
    ConfigError
        Naming the phase and the limit it breaks.
    """
    for i, phase in enumerate(scenario.phases):
        name = f"{where}: phases[{i}] ({phase.type})"
        offset_ns(phase.at, f"{name}.at")
        move, hours, _ = _extent(phase)
        if move > scenario.max_deviation:
            raise ConfigError(f"{name}: a {move:.0%} move exceeds max_deviation "
                              f"{scenario.max_deviation:.0%}")
        if hours > scenario.timeout_hours:
            raise ConfigError(f"{name}: lasts {hours:g} h, beyond timeout_hours "
                              f"{scenario.timeout_hours:g}")


def _running_sum(carry: float, x: np.ndarray) -> np.ndarray:
    """``carry + x[0], carry + x[0] + x[1], …`` added in that order, so a sum carried over
    chunk cuts is the same to the bit as one over the whole."""
    return np.add.accumulate(np.concatenate([[carry], x]))[1:]


def _raised_cosine(u: np.ndarray) -> np.ndarray:
    """1 → 0 as ``u`` goes 0 → 1 (clipped)."""
    return 0.5 * (1 + np.cos(np.pi * np.clip(u, 0.0, 1.0)))


class ChaosInjector:
    """Applies a scenario's phases to consecutive base chunks of one symbol.

    Parameters
    ----------
    scenario : Scenario
    symbol : str
        The run's symbol; phases for other symbols are skipped.
    start_ts : int
        Run start, ns UTC (phases start at offsets from it).
    seed : int
        Run seed (the ``random_walk`` pattern draws from ``chaos/<symbol>``).
    beta : float, default 1.0
        The symbol's loading on the market: a crash of ``c`` moves its log price by
        ``beta · ln(1 + c)`` (ETH falls further than BTC, as on 2024-08-05).

    Raises
    ------
    ConfigError
        If a ``market_crash`` does not list the symbol while it is the only
        one of the run.
    """

    def __init__(self, scenario: Scenario | None, *, symbol: str, start_ts: int, seed: int,
                 beta: float = 1.0) -> None:
        if scenario is not None:
            check(scenario)
        self.beta = beta
        self._seed = seed
        self._cascade: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.scenario = scenario
        self.symbol = symbol
        self._rng = rng_for(seed, f"chaos/{symbol}")
        self._walk: list[float] = []  # per-minute factors of random_walk spikes, in order
        self.phases: list[Active] = []
        for i, phase in enumerate(scenario.phases if scenario is not None else ()):
            self.add(phase, start_ts + offset_ns(phase.at), f"{scenario.name}/{i}",
                     scenario.name)
        self._raw: dict[str, float] = {}  # per phase key: offset from scaled returns so far
        self._last_lp: float | None = None
        # Correlation breaks: the reference's last log price and its last LAG_S log returns.
        self._ref_lp: float | None = None
        self._ref_tail = np.zeros(LAG_S)

    def add(self, phase, start_ts: int, key: str, scenario: str) -> bool:
        """Add ``phase`` from ``start_ts`` (ns) under ``key``, if it moves this symbol's market;
        returns whether it does. Chunks already applied are not changed (a running
        simulation re-applies them, :class:`trapsim.service.simulation.Simulation`)."""
        if not self._moves(phase):
            return False
        self.phases.append(Active(key, int(start_ts), phase, scenario))
        return True

    def stop(self, key: str, at_ts: int) -> bool:
        """Fade phase ``key`` out from ``at_ts`` (ns) over :data:`STOP_FADE_NS`: its moves of
        price, volume and volatility go back to 0. Returns whether this symbol has it."""
        for p in self.phases:
            if p.key == key:
                p.stop = int(at_ts) if p.stop is None else min(p.stop, int(at_ts))
                return True
        return False

    def _moves(self, phase) -> bool:
        """Whether ``phase`` moves this symbol's own market."""
        if isinstance(phase, MarketCrash):
            return self.symbol in phase.symbols and self.symbol in MARKET_SYMBOLS
        if isinstance(phase, GradualDivergence):
            return phase.target_symbol == self.symbol
        if isinstance(phase, FeedDisruption):
            return False  # what subscribers receive, not the market
        return phase.symbol == self.symbol

    def labels(self) -> list[dict]:
        """One label per phase (``kind`` ``chaos``; ``id`` left to the run)."""
        return [self.label(p) for p in self.phases]

    def label(self, active: Active) -> dict:
        """The label of one phase: ``params`` its parameters, ``scenario`` and, once stopped,
        ``stopped_ts`` (its end is then the end of the fade)."""
        start, phase = active.start, active.phase
        _, _, hours = _extent(phase)
        if isinstance(phase, PriceShock):
            peak = start + round(phase.duration_seconds * NS)
            direction = "down" if phase.shock_percentage < 0 else "up"
            magnitude = abs(phase.shock_percentage)
        elif isinstance(phase, MarketCrash):
            peak = start + round(phase.crash_duration_minutes * MINUTE_NS)
            direction = "down"
            magnitude = 100 * (1 - (1 + phase.crash_percentage / 100) ** self.beta)
        elif isinstance(phase, StablecoinDepeg):
            peak = start + round(phase.duration_hours * HOUR_NS)
            direction = "down" if phase.target_deviation < 0 else "up"
            magnitude = abs(phase.target_deviation) * 100
        elif isinstance(phase, GradualDivergence):
            peak = start + round(phase.buildup_hours * HOUR_NS)
            direction = "down" if phase.max_spread_bps < 0 else "up"
            magnitude = abs(phase.max_spread_bps) / 100
        elif isinstance(phase, CorrelationBreak):
            peak = start
            direction, magnitude = "none", phase.target_correlation
        else:
            peak = start + round(0.05 * phase.duration_hours * HOUR_NS)
            direction, magnitude = "none", phase.volatility_multiplier
        params = phase.model_dump(mode="json", exclude={"type"})
        params["scenario"] = active.scenario
        params["scenario_id"] = active.key
        end = start + round(hours * HOUR_NS)
        if active.stop is not None:
            params["stopped_ts"] = active.stop
            end = max(min(end, active.stop + STOP_FADE_NS), start)
            peak = min(peak, end)
        return {"kind": "chaos", "type": phase.type, "symbol": self.symbol,
                "direction": direction, "start_ts": start, "peak_ts": peak,
                "end_ts": end, "magnitude": magnitude, "params": params}

    def apply(self, chunk: BaseChunk, reference: BaseChunk | None = None) -> BaseChunk:
        """The chunk with the phases' moves in price and volume (consecutive chunks, in order).

        ``reference`` is the BTC-USD base chunk of the same ticks, needed by a
        ``correlation_break`` (ETH-USD's loading is on BTC-USD's base returns).

        Price moves are log offsets that depend only on the time; a volatility
        multiplier ``m`` adds ``(m - 1)`` times each 1-second log return to an
        offset of its phase, carried from chunk to chunk and faded out after the
        phase (as a function of time only), so the result does not depend on how
        the stream is cut into chunks.
        """
        ts = chunk.ts
        if not len(ts) or not self.phases:
            return chunk
        lp = np.log(chunk.price)
        d = np.diff(lp, prepend=lp[0] if self._last_lp is None else self._last_lp)
        self._last_lp = float(lp[-1])
        total = np.zeros(len(ts))
        vol_mult = np.ones(len(ts))
        lagged = None
        for p in self.phases:
            phase = p.phase
            u = (ts - p.start).astype(np.float64)  # ns since the phase began, exact
            # A stopped phase fades out: every move it makes is scaled by `g`.
            g = None if p.stop is None else _raised_cosine(
                np.maximum(ts - p.stop, 0) / STOP_FADE_NS)
            level, volume, m, end, fade = 0.0, None, None, None, None
            if isinstance(phase, PriceShock):
                level = self._shock(phase, u)
            elif isinstance(phase, GradualDivergence):
                level = self._divergence(phase, u)
            elif isinstance(phase, CorrelationBreak):
                if lagged is None:
                    if reference is None or len(reference) != len(ts):
                        raise ValueError("correlation_break needs the reference chunk")
                    lagged = self._reference_returns(reference)
                step = self._decouple(phase, u, *lagged)
            elif isinstance(phase, MarketCrash):
                level, volume, m, end, fade = self._crash(phase, u, p.start)
                level = self.beta * level
            elif isinstance(phase, StablecoinDepeg):
                level, m = self._depeg(phase, u)
            else:
                m, end, fade = self._spike(phase, u)
            if m is not None:
                step = (m - 1.0) * d
            if g is not None:
                level = level * g
                volume = None if volume is None else 1 + (volume - 1) * g
            total += level
            if volume is not None:
                vol_mult *= volume
            if m is None and not isinstance(phase, CorrelationBreak):
                continue
            # This phase's offset from scaled returns, faded out after `end` if it must not
            # stay (a correlation break's level stays: a decoupled market does not snap back).
            if g is not None:
                step = step * g
            raw = _running_sum(self._raw.get(p.key, 0.0), step)
            self._raw[p.key] = float(raw[-1])
            if fade is not None:
                raw = raw * np.where(u > end, _raised_cosine((u - end) / fade), 1.0)
            if g is not None:
                raw = raw * g
            total += raw
        # Untouched ticks keep their price to the bit (exp(log(p)) may differ from p).
        price = np.where(total != 0, np.exp(lp + total), chunk.price) if np.any(total) \
            else chunk.price
        return BaseChunk(ts, price, chunk.volume * vol_mult, chunk.regime)

    def _reference_returns(self, ref: BaseChunk) -> tuple[np.ndarray, np.ndarray]:
        """The reference's 1-second log returns, and the same lagged by :data:`LAG_S`."""
        lp = np.log(ref.price)
        r = np.diff(lp, prepend=lp[0] if self._ref_lp is None else self._ref_lp)
        self._ref_lp = float(lp[-1])
        both = np.concatenate([self._ref_tail, r])
        self._ref_tail = both[-LAG_S:]
        return r, both[:len(r)]

    def _decouple(self, p: CorrelationBreak, u: np.ndarray, r: np.ndarray,
                  lagged: np.ndarray) -> np.ndarray:
        """Log-return change that swaps part of the loading ``beta · r`` for ``beta · r`` of an
        hour before (uncorrelated with now, same distribution): correlation ``ρ · k`` with
        ``k = target / ρ`` (ρ = :data:`~trapsim.market.multi.RHO_1M`) while the variance stays."""
        k = p.target_correlation / RHO_1M
        inside = (u >= 0) & (u < p.duration_hours * HOUR_NS)
        return np.where(inside, self.beta * ((k - 1) * r + math.sqrt(1 - k * k) * lagged), 0.0)

    @staticmethod
    def _divergence(p: GradualDivergence, u: np.ndarray) -> np.ndarray:
        """Log offset of the target: a linear build-up, a plateau, a linear return."""
        full = math.log1p(p.max_spread_bps / 1e4)
        b, s_, r = (h * HOUR_NS for h in (p.buildup_hours, p.sustain_hours, p.recovery_hours))
        up = np.clip(u / b, 0.0, 1.0)
        down = np.clip((u - b - s_) / r, 0.0, 1.0) if r > 0 else (u >= b + s_).astype(float)
        return np.where(u >= 0, full * up * (1 - down), 0.0)

    @staticmethod
    def _shock(p: PriceShock, u: np.ndarray) -> np.ndarray:
        """Log offset of a price shock at times ``u`` after its start (ns)."""
        d, r = p.duration_seconds * NS, p.recovery_time_seconds * NS
        full = math.log1p(p.shock_percentage / 100)
        x = np.clip(u / d, 0.0, 1.0)
        shape = {"sudden_drop": 1 - (1 - x) ** 3, "gradual_linear": x,
                 "step": (u >= 0).astype(float)}[p.pattern]
        back = _raised_cosine((u - d) / r) if r > 0 else (u < d).astype(float)
        return np.where(u >= 0, full * np.where(u < d, shape, back), 0.0)

    def _crash(self, p: MarketCrash, u: np.ndarray, start: int):
        """Log offset, volume factor, return multiplier, end of the surge and its fade (ns)."""
        c = p.crash_duration_minutes * MINUTE_NS
        full = math.log1p(p.crash_percentage / 100)
        x = np.clip(u / c, 0.0, 1.0)
        # A third of the fall drifts (accelerating); the rest comes in liquidation
        # cascades, each a one-minute drop, at times and sizes fixed per crash (the same
        # for every symbol): the fat-tailed minutes of a real crash.
        at, share = self._cascades(p, start)
        steps = np.clip((u[:, None] - at[None, :]) / CASCADE_NS, 0.0, 1.0) @ share
        fall = (0.35 * x + 0.65 * x * x) / 3 + 2 / 3 * steps
        recover, keep = {"v_shape": (2 * c, 0.0), "slow_bounce": (24 * HOUR_NS, 0.5),
                         "none": (0.0, 1.0)}[p.recovery_pattern]
        after = u - c
        level = keep + (1 - keep) * _raised_cosine(after / recover) if recover > 0 else 1.0
        active = u >= 0
        offset = np.where(active, full * np.where(u < c, fall, level), 0.0)
        # Volume and volatility surge with the fall, fading over the recovery.
        fade_len = max(recover, c)
        surge = np.where(active, np.where(u < c, 1.0, _raised_cosine(after / fade_len)), 0.0)
        volume = 1 + (p.volume_spike_multiplier - 1) * surge
        m = 1 + (p.volatility_multiplier - 1) * surge
        return offset, volume, m, c, fade_len

    def _cascades(self, p: MarketCrash, start: int) -> tuple[np.ndarray, np.ndarray]:
        """Start times (ns after the crash start) and shares of a crash's cascades."""
        if start not in self._cascade:
            rng = rng_for(self._seed, f"chaos/crash/{start}")
            c = p.crash_duration_minutes * MINUTE_NS - CASCADE_NS
            at = np.sort(rng.uniform(0.0, max(c, 0.0), CASCADES))
            self._cascade[start] = (at, rng.dirichlet(np.ones(CASCADES)))
        return self._cascade[start]

    @staticmethod
    def _depeg(p: StablecoinDepeg, u: np.ndarray):
        """Log offset and noise multiplier of a depeg at times ``u`` after its start (ns)."""
        d = p.duration_hours * HOUR_NS
        x = np.clip(u / d, 0.0, 1.0)
        shape = 1 - (1 - x) ** 2 if p.pattern == "crisis" else x  # a run on the coin
        tau = p.recovery_hours * HOUR_NS / 4
        back = np.exp(-np.maximum(u - d, 0.0) / tau) if tau > 0 else (u <= d).astype(float)
        level = np.where(u < 0, 0.0, np.where(u < d, shape, back))
        return math.log1p(p.target_deviation) * level, 1 + (p.volatility_increase - 1) * level

    def _spike(self, p: VolatilitySpike, u: np.ndarray):
        """Return multiplier, end (ns after the start) and fade length (None: keep)."""
        length = p.duration_hours * HOUR_NS
        env = np.clip(np.minimum(u, length - u) / (0.05 * length), 0.0, 1.0)
        m = 1 + (p.volatility_multiplier - 1) * env
        inside = env > 0
        if p.pattern == "random_walk" and inside.any():
            minute = (np.maximum(u, 0) // MINUTE_NS).astype(np.int64)
            need = int(minute[inside].max()) + 1
            while len(self._walk) < need:  # drawn in minute order: chunk cuts do not matter
                prev = self._walk[-1] if self._walk else 0.0
                self._walk.append(0.9 * prev + 0.3 * self._rng.standard_normal())
            walk = np.exp(np.array(self._walk))[np.minimum(minute, need - 1)]
            m = np.where(inside, 1 + (m - 1) * walk, m)
        return m, length, (0.1 * length if p.preserve_trend else None)


def announce(label: dict) -> None:
    """Log the start of a phase as one JSON line (the seed's structured log)."""
    p = label["params"]
    event = {"timestamp": iso(label["start_ts"]), "level": "info",
             "service": "trapsim", "correlation_id": f"{p['scenario']}-{label['id']}",
             "event": "price_manipulation_started" if label["type"] == "price_shock"
             else f"{label['type']}_started",
             "symbol": label["symbol"], "scenario_type": label["type"], **{
                 k: v for k, v in p.items() if k not in ("scenario", "at")}}
    log.info(json.dumps(event))
