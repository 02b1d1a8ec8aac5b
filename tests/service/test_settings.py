"""Settings: option > TRAPSIM_* variable > settings file > default; config show; bad values."""

import json
import os
import re
import uuid

import pytest
import redis
import sqlalchemy as sa
import yaml

from trapsim.core.errors import ConfigError
from trapsim.service.settings import ENV_PREFIX, load_settings, mask

from .conftest import trapsim

QUICK = ("--duration", 0.01, "--sleep", 0)
REDIS_URL = "redis://127.0.0.1:6379/0"
POSTGRES = "postgresql+psycopg://postgres@127.0.0.1"


def environ(**variables) -> dict[str, str]:
    """This process's environment without TRAPSIM_* variables, plus ``variables``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    return env | {k: str(v) for k, v in variables.items()}


def run_config(tmp_path, *args, env=None, name="r") -> dict:
    res = trapsim("run", *QUICK, *args, "--out", tmp_path / name, env=env or environ())
    assert res.returncode == 0, res.stderr
    return yaml.safe_load((tmp_path / name / "config.yaml").read_text())


def show(*args, env) -> dict[str, tuple[object, str]]:
    """`trapsim config show` as name → (value, origin)."""
    res = trapsim("config", "show", *args, env=env)
    assert res.returncode == 0, res.stderr
    rows = {}
    for line in res.stdout.splitlines():
        if line.startswith("#"):
            continue
        entry, origin = line.split("  # ")
        key, value = entry.split(": ", 1)
        rows[key] = (json.loads(value), origin)
    return rows


@pytest.fixture
def no_env(monkeypatch):
    for key in os.environ:
        if key.startswith(ENV_PREFIX):
            monkeypatch.delenv(key)
    return monkeypatch


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "settings.yaml"
    path.write_text("volatility: 2.5\nfrequency: 0.5\nredis_prefix: file_\n")
    return path


# -- one test per layer ---------------------------------------------------------


def test_defaults_apply_when_nothing_is_set(tmp_path):
    cfg = run_config(tmp_path)
    assert (cfg["volatility"], cfg["frequency"]) == (1.0, 0.2)
    rows = show(env=environ())
    assert rows["volatility"] == (1.0, "default")
    assert rows["redis_prefix"] == ("sim_", "default")
    assert rows["redis_url"] == (None, "default: no Redis")


def test_settings_file_overrides_defaults(tmp_path, settings_file):
    cfg = run_config(tmp_path, "--settings", settings_file)
    assert (cfg["volatility"], cfg["frequency"]) == (2.5, 0.5)
    # TRAPSIM_SETTINGS_FILE names the file when --settings is not given.
    rows = show(env=environ(TRAPSIM_SETTINGS_FILE=settings_file))
    assert rows["volatility"] == (2.5, f"{settings_file}: volatility")
    assert rows["redis_prefix"] == ("file_", f"{settings_file}: redis_prefix")


def test_environment_overrides_settings_file(tmp_path, settings_file):
    env = environ(TRAPSIM_VOLATILITY=3.5, TRAPSIM_REDIS_PREFIX="env_")
    cfg = run_config(tmp_path, "--settings", settings_file, env=env)
    assert (cfg["volatility"], cfg["frequency"]) == (3.5, 0.5)
    rows = show("--settings", settings_file, env=env)
    assert rows["volatility"] == (3.5, "TRAPSIM_VOLATILITY")
    assert rows["redis_prefix"] == ("env_", "TRAPSIM_REDIS_PREFIX")
    assert rows["frequency"][0] == 0.5


def test_options_override_environment(tmp_path, settings_file):
    env = environ(TRAPSIM_VOLATILITY=3.5, TRAPSIM_SLEEP=5)
    cfg = run_config(tmp_path, "--settings", settings_file, "--volatility", 4.5, env=env)
    assert (cfg["volatility"], cfg["frequency"], cfg["sleep"]) == (4.5, 0.5, 0.0)


def test_sink_settings_follow_the_same_precedence(no_env, settings_file):
    assert load_settings({}).settings.redis_prefix == "sim_"
    assert load_settings({}, settings_file).settings.redis_prefix == "file_"
    no_env.setenv("TRAPSIM_REDIS_PREFIX", "env_")
    no_env.setenv("TRAPSIM_REDIS_CLEAR", "true")
    no_env.setenv("TRAPSIM_DB_URL", "sqlite:///env.db")
    resolved = load_settings({"redis_prefix": None, "db_url": None}, settings_file)
    assert resolved.settings.redis_prefix == "env_" and resolved.settings.redis_clear
    flags = {"redis_prefix": "flag_", "redis_clear": False, "db_url": "sqlite:///flag.db"}
    resolved = load_settings(flags, settings_file)
    s = resolved.settings
    assert (s.redis_prefix, s.redis_clear, s.db_url) == ("flag_", False, "sqlite:///flag.db")
    assert resolved.label("db_url") == "--db" and resolved.label("volatility").endswith(
        "settings.yaml: volatility"
    )


def test_empty_variable_counts_as_unset(no_env, settings_file):
    no_env.setenv("TRAPSIM_VOLATILITY", "")
    assert load_settings({}, settings_file).settings.volatility == 2.5


# -- a run's config.yaml --------------------------------------------------------


def test_config_yaml_outranks_environment_and_file_but_not_options(tmp_path, settings_file):
    first = run_config(tmp_path, "--volatility", 1.7, name="a")
    env = environ(TRAPSIM_VOLATILITY=9, TRAPSIM_SEED=5, TRAPSIM_SETTINGS_FILE=settings_file)
    again = run_config(tmp_path, "--config", tmp_path / "a" / "config.yaml", env=env, name="b")
    assert again == first
    changed = run_config(
        tmp_path, "--config", tmp_path / "a" / "config.yaml", "--frequency", 0.7, env=env
    )
    assert changed == first | {"frequency": 0.7}


def test_sink_settings_stay_out_of_config_yaml_and_run_id_is_recorded(tmp_path):
    env = environ(TRAPSIM_REDIS_PREFIX="x_", TRAPSIM_REDIS_LIST_CAP=5, TRAPSIM_DB_BATCH_ROWS=9)
    cfg = run_config(tmp_path, env=env, name="a")
    assert not any(key.startswith(("redis", "db", "allow")) for key in cfg)
    run_config(tmp_path, name="b")
    ids = [json.loads((tmp_path / n / "stats.json").read_text())["run_id"] for n in "ab"]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids) and ids[0] != ids[1]


# -- help ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command", [(), ("run",), ("calibrate",), ("realism",), ("config",), ("config", "show")]
)
def test_every_command_has_help(command):
    res = trapsim(*command, "--help")
    assert res.returncode == 0 and " ".join(("trapsim", *command)) in res.stdout, res.stderr


def test_help_states_the_sinks_defaults():
    from trapsim.store import redis as redis_sink
    from trapsim.store import sql

    res = trapsim("run", "--help", env=environ(COLUMNS="300"))
    for flag, default in [
        ("--redis-history-cap", redis_sink.HISTORY_CAP),
        ("--redis-list-cap", redis_sink.LIST_CAP),
        ("--redis-day-ttl", redis_sink.DAY_TTL_S),
        ("--redis-buffer-limit", redis_sink.BUFFER_LIMIT),
        ("--db-batch-rows", sql.BATCH_ROWS),
        ("--db-buffer-limit", sql.BUFFER_ROWS),
    ]:
        [line] = [line for line in res.stdout.splitlines() if f" {flag} " in line]
        assert f"(default {default}" in line, line


# -- config show ------------------------------------------------------------------


def test_config_show_masks_secrets(tmp_path):
    (tmp_path / "s.yaml").write_text(
        "db_url: postgresql+psycopg://trapsim:s3cret-pw@db.internal/trapsim"
        "?sslpassword=pw2&application_name=sim\n"
    )
    env = environ(TRAPSIM_REDIS_URL="rediss://default:hunter2@cache.internal:6380/0?token=tk9")
    res = trapsim("config", "show", "--settings", tmp_path / "s.yaml", env=env)
    assert res.returncode == 0, res.stderr
    for secret in ("s3cret-pw", "pw2", "hunter2", "tk9"):
        assert secret not in res.stdout
    assert "rediss://default:***@cache.internal:6380/0?token=***" in res.stdout
    assert (
        "postgresql+psycopg://trapsim:***@db.internal/trapsim"
        "?sslpassword=***&application_name=sim" in res.stdout
    )
    # The output is YAML.
    assert yaml.safe_load(res.stdout)["redis_prefix"] == "sim_"


@pytest.mark.parametrize(
    "url,masked",
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("postgresql+psycopg://postgres@127.0.0.1/trapsim", None),
        ("postgresql://u:p%40ss@h/db?sslmode=require", "postgresql://u:***@h/db?sslmode=require"),
        ("unix:///run/redis.sock?db=0&password=x", "unix:///run/redis.sock?db=0&password=***"),
        ("sqlite:///runs/sim.db", None),
        ("sim_", None),
    ],
)
def test_mask(url, masked):
    assert mask(url) == (masked or url)


# -- bad values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "variable,value",
    [
        ("TRAPSIM_VOLATILITY", "abc"),
        ("TRAPSIM_VOLATILITY", "-1"),
        ("TRAPSIM_FREQUENCY", "1.5"),
        ("TRAPSIM_DURATION", "-2"),
        ("TRAPSIM_SLEEP", "fast"),
        ("TRAPSIM_SEED", "1.5"),
        ("TRAPSIM_START", "yesterday"),
        ("TRAPSIM_REPLAY", "missing.csv"),
        ("TRAPSIM_PARAMS", "missing.yaml"),
        ("TRAPSIM_REDIS_CLEAR", "maybe"),
        ("TRAPSIM_REDIS_LIST_CAP", "0"),
        ("TRAPSIM_REDIS_DAY_TTL", "1d"),
        ("TRAPSIM_DB_BATCH_ROWS", "-5"),
        ("TRAPSIM_ALLOW_OFFLINE_SINKS", "perhaps"),
        ("TRAPSIM_SETTINGS_FILE", "missing.yaml"),
    ],
)
@pytest.mark.parametrize("command", [("run", "--out", "r"), ("config", "show")])
def test_bad_variable_exits_2_with_one_line_naming_it(tmp_path, variable, value, command):
    # Only effective values are checked: a short flat-out run unless the variable replaces that.
    env = environ(**{"TRAPSIM_DURATION": 0.01, "TRAPSIM_SLEEP": 0, variable: value})
    res = trapsim(*command, env=env, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"trapsim: error: {variable}: "), res.stderr
    assert not (tmp_path / "r").exists()


def test_unknown_key_in_settings_file_is_named(tmp_path):
    (tmp_path / "s.yaml").write_text("volatilty: 2\n")
    res = trapsim("run", *QUICK, "--settings", tmp_path / "s.yaml", "--out", tmp_path / "r")
    assert res.returncode == 2
    assert res.stderr.strip() == (
        f"trapsim: error: {tmp_path / 's.yaml'}: volatilty: Extra inputs are not permitted"
    )


@pytest.mark.parametrize(
    "text,needle",
    [
        (
            "redis_history_cap: lots",
            "redis_history_cap: Input should be a valid integer, unable to parse string as an"
            " integer",
        ),
        # An empty prefix would make --redis-clear delete the whole database.
        ('redis_prefix: ""', "redis_prefix: String should have at least 1 character"),
    ],
)
def test_bad_settings_file_value_names_file_and_key(no_env, tmp_path, text, needle):
    (tmp_path / "s.yaml").write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings({}, tmp_path / "s.yaml")
    assert str(err.value) == f"{tmp_path / 's.yaml'}: {needle}"


# -- the sinks the settings ask for (real Redis, SQLite and PostgreSQL) ---------------


@pytest.fixture
def redis_prefix():
    """A prefix of its own on the real Redis; its keys are deleted afterwards."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.ping()
    except redis.ConnectionError:
        pytest.fail(f"Redis is not reachable at {REDIS_URL}")
    prefix = f"test_settings_{uuid.uuid4().hex[:8]}_"
    yield client, prefix
    keys = list(client.scan_iter(match=prefix + "*"))
    if keys:
        client.delete(*keys)


