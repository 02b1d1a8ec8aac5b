"""Time is int64 nanoseconds since the Unix epoch, UTC, everywhere inside trapsim."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

NS = 1_000_000_000
"""Nanoseconds per second."""
MINUTE_NS = 60 * NS
HOUR_NS = 3600 * NS
DAY_NS = 86400 * NS


def parse_ts(text: str) -> int:
    """Parse an ISO 8601 time (naive means UTC) into int64 ns since the epoch.

    Raises
    ------
    ValueError
        If ``text`` is not ISO 8601.
    """
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp()) * NS + dt.microsecond * 1000


def iso(ts_ns: int) -> str:
    """Format int64 ns since the epoch as ISO 8601 UTC with a ``Z`` suffix (sub-seconds if any)."""
    sec, frac = divmod(int(ts_ns), NS)
    text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (f".{frac:09d}".rstrip("0") if frac else "") + "Z"


def iso_many(times: np.ndarray) -> list[str]:
    """:func:`iso` of each int64 ns time; whole seconds in one numpy call."""
    if np.any(times % NS):
        return [iso(t) for t in times.tolist()]
    return [t + "Z" for t in np.datetime_as_string(times.astype("M8[ns]"), unit="s").tolist()]


def hour_of_day(ts_ns: np.ndarray) -> np.ndarray:
    """UTC hour (0-23) of each int64 ns timestamp."""
    return ((ts_ns // HOUR_NS) % 24).astype(np.int64)


def day_of_week(ts_ns: np.ndarray) -> np.ndarray:
    """UTC weekday of each int64 ns timestamp, Monday = 0 … Sunday = 6."""
    # 1970-01-01 was a Thursday (weekday 3).
    return ((ts_ns // DAY_NS + 3) % 7).astype(np.int64)
