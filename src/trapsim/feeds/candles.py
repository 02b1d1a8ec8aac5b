"""Reading OHLCV candle files (CSV, Parquet, Feather/Arrow) into validated arrays.

A file holds one row per candle with a time column and ``open, high, low, close,
volume`` (column names case-insensitive). The time column is the first of
:data:`TIME_COLUMNS` present; it is the candle's open time. Every defect is a
:class:`~trapsim.core.errors.DataError` whose one-line message names the file and,
where it applies, the 1-based data row (the header is not counted) and its time.

The table helpers below (reading by extension, picking columns, parsing times,
row checks) are shared with :mod:`trapsim.feeds.prices`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
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
        object.__setattr__(self, "ts", frozen(self.ts, np.int64))
        object.__setattr__(self, "interval_ns", int(self.interval_ns))
        for name in VALUE_COLUMNS:
            object.__setattr__(self, name, frozen(getattr(self, name), np.float64))
        shapes = {getattr(self, name).shape for name in ("ts", *VALUE_COLUMNS)}
        if len(shapes) != 1 or len(shapes.pop()) != 1:
            raise DataError(f"{self.source}: candle columns must be 1-D and of equal length")
        if self.interval_ns <= 0:
            raise DataError(f"{self.source}: candle interval must be positive")
        check_order(self.ts, self.source)
        check_values(self.ts, {n: getattr(self, n) for n in VALUE_COLUMNS}, self.source)
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
    table = read_table_file(source, "candle")
    if table.num_rows == 0:
        raise DataError(f"{source}: no candles")
    columns = find_columns(
        table, source, {"ts": TIME_COLUMNS, **{name: (name,) for name in VALUE_COLUMNS}}
    )
    ts = time_ns(table.column(columns["ts"]), source)
    values = {
        name: float64_column(table.column(columns[name]), name, ts, source)
        for name in VALUE_COLUMNS
    }
    if interval_ns is None:
        interval_ns = _infer_interval(ts, source)
    return Candles(ts, **values, interval_ns=interval_ns, source=source)


def read_table_file(source: str, kind: str) -> pa.Table:
    """Read a table file in the format its extension names.

    Parameters
    ----------
    source : str
        Path of a ``.csv``, ``.csv.gz``, ``.parquet``, ``.feather`` or ``.arrow`` file
        (extension case-insensitive).
    kind : str
        What the file should hold, e.g. ``"candle"``; names it in the unknown-format error.

    Returns
    -------
    pyarrow.Table
        The file's columns as Arrow infers or stores them.

    Raises
    ------
    DataError
        Unknown extension, or a missing or unreadable file.
    """
    name = Path(source).name.lower()
    suffix = ".csv.gz" if name.endswith(".csv.gz") else Path(name).suffix
    reader = _READERS.get(suffix)
    if reader is None:
        known = ", ".join(_READERS)
        raise DataError(f"{source}: unknown {kind} format {suffix!r} (expected one of {known})")
    try:
        return reader(source)
    except (OSError, pa.ArrowException, ValueError) as exc:
        raise DataError(f"{source}: cannot read: {_first_line(exc)}") from exc


def find_columns(
    table: pa.Table,
    source: str,
    required: Mapping[str, Sequence[str]],
    optional: Sequence[str] = (),
) -> dict[str, str]:
    """Map wanted columns to the table's own names, matching case-insensitively.

    Parameters
    ----------
    table : pyarrow.Table
        The table read from ``source``.
    source : str
        Prefixes every error message.
    required : mapping of str to sequence of str
        Key → accepted lower-case column names in order of preference; the first
        one present is taken.
    optional : sequence of str
        Lower-case column names taken when present (keyed by themselves).

    Returns
    -------
    dict of str to str
        Every key of ``required``, and each present name of ``optional``, → the
        table's column name.

    Raises
    ------
    DataError
        If two columns differ only in case, or a required key has none of its
        names (the message lists every missing key and the columns found).
    """
    by_lower: dict[str, str] = {}
    for name in table.column_names:
        key = name.lower()
        if key in by_lower:
            raise DataError(f"{source}: columns {by_lower[key]!r} and {name!r} differ only in case")
        by_lower[key] = name
    found = {
        key: next((by_lower[n] for n in names if n in by_lower), None)
        for key, names in required.items()
    }
    missing = ["/".join(required[key]) for key, name in found.items() if name is None]
    if missing:
        columns = ", ".join(table.column_names)
        raise DataError(f"{source}: missing column(s) {', '.join(missing)}; found: {columns}")
    return found | {n: by_lower[n] for n in optional if n in by_lower}


def time_ns(column: pa.ChunkedArray, source: str) -> np.ndarray:
    """A time column as int64 ns since the Unix epoch, UTC.

    Parameters
    ----------
    column : pyarrow.ChunkedArray, shape (m,)
        Timestamps (any unit and zone; naive ones are UTC), dates (midnight UTC),
        ISO 8601 strings (all naive, taken as UTC, or all with zone offsets) or
        integer epochs in s, ms, µs or ns, told apart by magnitude (exact for
        times between 1973 and 2262).
    source : str
        Prefixes every error message.

    Returns
    -------
    ndarray of int64, shape (m,)

    Raises
    ------
    DataError
        Naming the first missing or unparsable row, or for an unsupported column
        type or a time outside the int64 ns range.
    """
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


def float64_column(column: pa.ChunkedArray, name: str, ts: np.ndarray, source: str) -> np.ndarray:
    """A value column as float64, shape (m,); missing values become NaN (rejected later).

    Raises
    ------
    DataError
        Naming the first row (and its time from ``ts``) that is not a number.
    """
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
    check_order(ts, source)
    steps, counts = np.unique(np.diff(ts), return_counts=True)
    return int(steps[np.argmax(counts)])


def raise_at_first(
    mask: np.ndarray, ts: np.ndarray, source: str, what: Callable[[int], str]
) -> None:
    """Raise a one-line :class:`DataError` at the first row where ``mask`` is true, if any.

    The message is ``"<source>: row <i + 1> (<time>): <what(i)>"``, ``i`` 0-based.
    """
    rows = np.flatnonzero(mask)
    if rows.size:
        i = int(rows[0])
        raise DataError(f"{source}: row {i + 1} ({iso(ts[i])}): {what(i)}")


def check_order(ts: np.ndarray, source: str) -> None:
    """Require strictly increasing times.

    Raises
    ------
    DataError
        Naming the first row earlier than, or equal to, its predecessor.
    """
    step = np.diff(ts)
    back = np.flatnonzero(step < 0)
    if back.size:
        i = int(back[0]) + 1
        raise DataError(
            f"{source}: row {i + 1} ({iso(ts[i])}): time is earlier than row {i} ({iso(ts[i - 1])})"
        )
    raise_at_first(np.r_[False, step == 0], ts, source, lambda i: f"duplicate of row {i}")


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


def check_values(ts: np.ndarray, columns: Mapping[str, np.ndarray], source: str) -> None:
    """Require valid price and volume values, row by row.

    Parameters
    ----------
    ts : ndarray of int64, shape (m,)
        Row times, ns UTC (for the messages).
    columns : mapping of str to ndarray of float64, shape (m,)
        Column name → values; holds ``volume`` and any of ``open``, ``high``,
        ``low``, ``close``, ``price``.
    source : str
        Prefixes every error message.

    Raises
    ------
    DataError
        At the first row of the first rule broken, rules in this order: every
        value finite; ``high >= low`` and every other price column within
        ``[low, high]`` (when ``high`` and ``low`` are given); ``volume >= 0``.
    """
    for name, col in columns.items():
        raise_at_first(
            ~np.isfinite(col),
            ts,
            source,
            lambda i, name=name, col=col: f"{name} is {float(col[i])!r} or missing",
        )
    high, low = columns.get("high"), columns.get("low")
    if high is not None and low is not None:
        raise_at_first(
            high < low, ts, source, lambda i: f"high {float(high[i])!r} < low {float(low[i])!r}"
        )
        for name, col in columns.items():
            if name not in ("high", "low", "volume"):
                raise_at_first(
                    (col < low) | (col > high),
                    ts,
                    source,
                    lambda i, name=name, col=col: (
                        f"{name} {float(col[i])!r} outside "
                        f"[low {float(low[i])!r}, high {float(high[i])!r}]"
                    ),
                )
    volume = columns["volume"]
    raise_at_first(volume < 0, ts, source, lambda i: f"volume {float(volume[i])!r} is negative")


def frozen(values: object, dtype: type) -> np.ndarray:
    """``values`` as a read-only contiguous array that nobody else can write to.

    Read-only input (Arrow buffers, slices of other read-only arrays) is shared;
    anything writable is copied, so the caller keeps a writable array of its own.
    """
    if (
        isinstance(values, np.ndarray)
        and values.dtype == dtype
        and values.flags.c_contiguous
        and not values.flags.writeable
    ):
        view = values.view()
    else:
        view = np.array(values, dtype=dtype)
    view.flags.writeable = False
    return view


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