@pytest.fixture
def postgres_url():
    """A fresh PostgreSQL database, dropped afterwards."""
    name = f"trapsim_test_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(f"{POSTGRES}/postgres", isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as err:
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES}: {err}")
    yield f"{POSTGRES}/{name}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    admin.dispose()


def test_sinks_from_environment_and_reproduction_without_them(tmp_path, redis_prefix):
    client, prefix = redis_prefix
    db = tmp_path / "sim.db"
    env = environ(
        TRAPSIM_REDIS_URL=REDIS_URL, TRAPSIM_REDIS_PREFIX=prefix, TRAPSIM_DB_URL=f"sqlite:///{db}"
    )
    cfg = run_config(tmp_path, env=env, name="a")
    run_id = json.loads((tmp_path / "a" / "stats.json").read_text())["run_id"]
    assert client.get(f"{prefix}running") == b"0"
    assert client.hget(f"{prefix}statistics", "run_id") == run_id.encode()
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        rows = conn.execute(sa.text("SELECT run_id, config FROM runs")).all()
    assert [(r[0], json.loads(r[1])) for r in rows] == [(run_id, cfg)]
    # config.yaml holds no sink settings: reproducing the run writes into neither.
    keys = sorted(client.scan_iter(match=prefix + "*"))
    again = run_config(tmp_path, "--config", tmp_path / "a" / "config.yaml", name="b")
    assert again == cfg
    assert sorted(client.scan_iter(match=prefix + "*")) == keys
    with sa.create_engine(f"sqlite:///{db}").connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM runs")).scalar() == 1


