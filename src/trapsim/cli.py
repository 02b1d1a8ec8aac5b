"""The trapsim command line: one Typer app; ``python -m trapsim`` runs it."""

from __future__ import annotations

import inspect
import logging
import re
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.exceptions import TyperException

from trapsim.core.errors import ConfigError, SinkError, TrapsimError

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


SINKS = "Sinks (never recorded in config.yaml)"
SETTINGS_HELP = "Settings YAML (keys as in `trapsim config show`); default $TRAPSIM_SETTINGS_FILE."


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
    symbols: Annotated[
        str | None,
        typer.Option(
            metavar="LIST",
            help="Symbols simulated together, comma-separated, from BTC-USD, ETH-USD, USDT-USD, "
            "BTC-ETH, BTC-USD-PERP (default BTC-USD; BTC-USD is always one).",
        ),
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(help="Replay 1-minute candles (CSV, Parquet, Feather) instead of simulating."),
    ] = None,
    params: Annotated[
        Path | None, typer.Option(help="Market parameters YAML written by `trapsim calibrate`.")
    ] = None,
    scenario: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Chaos scenario YAML: price_shock, market_crash, volatility_spike, "
            "stablecoin_depeg, gradual_divergence, correlation_break, feed_disruption phases.",
        ),
    ] = None,
    symbol_settings: Annotated[
        Path | None,
        typer.Option(
            metavar="FILE",
            help="Per-symbol settings YAML (the seed's supported_symbols: decimals, "
            "min_price, max_price, circuit_breaker_threshold, depeg_alert_threshold).",
        ),
    ] = None,
    depth_every: Annotated[
        float | None,
        typer.Option(
            metavar="SECONDS",
            help="Market seconds between L2 depth snapshots (default 10); 0 writes none.",
        ),
    ] = None,
    depth_levels: Annotated[
        int | None, typer.Option(metavar="N", help="L2 depth levels per side (default 10).")
    ] = None,
    detect: Annotated[
        bool | None,
        typer.Option(
            "--detect/--no-detect",
            help="Run the trap detector live: detections to every sink, precision and recall "
            "so far in the status line and stats.json (default: off).",
        ),
    ] = None,
    source: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SOURCE",
            help="Run on live sources instead (repeat for several): binance-ws, "
            "replay:FILE, synthetic; failover, consensus and a circuit breaker publish "
            "consensus.parquet (the sources run at 1/--sleep market seconds a second).",
            rich_help_panel="Live sources",
        ),
    ] = None,
    binance_ws_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Binance websocket base URL (default Binance's, "
                     "wss://stream.binance.com:9443).", rich_help_panel="Live sources"),
    ] = None,
    binance_rest_url: Annotated[
        str | None,
        typer.Option(metavar="URL", help="Binance REST base URL (default Binance's, "
                     "https://api.binance.com).", rich_help_panel="Live sources"),
    ] = None,
    breaker_threshold: Annotated[
        float | None,
        typer.Option(metavar="FRACTION", help="Circuit breaker: largest move within a minute "
                     "before publishing halts (default 0.20).", rich_help_panel="Live sources"),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            help="A run's config.yaml: reproduces that run; options given here override it, "
            "TRAPSIM_* variables and --settings do not."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run directory to create (default runs/<UTC time>).")
    ] = None,
    redis: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Publish live keys and pub/sub to Redis, e.g. redis://127.0.0.1:6379/0.",
            rich_help_panel=SINKS,
        ),
    ] = None,
    redis_prefix: Annotated[
        str | None,
        typer.Option(
            help="Prefix of every Redis key and channel (default sim_).", rich_help_panel=SINKS
        ),
    ] = None,
    redis_clear: Annotated[
        bool | None,
        typer.Option(
            "--redis-clear/--no-redis-clear",
            help="Delete this prefix's keys (only those) before the run (default: keep).",
            rich_help_panel=SINKS,
        ),
    ] = None,
    redis_history_cap: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Ticks kept per sim_price_history:<day> list (default 10000).",
            rich_help_panel=SINKS,
        ),
    ] = None,
    redis_list_cap: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Entries kept in sim_trap_history, sim_hf_activations and sim_detections "
            "(default 5000).",
            rich_help_panel=SINKS,
        ),
    ] = None,
    redis_day_ttl: Annotated[
        int | None,
        typer.Option(
            metavar="SECONDS",
            help="Expiry of a day list after its last write (default 172800, 2 days).",
            rich_help_panel=SINKS,
        ),
    ] = None,
    redis_buffer_limit: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Entries buffered while Redis is unreachable; the oldest are dropped beyond "
            "(default 200000).",
            rich_help_panel=SINKS,
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            metavar="URL",
            help="Store runs, labels, HF activations, detections, statistics and candles in SQL: "
            "sqlite:///runs/sim.db or postgresql+psycopg://user@host/db.",
            rich_help_panel=SINKS,
        ),
    ] = None,
    db_batch_rows: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Rows per database transaction and insert (default 10000).",
            rich_help_panel=SINKS,
        ),
    ] = None,
    db_buffer_limit: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Rows buffered while the database is unreachable; the oldest are dropped "
            "beyond (default 200000).",
            rich_help_panel=SINKS,
        ),
    ] = None,
    allow_offline_sinks: Annotated[
        bool | None,
        typer.Option(
            "--allow-offline-sinks/--no-allow-offline-sinks",
            help="Start even if Redis or the database is unreachable, buffering until it is "
            "back (default: exit 2).",
            rich_help_panel=SINKS,
        ),
    ] = None,
    settings: Annotated[
        Path | None, typer.Option(metavar="FILE", help=SETTINGS_HELP, rich_help_panel="Settings")
    ] = None,
) -> None:
    """Simulate ticks with labelled traps and chaos into a run directory (and Redis, SQL).

    Writes ticks.parquet, labels.parquet, hf_activations.parquet,
    candles_<1m…1d>.parquet, depth.parquet (L2 snapshots), stats.json and config.yaml
    (and detections.parquet with --detect, funding.parquet with BTC-USD-PERP,
    feed.parquet with a feed_disruption); every stream has a symbol column. Ctrl-C or SIGTERM stops
    cleanly: everything is flushed and the report printed.

    Every option except --config, --out and --settings can also come from a
    TRAPSIM_<NAME> variable, NAME as `trapsim config show` lists it in upper case
    (TRAPSIM_VOLATILITY=1.5, TRAPSIM_REDIS_URL=…, TRAPSIM_DB_URL=…), or from the
    settings file. Precedence: options > --config > TRAPSIM_* > settings file >
    defaults. `trapsim config show` prints the result.
    """
    _launch(dict(locals()))


