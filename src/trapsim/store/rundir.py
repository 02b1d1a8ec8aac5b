"""The run directory: the embedded default sink, crash-safe at every instant.

Layout of a closed run::

    <run>/ticks.parquet  labels.parquet  hf_activations.parquet
    <run>/candles_1m.parquet … candles_1d.parquet   (1m, 5m, 15m, 1h, 4h, 1d)
    <run>/depth.parquet                       (L2 depth snapshots, unless turned off)
    <run>/detections.parquet                  (a run with the live detector)
    <run>/config.yaml  stats.json  …          (write_json / write_yaml)

While the run is open, rows are buffered in memory per stream and every flush
writes them as one *part*, an uncompressed Arrow IPC file (cheap to write, and read
back memory-mapped at compaction: the rows are encoded once, into the final file)::

    <run>/.parts/<stream>/part-000001.arrow             one flush
    <run>/.parts/<stream>/part-000001-000008.arrow      flushes 1…8 merged

Crash safety
    Every file is written under a ``.tmp`` name, fsynced, then ``os.replace``-d
    into place, so a file with a final name is always complete and a kill
    (even SIGKILL) leaves at most a stray ``*.tmp`` that readers ignore. Rows
    survive a crash once :meth:`RunDir.flush` (or an automatic flush) returned.
    :func:`read_stream` reads ``<stream>.parquet`` when present, else the parts
    of a crashed run, so a crashed run is still usable.

Merge policy (bounded part count)
    A paced run flushes often with few rows, and a week of it would otherwise
    leave ~10^5 tiny parts. Parts carry a *level*: a flush writes level 0;
    whenever the newest ``merge_fanout`` parts share a level ``L`` they are
    merged into one part of level ``L + 1`` named by the range of flushes it
    covers (merged file written and replaced first, merged-away parts deleted
    after). A part of at least ``flush_rows`` rows is *full* and never merged
    again, so big flat-out flushes are not rewritten. Between two full parts
    at most ``merge_fanout - 1`` parts of each level exist, i.e. about
    ``(merge_fanout - 1) * log_fanout(flush_rows)`` small parts (42 with the
    defaults), and each row is rewritten at most ``log_fanout(flush_rows)``
    times (6 with the defaults). A crash between the replace
    and the deletes leaves parts whose flush range lies inside the merged
    part's range; readers skip them, so no row is read twice.

Compaction
    :meth:`RunDir.close` streams each stream's parts (memory-mapped, cut into
    fixed row groups, so memory stays bounded) and its buffered rows into
    ``<stream>.parquet`` (temp, fsync, replace), then deletes the parts and
    finally ``.parts``. Streams are compacted on two threads (the Parquet
    encoder releases the GIL). Every stream the directory was created with
    exists after close, zero rows with its schema if nothing was appended.

Files are Parquet 2.6 with zstd compression (level 1), dictionary encoding for
low-cardinality string columns (symbol, regime, …), delta encoding for
timestamps and byte-stream-split encoding for floats (it groups the bytes of
equal significance, which zstd then compresses far better: ticks 16 % smaller,
depth 22 %); ``ts`` columns stay ``timestamp[ns, UTC]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from trapsim.core.errors import ConfigError, DataError, SinkError
from trapsim.core.schemas import (
    ALERTS,
    CANDLES,
    CONSENSUS,
    DEPTH,
    DETECTIONS,
    FEED,
    FUNDING,
    HF_ACTIVATIONS,
    LABELS,
    TICKS,
    TS,
    TickBatch,
    detections_table,
)
from trapsim.market.ohlcv import INTERVALS

STREAM_SCHEMAS: dict[str, pa.Schema] = {
    "ticks": TICKS,
    "labels": LABELS,
    "hf_activations": HF_ACTIVATIONS,
    **{f"candles_{interval}": CANDLES for interval in INTERVALS},
    "detections": DETECTIONS,
    "depth": DEPTH,
    "funding": FUNDING,
    "feed": FEED,
    "alerts": ALERTS,
    "consensus": CONSENSUS,
}
"""Every stream a run directory can hold, name → Arrow schema its tables must have."""
RUN_STREAMS = ("ticks", "labels", "hf_activations", "alerts",
               *(f"candles_{i}" for i in INTERVALS))
"""The streams of every run; ``depth``, ``detections``, ``funding`` and ``feed`` are added
when a run makes them."""

FLUSH_ROWS = 2**18
"""Default buffered rows of one stream that trigger its automatic flush."""
MERGE_FANOUT = 8
"""Default number of same-level parts merged into one."""
PARTS_DIR = ".parts"
"""Sub-directory of the run holding the parts of open (or crashed) runs."""

# Row groups of ~2^20 rows keep the compacted file's footer small and scans fast.
_ROW_GROUP_ROWS = 2**20
_DICT_COLUMNS = frozenset({"symbol", "regime", "interval", "kind", "type", "direction"})
_PART_RE = re.compile(r"part-(\d+)(?:-(\d+))?\.arrow")
_COMPACT_THREADS = 2
_TMP = ".tmp"


@dataclass(slots=True)
class _Part:
    first: int
    last: int
    rows: int
    level: int
    full: bool
    path: Path


@dataclass(slots=True)
class _Stream:
    name: str
    schema: pa.Schema
    dir: Path
    buffer: list[pa.Table] = field(default_factory=list)
    rows: int = 0
    parts: list[_Part] = field(default_factory=list)
    next_seq: int = 1
    compacted: bool = False


def _parquet_options(schema: pa.Schema) -> dict[str, Any]:
    return {
        "compression": "zstd",
        "compression_level": 1,  # as small as the default level 3 here, a third faster
        "version": "2.6",
        "use_dictionary": [n for n in schema.names if n in _DICT_COLUMNS],
        "column_encoding": {
            **{f.name: "DELTA_BINARY_PACKED" for f in schema if pa.types.is_timestamp(f.type)},
            **{f.name: "BYTE_STREAM_SPLIT" for f in schema if pa.types.is_floating(f.type)},
        },
    }


def _row_group_rows(schema: pa.Schema) -> int:
    # A depth row holds lists (40 values at 10 levels): 2^16 of them weigh about what 2^20
    # tick rows do, and keep the writer's row group buffers small.
    return _ROW_GROUP_ROWS >> 4 if any(pa.types.is_list(f.type) for f in schema) else (
        _ROW_GROUP_ROWS)


def _fsync_path(path: Path) -> None:
    # Works for directories too on POSIX: makes a rename inside it durable.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _discard(tmp: Path) -> None:
    # Best effort: the error being reported matters more than a stray temp file.
    with contextlib.suppress(OSError):
        tmp.unlink(missing_ok=True)


def _write_parquet(path: Path, schema: pa.Schema, tables: Iterable[pa.Table]) -> None:
    """Write ``tables`` atomically (temp, fsync, replace, fsync dir) in fixed row groups."""

    def write(tmp: Path) -> None:
        with pq.ParquetWriter(tmp, schema, **_parquet_options(schema)) as writer:
            rows = _row_group_rows(schema)
            for table in _regroup(tables, rows):
                writer.write_table(table, row_group_size=rows)

    _write_atomic(path, write)


def _write_part(path: Path, schema: pa.Schema, tables: Iterable[pa.Table]) -> None:
    """Write ``tables`` atomically as one uncompressed Arrow IPC file (a part)."""

    def write(tmp: Path) -> None:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
            for table in tables:
                writer.write_table(table)

    _write_atomic(path, write)


def _read_part(path: Path) -> pa.Table:
    """A part's rows, memory-mapped (the map lives as long as the table)."""
    with pa.memory_map(str(path)) as source:
        return pa.ipc.open_file(source).read_all()


