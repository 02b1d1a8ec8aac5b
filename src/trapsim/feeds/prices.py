"""The input and output of ``trapsim detect``: validated prices in, detection rows out.

Input is a run directory (its ``ticks`` stream) or a ``.csv``, ``.csv.gz``,
``.parquet``, ``.feather`` or ``.arrow`` file with one row per tick or candle and
these columns (names case-insensitive, others ignored):

- time: the first of :data:`TIME_COLUMNS` present, in any form
  :func:`~trapsim.feeds.candles.time_ns` reads (``ts`` ns, ISO 8601, epoch s, ms,
  µs or ns, Arrow timestamps);
- price: ``price`` for ticks, else ``close`` for candles, whose ``high`` and
  ``low`` (both or neither) then give each candle's extremes;
- ``volume``.

Times must be strictly increasing; ticks may be irregular, at least
:data:`MIN_TICK_STEP_NS` apart, candles at least :data:`MIN_CANDLE_STEP_NS` apart.
Gaps are allowed for both, unlike :func:`~trapsim.feeds.candles.read_candles`: the
detector works on event times, not on a fixed grid. Every defect is a
:class:`~trapsim.core.errors.DataError` whose one-line message names the source
and, where it applies, the 1-based data row and its time.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pa_parquet

from trapsim.core.errors import ConfigError, DataError, SinkError
from trapsim.core.schemas import DETECTIONS
from trapsim.core.time import MINUTE_NS, NS, iso
from trapsim.feeds.candles import (
    check_order,
    check_values,
    find_columns,
    float64_column,
    frozen,
    raise_at_first,
    read_table_file,
    time_ns,
)
from trapsim.store.rundir import read_stream

# Unlike candle files, `ts` leads: tick exports often carry a calendar-day `date`
# next to their real time column.
TIME_COLUMNS = ("ts", "timestamp", "date", "open_time")
"""Accepted names of the time column, in order of preference."""

MIN_TICK_STEP_NS = NS
"""Shortest allowed step between consecutive ticks, ns."""
MIN_CANDLE_STEP_NS = MINUTE_NS
"""Shortest allowed step between consecutive candles, ns."""


@dataclass(frozen=True, slots=True)
class Prices:
    """Validated ticks or candles of one symbol, irregular spacing and gaps allowed.

    Parameters
    ----------
    ts : ndarray of int64, shape (m,), m >= 2
        Tick times or candle open times, ns since the Unix epoch, UTC; strictly
        increasing, steps of at least :data:`MIN_TICK_STEP_NS` (ticks) or
        :data:`MIN_CANDLE_STEP_NS` (candles).
    price : ndarray of float64, shape (m,)
        Last price, or candle close (quote currency); finite and ``> 0``.
    volume : ndarray of float64, shape (m,)
        Traded volume (base units); finite and ``>= 0``.
    high, low : ndarray of float64, shape (m,), or None
        Candle extremes, both or neither; ``0 < low <= price <= high``.
    source : str
        Where the prices came from; prefixes every error message.
    is_candles : bool
        Whether rows are candles (``price`` is the close) rather than ticks.

    Attributes
    ----------
    interval_ns : int
        Median step between consecutive rows, ns (the lower median for an even
        count of steps).

    Raises
    ------
    DataError
        If the arrays break any rule above. The arrays are stored read-only
        (writable input is copied), so a valid ``Prices`` stays valid.
    """

    ts: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    high: np.ndarray | None = None
    low: np.ndarray | None = None
    source: str = "<arrays>"
    is_candles: bool = False
    interval_ns: int = field(init=False)

    def __post_init__(self) -> None:
        names = ["price", "volume"]
        if (self.high is None) != (self.low is None):
            raise DataError(f"{self.source}: give candle high and low together, or neither")
        if self.high is not None:
            names += ["high", "low"]
        object.__setattr__(self, "ts", frozen(self.ts, np.int64))
        for name in names:
            object.__setattr__(self, name, frozen(getattr(self, name), np.float64))
        shapes = {getattr(self, name).shape for name in ("ts", *names)}
        if len(shapes) != 1 or len(shapes.pop()) != 1:
            raise DataError(f"{self.source}: price columns must be 1-D and of equal length")
        if len(self.ts) < 2:
            raise DataError(f"{self.source}: {len(self.ts)} row(s); at least 2 are needed")

        steps = _steps(self.ts, self.is_candles, self.source)
        # Messages name the price column as the input calls it.
        label = "close" if self.is_candles else "price"
        columns = {(label if n == "price" else n): getattr(self, n) for n in names}
        check_values(self.ts, columns, self.source)
        for name in (label, "low"):
            if name in columns:
                col = columns[name]
                raise_at_first(
                    col <= 0,
                    self.ts,
                    self.source,
                    lambda i, name=name, col=col: f"{name} {float(col[i])!r} is not positive",
                )
        mid = (len(steps) - 1) // 2
        object.__setattr__(self, "interval_ns", int(np.partition(steps, mid)[mid]))

    def __len__(self) -> int:
        return len(self.ts)


def _steps(ts: np.ndarray, is_candles: bool, source: str) -> np.ndarray:
    """The steps between consecutive times, ns, once checked against the minimum."""
    check_order(ts, source)
    steps = np.diff(ts)
    kind, least = ("candles", MIN_CANDLE_STEP_NS) if is_candles else ("ticks", MIN_TICK_STEP_NS)
    raise_at_first(
        np.r_[False, steps < least],
        ts,
        source,
        lambda i: (
            f"step {steps[i - 1] / NS:g} s from row {i} is under {least / NS:g} s "
            f"(the shortest for {kind})"
        ),
    )
    return steps


def read_prices(path: str | os.PathLike[str]) -> Prices:
    """Read and validate the prices ``trapsim detect`` runs on.

    Parameters
    ----------
    path : str or os.PathLike
        A run directory, whose ``ticks`` stream is read (closed or crashed run;
        ``price`` and ``volume``, no extremes), or a ``.csv``, ``.csv.gz``,
        ``.parquet``, ``.feather`` or ``.arrow`` file with the columns listed in
        the module docstring.

    Returns
    -------
    Prices
        Ticks when the input has a ``price`` column, else candles from ``close``
        (with ``high``/``low`` when the file has both). ``source`` is the file,
        or ``"<run> (ticks)"``.

    Raises
    ------
    DataError
        No such path; unreadable file or unknown extension; not a run directory; no rows or a
        single row; missing or ambiguous columns; several symbols in a
        ``symbol`` column; unparsable, missing, NaN or infinite values; unsorted
        or duplicate times; steps under the minimum; prices ``<= 0``; ``high <
        low`` or a close outside ``[low, high]``; negative volume.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: no such file or run directory")
    if p.is_dir():
        return _prices(read_stream(p, "ticks"), f"{p} (ticks)")
    source = str(p)
    return _prices(read_table_file(source, "price file"), source)