def _launch(options: dict, serving: dict | None = None) -> None:
    """``trapsim run`` with ``options`` (its parameters), or ``trapsim serve`` with
    ``serving`` (the server's own options) too."""
    from types import SimpleNamespace

    from trapsim.service.runner import execute
    from trapsim.service.settings import load_settings, mask, open_sinks
    from trapsim.service.simulation import Simulation

    o = SimpleNamespace(**options)
    resolved = load_settings(
        {
            "duration": o.duration,
            "volatility": o.volatility,
            "frequency": o.frequency,
            "sleep": o.sleep,
            "seed": o.seed,
            "start": o.start,
            "symbols": o.symbols,
            "replay": o.replay,
            "params": o.params,
            "scenario": o.scenario,
            "symbol_settings": o.symbol_settings,
            "depth_every": o.depth_every,
            "depth_levels": o.depth_levels,
            "detect": o.detect,
            "redis_url": o.redis,
            "redis_prefix": o.redis_prefix,
            "redis_clear": o.redis_clear,
            "redis_history_cap": o.redis_history_cap,
            "redis_list_cap": o.redis_list_cap,
            "redis_day_ttl": o.redis_day_ttl,
            "redis_buffer_limit": o.redis_buffer_limit,
            "db_url": o.db,
            "db_batch_rows": o.db_batch_rows,
            "db_buffer_limit": o.db_buffer_limit,
            "allow_offline_sinks": o.allow_offline_sinks,
        },
        o.settings,
    )
    cfg = resolved.run_config(o.config)
    out = o.out or _default_out()
    # Checked before any sink touches a server: --redis-clear deletes keys.
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SinkError(f"run directory {out} already exists and is not empty")
    if o.source:
        from trapsim.service.consensus_run import open_sources, run_sources

        if o.breaker_threshold is not None and not 0 < o.breaker_threshold < 1:
            raise ConfigError(f"--breaker-threshold must be in (0, 1), got {o.breaker_threshold}")
        sources = open_sources(o.source, cfg, binance_ws=o.binance_ws_url,
                               binance_rest=o.binance_rest_url)
        report = run_sources(sources, cfg, out, console, breaker_threshold=o.breaker_threshold)
        out_console.print_json(data=report)
        return
    run_id = uuid.uuid4().hex
    s = resolved.settings
    # Input files are read and checked before any sink touches a server.
    sim = Simulation(cfg, live=serving is not None)
    sinks = open_sinks(s, cfg, run_id)
    if s.redis_url:
        console.print(f"redis {mask(s.redis_url)}  prefix {s.redis_prefix}", markup=False)
    if s.db_url:
        console.print(f"database {mask(s.db_url)}", markup=False)
    if serving is None:
        execute(cfg, out, console, out_console, sinks, run_id, sim)
        return
    from trapsim.service.server import serve as serve_run

    serve_run(cfg, out, console, out_console, sinks, run_id, sim, redis_url=s.redis_url,
              redis_prefix=s.redis_prefix, **serving)


