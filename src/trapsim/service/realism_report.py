"""``trapsim realism``: a run's stylized facts against the bands and a real candle file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from trapsim.market.realism import acf, check, stylized_facts
from trapsim.store.rundir import read_stream

ACF_LAGS = np.unique(np.geomspace(1, 600, 40).astype(int))


def _run_minutes(run_dir: Path):
    c = read_stream(run_dir, "candles_1m")
    ts = c["ts"].cast("int64").to_numpy()
    return ts, c["close"].to_numpy(), c["volume"].to_numpy()


def _file_minutes(path: Path):
    from trapsim.feeds.candles import read_candles

    c = read_candles(path)
    return c.ts, c.close, c.volume


def realism_report(run_dir: Path, against: Path | None, figure: Path, console: Console) -> bool:
    """Print the REALISM.md table for ``run_dir`` (and ``against``), write ``figure``.

    Returns
    -------
    bool
        True when every band passes.

    Raises
    ------
    DataError
        If the run directory or the file cannot be read.
    """
    run = _run_minutes(run_dir)
    run_facts = stylized_facts(*run)
    real = _file_minutes(against) if against is not None else None
    real_facts = stylized_facts(*real) if real is not None else None
    table = Table(title=f"realism of {run_dir} ({run_facts['minutes']:,} minutes)")
    for col in ("fact", "run", *(["file"] if real_facts else []), "band", "result"):
        table.add_column(col, justify="left" if col == "fact" else "right")
    ok = True
    for fact, value, band, passed in check(run_facts):
        ok &= passed
        cells = [fact, f"{value:.3f}"]
        if real_facts:
            ref = (
                real_facts["kurt_1m"] - real_facts["kurt_1h"] if band is None else real_facts[fact]
            )
            cells.append(f"{ref:.3f}")
        cells.append(f"{band.lo:g} – {band.hi:g}" if band else "> 0")
        cells.append("[green]pass[/]" if passed else "[bold red]FAIL[/]")
        table.add_row(*cells)
    for extra in ("kurt_15m", "kurt_1d", "acf_abs_10"):
        cells = [extra, f"{run_facts[extra]:.3f}"]
        if real_facts:
            cells.append(f"{real_facts[extra]:.3f}")
        table.add_row(*cells, "", "")
    console.print(table)
    write_figure(run, run_facts, real, real_facts, figure)
    console.print(f"figure → {figure}")
    return ok


def write_figure(run, run_facts: dict, real, real_facts: dict | None, path: Path) -> None:
    """Return distribution, ACF of abs returns, intraday profile: run vs real, as HTML."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=1,
        cols=3,
        subplot_titles=(
            "1-min log returns / σ (density, log scale)",
            "ACF of |r| by lag (minutes)",
            "mean |r| by UTC hour / overall mean",
        ),
    )
    series = [("run", run, run_facts, "#d62728")]
    if real is not None:
        series.append(("real", real, real_facts, "#1f77b4"))
    bins = np.linspace(-12, 12, 121)
    for name, (_, close, _), facts, colour in series:
        r = np.diff(np.log(close))
        hist, edges = np.histogram(r / r.std(), bins=bins, density=True)
        mid = (edges[1:] + edges[:-1]) / 2
        line = {"color": colour}
        fig.add_trace(go.Scatter(x=mid, y=hist, name=name, line=line), 1, 1)
        a = np.abs(r)
        fig.add_trace(
            go.Scatter(
                x=ACF_LAGS,
                y=[acf(a, int(k)) for k in ACF_LAGS],
                name=name,
                line=line,
                showlegend=False,
            ),
            1,
            2,
        )
        hourly = np.asarray(facts["hourly_abs_return"])
        fig.add_trace(
            go.Scatter(
                x=np.arange(24), y=hourly / hourly.mean(), name=name, line=line, showlegend=False
            ),
            1,
            3,
        )
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_xaxes(type="log", row=1, col=2)
    fig.update_layout(height=420, width=1400, title="trapsim realism")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs=True)
