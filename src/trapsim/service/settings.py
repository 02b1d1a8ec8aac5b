"""Settings of ``trapsim run``: command-line options, ``TRAPSIM_*`` variables, a settings file.

Each setting comes from the first layer that gives it:

1. a command-line option (``--volatility 1.5``, ``--redis URL``);
2. an environment variable ``TRAPSIM_<NAME>`` (``TRAPSIM_VOLATILITY=1.5``,
   ``TRAPSIM_REDIS_URL=…``), read through pydantic-settings; an empty variable
   counts as unset;
3. the settings YAML named by ``--settings FILE`` or ``TRAPSIM_SETTINGS_FILE``,
   whose keys are the field names of :class:`Settings` (``volatility: 1.5``,
   ``redis_url: …``);
4. the default (RunConfig's for run options, the sink's own for sink limits).

A run's ``config.yaml`` (``run --config``) is not one of these layers: it
describes one simulation, and for run options it sits between the command line
and the environment (:meth:`ResolvedSettings.run_config`). Sink settings never
enter ``config.yaml``, so reproducing a run writes into Redis or a database only
when asked to again.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict

from trapsim.core.config import FrozenModel, read_yaml
from trapsim.core.errors import ConfigError, TrapsimError
from trapsim.service.config import RunConfig, build_config
from trapsim.store.base import Sink

ENV_PREFIX = "TRAPSIM_"
SETTINGS_FILE_VAR = "TRAPSIM_SETTINGS_FILE"
"""Environment variable naming the settings file when ``--settings`` is not given."""

RUN_OPTIONS = (
    "duration", "volatility", "frequency", "sleep", "seed", "start", "replay", "params",
    "scenario", "depth_every", "depth_levels", "detect", "symbols", "symbol_settings",
)
"""Settings that describe the simulation; they end up in the run's ``config.yaml``."""

FLAGS = {"redis_url": "--redis", "db_url": "--db"}
"""Command-line options not spelled ``--<field-name>``."""

REDIS_LIMITS = {
    "redis_history_cap": "history_cap",
    "redis_list_cap": "list_cap",
    "redis_day_ttl": "day_ttl_s",
    "redis_buffer_limit": "buffer_limit",
}
"""Setting → RedisSink parameter; None keeps the sink's default."""
DB_LIMITS = {"db_batch_rows": "batch_rows", "db_buffer_limit": "buffer_limit"}
"""Setting → SqlSink parameter; None keeps the sink's default."""

SECRET_WORDS = ("password", "passwd", "secret", "token", "key")
"""URL query parameters whose name contains one of these are masked."""

STARTUP_FAILED = "startup error"
"""``stopped_by`` of a run whose sinks could not all be opened."""

Layer = Literal["flag", "env", "file"]


class Settings(FrozenModel):
    """Everything ``trapsim run`` can be told, whatever the layer it came from.

    Run options left at None take RunConfig's default; sink limits left at None
    take the sink's default.
    """

    duration: float | None = Field(None, description="Hours of market time.")
    volatility: float | None = Field(None, description="Volatility scale factor.")
    frequency: float | None = Field(None, description="Trap frequency 0.0–1.0.")
    sleep: float | None = Field(None, description="Wall seconds per market second.")
    seed: int | None = Field(None, description="Run seed.")
    start: str | None = Field(None, description="Market start, ISO 8601 UTC.")
    replay: Path | None = Field(None, description="1-minute candle file to replay.")
    params: Path | None = Field(None, description="Market parameters YAML.")
    scenario: Path | None = Field(None, description="Chaos scenario YAML.")
    depth_every: float | None = Field(None, description="Seconds between L2 depth snapshots.")
    depth_levels: int | None = Field(None, description="L2 depth levels per side.")
    detect: bool | None = Field(None, description="Run the trap detector live.")
    symbols: str | None = Field(None, description="Symbols simulated together, comma-separated.")
    symbol_settings: Path | None = Field(None, description="Per-symbol settings YAML.")

    redis_url: str | None = Field(None, description="Redis server to publish to.")
    # Empty would make --redis-clear delete every key of the database.
    redis_prefix: str = Field("sim_", min_length=1, description="Prefix of every Redis key.")
    redis_clear: bool = Field(False, description="Delete this prefix's keys before the run.")
    redis_history_cap: int | None = Field(
        None, ge=1, description="Ticks kept per price_history:<day> list."
    )
    redis_list_cap: int | None = Field(
        None, ge=1, description="Entries kept in trap_history, hf_activations and detections."
    )
    redis_day_ttl: int | None = Field(
        None, ge=1, description="Expiry of a day list after its last write, seconds."
    )
    redis_buffer_limit: int | None = Field(
        None, ge=1, description="Entries buffered while Redis is unreachable."
    )
    db_url: str | None = Field(None, description="SQLAlchemy URL of the events database.")
    db_batch_rows: int | None = Field(
        None, ge=1, description="Rows per database transaction and insert."
    )
    db_buffer_limit: int | None = Field(
        None, ge=1, description="Rows buffered while the database is unreachable."
    )
    allow_offline_sinks: bool = Field(
        False, description="Start even if a sink's server is unreachable."
    )