LIVE_SOURCE_OPTIONS = ("source", "binance_ws_url", "binance_rest_url", "breaker_threshold")
"""``trapsim run`` options that ``trapsim serve`` does not take (it serves its own simulation)."""


def _serve_options(
    host: Annotated[str, typer.Option(help="Address to listen on.", rich_help_panel="Server")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of REST and WebSocket (/ws).",
                                      rich_help_panel="Server")] = 8082,
    insecure_dev: Annotated[bool, typer.Option(
        "--insecure-dev", help="Allow write endpoints without TRAPSIM_API_TOKEN (local "
        "development only).", rich_help_panel="Server")] = False,
    ws_queue_size: Annotated[int, typer.Option(
        min=1, help="Frames a WebSocket client may have waiting for its socket before it is "
        "dropped as too slow (close code 1008).", rich_help_panel="Server")] = 1000,
    ws_send_timeout: Annotated[float, typer.Option(
        min=0.001, help="Seconds a WebSocket client's socket may take nothing while frames "
        "wait before the client is dropped.", rich_help_panel="Server")] = 2.0,
    grpc_port: Annotated[int, typer.Option(
        min=0, max=65535, help="Port of the gRPC services (trapsim.v1.PriceFeedService, "
        "HistoricalDataService); 0 turns gRPC off.", rich_help_panel="Server")] = 50053,
    grpc_queue_size: Annotated[int, typer.Option(
        min=1, help="Price updates a gRPC SubscribePrices stream may have waiting before it is "
        "ended with RESOURCE_EXHAUSTED.", rich_help_panel="Server")] = 10_000,
    cors_origin: Annotated[list[str] | None, typer.Option(
        metavar="ORIGIN", help="Allow browser calls from this origin (repeat for several; "
        "default none).", rich_help_panel="Server")] = None,
    follow: Annotated[str | None, typer.Option(
        metavar="URL", help="Serve, read-only, the run a primary publishes to this Redis "
        "(`trapsim serve --redis URL`), without simulating: same REST and WebSocket, writes "
        "answer 409. Takes only the Server options, --redis-prefix and --settings.",
        rich_help_panel="Server")] = None,
    rate_limit: Annotated[float, typer.Option(
        min=0, help="Requests a second per client (the token's holder, else the IP address); "
        "over it: 429 with Retry-After. 0: no limit.", rich_help_panel="Server")] = 1000.0,
    rate_burst: Annotated[int, typer.Option(
        min=1, help="Requests a client may make at once after a quiet spell.",
        rich_help_panel="Server")] = 2000,
    max_body_bytes: Annotated[int, typer.Option(
        min=1, help="Largest request body (413 beyond) and WebSocket message, bytes.",
        rich_help_panel="Server")] = 1 << 20,
    ws_port: Annotated[int | None, typer.Option(
        min=1, max=65535, help="Also push every tick to every client of a plain WebSocket "
        "server on this port (the Micro Trading Bot's feed, e.g. 8765); default off.",
        rich_help_panel="Server")] = None,
) -> None:
    """The server's own options (a signature only: ``serve`` takes these and run's)."""


