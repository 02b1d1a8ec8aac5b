"""Reading OHLCV candle files (CSV, Parquet, Feather/Arrow) into validated arrays.

A file holds one row per candle with a time column and ``open, high, low, close,
volume`` (column names case-insensitive). The time column is the first of
:data:`TIME_COLUMNS` present; it is the candle's open time. Every defect is a
:class:`~trapsim.core.errors.DataError` whose one-line message names the file and,
where it applies, the 1-based data row (the header is not counted) and its time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as pa_feather
import pyarrow.parquet as pa_parquet

from trapsim.core.errors import DataError
from trapsim.core.time import NS, iso

TIME_COLUMNS = ("date", "open_time", "timestamp", "ts")
"""Accepted names of the time column, in order of preference."""

VALUE_COLUMNS = ("open", "high", "low", "close", "volume")
"""The other required columns."""

_READERS: dict[str, Callable[[str], pa.Table]] = {
    ".csv": pa_csv.read_csv,
    # pyarrow decompresses by the path's extension.
    ".csv.gz": pa_csv.read_csv,
    ".parquet": pa_parquet.read_table,
    ".feather": pa_feather.read_table,
    ".arrow": pa_feather.read_table,
}

# Epoch integers are told apart by the largest magnitude in the column: between
# 1973 and 2262 seconds lie in [1e8, 9.2e9], milliseconds in [1e11, 9.2e12],
# microseconds in [1e14, 9.2e15] and nanoseconds in [1e17, 9.2e18], so each bound
# below sits a decade clear of both neighbours.
_EPOCH_UNITS = ((1e11, NS), (1e14, 1_000_000), (1e17, 1_000), (np.inf, 1))

_TS_UTC = pa.timestamp("ns", tz="UTC")


@dataclass(frozen=True, slots=True)
class Candles:
    """Validated OHLCV candles at a fixed interval, no gaps.

    Parameters
    ----------
    ts : ndarray of int64, shape (m,)
        Candle open times, ns since the Unix epoch, UTC; strictly increasing by
        exactly ``interval_ns``.
    open, high, low, close : ndarray of float64, shape (m,)
        Prices (quote currency), finite, with ``low <= open, close <= high``.
    volume : ndarray of float64, shape (m,)
        Traded volume (base units), finite and ``>= 0``.
    interval_ns : int
        Candle length in ns.
    source : str
        Where the candles came from; prefixes every error message.

    Raises
    ------
    DataError
        If the arrays break any rule above. The arrays are stored read-only
        (writable input is copied), so a valid ``Candles`` stays valid.
    """

    ts: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    interval_ns: int
    source: str = "<arrays>"

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", _frozen(self.ts, np.int64))
        object.__setattr__(self, "interval_ns", int(self.interval_ns))
        for name in VALUE_COLUMNS:
            object.__setattr__(self, name, _frozen(getattr(self, name), np.float64))
        shapes = {getattr(self, name).shape for name in ("ts", *VALUE_COLUMNS)}
        if len(shapes) != 1 or len(shapes.pop()) != 1:
            raise DataError(f"{self.source}: candle columns must be 1-D and of equal length")
        if self.interval_ns <= 0:
            raise DataError(f"{self.source}: candle interval must be positive")
        _check_order(self.ts, self.source)
        _check_values(self)
        _check_gaps(self.ts, self.interval_ns, self.source)

    def __len__(self) -> int:
        return len(self.ts)

    def slice(self, lo: int, hi: int) -> Candles:
        """Candles ``lo:hi`` (views of the same arrays)."""
        return Candles(
            self.ts[lo:hi],
            self.open[lo:hi],
            self.high[lo:hi],
            self.low[lo:hi],
            self.close[lo:hi],
            self.volume[lo:hi],
            self.interval_ns,
            self.source,
        )


def read_candles(path: str | Path, *, interval_ns: int | None = None) -> Candles:
    """Read and validate a candle file.

    Parameters
    ----------
    path : str or Path
        A ``.csv``, ``.csv.gz``, ``.parquet``, ``.feather`` or ``.arrow`` file.
    interval_ns : int, optional
        The expected candle length in ns. By default it is inferred as the most
        common step between consecutive candle times (at least 2 candles needed).

    Returns
    -------
    Candles
        ``m`` candles; the time column becomes int64 ns UTC. Timestamp columns of
        any unit and zone are converted to UTC, naive ones are taken as UTC; ISO
        8601 strings likewise (a column is all naive or all with zone offsets);
        integer epochs are read as s, ms, µs or ns by magnitude (see
        ``_EPOCH_UNITS``; exact for times between 1973 and 2262).

    Raises
    ------
    DataError
        Unreadable file or unknown extension; no candles; missing or ambiguous
        columns; unparsable, missing, NaN or infinite values; unsorted or
        duplicate times; a gap or irregular step; ``high < low``; open or close
        outside ``[low, high]``; negative volume.
    """
    source = str(path)
    table = _read_table(source)
    if table.num_rows == 0:
        raise DataError(f"{source}: no candles")
    columns = _find_columns(table, source)
    ts = _time_ns(table.column(columns["ts"]), source)
    values = {
        name: _float64(table.column(columns[name]), name, ts, source) for name in VALUE_COLUMNS
    }
    if interval_ns is None:
        interval_ns = _infer_interval(ts, source)
    return Candles(ts, **values, interval_ns=interval_ns, source=source)


def _read_table(source: str) -> pa.Table:
    name = Path(source).name.lower()
    suffix = ".csv.gz" if name.endswith(".csv.gz") else Path(name).suffix
    reader = _READERS.get(suffix)
    if reader is None:
        known = ", ".join(_READERS)
        raise DataError(f"{source}: unknown candle format {suffix!r} (expected one of {known})")
    try:
        return reader(source)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise DataError(f"{source}: cannot read: {_first_line(exc)}") from exc


def _find_columns(table: pa.Table, source: str) -> dict[str, str]:
    """Map each wanted lower-case name (``ts`` for the time column) to the table's column."""
    by_lower: dict[str, str] = {}
    for name in table.column_names:
        key = name.lower()
        if key in by_lower:
            raise DataError(f"{source}: columns {by_lower[key]!r} and {name!r} differ only in case")
        by_lower[key] = name
    time_name = next((by_lower[n] for n in TIME_COLUMNS if n in by_lower), None)
    missing = [n for n in VALUE_COLUMNS if n not in by_lower]
    if time_name is None:
        missing.insert(0, "/".join(TIME_COLUMNS))
    if missing:
        found = ", ".join(table.column_names)
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; found: {found}")
    return {"ts": time_name, **{n: by_lower[n] for n in VALUE_COLUMNS}}


