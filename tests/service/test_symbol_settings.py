"""Per-symbol settings in a run: circuit breaker and depeg alerts, from the command line."""

import sqlite3

import yaml

from trapsim.store.rundir import read_stream

from .conftest import REPO, trapsim

SHOCK = """name: drop
phases:
  - at: 1h
    type: price_shock
    shock_percentage: -10
    duration_seconds: 5
    pattern: gradual_linear
    recovery_time_seconds: 600
"""


def test_a_tighter_breaker_from_a_settings_file_halts_btc_in_a_shock(tmp_path):
    (tmp_path / "shock.yaml").write_text(SHOCK)
    (tmp_path / "symbols.yaml").write_text(
        "supported_symbols:\n  - symbol: BTC-USD\n    circuit_breaker_threshold: 0.05\n")
    db = tmp_path / "sim.db"
    args = ("--symbols", "BTC-USD,ETH-USD", "--scenario", tmp_path / "shock.yaml",
            "--duration", 2, "--sleep", 0, "--seed", 3, "--frequency", 0)
    res = trapsim("run", *args, "--symbol-settings", tmp_path / "symbols.yaml",
                  "--db", f"sqlite:///{db}", "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    alerts = read_stream(tmp_path / "r", "alerts").to_pylist()
    btc = [(a["event"], a["symbol"]) for a in alerts if a["symbol"] == "BTC-USD"]
    assert btc == [("circuit_breaker_tripped", "BTC-USD"), ("circuit_breaker_reset", "BTC-USD")]
    ticks = read_stream(tmp_path / "r", "ticks")
    start = ticks["ts"][0].value
    trip = alerts[0]["ts"].value
    assert 3600 < (trip - start) / 1e9 <= 3605  # within the 5-second drop
    assert (alerts[1]["ts"].value - trip) / 1e9 == 300  # the cooldown
    # ETH-USD keeps its shipped 20 % threshold: nothing to say about it.
    assert not [a for a in alerts if a["symbol"] == "ETH-USD"]
    assert '"event": "circuit_breaker_tripped"' in res.stderr
    cfg = yaml.safe_load((tmp_path / "r" / "config.yaml").read_text())
    assert cfg["symbol_settings"]["BTC-USD"]["circuit_breaker_threshold"] == 0.05
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT symbol, ts, event FROM alerts ORDER BY ts").fetchall()
    assert rows == [(a["symbol"], a["ts"].value, a["event"]) for a in alerts]
    # The run's config.yaml reproduces it, settings included.
    again = trapsim("run", "--config", tmp_path / "r" / "config.yaml", "--out", tmp_path / "r2")
    assert again.returncode == 0, again.stderr
    assert read_stream(tmp_path / "r2", "alerts").equals(read_stream(tmp_path / "r", "alerts"))


def test_the_usdt_depeg_scenario_raises_and_clears_a_depeg_alert(tmp_path):
    res = trapsim("run", "--symbols", "BTC-USD,USDT-USD", "--scenario",
                  REPO / "deploy" / "scenarios" / "usdt_depeg.yaml", "--duration", 96,
                  "--sleep", 0, "--seed", 2, "--frequency", 0, "--depth-every", 0,
                  "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    alerts = [a for a in read_stream(tmp_path / "r", "alerts").to_pylist()
              if a["symbol"] == "USDT-USD"]
    assert [a["event"] for a in alerts] == ["depeg_alert", "depeg_cleared"]
    start = read_stream(tmp_path / "r", "ticks")["ts"][0].value
    raised, cleared = ((a["ts"].value - start) / 3.6e12 for a in alerts)
    assert 6 < raised < 18  # the phase starts at 6 h and bottoms out at 18 h
    assert cleared > 24  # within 1 % again only well into the recovery
    assert abs(alerts[1]["price"] - 1) < 0.01


def test_a_bad_settings_file_exits_2_naming_the_entry(tmp_path):
    path = tmp_path / "symbols.yaml"
    path.write_text("supported_symbols:\n  - symbol: BTC-USD\n    min_price: -5\n")
    res = trapsim("run", "--symbol-settings", path, "--duration", 1, "--sleep", 0,
                  "--out", tmp_path / "r")
    assert res.returncode == 2
    assert "--symbol-settings" in res.stderr and "supported_symbols[0]: min_price" in res.stderr
    assert not (tmp_path / "r").exists()