def serve(**options) -> None:
    """Serve the live simulation: REST, WebSocket, dashboard, gRPC, chaos control, a run directory.

    Runs what `trapsim run` runs (every option but the live sources), paced by
    --sleep, with scenarios startable and stoppable over the API. REST,
    WebSocket (/ws) and the dashboard are on --port, gRPC on --grpc-port, the
    plain tick push on --ws-port (off by default). Write
    endpoints need `Authorization: Bearer $TRAPSIM_API_TOKEN`; without that
    variable they are off unless --insecure-dev. SIGTERM or Ctrl-C stops
    cleanly: the run directory is flushed and the report printed.
    The web dashboard is at /dashboard.

    With --redis, every served event also goes to Redis pub/sub, and `trapsim
    serve --follow URL` runs a read-only replica from there (no simulation), so
    many replicas can serve many clients.
    """
    serving = {k: options.pop(k) for k in inspect.signature(_serve_options).parameters}
    follow = serving.pop("follow")
    if follow is not None:
        _follow(follow, options, serving)
        return
    _launch({**options, **dict.fromkeys(LIVE_SOURCE_OPTIONS)}, serving)


def _follow(url: str, options: dict, serving: dict) -> None:
    """``trapsim serve --follow URL``: a replica of the primary publishing to ``url``."""
    from trapsim.service.server import follow
    from trapsim.service.settings import load_settings

    given = [name for name, value in options.items()
             if value is not None and name not in ("redis_prefix", "settings")]
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise ConfigError(f"--follow serves the primary's run as it is: {flags} cannot be "
                          "used with it (give them to the primary)")
    prefix = load_settings({"redis_prefix": options["redis_prefix"]},
                           options["settings"]).settings.redis_prefix
    follow(url, prefix, console, **serving)


_params = [*inspect.signature(_serve_options, eval_str=True).parameters.values(),
           *(p for p in inspect.signature(run, eval_str=True).parameters.values()
             if p.name not in LIVE_SOURCE_OPTIONS)]
serve.__signature__ = inspect.Signature(_params)
serve.__annotations__ = {p.name: p.annotation for p in _params}
app.command()(serve)


@app.command()
def detect(
    source: Annotated[
        Path, typer.Argument(help="A run directory, or a CSV/Parquet/Feather price or candle file.")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            help="Detections file, .parquet or .csv (default RUN/detections.parquet, "
            "or <name>.detections.parquet here for a file)."
        ),
    ] = None,
) -> None:
    """Detect the five trap types in prices and volumes; a run directory is also scored.

    The detector is causal: it never sees labels or future ticks. For a run
    directory with labels it prints the score table and writes score.json and
    pr_curve.html next to them.
    """
    from trapsim.service.detect_report import detect_file

    detect_file(source, out, out_console)