def _time_ns(column: pa.ChunkedArray, source: str) -> np.ndarray:
    """The time column as int64 ns UTC, shape (m,)."""
    array = column.combine_chunks()
    if array.null_count:
        row = int(np.flatnonzero(array.is_null().to_numpy(zero_copy_only=False))[0]) + 1
        raise DataError(f"{source}: row {row}: time is missing")
    kind = array.type
    if pa.types.is_integer(kind):
        return _epoch_ns(array, source)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        array = _parse_iso(array, source)
        kind = array.type
    elif not (pa.types.is_timestamp(kind) or pa.types.is_date(kind)):
        raise DataError(
            f"{source}: time column has type {kind}; "
            "expected timestamps, ISO 8601 strings or integer epochs"
        )
    # Dates and naive timestamps are taken as UTC: their stored value is kept.
    target = pa.timestamp("ns", tz=getattr(kind, "tz", None))
    try:
        ns = array.cast(target)
    except pa.ArrowInvalid as exc:
        raise DataError(f"{source}: time out of the ns range: {_first_line(exc)}") from exc
    return ns.cast(pa.int64()).to_numpy()


def _epoch_ns(array: pa.Array, source: str) -> np.ndarray:
    try:
        values = array.cast(pa.int64()).to_numpy()
    except pa.ArrowInvalid as exc:
        raise DataError(f"{source}: epoch time out of range: {_first_line(exc)}") from exc
    biggest = float(np.max(np.abs(values.astype(np.float64))))
    scale = next(scale for bound, scale in _EPOCH_UNITS if biggest < bound)
    limit = np.iinfo(np.int64).max // scale
    bad = np.flatnonzero(np.abs(values) > limit)
    if bad.size:
        row = int(bad[0]) + 1
        raise DataError(f"{source}: row {row}: epoch time {values[row - 1]} is out of range")
    return values * np.int64(scale)


def _parse_iso(array: pa.Array, source: str) -> pa.Array:
    def cast(part: pa.Array) -> pa.Array:
        try:
            return part.cast(_TS_UTC)
        except pa.ArrowInvalid:
            return part.cast(pa.timestamp("ns"))

    try:
        return cast(array)
    except pa.ArrowInvalid:
        row = _first_failing_row(array, cast)
        text = array[row - 1].as_py()
        raise DataError(
            f"{source}: row {row}: time {text!r} is not ISO 8601 (or mixes naive and zoned times)"
        ) from None


