"""``trapsim detect``, ``trapsim score`` and ``trapsim levels``: the detector on files and runs."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from trapsim.core.errors import DataError
from trapsim.core.schemas import DETECTIONS, TS
from trapsim.core.time import NS, iso
from trapsim.detect import TrapDetector, hf_mode, levels, pr_curve, score, write_pr_html
from trapsim.detect.scoring import format_table, to_json
from trapsim.feeds.candles import time_ns
from trapsim.feeds.prices import read_prices, write_detections
from trapsim.store.rundir import read_stream


def detect_file(source: Path, out: Path | None, console: Console) -> Path:
    """Detect traps in a run directory or a price file; score them when the run has labels.

    Writes the detections (``out``; default ``RUN/detections.parquet`` for a run
    directory, ``<name>.detections.parquet`` in the working directory for a file).
    For a run directory with labels, also ``score.json`` and ``pr_curve.html``.

    Returns
    -------
    Path
        Where the detections went.

    Raises
    ------
    DataError
        On a malformed input.
    """
    prices = read_prices(source)
    table = TrapDetector().detect(prices.ts, prices.price, prices.volume, prices.high, prices.low)
    if out is None:
        out = (
            source / "detections.parquet"
            if source.is_dir()
            else Path(source.name.split(".")[0] + ".detections.parquet")
        )
    write_detections(table, out)
    days = (int(prices.ts[-1]) - int(prices.ts[0]) + prices.interval_ns) / (86400 * NS)
    hf = hf_mode(table)
    console.print(
        f"{table.num_rows:,} detections over {days:.2f} days of {prices.source}, "
        f"{hf.num_rows} HF activations → {out}",
        highlight=False,
        markup=False,
    )
    if source.is_dir() and (source / "labels.parquet").exists():
        labels = read_stream(source, "labels")
        report_score(labels, table, days, source / "score.json", source / "pr_curve.html", console)
    return out


def read_detections(path: Path) -> pa.Table:
    """A detections file written by ``trapsim detect`` (Parquet or CSV).

    Raises
    ------
    DataError
        If the file is unreadable or lacks the detection columns.
    """
    try:
        if path.suffix.lower() == ".csv":
            raw = pacsv.read_csv(path)
            cols = {name: raw[name] for name in DETECTIONS.names}
            for name in ("detected_at", "start"):
                cols[name] = pa.array(time_ns(cols[name], str(path)), pa.int64()).cast(TS)
            return pa.table(cols).cast(DETECTIONS)
        return pq.read_table(path).select(DETECTIONS.names).cast(DETECTIONS)
    except (OSError, KeyError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a detections file: {' '.join(str(exc).split())}") from None


def read_labels(path: Path) -> pa.Table:
    """Labels from a run directory or its ``labels.parquet``."""
    if path.is_dir():
        return read_stream(path, "labels")
    try:
        return pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path}: not a labels file: {' '.join(str(exc).split())}") from None


def data_days(labels_path: Path, labels: pa.Table, detections: pa.Table) -> float:
    """Days of data behind a score: the run's ``stats.json``, else the span of the rows."""
    run = labels_path if labels_path.is_dir() else labels_path.parent
    stats = run / "stats.json"
    if stats.exists():
        return json.loads(stats.read_text())["market_hours"] / 24
    times = [c.cast("int64").to_numpy() for c in (labels["start_ts"], detections["detected_at"])]
    lo = min(int(t.min()) for t in times if len(t))
    hi = max(int(t.max()) for t in times if len(t))
    return max((hi - lo) / (86400 * NS), 1 / 24)


def report_score(
    labels: pa.Table, detections: pa.Table, days: float, out: Path, figure: Path, console: Console
) -> dict:
    """Score, print the table, write ``out`` (JSON) and the precision–recall ``figure``."""
    result = score(labels, detections, days=days)
    console.print(format_table(result), highlight=False, markup=False, soft_wrap=True)
    out.write_text(to_json(result))
    write_pr_html(pr_curve(labels, detections), figure)
    console.print(f"score → {out}, precision–recall curve → {figure}", soft_wrap=True)
    return result


def print_levels(source: Path, console: Console) -> None:
    """Swing, Fibonacci levels and trend per timeframe (one column each) of a price file or run.

    Rows: the last close, the last swing's direction and its from/to prices, the
    retracement (``fib``) and extension (``ext``) levels, the trend direction and
    its strength (ADX / 100).
    """
    p = read_prices(source)
    result = {tf: lv for tf, lv in levels(p.ts, p.price, p.high, p.low).items() if lv}
    table = Table(title=f"levels of {p.source} at {iso(int(p.ts[-1]))}")
    table.add_column("", no_wrap=True)
    for tf in result:
        table.add_column(tf, justify="right")

    def row(name, get):
        cells = []
        for lv in result.values():
            try:
                value = get(lv)
            except (KeyError, TypeError):
                value = None
            if value is None or isinstance(value, str):
                cells.append(value or "")
            else:  # whole units for prices in the thousands keep six timeframes on 80 columns
                cells.append(f"{value:,.0f}" if abs(value) >= 1000 else f"{value:,.2f}")
        table.add_row(name, *cells)

    row("close", lambda lv: lv["close"])
    row("swing", lambda lv: lv["swing"]["direction"])
    row("from", lambda lv: lv["swing"]["from"]["price"])
    row("to", lambda lv: lv["swing"]["to"]["price"])
    for k in ("0.236", "0.382", "0.5", "0.618", "0.786"):
        row(f"fib {k}", lambda lv, k=k: lv["retracements"][k])
    for k in ("1.272", "1.618"):
        row(f"ext {k}", lambda lv, k=k: lv["extensions"][k])
    row("trend", lambda lv: lv["trend"]["direction"])
    row("strength", lambda lv: lv["trend"]["strength"])
    console.print(table)