def _prices(table: pa.Table, source: str) -> Prices:
    if table.num_rows == 0:
        raise DataError(f"{source}: no prices")
    columns = find_columns(
        table,
        source,
        {"ts": TIME_COLUMNS, "price": ("price", "close"), "volume": ("volume",)},
        optional=("high", "low", "symbol"),
    )
    if "symbol" in columns:
        symbols = pc.unique(table.column(columns["symbol"]).drop_null())
        if len(symbols) > 1:
            listed = ", ".join(map(str, symbols.to_pylist()[:3])) + (
                ", …" if len(symbols) > 3 else ""
            )
            raise DataError(
                f"{source}: {len(symbols)} symbols ({listed}); give one symbol's prices"
            )
    is_candles = columns["price"].lower() == "close"
    ts = time_ns(table.column(columns["ts"]), source)

    def values(key: str) -> np.ndarray:
        return float64_column(table.column(columns[key]), columns[key].lower(), ts, source)

    extremes = {n: values(n) for n in ("high", "low") if is_candles and n in columns}
    return Prices(
        ts,
        values("price"),
        values("volume"),
        **extremes,
        source=source,
        is_candles=is_candles,
    )


def write_detections(table: pa.Table, path: str | os.PathLike[str]) -> None:
    """Write detection rows to a file in the format its extension names, atomically.

    Parameters
    ----------
    table : pyarrow.Table
        Rows with the :data:`~trapsim.core.schemas.DETECTIONS` schema (TRAPS.md).
    path : str or os.PathLike
        ``.parquet``: times stay ``timestamp[ns, UTC]``. ``.csv``: times become
        ISO 8601 UTC strings (``2025-01-06T00:00:01Z``, with as many fraction
        digits as needed), ``features`` stays a JSON string. The file is written
        under ``<path>.tmp`` and renamed into place, so an existing file is
        replaced whole or not at all.

    Raises
    ------
    ConfigError
        If the extension is neither ``.csv`` nor ``.parquet`` (nothing is written).
    SinkError
        If ``table`` has another schema or the file cannot be written.
    """
    p = Path(path)
    writer = _WRITERS.get(p.suffix.lower())
    if writer is None:
        raise ConfigError(
            f"{p}: unknown detections format {p.suffix!r} (expected one of {', '.join(_WRITERS)})"
        )
    if not table.schema.equals(DETECTIONS):
        raise SinkError(
            f"detections need columns {_fields(DETECTIONS)}; got {_fields(table.schema)}"
        )
    tmp = p.with_name(p.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            writer(table, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except (OSError, pa.ArrowException) as exc:
        # Best effort: the write error matters more than a stray temp file.
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise SinkError(f"cannot write {p}: {exc}") from exc


def _fields(schema: pa.Schema) -> str:
    return ", ".join(f"{f.name}: {f.type}" for f in schema)


def _write_csv(table: pa.Table, sink: BinaryIO) -> None:
    for i, f in enumerate(table.schema):
        if pa.types.is_timestamp(f.type):
            table = table.set_column(i, f.name, _iso_strings(table.column(i)))
    pa_csv.write_csv(table, sink)


def _iso_strings(column: pa.ChunkedArray) -> pa.Array:
    """ns UTC timestamps as :func:`~trapsim.core.time.iso` strings; nulls stay null."""
    ns = column.cast(pa.int64()).to_pylist()
    return pa.array([None if t is None else iso(t) for t in ns], pa.string())


_WRITERS: dict[str, Callable[[pa.Table, BinaryIO], None]] = {
    ".csv": _write_csv,
    ".parquet": pa_parquet.write_table,
}