def _write_atomic(path: Path, write) -> None:
    """``write(tmp)`` then fsync, replace ``path``, fsync its directory."""
    tmp = path.with_name(path.name + _TMP)
    try:
        write(tmp)
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_path(path.parent)
    except (OSError, pa.ArrowException) as exc:
        _discard(tmp)
        raise SinkError(f"cannot write {path}: {exc}") from exc


def _regroup(tables: Iterable[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Re-cut consecutive tables into tables of exactly ``rows`` rows (the last may be shorter).

    Fixed cuts make a compacted file's row groups, and so its bytes, independent
    of when the run happened to flush: a paced run and a flat-out run of the same
    config write identical files.
    """
    pending: list[pa.Table] = []
    n = 0
    for table in tables:
        if not table.num_rows:
            continue
        pending.append(table)
        n += table.num_rows
        while n >= rows:
            whole = pa.concat_tables(pending)
            yield whole.slice(0, rows).combine_chunks()
            rest = whole.slice(rows)
            pending, n = ([rest] if rest.num_rows else []), rest.num_rows
    if pending:
        yield pa.concat_tables(pending).combine_chunks()


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class RunDir:
    """An open run directory: buffered, crash-safe Parquet streams plus JSON/YAML files.

    Create with :meth:`create`. Not thread-safe: one writer thread per run.
    See the module docstring for the layout, crash guarantees and merge policy.
    """

    def __init__(self, path: Path, flush_rows: int, merge_fanout: int,
                 streams: Iterable[str]) -> None:
        self._path = path
        self._flush_rows = flush_rows
        self._fanout = merge_fanout
        self._streams = {
            name: _Stream(name, STREAM_SCHEMAS[_base(name)], path / PARTS_DIR / name)
            for name in streams
        }
        self._closed = False

    @classmethod
    def create(
        cls,
        path: str | os.PathLike[str],
        *,
        flush_rows: int = FLUSH_ROWS,
        merge_fanout: int = MERGE_FANOUT,
        streams: Iterable[str] = RUN_STREAMS,
    ) -> RunDir:
        """Create a new run directory (and missing parents) and open it.

        Parameters
        ----------
        path : str or os.PathLike
            Directory to create; may exist only if empty.
        streams : iterable of str
            The streams it holds, keys of :data:`STREAM_SCHEMAS`; ``<stream>@<i>``
            (``i`` = 1, 2, …) is a sub-stream written apart (one symbol's rows, so
            their order does not depend on how symbols interleave) and stored
            after ``<stream>``'s rows, in ``i`` order, in ``<stream>.parquet``.
        flush_rows : int
            A stream is flushed as soon as it buffers this many rows; parts of
            at least this many rows are never merged.
        merge_fanout : int
            Number of same-level parts merged into one (>= 2).

        Raises
        ------
        SinkError
            If ``path`` exists and is not an empty directory (a previous run
            is never overwritten), or it cannot be created.
        ConfigError
            If ``flush_rows < 1``, ``merge_fanout < 2`` or a stream is unknown.
        """
        if flush_rows < 1 or merge_fanout < 2:
            raise ConfigError(
                f"need flush_rows >= 1 and merge_fanout >= 2, got {flush_rows}, {merge_fanout}"
            )
        streams = tuple(streams)
        unknown = sorted({_base(name) for name in streams} - set(STREAM_SCHEMAS))
        if unknown:
            raise ConfigError(f"unknown run directory streams {unknown}")
        p = Path(path)
        try:
            if p.exists() and (not p.is_dir() or any(p.iterdir())):
                raise SinkError(f"run directory {p} already exists and is not empty")
            p.mkdir(parents=True, exist_ok=True)
            run = cls(p, flush_rows, merge_fanout, streams)
            for stream in run._streams.values():
                stream.dir.mkdir(parents=True)
            _fsync_path(p)
        except OSError as exc:
            raise SinkError(f"cannot create run directory {p}: {exc}") from exc
        return run

    @property
    def path(self) -> Path:
        """The run directory."""
        return self._path

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- streams ---------------------------------------------------------------
    def append(self, stream: str, table: pa.Table) -> None:
        """Buffer ``table``'s rows at the end of ``stream``; flush it when the buffer is full.

        Parameters
        ----------
        stream : str
            A key of :data:`STREAM_SCHEMAS`.
        table : pyarrow.Table
            Rows with exactly the stream's schema (names, order, types).

        Raises
        ------
        SinkError
            If the run is closed, the stream is unknown, the schema differs,
            or an automatic flush cannot write its part.
        """
        if self._closed:
            raise SinkError(f"run directory {self._path} is closed")
        s = self._streams.get(stream)
        if s is None:
            raise SinkError(f"unknown stream {stream!r}; streams: {', '.join(self._streams)}")
        if not isinstance(table, pa.Table) or not table.schema.equals(s.schema):
            got = table.schema if isinstance(table, pa.Table) else type(table).__name__
            raise SinkError(f"stream {stream!r} needs schema\n{s.schema}\ngot\n{got}")
        if table.num_rows == 0:
            return
        s.buffer.append(table)
        s.rows += table.num_rows
        if s.rows >= self._flush_rows:
            self._flush_stream(s)

    def flush(self) -> None:
        """Write every stream's buffered rows as a part; a no-op when nothing is buffered.

        Once this returns the rows survive a crash of the process.

        Raises
        ------
        SinkError
            If a part cannot be written; the rows stay buffered.
        """
        for s in self._streams.values():
            if s.rows:
                self._flush_stream(s)

    def _flush_stream(self, s: _Stream) -> None:
        seq = s.next_seq
        s.next_seq += 1
        path = s.dir / f"part-{seq:06d}.arrow"
        _write_part(path, s.schema, s.buffer)
        s.parts.append(_Part(seq, seq, s.rows, 0, s.rows >= self._flush_rows, path))
        s.buffer = []
        s.rows = 0
        self._merge(s)

    def _merge(self, s: _Stream) -> None:
        # Cascade like a base-`fanout` counter: merging level L can complete a run of L + 1.
        while len(s.parts) >= self._fanout:
            group = s.parts[-self._fanout :]
            level = group[0].level
            if any(p.full or p.level != level for p in group):
                return
            first, last = group[0].first, group[-1].last
            path = s.dir / f"part-{first:06d}-{last:06d}.arrow"
            table = pa.concat_tables([_read_part(p.path) for p in group])
            _write_part(path, s.schema, [table])
            rows = table.num_rows
            s.parts[-self._fanout :] = [
                _Part(first, last, rows, level + 1, rows >= self._flush_rows, path)
            ]
            for p in group:
                p.path.unlink(missing_ok=True)

    # -- files -----------------------------------------------------------------
    def write_json(self, name: str, obj: Any) -> None:
        """Atomically write ``obj`` as JSON to ``<run>/<name>`` (UTF-8, indented).

        numpy scalars and arrays are written as numbers and lists; NaN and
        infinities are refused (not JSON). On failure the previous file, if
        any, is left intact.

        Raises
        ------
        SinkError
            If ``name`` is not a plain file name, ``obj`` is not serialisable,
            or the file cannot be written.
        """
        try:
            text = json.dumps(
                obj, indent=2, ensure_ascii=False, allow_nan=False, default=_json_default
            )
        except (TypeError, ValueError) as exc:
            raise SinkError(f"cannot write {name} as JSON: {exc}") from exc
        self._write_bytes(name, (text + "\n").encode())

    def write_yaml(self, name: str, obj: Any) -> None:
        """Atomically write ``obj`` (plain Python data) as YAML to ``<run>/<name>``.

        Keys keep their order. On failure the previous file, if any, is left
        intact.

        Raises
        ------
        SinkError
            If ``name`` is not a plain file name, ``obj`` is not representable
            by ``yaml.safe_dump``, or the file cannot be written.
        """
        try:
            text = yaml.safe_dump(obj, sort_keys=False, allow_unicode=True)
        except yaml.YAMLError as exc:
            raise SinkError(f"cannot write {name} as YAML: {exc}") from exc
        self._write_bytes(name, text.encode())

    def _write_bytes(self, name: str, data: bytes) -> None:
        if name in ("", ".", "..") or Path(name).name != name:
            raise SinkError(f"{name!r} is not a plain file name")
        path = self._path / name
        tmp = path.with_name(name + _TMP)
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            _fsync_path(self._path)
        except OSError as exc:
            _discard(tmp)
            raise SinkError(f"cannot write {path}: {exc}") from exc

    # -- close -----------------------------------------------------------------
    def close(self) -> None:
        """Compact every stream into ``<run>/<stream>.parquet`` and remove ``.parts``.

        Idempotent. If it fails, calling it again resumes with the streams not
        yet compacted; the parts of those streams stay readable meanwhile.

        Raises
        ------
        SinkError
            If a stream file cannot be written or the parts cannot be removed.
        """
        if self._closed:
            return
        jobs = []
        for s in self._streams.values():
            if not s.compacted and "@" not in s.name:
                subs = sorted((x for x in self._streams.values()
                               if _base(x.name) == s.name and x is not s), key=_sub_index)
                jobs.append((sum(p.rows for x in (s, *subs) for p in x.parts), s, subs))
        jobs.sort(key=lambda job: -job[0])  # the big streams first, side by side
        with ThreadPoolExecutor(_COMPACT_THREADS) as pool:
            done = [pool.submit(self._compact, s, subs) for _, s, subs in jobs]
        for future in done:
            future.result()  # the first failure is raised; the others are compacted
        try:
            shutil.rmtree(self._path / PARTS_DIR)
            _fsync_path(self._path)
        except OSError as exc:
            raise SinkError(f"cannot remove {self._path / PARTS_DIR}: {exc}") from exc
        self._closed = True

    def _compact(self, s: _Stream, subs: list[_Stream]) -> None:
        final = self._path / f"{s.name}.parquet"
        tables = chain.from_iterable(
            chain((_read_part(p.path) for p in x.parts), x.buffer) for x in (s, *subs))
        _write_parquet(final, s.schema, tables)
        for p in (p for x in (s, *subs) for p in x.parts):
            p.path.unlink(missing_ok=True)
        for x in (s, *subs):
            x.parts = []
            x.buffer = []
            x.rows = 0
            x.compacted = True


def _base(stream: str) -> str:
    """The stream a sub-stream ``<stream>@<i>`` belongs to."""
    return stream.split("@")[0]


def _sub_index(s: _Stream | Path) -> int:
    return int(s.name.split("@")[1])


def _live_parts(parts_dir: Path) -> list[Path]:
    """The parts of one stream in row order, skipping those a merged part already covers."""
    found = []
    for p in parts_dir.iterdir():
        m = _PART_RE.fullmatch(p.name)
        if m:
            first = int(m[1])
            found.append((first, int(m[2] or first), p))
    found.sort(key=lambda x: (x[0], -x[1]))
    live, covered = [], 0
    for first, last, p in found:
        if first > covered:
            live.append(p)
            covered = last
    return live


def read_stream(run_dir: str | os.PathLike[str], stream: str) -> pa.Table:
    """Read one stream of a run directory, closed or crashed.

    Parameters
    ----------
    run_dir : str or os.PathLike
        The run directory.
    stream : str
        Stream name, e.g. ``"ticks"`` or ``"candles_1m"``.

    Returns
    -------
    pyarrow.Table
        ``<stream>.parquet`` if present; else the rows of every part left by
        an unclosed or crashed run, in append order, sub-streams after
        (zero rows with the
        stream's schema when it never flushed).

    Raises
    ------
    DataError
        If the run directory or the stream is missing, or a file is unreadable.
    """
    run = Path(run_dir)
    final = run / f"{stream}.parquet"
    parts_dir = run / PARTS_DIR / stream
    # A live run may merge or compact between listing and reading; list again then.
    for _ in range(3):
        try:
            if final.exists():
                return pq.read_table(final)
            if not parts_dir.is_dir():
                break
            subs = sorted(parts_dir.parent.glob(f"{stream}@*"), key=_sub_index)
            parts = [p for d in (parts_dir, *subs) for p in _live_parts(d)]
            if parts:
                return pa.concat_tables([_read_part(p) for p in parts])
            if stream in STREAM_SCHEMAS:
                return STREAM_SCHEMAS[stream].empty_table()
            break
        except FileNotFoundError:
            continue
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read stream {stream!r} of {run}: {exc}") from exc
    if not run.is_dir():
        raise DataError(f"run directory {run} does not exist")
    raise DataError(f"run directory {run} has no {final.name} and no parts in {parts_dir}")


PER_SYMBOL = ("ticks", "depth", "feed", "alerts", *(f"candles_{i}" for i in INTERVALS))
"""Streams whose rows a run of several symbols writes per symbol (:meth:`RunDirSink.streams`)."""


class RunDirSink:
    """The run directory as a :class:`~trapsim.store.base.Sink`.

    Parameters
    ----------
    rundir : RunDir
        An open run directory, holding :meth:`streams`; closed with the sink.
    symbols : tuple of str
        The run's symbols. Each symbol's ticks, candles, depth and feed go to a
        sub-stream of their own, so a file holds the first symbol's rows, then the
        second's, …, each in time order, however the run interleaved them (a
        paced run and a flat-out run write the same bytes).
    """

    @staticmethod
    def streams(streams: tuple[str, ...], symbols: tuple[str, ...]) -> tuple[str, ...]:
        """``streams`` and the sub-streams a run of ``symbols`` writes."""
        return streams + tuple(f"{s}@{i}" for s in streams if s in PER_SYMBOL
                               for i in range(1, len(symbols)))

    name = "rundir"

    def __init__(self, rundir: RunDir, symbols: tuple[str, ...] = ("BTC-USD",)) -> None:
        self.rundir = rundir
        self.symbols = symbols

    def _of(self, stream: str, symbol: str) -> str:
        """One symbol's part of a stream: a sub-stream for every symbol but the first."""
        i = self.symbols.index(symbol)
        return f"{stream}@{i}" if i else stream

    def ticks(self, batch) -> None:
        self.rundir.append(self._of("ticks", batch.symbol), batch.to_arrow())

    def candles(self, table: pa.Table) -> None:
        """Candles of one interval and symbol, to its stream ``candles_<interval>``."""
        stream = f"candles_{table['interval'][0].as_py()}"
        self.rundir.append(self._of(stream, table["symbol"][0].as_py()), table)

    def labels(self, labels: list[dict]) -> None:
        self.rundir.append("labels", labels_table(labels))

    def hf_activations(self, activations: list[dict]) -> None:
        self.rundir.append("hf_activations", hf_table(activations))

    def hf_switched_on(self, ts: int, trap_count: int) -> None:
        """Nothing to write: the activation's row is written when it ends."""

    def depth(self, table: pa.Table) -> None:
        self.rundir.append(self._of("depth", table["symbol"][0].as_py()), table)

    def detections(self, rows: list[dict]) -> None:
        self.rundir.append("detections", detections_table(rows))

    def funding(self, events: list) -> None:
        self.rundir.append("funding", funding_table(events))

    def feed(self, ticks, recv_ts) -> None:
        """Ticks as subscribers received them, with their arrival times (feed faults)."""
        self.rundir.append(self._of("feed", ticks.symbol), feed_table(ticks, recv_ts))

    def alerts(self, alerts: list[dict]) -> None:
        """One symbol's publication alerts."""
        self.rundir.append(self._of("alerts", alerts[0]["symbol"]), alerts_table(alerts))

    def statistics(self, report: dict) -> None:
        self.rundir.write_json("stats.json", report)

    def flush(self) -> None:
        self.rundir.flush()

    def close(self, report: dict) -> None:
        self.rundir.write_json("stats.json", report)
        self.rundir.close()


def labels_table(labels: list[dict]) -> pa.Table:
    """Label dicts (int ns times, ``params`` dict) as a :data:`LABELS` table."""
    cols = {name: [lab[name] for lab in labels] for name in LABELS.names}
    cols["params"] = [json.dumps(p, sort_keys=True) for p in cols["params"]]
    for name in ("start_ts", "peak_ts", "end_ts"):
        cols[name] = pa.array(cols[name], pa.int64()).cast(TS)
    return pa.table(cols, schema=LABELS)


def funding_table(events: list) -> pa.Table:
    """:class:`~trapsim.market.multi.Funding` events as a :data:`FUNDING` table."""
    return pa.table({"ts": pa.array([e.ts for e in events], pa.int64()).cast(TS),
                     "symbol": [e.symbol for e in events], "rate": [e.rate for e in events],
                     "mark_price": [e.mark_price for e in events]}, schema=FUNDING)


def alerts_table(alerts: list[dict]) -> pa.Table:
    """Alert dicts (:mod:`trapsim.feeds.guard`) as an :data:`ALERTS` table."""
    cols = {name: [a[name] for a in alerts] for name in ALERTS.names}
    cols["ts"] = pa.array(cols["ts"], pa.int64()).cast(TS)
    return pa.table(cols, schema=ALERTS)


def feed_table(ticks: TickBatch, recv: np.ndarray) -> pa.Table:
    """Delivered ticks and their arrival times as a :data:`~trapsim.core.schemas.FEED` table."""
    n = len(ticks)
    return pa.table({"ts": pa.array(ticks.ts, pa.int64()).cast(TS),
                     "recv_ts": pa.array(recv, pa.int64()).cast(TS),
                     "symbol": pa.repeat(pa.scalar(ticks.symbol), n), "price": ticks.price,
                     "bid": ticks.bid, "ask": ticks.ask, "volume": ticks.volume}, schema=FEED)


def hf_table(activations: list[dict]) -> pa.Table:
    """HF activation dicts as an :data:`HF_ACTIVATIONS` table."""
    return pa.table(
        {
            "start_ts": pa.array([a["start_ts"] for a in activations], pa.int64()).cast(TS),
            "end_ts": pa.array([a["end_ts"] for a in activations], pa.int64()).cast(TS),
            "trap_count": [a["trap_count"] for a in activations],
            "types": [json.dumps(a["types"]) for a in activations],
        },
        schema=HF_ACTIVATIONS,
    )
