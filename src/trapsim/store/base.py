"""The sink interface: where a run's streams go (run directory, SQL, Redis).

A sink receives, in market-time order, the ticks released by the run loop (each
symbol's, as the subscribers' feed: a feed fault or the symbol's publication guard
changes them for every sink but the run directory), the guard's alerts, the candles
they complete, L2 depth snapshots, the perpetual's funding events, the trap labels
at the tick their trap completes (``end_ts``), HF activations when they end, the
live detector's detections (a run with ``--detect``) at the tick that completes
them, and statistics snapshots. Paced runs
call it with small slices (often one tick), flat-out runs with large batches; a
sink batches its own writes accordingly (DESIGN.md §6.3, after cryptofeed's
queued backends).
"""

from __future__ import annotations

from typing import Protocol

import pyarrow as pa

from trapsim.core.schemas import TickBatch


class Sink(Protocol):
    """One destination of a run's streams."""

    name: str

    def ticks(self, batch: TickBatch) -> None:
        """Final ticks, consecutive, of one symbol."""

    def candles(self, table: pa.Table) -> None:
        """Completed 1-minute candles (:data:`trapsim.core.schemas.CANDLES`)."""

    def labels(self, labels: list[dict]) -> None:
        """Trap labels (int ns times, ``params`` dict) at the tick their trap completes."""

    def hf_activations(self, activations: list[dict]) -> None:
        """Ended HF activations: ``start_ts``, ``end_ts`` (ns), ``trap_count``, ``types``."""

    def hf_switched_on(self, ts: int, trap_count: int) -> None:
        """HF mode switched on at ``ts`` (the activation's record follows when it ends)."""

    def depth(self, table: pa.Table) -> None:
        """L2 depth snapshots (:data:`trapsim.core.schemas.DEPTH`) at the tick they are taken."""

    def detections(self, rows: list[dict]) -> None:
        """Detections (:data:`trapsim.core.schemas.DETECTIONS` columns, int ns times,
        ``features`` JSON text) at the tick that completes them."""

    def funding(self, events: list) -> None:
        """Funding events of the perpetual (:class:`~trapsim.market.multi.Funding`) at their
        tick."""

    def alerts(self, alerts: list[dict]) -> None:
        """One symbol's publication alerts (:mod:`trapsim.feeds.guard`: int ns ``ts``,
        ``symbol``, ``event``, ``price``, ``value``) at the tick that raised them."""

    def statistics(self, report: dict) -> None:
        """A snapshot of the run's statistics report (periodic and final)."""

    def flush(self) -> None:
        """Push buffered writes out (called every few wall seconds)."""

    def close(self, report: dict) -> None:
        """The run ended (``report["stopped_by"]`` says how): flush and release."""