@app.command()
def score(
    labels: Annotated[Path, typer.Option(help="labels.parquet, or a run directory.")],
    detections: Annotated[Path, typer.Option(help="Detections file (.parquet or .csv).")],
    days: Annotated[
        float | None,
        typer.Option(
            help="Days of data, for false alarms per day (default: the run's stats.json)."
        ),
    ] = None,
    out: Annotated[Path, typer.Option(help="Score JSON to write.")] = Path("score.json"),
    figure: Annotated[Path, typer.Option(help="Precision–recall curve (HTML) to write.")] = Path(
        "pr_curve.html"
    ),
) -> None:
    """Score detections against labels: precision, recall, F1, latency, false alarms per day."""
    from trapsim.service.detect_report import data_days, read_detections, read_labels, report_score

    lab, det = read_labels(labels), read_detections(detections)
    report_score(lab, det, days or data_days(labels, lab, det), out, figure, out_console)


@app.command()
def levels(
    source: Annotated[Path, typer.Argument(help="A run directory or a price or candle file.")],
) -> None:
    """Last swing, Fibonacci retracements and extensions, and trend per timeframe."""
    from trapsim.service.detect_report import print_levels

    print_levels(source, out_console)


config_app = typer.Typer(help="Inspect the settings `trapsim run` would use.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def config_show(
    settings: Annotated[Path | None, typer.Option(metavar="FILE", help=SETTINGS_HELP)] = None,
) -> None:
    """Print the effective settings (TRAPSIM_* > settings file > defaults), secrets masked.

    The output is YAML; each line's comment says where the value came from.
    Passwords in URLs and secret URL parameters (token, key, …) print as ***.
    """
    from trapsim.service.settings import load_settings

    resolved = load_settings({}, settings)
    resolved.run_config(None)  # rejects what `trapsim run` would (ranges, missing files)
    print("# trapsim run settings: options > TRAPSIM_* variables > settings file > defaults")
    print(f"# settings file: {resolved.settings_file or 'none'}")
    rows = [(f"{key}: {value}", origin) for key, value, origin in resolved.show()]
    width = max(len(line) for line, _ in rows)
    for line, origin in rows:
        print(f"{line:<{width}}  # {origin}")


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


@app.command()
def replay(
    recording: Annotated[
        Path, typer.Argument(help="Recorded Binance stream: '<time ns> <JSON>' lines, .gz or not.")
    ],
    speed: Annotated[
        str, typer.Option(help="Replay pace: a factor on the recorded times (1, 10, …) or 'max'.")
    ] = "1",
) -> None:
    """Serve a recorded Binance spot stream from a local venue and consume it with the adapter.

    The venue speaks Binance's protocol on 127.0.0.1 (combined websocket stream,
    REST depth snapshot); the adapter builds the local order book from snapshot
    plus diffs as against Binance. Prints what came through and checks the book
    against the venue's best quotes at every update; exit 1 if they ever differ.
    """
    from trapsim.service.venue_replay import parse_speed, replay_recording

    if not replay_recording(recording, parse_speed(speed), out_console):
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: user errors print one line and exit 2."""
    _log_json_lines()
    try:
        # Without standalone mode a command's typer.Exit comes back as the return value.
        code = app(args=argv, standalone_mode=False)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        sys.exit(130)
    except TyperException as exc:
        if not exc.format_message():
            sys.exit(2)  # a group called without a command: its help was the answer
        _fail(exc.format_message())
    except TrapsimError as exc:
        _fail(str(exc))
    if isinstance(code, int) and code:
        sys.exit(code)


def _log_json_lines() -> None:
    """trapsim's log records (chaos phases starting, failovers, sink outages) to stderr, one
    message a line: the messages are JSON lines or plain sentences already."""
    root = logging.getLogger("trapsim")
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        root.propagate = False


def _fail(message: str) -> None:
    # One line, never wrapped: scripts and log scrapers read it. Passwords in URLs a
    # message quotes must not reach terminals and journals.
    line = " ".join(_URL_PASSWORD.sub(r"\1***@", message).split())
    print("trapsim: error: " + line, file=sys.stderr)
    sys.exit(2)


_URL_PASSWORD = re.compile(r"(\b[a-zA-Z][\w+.-]*://[^\s:/@]*:)[^\s@]*@")
