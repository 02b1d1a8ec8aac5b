"""Feed faults: what subscribers receive while a ``feed_disruption`` phase runs.

A fault changes the feed, not the market: the run directory keeps the true
ticks (``ticks.parquet``) and records what subscribers got (``feed.parquet``,
with the time each tick arrived), while Redis and the other sinks receive the
faulty feed. During a phase of a ``feed_disruption`` (:mod:`trapsim.scenarios.chaos`)
on an affected symbol:

- ``degraded``: each tick is lost with probability ``packet_loss_percentage``
  and the others arrive ``latency_ms`` late (arrival times never go backwards,
  so the feed stays in order, as over one TCP connection);
- ``stale``: ticks keep coming, all carrying the last quote before the fault
  (a feed stuck on its last value);
- ``outage``: nothing arrives.

Losses are drawn from ``feed/<symbol>`` of the run seed, one draw per tick in a
phase, so a run gives the same feed however it is sliced. Each phase writes one
label per affected symbol of ``kind`` ``feed_fault``.
"""

from __future__ import annotations

import numpy as np

from trapsim.core.schemas import TickBatch
from trapsim.core.seeding import rng_for
from trapsim.core.time import NS
from trapsim.scenarios.chaos import FeedDisruption, Scenario, offset_ns

OWN_SOURCE = "synthetic"
"""The ``source`` of a run's own feed."""


def _phases(scenario: Scenario | None,
            start_ts: int) -> list[tuple[int, int, FeedDisruption, str]]:
    """(start, end, phase, scenario id) of the faults on the run's own feed."""
    if scenario is None:
        return []
    out = []
    for i, phase in enumerate(scenario.phases):
        if isinstance(phase, FeedDisruption) and phase.source == OWN_SOURCE:
            start = start_ts + offset_ns(phase.at)
            out.append((start, start + round(phase.duration_seconds * NS), phase,
                        f"{scenario.name}/{i}"))
    return sorted(out, key=lambda p: p[0])


def feed_fault_labels(scenario: Scenario | None, symbols: tuple[str, ...],
                      start_ts: int) -> list[dict]:
    """One label (``kind`` ``feed_fault``; ``id`` left to the run) per phase and affected
    symbol of the run."""
    out = []
    for start, end, phase, key in _phases(scenario, start_ts):
        params = phase.model_dump(mode="json", exclude={"type"})
        params["scenario"] = scenario.name
        params["scenario_id"] = key
        magnitude = {"degraded": phase.packet_loss_percentage}.get(phase.mode, 100.0)
        out += [{"kind": "feed_fault", "type": phase.type, "symbol": symbol,
                 "direction": "none", "start_ts": start, "peak_ts": start, "end_ts": end,
                 "magnitude": magnitude, "params": params}
                for symbol in phase.affect_symbols if symbol in symbols]
    return out


class FeedFaults:
    """Turns the true ticks of each symbol into the ticks subscribers receive.

    Parameters
    ----------
    scenario : Scenario or None
        Its ``feed_disruption`` phases with ``source: synthetic`` apply.
    symbols : tuple of str
        The run's symbols.
    start_ts : int
        Run start, ns UTC.
    seed : int
        Run seed.
    """

    def __init__(self, scenario: Scenario | None, symbols: tuple[str, ...], start_ts: int,
                 seed: int) -> None:
        self.phases = _phases(scenario, start_ts)
        self._rng = {s: rng_for(seed, f"feed/{s}") for s in symbols}
        self._last: dict[str, tuple[float, float, float]] = {}  # last true quote before now
        self._stale: dict[tuple[int, str], tuple[float, float, float] | None] = {}
        self._recv = dict.fromkeys(symbols, -1)  # latest arrival time so far
        self._held: dict[str, list[tuple[TickBatch, np.ndarray]]] = {s: [] for s in symbols}

    def __bool__(self) -> bool:
        return bool(self.phases)

    def start(self, phase: FeedDisruption, at_ts: int, key: str) -> None:
        """Start a fault on the run's own feed at ``at_ts`` (ns) as scenario ``key`` (a live
        start; other sources' faults do nothing here)."""
        if phase.source == OWN_SOURCE:
            self.phases.append((int(at_ts), int(at_ts) + round(phase.duration_seconds * NS),
                                phase, key))

    def stop(self, key: str, at_ts: int) -> None:
        """End fault ``key`` at ``at_ts`` (ns) if it runs longer."""
        self.phases = [(start, min(end, max(start, int(at_ts))) if k == key else end, phase, k)
                       for start, end, phase, k in self.phases]

    def deliver(self, ticks: TickBatch) -> tuple[TickBatch, np.ndarray]:
        """The ticks subscribers have received by the last tick's time, and their arrival
        times (ns); ticks delayed beyond it come with a later call or :meth:`drain`."""
        s = ticks.symbol
        n = len(ticks)
        keep = np.ones(n, bool)
        delay = np.zeros(n, np.int64)
        price, bid, ask = ticks.price.copy(), ticks.bid.copy(), ticks.ask.copy()
        for start, end, phase, _ in self.phases:
            if s not in phase.affect_symbols:
                continue
            inside = (ticks.ts >= start) & (ticks.ts < end)
            if not inside.any():
                continue
            if phase.mode == "outage":
                keep &= ~inside
            elif phase.mode == "stale":
                if (start, s) not in self._stale:  # the quote the feed sticks on
                    first = int(np.argmax(inside))
                    self._stale[start, s] = (self._last.get(s) if first == 0 else (
                        ticks.price[first - 1], ticks.bid[first - 1], ticks.ask[first - 1]))
                held = self._stale[start, s]
                if held is not None:
                    price[inside], bid[inside], ask[inside] = held
            else:
                lost = self._rng[s].random(int(inside.sum())) < phase.packet_loss_percentage / 100
                keep[np.flatnonzero(inside)[lost]] = False
                delay[inside] = round(phase.latency_ms * 1e6)
        if n:
            self._last[s] = (float(ticks.price[-1]), float(ticks.bid[-1]), float(ticks.ask[-1]))
        idx = np.flatnonzero(keep)
        recv = np.maximum.accumulate(np.concatenate([[self._recv[s]], ticks.ts[idx] + delay[idx]]))
        recv = recv[1:]
        if len(recv):
            self._recv[s] = int(recv[-1])
        got = TickBatch(s, ticks.ts[idx], price[idx], bid[idx], ask[idx], ticks.volume[idx],
                        ticks.regime[idx], ticks.regime_names)
        self._held[s].append((got, recv))
        now = int(ticks.ts[-1]) if n else -1
        return self._release(s, now)

    def drain(self, symbol: str) -> tuple[TickBatch, np.ndarray] | None:
        """Everything still held back for ``symbol`` (the run ended)."""
        return self._release(symbol, None) if self._held[symbol] else None

    def _release(self, s: str, now: int | None) -> tuple[TickBatch, np.ndarray]:
        held = self._held[s]
        batch = _concat([b for b, _ in held]) if len(held) > 1 else held[0][0]
        recv = np.concatenate([r for _, r in held])
        cut = len(recv) if now is None else int(np.searchsorted(recv, now, side="right"))
        self._held[s] = [(batch.slice(cut, len(batch)), recv[cut:])] if cut < len(recv) else []
        return batch.slice(0, cut), recv[:cut]


def _concat(batches: list[TickBatch]) -> TickBatch:
    b = batches[0]
    cols = [np.concatenate([getattr(x, f) for x in batches])
            for f in ("ts", "price", "bid", "ask", "volume", "regime")]
    return TickBatch(b.symbol, *cols, b.regime_names)