def test_redis_options_reach_the_sink(tmp_path, redis_prefix):
    client, prefix = redis_prefix
    client.set(f"{prefix}leftover", "x")
    client.set(f"other_{prefix}", "kept")
    try:
        run_config(
            tmp_path,
            *("--redis", REDIS_URL, "--redis-prefix", prefix, "--redis-clear"),
            *("--redis-history-cap", 7, "--redis-day-ttl", 600),
        )
        assert client.get(f"other_{prefix}") == b"kept"
    finally:
        client.delete(f"other_{prefix}")
    assert client.get(f"{prefix}leftover") is None
    [day] = client.scan_iter(match=f"{prefix}price_history:*")
    assert client.llen(day) == 7 and 0 < client.ttl(day) <= 600


def test_postgresql_url_option(tmp_path, postgres_url):
    cfg = run_config(tmp_path, "--db", postgres_url, "--db-batch-rows", 5)
    run_id = json.loads((tmp_path / "r" / "stats.json").read_text())["run_id"]
    with sa.create_engine(postgres_url).connect() as conn:
        row = conn.execute(sa.text("SELECT run_id, config, stopped_by FROM runs")).one()
    assert tuple(row) == (run_id, cfg, "end")


def test_unreachable_sink_exits_2_unless_offline_sinks_are_allowed(tmp_path):
    dead = "redis://:pw-9q@127.0.0.1:1/0"
    db = f"sqlite:///{tmp_path / 'sim.db'}"
    res = trapsim(
        "run", *QUICK, "--db", db, "--redis", dead, "--out", tmp_path / "r", env=environ()
    )
    assert res.returncode == 2
    [line] = res.stderr.strip().splitlines()
    assert line.startswith("trapsim: error: ") and "unreachable" in line and "pw-9q" not in line
    assert not (tmp_path / "r").exists()
    # The database, opened first, says the run never started.
    with sa.create_engine(db).connect() as conn:
        ended = conn.execute(sa.text("SELECT stopped_by FROM runs WHERE ended_at > 0")).all()
    assert ended == [("startup error",)]
    env = environ(TRAPSIM_REDIS_URL=dead, TRAPSIM_ALLOW_OFFLINE_SINKS="true")
    run_config(tmp_path, env=env)
    assert json.loads((tmp_path / "r" / "stats.json").read_text())["stopped_by"] == "end"