def _float64(column: pa.ChunkedArray, name: str, ts: np.ndarray, source: str) -> np.ndarray:
    """A value column as float64, shape (m,); missing values become NaN (rejected later)."""
    array = column.combine_chunks()
    try:
        array = array.cast(pa.float64())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        row = _first_failing_row(array, lambda part: part.cast(pa.float64()))
        raise DataError(
            f"{source}: row {row} ({iso(ts[row - 1])}): {name} {array[row - 1].as_py()!r} "
            "is not a number"
        ) from None
    return array.to_numpy(zero_copy_only=False)


def _first_failing_row(array: pa.Array, cast: Callable[[pa.Array], pa.Array]) -> int:
    """The 1-based row whose value makes ``cast`` fail, by bisection on prefixes.

    Only called once ``cast(array)`` has failed; a prefix fails iff it holds a bad
    value, so the shortest failing prefix ends at the first bad row.
    """
    good, bad = 0, len(array)
    while bad - good > 1:
        mid = (good + bad) // 2
        try:
            cast(array.slice(0, mid))
            good = mid
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            bad = mid
    return bad


def _infer_interval(ts: np.ndarray, source: str) -> int:
    """The most common step between consecutive times, ns (ties: the shortest)."""
    if len(ts) < 2:
        raise DataError(f"{source}: cannot infer the candle interval from a single candle")
    _check_order(ts, source)
    steps, counts = np.unique(np.diff(ts), return_counts=True)
    return int(steps[np.argmax(counts)])


def _check_order(ts: np.ndarray, source: str) -> None:
    step = np.diff(ts)
    back = np.flatnonzero(step < 0)
    if back.size:
        i = int(back[0]) + 1
        raise DataError(
            f"{source}: row {i + 1} ({iso(ts[i])}): time is earlier than row {i} ({iso(ts[i - 1])})"
        )
    same = np.flatnonzero(step == 0)
    if same.size:
        i = int(same[0]) + 1
        raise DataError(f"{source}: row {i + 1} ({iso(ts[i])}): duplicate of row {i}")


def _check_gaps(ts: np.ndarray, interval_ns: int, source: str) -> None:
    step = np.diff(ts)
    off = np.flatnonzero(step != interval_ns)
    if off.size:
        i = int(off[0]) + 1
        missing = step[i - 1] // interval_ns - 1
        detail = f"{missing} candle(s) missing" if step[i - 1] % interval_ns == 0 else "irregular"
        raise DataError(
            f"{source}: row {i + 1} ({iso(ts[i])}): step {step[i - 1] / NS:g} s from row {i} "
            f"is not the interval {interval_ns / NS:g} s ({detail})"
        )


def _check_values(c: Candles) -> None:
    def fail(mask: np.ndarray, what: Callable[[int], str]) -> None:
        rows = np.flatnonzero(mask)
        if rows.size:
            i = int(rows[0])
            raise DataError(f"{c.source}: row {i + 1} ({iso(c.ts[i])}): {what(i)}")

    def num(x: np.floating) -> str:
        return repr(float(x))

    for name in VALUE_COLUMNS:
        col = getattr(c, name)
        fail(~np.isfinite(col), lambda i, name=name, col=col: f"{name} is {num(col[i])} or missing")
    fail(c.high < c.low, lambda i: f"high {num(c.high[i])} < low {num(c.low[i])}")
    for name in ("open", "close"):
        col = getattr(c, name)
        fail(
            (col < c.low) | (col > c.high),
            lambda i, name=name, col=col: (
                f"{name} {num(col[i])} outside [low {num(c.low[i])}, high {num(c.high[i])}]"
            ),
        )
    fail(c.volume < 0, lambda i: f"volume {num(c.volume[i])} is negative")


def _frozen(values: object, dtype: type) -> np.ndarray:
    """``values`` as a read-only contiguous array that nobody else can write to.

    Read-only input (Arrow buffers, slices of other candles) is shared; anything
    writable is copied, so the caller keeps a writable array of its own.
    """
    if (
        isinstance(values, np.ndarray)
        and values.dtype == dtype
        and values.flags.c_contiguous
        and not values.flags.writeable
    ):
        frozen = values.view()
    else:
        frozen = np.array(values, dtype=dtype)
    frozen.flags.writeable = False
    return frozen


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
