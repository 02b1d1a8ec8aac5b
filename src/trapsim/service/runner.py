"""The run loop: drives a :class:`Simulation` flat out or paced by a wall clock, into the sinks.

Pacing follows an absolute schedule (tick ``i`` is released at ``t0 + i × sleep``),
so market time never drifts from wall time. SIGINT and SIGTERM stop the loop
between slices; everything released is flushed and the report written.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import queue
import signal
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text

from trapsim.core.errors import ConfigError
from trapsim.core.hf import HFTracker
from trapsim.core.schemas import TickBatch
from trapsim.core.time import NS, iso
from trapsim.detect.detector import TrapDetector
from trapsim.detect.scoring import LiveScore
from trapsim.feeds.guard import PublicationGuard
from trapsim.market.depth import DepthModel
from trapsim.market.ohlcv import INTERVALS, CandleAggregator
from trapsim.scenarios.chaos import FeedDisruption, announce
from trapsim.scenarios.feed_faults import FeedFaults
from trapsim.scenarios.injector import TRAP_TYPES
from trapsim.service.config import RunConfig
from trapsim.service.simulation import PERP, Simulation, Step
from trapsim.service.stats import RunStats
from trapsim.store.base import Sink
from trapsim.store.rundir import RUN_STREAMS, RunDir, RunDirSink

log = logging.getLogger("trapsim.scenarios")

FLUSH_SECONDS = 2.0
"""Wall seconds between flushes of the run directory: the most a kill can lose."""
STATUS_HZ = 5


class Runner:
    """Runs one configured simulation into a run directory.

    Parameters
    ----------
    cfg : RunConfig
        What to run.
    out : Path
        The run directory to create (must not exist or be empty).
    console : rich.console.Console
        Where the live status, progress bar and report go.
    extra_sinks : tuple of Sink
        Sinks fed next to the run directory (Redis, SQL).
    run_id : str, optional
        Identifies the run in every sink and in ``stats.json``; default a new uuid4 hex.
    sim : Simulation, optional
        The run's simulation, when built beforehand (it reads and checks every
        input file, so a caller can do that before connecting sinks). Made
        ``live``, the run takes :meth:`start_scenario` and :meth:`stop_scenario`.
    released : callable, optional
        Called with no argument each time a slice of ticks, and what it completes, has
        reached every sink, and once more after the sinks are closed: a live server
        sends what the slice published as one batch.
    """

    def __init__(
        self,
        cfg: RunConfig,
        out: Path,
        console: Console,
        extra_sinks: tuple[Sink, ...] = (),
        run_id: str | None = None,
        sim: Simulation | None = None,
        released: Callable[[], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.released = released or (lambda: None)
        self.run_id = run_id or uuid.uuid4().hex
        self.console = console
        self.sim = sim or Simulation(cfg)
        symbols = cfg.symbols
        # Subscribers (every sink but the run directory) get the feed with its faults.
        self.faults = FeedFaults(cfg.scenario, symbols, self.sim.start_ts, cfg.seed)
        specs = cfg.specs
        self.guards = {s: PublicationGuard(specs[s]) for s in symbols}
        streams = RUN_STREAMS + (("depth",) if cfg.depth_every else ()) + (
            ("detections",) if cfg.detect else ()) + (("funding",) if PERP in symbols else ()) + (
            ("feed",) if self.faults or self.sim.live else ())
        rundir = RunDir.create(out, streams=RunDirSink.streams(streams, symbols))
        rundir.write_yaml("config.yaml", cfg.model_dump(mode="json"))
        self.sinks: list = [RunDirSink(rundir, symbols), *extra_sinks]  # the run directory first
        self.candles = {s: [CandleAggregator(s, interval) for interval in INTERVALS]
                        for s in symbols}
        self.depth = {s: DepthModel(s, cfg.seed, cfg.depth_every, cfg.depth_levels,
                                    specs[s].tick_size)
                      for s in symbols} if cfg.depth_every else {}
        # HF mode and the live detector follow the headline symbol's traps.
        self.hf = HFTracker(cfg.hf_min_traps, int(cfg.hf_window * NS))
        self.stats = RunStats(self.sim.regime_names, TRAP_TYPES, symbols)
        # The live detector sees exactly the ticks the sinks get, never a label.
        self.detector = TrapDetector() if cfg.detect else None
        self.live_score = LiveScore(self.sim.start_ts) if cfg.detect else None
        self.detection: dict | None = None  # the live score at the last report
        self.pending: deque[dict] = deque()  # traps injected, not yet ended (in end order)
        self.funding: list = []  # funding events made, not yet released
        self.chaos_pending: list[dict] = []  # chaos phases not yet ended, by end
        self.chaos_unannounced: list[dict] = []  # chaos phases not yet started, by start
        self.stop_reason: str | None = None
        self.last_tick: TickBatch | None = None
        self.t_start = time.monotonic()
        self.lag = {"lag_s": 0.0, "max_lag_s": 0.0}  # paced runs: delay behind the wall clock
        self._control: queue.SimpleQueue = queue.SimpleQueue()  # live changes, from any thread
        self._live_ids = itertools.count(1)
        self._requested: dict[str, str] = {}  # live starts not yet taken: id -> type
        self._phases: dict[int, dict] = {}  # chaos and feed-fault labels by id, as amended

    # -- live changes (from any thread) ------------------------------------------
    def start_scenario(self, phase) -> str:
        """Start a chaos phase (a model of :mod:`trapsim.scenarios.chaos`; ``at`` ignored) at
        the next tick not yet released; returns its scenario id (``live-<n>``).

        Raises
        ------
        ConfigError
            If the phase breaks the guard rails or needs a symbol the run does not have.
        RuntimeError
            If the run's simulation is not live.
        """
        if not self.sim.live:
            raise RuntimeError("this run does not take live changes")
        key = f"live-{next(self._live_ids)}"
        self.sim.check_phase(phase, key)
        self._requested[key] = phase.type
        self._control.put((key, phase))
        return key

    def scenarios(self, ended: bool = False) -> list[dict]:
        """The run's scenario phases (scheduled and live, from any thread), one entry per
        scenario id: ``scenario_id, type, status`` (``starting``, ``scheduled``, ``active``,
        ``ended``), ``symbols``, ``start_ts``, ``end_ts`` (ISO) and ``params``; ended ones
        only if ``ended``."""
        now = self.last_tick.ts[-1] if self.last_tick is not None else self.sim.start_ts
        out: dict[str, dict] = {}
        for label in list(self._phases.values()):
            key = label["params"].get("scenario_id")
            entry = out.setdefault(key, {"scenario_id": key, "type": label["type"],
                                         "symbols": [], "start_ts": label["start_ts"],
                                         "end_ts": label["end_ts"], "params": label["params"]})
            entry["symbols"].append(label["symbol"])
            entry["end_ts"] = max(entry["end_ts"], label["end_ts"])
        for entry in out.values():
            entry["status"] = ("scheduled" if entry["start_ts"] > now else
                               "active" if entry["end_ts"] > now else "ended")
            entry["start_ts"], entry["end_ts"] = iso(entry["start_ts"]), iso(entry["end_ts"])
        rows = [e for e in out.values() if ended or e["status"] != "ended"]
        rows += [{"scenario_id": key, "type": kind, "status": "starting"}
                 for key, kind in list(self._requested.items()) if key not in out]
        return rows

    @property
    def market_ts(self) -> int | None:
        """Market time of the newest released tick (int ns UTC; None before the first)."""
        last = self.last_tick
        return int(last.ts[-1]) if last is not None else None

    def traps_under_way(self) -> dict[tuple[str, str], int]:
        """Injected traps started and not yet ended at :attr:`market_ts`, counted by
        ``(symbol, type)`` (from any thread)."""
        t = self.market_ts
        out: dict[tuple[str, str], int] = {}
        for label in list(self.pending):
            if t is not None and label["start_ts"] <= t:
                key = (label["symbol"], label["type"])
                out[key] = out.get(key, 0) + 1
        return out

    def stop_scenario(self, key: str) -> None:
        """Stop scenario ``key`` (live or scheduled) at the next tick not yet released: its
        moves fade out over 5 minutes, a feed fault ends at once."""
        if not self.sim.live:
            raise RuntimeError("this run does not take live changes")
        self._control.put((key, None))

    def _apply_control(self) -> bool:
        """Hand the queued changes to the simulation, from the first tick not yet released;
        True if any took (the rest of the step in hand is then void)."""
        if self._control.empty():
            return False
        at = self.sim.start_ts if self.last_tick is None else int(self.last_tick.ts[-1]) + NS
        took = False
        while not self._control.empty():
            key, phase = self._control.get()
            try:
                if phase is None:
                    self.sim.stop(key, at)
                    self.faults.stop(key, at)
                    log.info(json.dumps({"timestamp": iso(at), "level": "info",
                                         "service": "trapsim", "event": "scenario_stopped",
                                         "scenario_id": key}))
                else:
                    self.sim.start(phase, at, key)
                    if isinstance(phase, FeedDisruption):
                        self.faults.start(phase, at, key)
                took = True
            except ConfigError as exc:  # e.g. past the run's end; the caller got its id
                self._requested.pop(key, None)
                log.warning(json.dumps({"timestamp": iso(at), "level": "warning",
                                        "service": "trapsim", "event": "scenario_refused",
                                        "scenario_id": key, "detail": str(exc)}))
        return took

    def _revise(self, step: Step) -> None:
        """Take back what a step after a live change voids: revoked labels, funding from its
        start; amended labels replace their earlier versions."""
        if step.since is None:
            return
        revoked = set(step.revoked)
        amended = {lb["id"]: lb for lb in step.amended}

        def mend(labels):
            return [amended.get(lb["id"], lb) for lb in labels if lb["id"] not in revoked]

        for i in revoked:
            self._phases.pop(i, None)
        self._phases.update((i, lb) for i, lb in amended.items() if i in self._phases)
        self.pending = deque(mend(self.pending))
        self.chaos_pending = mend(self.chaos_pending)
        self.chaos_unannounced = mend(self.chaos_unannounced)
        self.funding = [f for f in self.funding if f.ts < step.since]

    # -- signals -------------------------------------------------------------
    def _on_signal(self, signum, _frame) -> None:
        self.stop_reason = signal.Signals(signum).name

    def stop(self, reason: str = "stopped") -> None:
        """Stop the run between two slices (from any thread); everything released is kept."""
        self.stop_reason = reason

    # -- one released slice of ticks ------------------------------------------
    def _emit(self, step: dict[str, TickBatch]) -> None:
        """Release one slice of ticks: every symbol's, on the same times."""
        head = step[self.cfg.symbol]
        for ticks in step.values():
            self.stats.add_ticks(ticks)
            self.sinks[0].ticks(ticks)
            if self.faults:
                self._deliver(*self.faults.deliver(ticks))
            else:
                self._deliver(ticks)
            if self.depth:
                book = self.depth[ticks.symbol].update(ticks.ts, ticks.bid, ticks.ask,
                                                       ticks.volume)
                if book.num_rows:
                    for sink in self.sinks:
                        sink.depth(book)
            candles = [c.update(ticks.ts, ticks.price, ticks.volume)
                       for c in self.candles[ticks.symbol]]
            self._write_candles(candles, ticks is head)
        if self.detector is not None:
            rows = self.detector.feed(head.ts, head.price, head.volume)
            if rows:
                self.live_score.add_detections(rows)
                for sink in self.sinks:
                    sink.detections(rows)
        now = int(head.ts[-1])
        paid = [f for f in self.funding if f.ts <= now]
        if paid:
            self.funding = self.funding[len(paid):]
            for sink in self.sinks:
                sink.funding(paid)
        released = []
        while self.pending and self.pending[0]["end_ts"] <= now:
            released.append(self.pending.popleft())
        while self.chaos_unannounced and self.chaos_unannounced[0]["start_ts"] <= now:
            announce(self.chaos_unannounced.pop(0))
        chaos = [lb for lb in self.chaos_pending if lb["end_ts"] <= now]
        self.chaos_pending = self.chaos_pending[len(chaos):]
        ended = []
        for label in released:
            if label["symbol"] != self.cfg.symbol:
                continue
            done, switched_on = self.hf.add(label["start_ts"], label["type"])
            ended += done
            if switched_on:
                for sink in self.sinks:
                    sink.hf_switched_on(label["start_ts"], self.hf.current["trap_count"])
        # A pending trap may already have started: HF time must not pass its start,
        # or a paced run could close an activation that trap extends.
        ended += self.hf.advance(min([now, *self._headline_starts()]))
        # In end order, however the run is sliced.
        self._write_labels(sorted(released + chaos, key=lambda lb: (lb["end_ts"], lb["id"])),
                           ended)
        self.last_tick = head.slice(len(head) - 1, len(head))
        self.released()

    def _deliver(self, ticks: TickBatch, recv_ts=None) -> None:
        """Ticks as subscribers receive them (after feed faults, ``recv_ts`` their arrival
        times, and the symbol's publication guard: band, breaker, price grid): recorded in
        the run directory if faulty, sent to the other sinks; the guard's alerts go to
        every sink."""
        keep, alerts = self.guards[ticks.symbol].check(ticks)
        if alerts:
            self.stats.add_alerts(alerts)
            for sink in self.sinks:
                sink.alerts(alerts)
        if not keep.all():
            ticks = ticks.take(keep)
            recv_ts = None if recv_ts is None else recv_ts[keep]
        ticks = self.guards[ticks.symbol].quote(ticks)
        if len(ticks):
            if recv_ts is not None:
                self.sinks[0].feed(ticks, recv_ts)
            for sink in self.sinks[1:]:
                sink.ticks(ticks)

    def _take(self, labels: list[dict]) -> None:
        """Hold new labels until their end: traps for HF mode and the sinks, chaos apart (a
        long chaos phase must not hold back the traps inside it)."""
        for label in labels:
            if label["kind"] == "trap":
                self.pending.append(label)
            else:
                self.chaos_pending.append(label)
                self.chaos_unannounced.append(label)
                self._phases[label["id"]] = label
                self._requested.pop(label["params"].get("scenario_id"), None)
        # Several symbols' traps interleave: keep the traps in end order.
        self.pending = deque(sorted(self.pending, key=lambda lb: (lb["end_ts"], lb["id"])))
        self.chaos_pending.sort(key=lambda lb: (lb["end_ts"], lb["id"]))
        self.chaos_unannounced.sort(key=lambda lb: (lb["start_ts"], lb["id"]))

    def _headline_starts(self) -> list[int]:
        """Starts of the headline symbol's traps not yet ended."""
        return [lb["start_ts"] for lb in self.pending if lb["symbol"] == self.cfg.symbol]

    def _write_candles(self, tables: list, headline: bool) -> None:
        """Completed candles of each interval of one symbol (1-minute ones first, for the
        headline symbol's statistics)."""
        if headline and tables[0].num_rows:
            self.stats.add_candles(tables[0]["close"].to_numpy())
        for table in tables:
            if table.num_rows:
                for sink in self.sinks:
                    sink.candles(table)

    def _write_labels(self, labels: list[dict], acts: list[dict]) -> None:
        if labels:
            self.stats.add_labels(labels)
            if self.live_score is not None:
                self.live_score.add_labels([lb for lb in labels
                                            if lb["symbol"] == self.cfg.symbol])
            for sink in self.sinks:
                sink.labels(labels)
        if acts:
            self.stats.hf_activations += len(acts)
            for sink in self.sinks:
                sink.hf_activations(acts)

    def _flush(self) -> None:
        report = self._report()
        for sink in self.sinks:
            sink.statistics(report)
            sink.flush()

    def _report(self, ended: bool = False) -> dict:
        report = self.stats.report()
        report["run_id"] = self.run_id
        if self.live_score is not None and self.stats.last_ts is not None:
            self.detection = self.live_score.report(
                self.stats.last_ts, pending=self._headline_starts(), ended=ended
            )
            report["detection"] = self.detection
        wall = time.monotonic() - self.t_start
        report["stopped_by"] = self.stop_reason
        report["wall_seconds"] = wall
        report["ticks_per_wall_second"] = self.stats.ticks / wall if wall > 0 else None
        if self.cfg.sleep > 0:
            report["pacing"] = {"sleep": self.cfg.sleep, **self.lag}
        return report

    # -- the loop --------------------------------------------------------------
    def run(self) -> dict:
        """Run until the duration or replay ends or a signal arrives; returns the report."""
        # Signals reach the main thread only; a run in another thread stops by stop().
        main = threading.current_thread() is threading.main_thread()
        old = {s: signal.signal(s, self._on_signal)
               for s in (signal.SIGINT, signal.SIGTERM)} if main else {}
        self.t_start = time.monotonic()
        try:
            if self.cfg.sleep > 0:
                self._run_paced()
            else:
                self._run_flat()
        except Exception as exc:
            # Close every sink on the way out (sim_running=0, run row ended), best effort.
            self.stop_reason = f"error: {exc}"
            with contextlib.suppress(Exception):
                self._finish()
            raise
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        return self._finish()

    def _run_flat(self) -> None:
        columns = (
            TextColumn("[bold]simulating"),
            BarColumn(),
            TextColumn(
                "{task.completed:,}/{task.total:,} ticks"
                if self.sim.total_ticks
                else "{task.completed:,} ticks"
            ),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        last_flush = time.monotonic()
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task("run", total=self.sim.total_ticks)
            for step in self.sim.batches():
                self._revise(step)
                self._take(step.labels)
                self.funding += step.funding
                n = len(step.ticks[self.cfg.symbol])
                if n:
                    self._emit(step.ticks)
                self._apply_control()
                progress.update(task, advance=n)
                if time.monotonic() - last_flush > FLUSH_SECONDS:
                    self._flush()
                    last_flush = time.monotonic()
                if self.stop_reason:
                    return

    def _run_paced(self) -> None:
        with Live(
            self._status(), console=self.console, refresh_per_second=STATUS_HZ, transient=False
        ) as live:
            self._paced_loop(live)
            live.update(self._status())
        if not self.console.is_terminal:
            self.console.line()  # a log gets the final status line, then the report

    def _paced_loop(self, live: Live) -> None:
        sleep = self.cfg.sleep
        released = 0
        t0 = None
        for step in self.sim.batches():
            self._revise(step)
            self._take(step.labels)
            self.funding += step.funding
            i = 0
            n = len(step.ticks[self.cfg.symbol])
            if t0 is None and n:
                # The clock starts once the first tick is out, not while code loads.
                self._emit(_slice(step.ticks, 0, 1))
                i = released = 1
                t0 = last_flush = last_status = time.monotonic()
            while i < n:
                if self.stop_reason:
                    return
                now = time.monotonic()
                due = int((now - t0) / sleep) + 1 - released
                if due <= 0:
                    time.sleep(min(t0 + released * sleep - now, 0.05))
                    continue
                k = min(due, n - i)
                self._emit(_slice(step.ticks, i, i + k))
                i += k
                released += k
                # How late the newest tick went out against its schedule t0 + i × sleep.
                lag = time.monotonic() - (t0 + (released - 1) * sleep)
                self.lag = {"lag_s": lag, "max_lag_s": max(lag, self.lag["max_lag_s"])}
                if now - last_flush > FLUSH_SECONDS:
                    self._flush()
                    last_flush = now
                if now - last_status > 1 / STATUS_HZ:
                    live.update(self._status())
                    last_status = now
                if self._apply_control():
                    break  # the next step starts at the change

    def _status(self) -> Text:
        t = self.last_tick
        if t is None:
            return Text("starting…")
        regime = t.regime_names[int(t.regime[0])]
        hf = "[bold red]HF ON[/]" if self.hf.active else "HF off"
        total = sum(self.stats.traps.values())
        status = (
            f"[bold]{iso(int(t.ts[0]))}[/]  {t.symbol} [bold]{t.price[0]:,.2f}[/]"
            f"  bid {t.bid[0]:,.2f} ask {t.ask[0]:,.2f}  {regime}  traps {total}  {hf}"
        )
        if self.detection is not None:
            d = self.detection
            status += f"  detected {d['detections']}  P {_rate(d['precision'])}" \
                      f" R {_rate(d['recall'])}"
        return Text.from_markup(status)

    def _finish(self) -> dict:
        # Chaos phases that began are written even if the run stopped before their end.
        last = self.stats.last_ts
        begun = [lb for lb in self.chaos_pending if last is not None and lb["start_ts"] <= last]
        self._write_labels(begun, self.hf.close())
        for symbol in self.cfg.symbols if self.faults else ():
            held = self.faults.drain(symbol)
            if held is not None:
                self._deliver(*held)
        for symbol, candles in self.candles.items():
            self._write_candles([c.flush() for c in candles], symbol == self.cfg.symbol)
        self.stop_reason = self.stop_reason or "end"
        report = self._report(ended=self.stop_reason == "end")
        # Every sink gets its close (sim_running=0, run row ended) even if one fails.
        errors = []
        for sink in self.sinks:
            try:
                sink.close(report)
            except Exception as exc:  # noqa: BLE001 - re-raised below, after the others
                errors.append(exc)
        self.released()
        if errors:
            raise errors[0]
        return report


def _slice(step: dict[str, TickBatch], lo: int, hi: int) -> dict[str, TickBatch]:
    return {s: t.slice(lo, hi) for s, t in step.items()}


def _rate(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def execute(
    cfg: RunConfig,
    out: Path,
    console: Console,
    out_console: Console,
    extra_sinks: tuple[Sink, ...] = (),
    run_id: str | None = None,
    sim: Simulation | None = None,
) -> dict:
    """Run ``cfg`` into ``out`` and the extra sinks, print the statistics report; returns it."""
    runner = Runner(cfg, out, console, extra_sinks, run_id, sim)
    # One unwrapped line: the daemon script and log scrapers read it.
    console.print(
        f"run directory {out}  seed {cfg.seed}  run id {runner.run_id}",
        highlight=False,
        soft_wrap=True,
    )
    report = runner.run()
    print_report(report, out_console)
    return report


def print_report(report: dict, console: Console) -> None:
    """The statistics report as tables."""
    from rich.table import Table

    head = Table(title="trapsim run", show_header=False)
    for key in (
        "market_start",
        "market_end",
        "market_hours",
        "ticks",
        "stopped_by",
        "wall_seconds",
        "ticks_per_wall_second",
    ):
        value = report.get(key)
        head.add_row(key, f"{value:,.2f}" if isinstance(value, float) else str(value))
    price = report["price"]
    if report["ticks"]:
        head.add_row("price first/last", f"{price['first']:,.2f} / {price['last']:,.2f}")
        head.add_row("price low/high", f"{price['low']:,.2f} / {price['high']:,.2f}")
    head.add_row("HF activations", str(report["hf_activations"]))
    traps = Table(title=f"traps: {report['traps']['total']} ({report['traps']['per_hour']:.2f}/h)")
    traps.add_column("type")
    traps.add_column("count", justify="right")
    for kind, n in report["traps"]["per_type"].items():
        traps.add_row(kind, str(n))
    regimes = Table(title="time share per regime")
    regimes.add_column("regime")
    regimes.add_column("share", justify="right")
    for name, share in report["regime_share"].items():
        regimes.add_row(name, f"{share:.1%}")
    rets = Table(title="1-minute log returns")
    rets.add_column("statistic")
    rets.add_column("value", justify="right")
    for key, value in report["returns_1m"].items():
        rets.add_row(key, f"{value:.6g}" if isinstance(value, float) else str(value))
    tables = [head, traps, regimes, rets]
    if report.get("symbols"):
        per = Table(title="symbols")
        for name in ("symbol", "first", "last", "low", "high", "traps"):
            per.add_column(name, justify="left" if name == "symbol" else "right")
        for symbol, r in report["symbols"].items():
            per.add_row(symbol, *(f"{r[k]:,.6g}" if r[k] is not None else "–"
                                  for k in ("first", "last", "low", "high")), str(r["traps"]))
        tables.append(per)
    if report.get("detection"):
        tables.append(_detection_table(report["detection"]))
    for table in tables:
        console.print(table)


def _detection_table(d: dict):
    """The live detector's score (a report's ``detection``) as a table."""
    from rich.table import Table

    table = Table(title=f"live detector, scored as of {d['as_of']}")
    for name in ("type", "labels", "detections", "matched", "precision", "recall", "F1"):
        table.add_column(name, justify="left" if name == "type" else "right")
    rows = [*d["per_type"].items(), ("all", d)]
    for name, r in rows:
        table.add_row(name, str(r["labels"]), str(r["detections"]), str(r["matched"]),
                      _rate(r["precision"]), _rate(r["recall"]), _rate(r["f1"]))
    m = d["macro"]
    table.add_row("macro", "", "", "", _rate(m["precision"]), _rate(m["recall"]), _rate(m["f1"]))
    return table
