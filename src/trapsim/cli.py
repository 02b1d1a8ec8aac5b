"""The trapsim command line: one Typer app; ``python -m trapsim`` runs it."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.exceptions import TyperException

from trapsim.core.errors import TrapsimError

app = typer.Typer(
    name="trapsim",
    help="Market simulator with labelled market-maker traps, for testing trading systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
console = Console(stderr=True)
out_console = Console()


def _default_out() -> Path:
    return Path("runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


@app.command()
def run(
    duration: Annotated[
        float | None,
        typer.Option(help="Hours of market time to simulate (default: until stopped)."),
    ] = None,
    volatility: Annotated[
        float | None, typer.Option(help="Volatility scale factor, > 0 (default 1.0).")
    ] = None,
    frequency: Annotated[
        float | None,
        typer.Option(
            help="Trap frequency 0.0–1.0: mean 10 × f traps per market hour (default 0.2)."
        ),
    ] = None,
    sleep: Annotated[
        float | None,
        typer.Option(help="Wall seconds per market second (default 0.1); 0 runs flat out."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Run seed (default: drawn at random and recorded).")
    ] = None,
    start: Annotated[
        str | None,
        typer.Option(
            help="Market start, ISO 8601 UTC (default 2025-01-06T00:00:00Z; synthetic only)."
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(help="Replay 1-minute candles (CSV, Parquet, Feather) instead of simulating."),
    ] = None,
    params: Annotated[
        Path | None, typer.Option(help="Market parameters YAML written by `trapsim calibrate`.")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="A run's config.yaml: reproduces that run; other options override it."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory to create (default runs/<UTC time>).")
    ] = None,
) -> None:
    """Simulate BTC-USD ticks with labelled traps into a run directory.

    Writes ticks.parquet, labels.parquet, hf_activations.parquet,
    candles_1m.parquet, stats.json and config.yaml. Ctrl-C or SIGTERM stops
    cleanly: everything is flushed and the report printed.
    """
    from trapsim.service.config import build_config
    from trapsim.service.runner import execute

    cfg = build_config(
        config=config,
        params=params,
        duration=duration,
        volatility=volatility,
        frequency=frequency,
        sleep=sleep,
        seed=seed,
        start=start,
        replay=replay,
    )
    execute(cfg, out or _default_out(), console, out_console)


@app.command()
def calibrate(
    file: Annotated[Path, typer.Argument(help="1-minute candle file (CSV, Parquet, Feather).")],
    out: Annotated[Path, typer.Option(help="Parameters YAML to write.")] = Path("params.yaml"),
) -> None:
    """Calibrate the market model from real 1-minute candles; `run --params` takes the result."""
    from trapsim.feeds.candles import read_candles
    from trapsim.market.calibration import calibrate as fit

    c = read_candles(file)
    params = fit(c.ts, c.open, c.high, c.low, c.close, c.volume)
    params.to_yaml(out)
    out_console.print(f"calibrated {len(c.ts):,} candles of {file} → {out}")


@app.command()
def realism(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `trapsim run`.")],
    against: Annotated[
        Path | None, typer.Option(help="Real 1-minute candle file to compare with.")
    ] = None,
    figure: Annotated[
        Path | None, typer.Option(help="Figure to write (default RUN_DIR/realism.html).")
    ] = None,
) -> None:
    """Stylized facts of a run against the realism bands and a real file; exit 1 on a failure."""
    from trapsim.service.realism_report import realism_report

    ok = realism_report(run_dir, against, figure or run_dir / "realism.html", out_console)
    if not ok:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit 2."""
    try:
        app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except TyperException as exc:
        _fail(exc.format_message())
    except TrapsimError as exc:
        _fail(str(exc))


def _fail(message: str) -> None:
    # One line, never wrapped: scripts and log scrapers read it.
    print("trapsim: error: " + " ".join(message.split()), file=sys.stderr)
    sys.exit(2)
