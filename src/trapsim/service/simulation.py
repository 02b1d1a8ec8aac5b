"""The path engine of a run: market source → chaos → trap injection → quotes, in batches.

The same batches feed a paced run and a flat-out run, so both give the same
ticks bit for bit: live mode is batch mode sliced by a clock (DESIGN.md §1).

Symbols with a market of their own (BTC-USD, ETH-USD, USDT-USD) each get their
chaos phases and, for BTC-USD and ETH-USD, their own traps; the perpetual's basis
gets the phases aimed at it (a ``gradual_divergence``, a ``price_shock`` of the
perpetual). BTC-ETH and BTC-USD-PERP are then made from the final legs, so the
cross rate is ``BTC-USD / ETH-USD`` at every tick and the perpetual is the final
spot times its basis: a trap or a crash on BTC-USD shows in both.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import pairwise
from typing import NamedTuple

import numpy as np

from trapsim.core.allocator import keep_freed_blocks
from trapsim.core.errors import ConfigError
from trapsim.core.schemas import TickBatch
from trapsim.core.time import NS, iso, parse_ts
from trapsim.market.base import BaseChunk
from trapsim.market.multi import VOLUME_SHARE, Funding, MultiAssetMarket, quote_params
from trapsim.market.params import DEFAULT_PARAMS
from trapsim.market.spread import SpreadModel
from trapsim.scenarios.chaos import (
    MARKET_SYMBOLS,
    MAX_DEVIATION,
    STOP_FADE_NS,
    TIMEOUT_HOURS,
    ChaosInjector,
    FeedDisruption,
    Scenario,
    check,
    check_symbols,
)
from trapsim.scenarios.feed_faults import feed_fault_labels
from trapsim.scenarios.injector import TrapInjector
from trapsim.scenarios.traps import final_prices
from trapsim.service.config import RunConfig

CHUNK = 36_000
"""Ticks generated per step (10 h of market time); fixed so output never depends on pacing."""
TRAP_SYMBOLS = ("BTC-USD", "ETH-USD")
"""Symbols that get traps of their own (the cross and the perpetual inherit BTC's and ETH's)."""
PERP = "BTC-USD-PERP"


class Step(NamedTuple):
    """What one step of a run releases."""

    ticks: dict[str, TickBatch]
    """Final ticks per symbol (the run's symbols, in order), all on the same times."""
    labels: list[dict]
    """Labels placed in this step; a label may reach past these ticks, its ticks follow."""
    funding: list[Funding]
    """Funding events of the perpetual at these ticks."""
    since: int | None = None
    """Set when the step follows a live change (ns UTC): ticks and funding events at or
    after it that earlier steps gave are void, these replace them."""
    revoked: tuple[int, ...] = ()
    """Ids of labels given before that no longer hold (traps placed again after a change,
    a phase stopped before it began)."""
    amended: tuple[dict, ...] = ()
    """Labels given before, changed under the same id: a trap a change interrupted
    (``params.interrupted_ts``), a stopped phase (``params.stopped_ts``, a new end)."""


class Change(NamedTuple):
    """A live change of the scenario: a phase started or stopped at a market time."""

    at: int
    """Market time it takes effect, ns UTC (the first tick not yet released)."""
    key: str
    """The phase's scenario id."""
    phase: object | None
    """The phase to start; None to stop phase ``key``."""


_FIELDS = ("ts", "base", "base_volume", "price", "chaos_volume", "overlay", "volume", "regime")


@dataclass(slots=True)
class _Buffer:
    """Ticks not yet final plus the history the injector looks back on: the raw base
    market, after chaos (``price``, ``chaos_volume``), and the traps' ``overlay`` and
    final ``volume``."""

    ts: np.ndarray
    base: np.ndarray
    base_volume: np.ndarray
    price: np.ndarray
    chaos_volume: np.ndarray
    overlay: np.ndarray
    volume: np.ndarray
    regime: np.ndarray

    @classmethod
    def empty(cls) -> _Buffer:
        f = np.empty(0)
        return cls(np.empty(0, np.int64), f, f, f, f, f, f, np.empty(0, np.int8))

    def extend(self, raw: BaseChunk, chaotic: BaseChunk) -> None:
        for name, new in zip(_FIELDS, (raw.ts, raw.price, raw.volume, chaotic.price,
                                       chaotic.volume, np.zeros(len(raw)), chaotic.volume,
                                       raw.regime), strict=True):
            setattr(self, name, np.concatenate([getattr(self, name), new]))

    def raw(self, lo: int, hi: int) -> BaseChunk:
        """The raw base market of ticks ``lo:hi``."""
        return BaseChunk(self.ts[lo:hi], self.base[lo:hi], self.base_volume[lo:hi],
                         self.regime[lo:hi])

    def slice(self, lo: int, hi: int) -> tuple[np.ndarray, ...]:
        """Copies of ticks ``lo:hi``: times, final prices, volumes and regimes."""
        return (self.ts[lo:hi].copy(), final_prices(self.price[lo:hi], self.overlay[lo:hi]),
                self.volume[lo:hi].copy(), self.regime[lo:hi].copy())

    def drop_before(self, i: int) -> None:
        for name in _FIELDS:
            setattr(self, name, getattr(self, name)[i:])


class _Placed(NamedTuple):
    """An injector as it was before placing the traps from ``since`` on, with the overlay
    and volume it was given from there (a live change restores it)."""

    since: int
    injector: TrapInjector
    overlay: np.ndarray
    volume: np.ndarray


@dataclass(slots=True)
class _Lane:
    """One market of the run: its buffer, its chaos phases and its traps."""

    symbol: str
    buf: _Buffer
    chaos: ChaosInjector
    injector: TrapInjector | None
    chaos_at: list[tuple[int, ChaosInjector]] = field(default_factory=list)
    """Live runs: the chaos state at each chunk start still in the buffer."""
    placed: list[_Placed] = field(default_factory=list)
    """Live runs: the injector before each of its recent calls."""


class _Plan(NamedTuple):
    """The next step to quote: ticks ``start:cut`` are quoted, those from ``since`` given."""

    start: int
    since: int
    cut: int
    labels: list[dict]
    funding: list[Funding]
    revision: bool = False
    revoked: tuple[int, ...] = ()
    amended: tuple[dict, ...] = ()


class Simulation:
    """Final ticks and labels of one run, in market-time order.

    Parameters
    ----------
    cfg : RunConfig
        The run's configuration.
    live : bool, default False
        Accept :meth:`start` and :meth:`stop` while running (keeps the state a
        change goes back to: a few chunks of buffer and copies of the injectors).

    Raises
    ------
    ConfigError
        If the scenario needs a symbol the run does not have.

    Notes
    -----
    Each step pulls :data:`CHUNK` base ticks of every market, applies the
    chaos phases, lets each injector place every trap whose span starts before
    ``buffer end − max_span`` (so a trap always has its whole span in the
    buffer), and releases the ticks before that point: no later trap can change
    them. A duration limit or the end of a replayed file ends the stream; traps
    that would run past the end are not injected.

    A live change at time ``T`` (the first tick the consumer has not released)
    takes effect when the consumer asks for the next step: the injectors go back
    to their state before ``T`` and place again the traps that began before it
    (the same traps: a trap depends only on the ticks, which have not changed
    yet), the changed phases are applied from ``T``, and the traps from ``T`` on
    are placed anew. The next step starts at ``T`` (``Step.since``) and revokes
    the labels of traps placed after ``T``; a trap under way at ``T`` on a
    changed market keeps its label, marked ``interrupted_ts`` (its shape goes on
    over the changed price). Same changes at the same times give the same output.
    """

    def __init__(self, cfg: RunConfig, live: bool = False) -> None:
        keep_freed_blocks()  # the two-thread pipeline's arrays, see trapsim.core.allocator
        self.cfg = cfg
        self.live = live
        self.symbols = cfg.symbols
        if cfg.scenario is not None:
            check_symbols(cfg.scenario, self.symbols)
        btc_params = cfg.market or DEFAULT_PARAMS
        if cfg.replay is not None:
            from trapsim.feeds.replay import ReplayMarket

            self.market = ReplayMarket(cfg.replay, seed=cfg.seed, symbol=cfg.symbol)
            own = ("BTC-USD",)
        else:
            own = tuple(s for s in (*MARKET_SYMBOLS, PERP) if s in self.symbols)
            self.market = MultiAssetMarket(own, seed=cfg.seed, start_ts=cfg.start_ns,
                                           volatility=cfg.volatility, btc_params=btc_params)
        self.start_ts = int(getattr(self.market, "start_ts", cfg.start_ns))
        self.regime_names = tuple(self.market.regime_names)
        self.lanes = [self._lane(symbol) for symbol in own]
        injectors = [lane.injector for lane in self.lanes if lane.injector is not None]
        self._span = max(inj.max_span_ns for inj in injectors)
        self._lookback = max(inj.lookback_ns for inj in injectors)
        self.spreads = {
            s: SpreadModel(btc_params if s == "BTC-USD" else quote_params(s), seed=cfg.seed,
                           symbol=s) for s in self.symbols}
        self._funding: list[Funding] = []  # made, not yet released
        self._next_id = 0
        self.total_ticks = None if cfg.duration is None else int(round(cfg.duration * 3600))
        if cfg.replay is not None:
            n = self.market.n_ticks
            self.total_ticks = n if self.total_ticks is None else min(n, self.total_ticks)
        # Synthetic runs also simulate past their end, so traps near the end still
        # complete; ticks outside [start, end) are never yielded.
        self.end_ts = None if self.total_ticks is None else self.start_ts + self.total_ticks * NS
        self._limit = None
        if self.total_ticks is not None:
            extra = 0 if cfg.replay is not None else -(-self._span // NS)
            self._limit = self.total_ticks + extra
        # Live runs: queued changes and what a change may have to take back.
        self._changes: list[Change] = []
        self._quoted: tuple[int, dict[str, SpreadModel]] | None = None  # spreads before a step
        self._given_traps: list[dict] = []  # trap labels given, possibly still under way
        self._given_phases: list[dict] = []  # chaos and feed-fault labels given
        self._given_funding: list[Funding] = []  # funding of the last step given
        self.released = self.start_ts  # ticks before this time have been yielded

    def _lane(self, symbol: str) -> _Lane:
        cfg = self.cfg
        beta = self.market.beta if symbol == "ETH-USD" and cfg.replay is None else 1.0
        chaos = ChaosInjector(cfg.scenario, symbol=symbol, start_ts=self.start_ts,
                              seed=cfg.seed, beta=beta)
        injector = None
        if symbol in TRAP_SYMBOLS:
            injector = TrapInjector(symbol=symbol, frequency=cfg.frequency, seed=cfg.seed,
                                    start_ts=self.start_ts)
        return _Lane(symbol, _Buffer.empty(), chaos, injector)

    def chaos_labels(self) -> list[dict]:
        """The scenario's chaos and feed-fault labels (``id`` not set), known from the start."""
        labels = [lb for lane in self.lanes for lb in lane.chaos.labels()]
        labels += feed_fault_labels(self.cfg.scenario, self.symbols, self.start_ts)
        labels = [lb for lb in labels if self.end_ts is None or lb["start_ts"] < self.end_ts]
        return sorted(labels, key=lambda lb: lb["start_ts"])

    # -- live changes ------------------------------------------------------------
    def check_phase(self, phase, key: str) -> None:
        """Check a phase for a live start as scenario ``key`` (safe from any thread).

        Raises
        ------
        ConfigError
            If the phase breaks the run's guard rails (the scenario's ``max_deviation`` and
            ``timeout_hours``, or the defaults) or needs a symbol the run does not have.
        """
        scenario = self.cfg.scenario
        sc = Scenario(name=key, phases=(phase.model_copy(update={"at": "0s"}),),
                      max_deviation=scenario.max_deviation if scenario else MAX_DEVIATION,
                      timeout_hours=scenario.timeout_hours if scenario else TIMEOUT_HOURS)
        check(sc, f"scenario {key}")
        check_symbols(sc, self.symbols)

    def start(self, phase, at_ts: int, key: str) -> None:
        """Start ``phase`` (a chaos phase model; its ``at`` is ignored) at ``at_ts`` as
        scenario ``key``; it takes effect with the next step.

        Raises
        ------
        ConfigError
            If :meth:`check_phase` refuses it, ``key`` is in use, or ``at_ts`` is before
            the last step given or past the run's end.
        RuntimeError
            If the simulation was not made ``live``.
        """
        self.check_phase(phase, key)
        if any(lb["params"].get("scenario_id") == key for lb in self._given_phases) or any(
                c.key == key for c in self._changes):
            raise ConfigError(f"scenario id {key!r} is already in use")
        self._change(Change(int(at_ts), key, phase.model_copy(
            update={"at": f"{(int(at_ts) - self.start_ts) // NS}s"})))

    def stop(self, key: str, at_ts: int) -> None:
        """Stop scenario ``key`` at ``at_ts``: its moves fade out over
        :data:`~trapsim.scenarios.chaos.STOP_FADE_NS`; it takes effect with the next step.

        Raises
        ------
        ConfigError
            If no phase has that id, or ``at_ts`` is out of range.
        """
        if not any(lb["params"].get("scenario_id") == key for lb in self._given_phases) and \
                not any(c.key == key and c.phase is not None for c in self._changes):
            raise ConfigError(f"no scenario with id {key!r}")
        self._change(Change(int(at_ts), key, None))

    def _change(self, change: Change) -> None:
        if not self.live:
            raise RuntimeError("live changes need Simulation(cfg, live=True)")
        first = self._quoted[0] if self._quoted is not None else self.start_ts
        if change.at < max(first, self.start_ts) or change.at > self.released:
            raise ConfigError(f"a change at {iso(change.at)} is outside the ticks not yet "
                              f"released ({iso(first)} to {iso(self.released)})")
        if self.end_ts is not None and change.at >= self.end_ts:
            raise ConfigError(f"a change at {iso(change.at)} is past the run's end")
        self._changes.append(change)

    # -- the steps -----------------------------------------------------------------
    def batches(self) -> Iterator[Step]:
        """Yield the run's :class:`Step` s in market-time order."""
        btc = self.lanes[0].buf
        # The base market and the quotes depend only on their own state, so one
        # worker thread makes the next base chunk, then quotes the step just
        # injected, while this thread injects (the kernels release the GIL). A
        # step is yielded once the next one is injected; the ticks are the same.
        with ThreadPoolExecutor(1, thread_name_prefix="trapsim-market") as worker:
            pending = self._pull(worker, 0)
            for lane in self.lanes:
                if lane.injector is not None:
                    lane.injector.prime()  # while the first chunk is made
            quoting = None  # the step being quoted
            produced = 0
            done = False
            upto = self.start_ts
            labels = self.chaos_labels()
            while True:
                if not done:
                    n = self._take(pending.result()) if pending is not None else 0
                    produced += n
                    done = n < CHUNK or produced == self._limit
                    pending = None if done else self._pull(worker, produced)
                    if len(btc.ts):
                        upto = int(btc.ts[-1]) + NS if done else int(btc.ts[-1]) - self._span
                        labels += self._inject(upto)
                cut = upto if self.end_ts is None else min(upto, self.end_ts)
                funding = [f for f in self._funding if f.ts < cut]
                self._funding = self._funding[len(funding):]
                plan = _Plan(self.released, self.released, cut, labels, funding)
                if quoting is not None:
                    yield quoting.result()
                    quoting = None
                    if self._changes:
                        plan = self._revise(plan, upto)
                if not (plan.cut > plan.since or plan.labels or plan.revision):
                    if done:
                        break
                    continue
                quoting = worker.submit(self._final, *self._parts(plan))
                labels = []
                self.released = max(self.released, upto)
                self._drop(plan, upto)

    def _parts(self, plan: _Plan) -> tuple:
        """Number the plan's labels, keep what a change may take back, and cut its ticks."""
        for label in plan.labels:
            label["id"] = self._next_id
            self._next_id += 1
        if self.live:
            self._given_traps += [lb for lb in plan.labels if lb["kind"] == "trap"]
            self._given_phases += [lb for lb in plan.labels if lb["kind"] != "trap"]
            self._given_funding = list(plan.funding)
            if plan.start == plan.since:  # not a revision going back into the last step
                self._quoted = (plan.start, copy.deepcopy(self.spreads))
        btc = self.lanes[0].buf.ts
        lo, hi = int(np.searchsorted(btc, plan.start)), int(np.searchsorted(btc, plan.cut))
        return {lane.symbol: lane.buf.slice(lo, hi) for lane in self.lanes}, plan

    def _drop(self, plan: _Plan, upto: int) -> None:
        """Drop the buffer's ticks no later step needs: before the injector's look-back,
        and in live runs before the chunk and step a change may go back to."""
        btc = self.lanes[0]
        back = upto - self._lookback
        if self.live:
            back = min(back, plan.start - self._lookback,
                       max([t for t, _ in btc.chaos_at if t <= plan.start], default=back))
        keep = min(int(np.searchsorted(btc.buf.ts, back)),
                   int(np.searchsorted(btc.buf.ts, plan.cut)))
        if not self.live:
            for lane in self.lanes:
                lane.buf.drop_before(keep)
            return
        floor = int(btc.buf.ts[keep]) if keep < len(btc.buf.ts) else upto
        for lane in self.lanes:
            lane.buf.drop_before(keep)
            lane.chaos_at = [c for c in lane.chaos_at if c[0] >= floor]
            # The injector's state at the step start (and after) is all a change needs.
            first = max([i for i, p in enumerate(lane.placed) if p.since <= plan.start],
                        default=0)
            lane.placed = lane.placed[first:]
        horizon = plan.start - self._span
        self._given_traps = [lb for lb in self._given_traps if lb["end_ts"] > horizon]

    def _inject(self, upto: int, lanes=None) -> list[dict]:
        """Place every lane's traps up to ``upto`` (live runs keep the injector's state first)."""
        labels = []
        for lane in lanes or self.lanes:
            inj = lane.injector
            if inj is None:
                continue
            b = lane.buf
            if self.live:
                since = inj.upto if inj.upto is not None else self.start_ts
                i = int(np.searchsorted(b.ts, since))
                lane.placed.append(_Placed(since, copy.deepcopy(inj), b.overlay[i:].copy(),
                                           b.volume[i:].copy()))
            labels += inj.inject(b.ts, b.price, b.overlay, b.volume, upto)
        return labels

    def _revise(self, plan: _Plan, upto: int) -> _Plan:
        """Apply the queued changes from their time ``T`` (see the class notes); returns the
        step to give next, from ``T``."""
        changes, self._changes = self._changes, []
        at = min(c.at for c in changes)
        start = at
        if at < plan.since:  # back into the step being released: quote it again
            start, spreads = self._quoted
            self.spreads = copy.deepcopy(spreads)
        # Traps that began before T, placed again on the unchanged ticks (the same traps).
        for lane in self.lanes:
            if lane.injector is None:
                continue
            b = lane.buf
            keep = max(i for i, p in enumerate(lane.placed) if p.since <= at)
            was = lane.placed[keep]
            lane.placed = lane.placed[:keep]
            lane.injector = copy.deepcopy(was.injector)
            i = int(np.searchsorted(b.ts, was.since))
            n = len(was.overlay)
            b.overlay[i:i + n], b.overlay[i + n:] = was.overlay, 0.0
            b.volume[i:i + n], b.volume[i + n:] = was.volume, b.chaos_volume[i + n:]
        self._inject(at)
        # The changed phases, from T.
        labels, amended, revoked, moved = [], [], [], set()
        for change in changes:
            for lane in self.lanes:
                if self._rechaos(lane, change):
                    moved.add(lane.symbol)
            labels += self._phase_labels(change)
            if change.phase is not None:
                continue
            for label in self._given_phases:
                if label["params"].get("scenario_id") == change.key:
                    new = self._stopped(label, change.at)
                    (revoked.append(label["id"]) if new is None else amended.append(new))
            # A phase started by an earlier change of this same batch.
            labels = [self._stopped(lb, change.at) if lb["params"].get("scenario_id")
                      == change.key else lb for lb in labels]
            labels = [lb for lb in labels if lb is not None]
        labels += self._inject(upto)
        for label in self._given_traps:
            span = (parse_ts(label["params"]["span_start_ts"]),
                    parse_ts(label["params"]["span_end_ts"]))
            if span[0] >= at:
                revoked.append(label["id"])
            elif span[1] > at and label["symbol"] in moved:
                amended.append({**label, "params": {**label["params"], "interrupted_ts": at}})
        self._given_traps = [lb for lb in self._given_traps if lb["id"] not in revoked]
        self._given_phases = [lb for lb in self._given_phases if lb["id"] not in revoked]
        for new in amended:
            for given in (self._given_traps, self._given_phases):
                for j, old in enumerate(given):
                    if old["id"] == new["id"]:
                        given[j] = new
        funding = [f for f in self._given_funding if f.ts >= at] + plan.funding
        return _Plan(start, at, plan.cut, sorted(labels, key=lambda lb: lb["start_ts"]),
                     funding, True, tuple(revoked), tuple(amended))

    def _phase_labels(self, change: Change) -> list[dict]:
        """Labels of a started phase: one per market it moves, or per symbol of a feed fault."""
        if change.phase is None:
            return []
        if isinstance(change.phase, FeedDisruption):
            sc = Scenario(name=change.key, phases=(change.phase,))
            out = feed_fault_labels(sc, self.symbols, self.start_ts)
            for label in out:
                label["params"]["scenario_id"] = change.key
            return out
        return [lane.chaos.label(p) for lane in self.lanes for p in lane.chaos.phases
                if p.key == change.key]

    def _rechaos(self, lane: _Lane, change: Change) -> bool:
        """Apply ``change`` to a lane's chaos from the chunk holding its time on; returns
        whether it moves the lane (its prices and volumes from the change's time on are new,
        the trap volume on top kept in proportion)."""
        j = max(i for i, (t, _) in enumerate(lane.chaos_at) if t <= change.at)
        chaos = copy.deepcopy(lane.chaos_at[j][1])
        if change.phase is None:
            hit = chaos.stop(change.key, change.at)
        else:
            hit = chaos.add(change.phase, change.at, change.key, change.key)
        if not hit:
            return False
        b, ref = lane.buf, self.lanes[0].buf
        starts = [t for t, _ in lane.chaos_at[j:]]
        lane.chaos_at = lane.chaos_at[:j]
        at = int(np.searchsorted(b.ts, change.at))
        old = b.chaos_volume[at:].copy()
        bounds = [int(np.searchsorted(b.ts, t)) for t in starts] + [len(b.ts)]
        for (lo, hi), t in zip(pairwise(bounds), starts, strict=True):
            lane.chaos_at.append((t, copy.deepcopy(chaos)))
            out = chaos.apply(b.raw(lo, hi), ref.raw(lo, hi))
            w = max(at, lo)
            b.price[w:hi] = out.price[w - lo:]
            b.chaos_volume[w:hi] = out.volume[w - lo:]
        lane.chaos = chaos
        ratio = np.divide(b.chaos_volume[at:], old, out=np.ones(len(old)), where=old > 0)
        b.volume[at:] *= ratio
        return True

    @staticmethod
    def _stopped(label: dict, at: int) -> dict | None:
        """A stopped phase's label (None if it had not begun)."""
        if label["start_ts"] >= at:
            return None
        end = min(label["end_ts"], at + (STOP_FADE_NS if label["kind"] == "chaos" else 0))
        return {**label, "peak_ts": min(label["peak_ts"], end), "end_ts": end,
                "params": {**label["params"], "stopped_ts": at}}

    def _pull(self, worker: ThreadPoolExecutor, produced: int) -> Future | None:
        """Start making the next base chunks after ``produced`` ticks; None past the limit."""
        want = CHUNK if self._limit is None else min(CHUNK, self._limit - produced)
        if want <= 0:
            return None
        if isinstance(self.market, MultiAssetMarket):
            return worker.submit(self.market.next_chunks, want)
        return worker.submit(lambda: ({"BTC-USD": self.market.next_chunk(want)}, []))

    def _take(self, made: tuple[dict[str, BaseChunk | None], list[Funding]]) -> int:
        """Put new base chunks, with their chaos, into the lanes; returns their length."""
        chunks, funding = made
        ref = chunks["BTC-USD"]
        if ref is None or not len(ref):  # a replay's end
            return 0
        if PERP in chunks:  # the perpetual's lane holds its basis factor over spot
            perp = chunks[PERP]
            chunks[PERP] = BaseChunk(perp.ts, perp.price / ref.price, perp.volume, perp.regime)
        for lane in self.lanes:
            chunk = chunks[lane.symbol]
            if self.live:
                lane.chaos_at.append((int(chunk.ts[0]), copy.deepcopy(lane.chaos)))
            lane.buf.extend(chunk, lane.chaos.apply(chunk, ref))
        self._funding += funding
        return len(ref)

    def _final(self, parts: dict[str, tuple[np.ndarray, ...]], plan: _Plan) -> Step:
        ts, btc, btc_volume, regime = parts["BTC-USD"]
        prices = {s: p[1] for s, p in parts.items()}
        volumes = {s: p[2] for s, p in parts.items()}
        if PERP in parts:
            prices[PERP] = btc * prices[PERP]
        if "BTC-ETH" in self.symbols:
            prices["BTC-ETH"] = btc / prices["ETH-USD"]
        for s in ("BTC-ETH", PERP):
            volumes[s] = btc_volume * VOLUME_SHARE[s]
        ticks = {}
        for s in self.symbols:
            bid, ask = self.spreads[s].quotes(ts, prices[s], volumes[s])
            ticks[s] = TickBatch(s, ts, prices[s], bid, ask, volumes[s], regime,
                                 self.regime_names)
        if plan.since > plan.start:  # quoted again from the step start, given from `since`
            i = int(np.searchsorted(ts, plan.since))
            ticks = {s: t.slice(i, len(t)) for s, t in ticks.items()}
        funding = plan.funding
        if funding:  # marked at the perpetual's quoted price, traps and chaos included
            perp = ticks[PERP]
            at = np.searchsorted(perp.ts, [f.ts for f in funding])
            funding = [f._replace(mark_price=float(perp.price[i])) for f, i in zip(
                funding, at, strict=True)]
        if not plan.revision:
            return Step(ticks, plan.labels, funding)
        return Step(ticks, plan.labels, funding, plan.since, plan.revoked, plan.amended)