class _Environment(BaseSettings, Settings):
    """The fields of :class:`Settings` as ``TRAPSIM_*`` variables, read raw."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_ignore_empty=True)


def env_name(key: str) -> str:
    """The environment variable of setting ``key``."""
    return ENV_PREFIX + key.upper()


def flag_name(key: str) -> str:
    """The command-line option of setting ``key``."""
    return FLAGS.get(key, "--" + key.replace("_", "-"))


@dataclass(frozen=True, slots=True)
class ResolvedSettings:
    """Effective settings and the layer each came from.

    Attributes
    ----------
    settings : Settings
        The merged, validated settings.
    origins : Mapping[str, str]
        Setting name → ``"flag"``, ``"env"`` or ``"file"``; a name that is
        absent has its default.
    settings_file : Path or None
        The settings file read, if any.
    """

    settings: Settings
    origins: Mapping[str, Layer]
    settings_file: Path | None

    def label(self, key: str) -> str:
        """Where setting ``key`` came from, as a user would write it."""
        return _label(key, self.origins.get(key), self.settings_file)

    def run_options(self, *, flags: bool) -> dict[str, Any]:
        """Run options given on the command line (``flags``) or else by the environment or file."""
        return {
            key: getattr(self.settings, key)
            for key in RUN_OPTIONS
            if key in self.origins and (self.origins[key] == "flag") == flags
        }

    def run_config(self, config: Path | None) -> RunConfig:
        """The run's configuration: options > ``config`` (a run's config.yaml) > env > file.

        Raises
        ------
        ConfigError
            On an out-of-range value, naming the option, variable or file key.
        """
        return build_config(
            config=config,
            over=self.run_options(flags=True),
            under=self.run_options(flags=False),
            names={key: self.label(key) for key in RUN_OPTIONS},
        )

    def show(self) -> list[tuple[str, str, str]]:
        """``(name, value as YAML, origin)`` per setting, with secrets masked."""
        fields = RunConfig.model_fields
        defaults = {key: fields[key].default for key in RUN_OPTIONS if key in fields}
        defaults |= _sink_defaults()
        rows = []
        for key in Settings.model_fields:
            value = getattr(self.settings, key)
            if key in self.origins:
                origin = self.label(key)
            elif key in _DEFAULT_NOTES:
                origin = f"default: {_DEFAULT_NOTES[key]}"
            else:
                origin = "default"
                value = defaults.get(key, value)
            if isinstance(value, Path):
                value = str(value)
            rows.append((key, json.dumps(mask(value) if isinstance(value, str) else value), origin))
        return rows


_DEFAULT_NOTES = {
    "duration": "until stopped",
    "seed": "drawn at random per run",
    "replay": "synthetic market",
    "params": "built-in BTC calibration",
    "redis_url": "no Redis",
    "db_url": "no database",
}


def _label(key: str, origin: Layer | None, settings_file: Path | None) -> str:
    if origin == "flag":
        return flag_name(key)
    if origin == "env":
        return env_name(key)
    if origin == "file":
        return f"{settings_file}: {key}"
    return "default"


def load_settings(flags: Mapping[str, Any], settings_file: Path | None = None) -> ResolvedSettings:
    """Merge the command line, the ``TRAPSIM_*`` environment and the settings file.

    Parameters
    ----------
    flags : Mapping[str, Any]
        Setting name → value given on the command line; None means not given.
    settings_file : Path, optional
        ``--settings``; when None, ``TRAPSIM_SETTINGS_FILE`` is used if set.

    Returns
    -------
    ResolvedSettings

    Raises
    ------
    ConfigError
        One line naming the option, variable or file key of the first bad value,
        an unknown key in the settings file, or an unreadable settings file.
    """
    from_env = settings_file is None and bool(os.environ.get(SETTINGS_FILE_VAR))
    if from_env:
        settings_file = Path(os.environ[SETTINGS_FILE_VAR])
    try:
        file_values = read_yaml(settings_file) if settings_file is not None else {}
    except ConfigError as err:
        raise ConfigError(f"{SETTINGS_FILE_VAR}: {err}" if from_env else str(err)) from None
    layers: tuple[tuple[Layer, Mapping[str, Any]], ...] = (
        ("file", file_values),
        ("env", EnvSettingsSource(_Environment)()),
        ("flag", {key: value for key, value in flags.items() if value is not None}),
    )
    merged: dict[str, Any] = {}
    origins: dict[str, Layer] = {}
    for layer, values in layers:
        merged.update(values)
        origins.update(dict.fromkeys(values, layer))
    try:
        settings = Settings.model_validate(merged)
    except ValidationError as err:
        first = err.errors()[0]
        key = str(first["loc"][0])
        where = _label(key, origins.get(key), settings_file)
        raise ConfigError(f"{where}: {first['msg']}") from None
    return ResolvedSettings(settings, origins, settings_file)


def open_sinks(settings: Settings, cfg: RunConfig, run_id: str) -> tuple[Sink, ...]:
    """Connect the SQL and Redis sinks ``settings`` ask for.

    Parameters
    ----------
    settings : Settings
        ``db_url`` and ``redis_url`` select the sinks; limits left at None
        take the sink's default.
    cfg : RunConfig
        The run; the SQL sink stores it with the run's row.
    run_id : str
        Identifies the run in every sink.

    Returns
    -------
    tuple of Sink
        Empty when neither URL is set.

    Raises
    ------
    SinkError
        If a server is unreachable and ``allow_offline_sinks`` is off.
    """
    sinks: list[Sink] = []
    if settings.db_url:
        from trapsim.store.sql import SqlSink

        sinks.append(
            SqlSink(
                settings.db_url,
                run_id=run_id,
                config=cfg.model_dump(mode="json"),
                allow_offline=settings.allow_offline_sinks,
                **_given(settings, DB_LIMITS),
            )
        )
    if settings.redis_url:
        from trapsim.store.redis import RedisSink

        try:
            sinks.append(
                RedisSink(
                    settings.redis_url,
                    run_id=run_id,
                    symbols=cfg.symbols,
                    prefix=settings.redis_prefix,
                    paced=cfg.sleep > 0,
                    clear=settings.redis_clear,
                    allow_offline=settings.allow_offline_sinks,
                    **_given(settings, REDIS_LIMITS),
                )
            )
        except TrapsimError:
            # The database already holds the run's row: record that it never started.
            for sink in sinks:
                sink.close({"run_id": run_id, "stopped_by": STARTUP_FAILED})
            raise
    return tuple(sinks)


def _given(settings: Settings, limits: Mapping[str, str]) -> dict[str, int]:
    # Limits left unset keep the sink's own default.
    values = {param: getattr(settings, key) for key, param in limits.items()}
    return {param: value for param, value in values.items() if value is not None}


def _sink_defaults() -> dict[str, Any]:
    """Setting → the sink's default for each sink limit."""
    from trapsim.store.redis import RedisSink
    from trapsim.store.sql import SqlSink

    defaults = {}
    for sink, limits in ((RedisSink, REDIS_LIMITS), (SqlSink, DB_LIMITS)):
        params = inspect.signature(sink).parameters
        defaults.update({key: params[param].default for key, param in limits.items()})
    return defaults


def mask(value: str) -> str:
    """``value`` with a URL's password and secret query parameters replaced by ``***``.

    >>> mask("redis://:hunter2@10.0.0.5:6379/0?ssl_cert_reqs=none&token=abc")
    'redis://:***@10.0.0.5:6379/0?ssl_cert_reqs=none&token=***'
    """
    scheme, sep, rest = value.partition("://")
    if not sep:
        return value
    # Masked in place rather than re-assembled, so the rest of the URL reads as written.
    end = min((i for i in map(rest.find, "/?#") if i >= 0), default=len(rest))
    authority, tail = rest[:end], rest[end:]
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.split(':', 1)[0]}:***@{host}"
    path, question, query = tail.partition("?")
    query, hash_, fragment = query.partition("#")
    query = "&".join(map(_mask_param, query.split("&")))
    return f"{scheme}://{authority}{path}{question}{query}{hash_}{fragment}"


def _mask_param(item: str) -> str:
    name, sep, _ = item.partition("=")
    secret = sep and any(word in name.lower() for word in SECRET_WORDS)
    return f"{name}=***" if secret else item
