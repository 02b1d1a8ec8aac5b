"""Several symbols in one run: identities, traps per symbol, chaos across symbols, feed faults."""

import json

import numpy as np
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.market.multi import BASIS_MEAN, BASIS_SD
from trapsim.scenarios.chaos import Scenario
from trapsim.service.config import RunConfig
from trapsim.service.simulation import Simulation
from trapsim.store.rundir import read_stream

from .conftest import REPO, trapsim

ALL = "BTC-USD,ETH-USD,USDT-USD,BTC-ETH,BTC-USD-PERP"
SCENARIOS = REPO / "deploy" / "scenarios"
HOUR = 3600


def collect(cfg: RunConfig):
    """Per symbol: concatenated price, bid, ask, volume; all labels; all funding events."""
    cols: dict[str, dict[str, list]] = {}
    labels, funding = [], []
    for step in Simulation(cfg).batches():
        for s, t in step.ticks.items():
            c = cols.setdefault(s, {k: [] for k in ("ts", "price", "bid", "ask", "volume")})
            for k in c:
                c[k].append(getattr(t, k))
        labels += step.labels
        funding += step.funding
    out = {s: {k: np.concatenate(v) for k, v in c.items()} for s, c in cols.items()}
    return out, labels, funding


def scenario(*phases) -> Scenario:
    return Scenario.model_validate({"name": "t", "phases": list(phases)})


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 2**31), hours=st.floats(1, 14))
def test_cross_rate_and_perp_identities_hold_at_every_tick(seed, hours):
    ticks, labels, _ = collect(RunConfig(duration=hours, sleep=0, seed=seed, frequency=1.0,
                                         symbols=ALL))
    btc, eth, cross, perp = (ticks[s] for s in ("BTC-USD", "ETH-USD", "BTC-ETH",
                                                  "BTC-USD-PERP"))
    assert all(np.array_equal(t["ts"], btc["ts"]) for t in ticks.values())
    assert np.array_equal(cross["price"], btc["price"] / eth["price"])  # exactly, every tick
    basis = np.log(perp["price"] / btc["price"])
    assert np.all(np.abs(basis - BASIS_MEAN) < 8 * BASIS_SD)
    for t in ticks.values():
        assert np.all(t["bid"] <= t["price"]) and np.all(t["price"] <= t["ask"])
        assert np.all(t["bid"] < t["ask"])
    usdt = ticks["USDT-USD"]["price"]
    assert np.all(np.abs(usdt - 1) < 0.003)
    assert {lb["symbol"] for lb in labels if lb["kind"] == "trap"} <= {"BTC-USD", "ETH-USD"}


def test_traps_apply_per_symbol_and_show_in_the_cross_rate():
    cfg = dict(duration=24, sleep=0, seed=8, symbols=ALL)
    plain, _, _ = collect(RunConfig(frequency=0.0, **cfg))
    trapped, labels, _ = collect(RunConfig(frequency=1.0, **cfg))
    for symbol in ("BTC-USD", "ETH-USD"):
        mine = [lb for lb in labels if lb["symbol"] == symbol]
        assert len(mine) > 10
        moved = trapped[symbol]["price"] != plain[symbol]["price"]
        ts = trapped[symbol]["ts"]
        inside = np.zeros(len(ts), bool)
        for lb in mine:
            inside |= (ts >= lb["start_ts"]) & (ts <= lb["end_ts"])
        # Each symbol's traps move that symbol in their windows (and on the way back after),
        # and nothing moves it before its first trap.
        assert moved[inside].mean() > 0.9
        assert ts[np.argmax(moved)] == min(lb["start_ts"] for lb in mine)
    # ETH's traps reach the cross rate; USDT has no traps.
    assert not np.array_equal(trapped["BTC-ETH"]["price"], plain["BTC-ETH"]["price"])
    assert np.array_equal(trapped["USDT-USD"]["price"], plain["USDT-USD"]["price"])


def test_funding_every_8_hours_at_the_perp_price():
    ticks, _, funding = collect(RunConfig(duration=48, sleep=0, seed=2, frequency=0.0,
                                          symbols="BTC-USD,BTC-USD-PERP"))
    perp = ticks["BTC-USD-PERP"]
    assert [(f.ts - perp["ts"][0]) // 10**9 for f in funding] == [8 * HOUR * k
                                                                  for k in range(1, 6)]
    for f in funding:
        assert f.mark_price == perp["price"][np.searchsorted(perp["ts"], f.ts)]
        assert abs(f.rate) < 0.01


def test_gradual_divergence_opens_the_spread_it_asks_for_and_closes_it():
    sc = scenario({"type": "gradual_divergence", "at": "2h", "base_symbol": "BTC-USD",
                   "target_symbol": "BTC-USD-PERP", "max_spread_bps": 500,
                   "buildup_hours": 4, "sustain_hours": 8, "recovery_hours": 2})
    cfg = dict(duration=20, sleep=0, seed=6, symbols="BTC-USD,BTC-USD-PERP")
    base, _, _ = collect(RunConfig(**cfg))
    div, labels, _ = collect(RunConfig(scenario=sc, **cfg))
    assert np.array_equal(div["BTC-USD"]["price"], base["BTC-USD"]["price"])  # spot untouched
    spread = (np.log(div["BTC-USD-PERP"]["price"] / div["BTC-USD"]["price"])
              - np.log(base["BTC-USD-PERP"]["price"] / base["BTC-USD"]["price"]))
    assert np.allclose(spread[:2 * HOUR], 0)
    assert spread[4 * HOUR] == pytest.approx(0.5 * np.log(1.05), rel=1e-6)  # half way up
    assert np.allclose(spread[6 * HOUR:14 * HOUR], np.log(1.05))  # the plateau: 500 bps
    assert np.allclose(spread[16 * HOUR:], 0)  # recovered after 2 h more
    (lab,) = [lb for lb in labels if lb["kind"] == "chaos"]
    assert (lab["symbol"], lab["type"], lab["direction"], lab["magnitude"]) == (
        "BTC-USD-PERP", "gradual_divergence", "up", 5.0)


def minute_returns(price):
    return np.diff(np.log(price[::60]))


def test_correlation_break_decouples_eth_without_changing_its_volatility():
    sc = scenario({"type": "correlation_break", "at": "12h", "target_correlation": 0.0,
                   "duration_hours": 12})
    cfg = dict(duration=36, sleep=0, seed=9, frequency=0.0, symbols="BTC-USD,ETH-USD,BTC-ETH")
    base, _, _ = collect(RunConfig(**cfg))
    broke, labels, _ = collect(RunConfig(scenario=sc, **cfg))
    rb, re, rb0, re0 = (minute_returns(x["price"]) for x in (
        broke["BTC-USD"], broke["ETH-USD"], base["BTC-USD"], base["ETH-USD"]))
    during = slice(12 * 60, 24 * 60)
    assert np.array_equal(re[:12 * 60 - 1], re0[:12 * 60 - 1])  # untouched before
    assert np.corrcoef(rb0[during], re0[during])[0, 1] > 0.4  # as it would have been
    assert abs(np.corrcoef(rb[during], re[during])[0, 1]) < 0.12
    assert 0.8 < re[during].std() / re0[during].std() < 1.25
    assert np.array_equal(broke["BTC-ETH"]["price"],
                          broke["BTC-USD"]["price"] / broke["ETH-USD"]["price"])
    (lab,) = [lb for lb in labels if lb["kind"] == "chaos"]
    assert (lab["symbol"], lab["type"]) == ("ETH-USD", "correlation_break")


@pytest.mark.parametrize("phase, needle", [
    ({"type": "stablecoin_depeg", "at": "1h"}, "needs USDT-USD in the run's symbols"),
    ({"type": "gradual_divergence", "at": "1h", "target_symbol": "BTC-ETH"},
     "needs BTC-ETH in the run's symbols"),
    ({"type": "market_crash", "at": "1h", "symbols": ["ETH-USD"]}, "none of the run's symbols"),
    ({"type": "feed_disruption", "at": "1h", "affect_symbols": ["USDT-USD"]},
     "none of the run's symbols"),
])
def test_a_phase_for_a_symbol_the_run_lacks_is_refused(phase, needle):
    with pytest.raises(ConfigError, match=needle):
        Simulation(RunConfig(duration=1, sleep=0, seed=1, scenario=scenario(phase)))


def test_the_cross_rate_cannot_be_moved_on_its_own():
    sc = scenario({"type": "price_shock", "at": "1h", "symbol": "BTC-ETH",
                   "shock_percentage": -5, "duration_seconds": 60})
    with pytest.raises(ConfigError, match="BTC-ETH is always BTC-USD / ETH-USD"):
        Simulation(RunConfig(duration=1, sleep=0, seed=1, scenario=sc,
                             symbols="BTC-USD,ETH-USD,BTC-ETH"))


def test_five_symbols_from_the_cli_paced_equals_flat_with_feed_faults(tmp_path):
    common = ["--symbols", ALL, "--duration", 5, "--seed", 12, "--frequency", 1.0,
              "--scenario", SCENARIOS / "feed_disruption.yaml"]
    flat = trapsim("run", *common, "--sleep", 0, "--out", tmp_path / "flat")
    paced = trapsim("run", *common, "--sleep", 0.0001, "--out", tmp_path / "paced")
    assert flat.returncode == 0, flat.stderr
    assert paced.returncode == 0, paced.stderr
    names = sorted(p.stem for p in (tmp_path / "flat").glob("*.parquet"))
    assert {"ticks", "depth", "funding", "feed", "candles_1m", "candles_1d"} <= set(names)
    for name in names:
        assert (tmp_path / "flat" / f"{name}.parquet").read_bytes() == (
            tmp_path / "paced" / f"{name}.parquet").read_bytes(), name
    ticks = read_stream(tmp_path / "flat", "ticks")
    assert sorted(set(ticks["symbol"].to_pylist())) == sorted(ALL.split(","))
    for name in ("candles_1m", "candles_4h", "depth"):
        assert len(set(read_stream(tmp_path / "flat", name)["symbol"].to_pylist())) == 5
    stats = json.loads((tmp_path / "flat" / "stats.json").read_text())
    assert set(stats["symbols"]) == set(ALL.split(","))
    assert stats["ticks"] == 5 * HOUR  # the headline symbol's


def by_symbol(table, symbol):
    return table.filter(pc.equal(table["symbol"], symbol))


def test_feed_faults_change_what_subscribers_get_not_the_market(tmp_path):
    common = ["--symbols", "BTC-USD,ETH-USD", "--duration", 5, "--seed", 13, "--sleep", 0]
    plain = trapsim("run", *common, "--out", tmp_path / "plain")
    res = trapsim("run", *common, "--scenario", SCENARIOS / "feed_disruption.yaml",
                  "--out", tmp_path / "r")
    assert plain.returncode == 0 and res.returncode == 0, res.stderr
    ticks = read_stream(tmp_path / "r", "ticks")
    assert ticks.equals(read_stream(tmp_path / "plain", "ticks"))  # the market goes on
    feed = read_stream(tmp_path / "r", "feed")
    t0 = ticks["ts"][0].value
    for symbol in ("BTC-USD", "ETH-USD"):
        true, got = by_symbol(ticks, symbol), by_symbol(feed, symbol)
        ts = (got["ts"].cast("int64").to_numpy() - t0) // 10**9
        lag = (got["recv_ts"].cast("int64").to_numpy() - got["ts"].cast("int64").to_numpy())
        degraded = (ts >= HOUR) & (ts < 2 * HOUR)
        assert degraded.sum() / HOUR == pytest.approx(0.8, abs=0.03)  # 20 % lost
        assert np.all(lag[degraded] >= 2 * 10**9) and np.all(lag[ts >= 2 * HOUR + 2] == 0)
        outage = (ts >= 4 * HOUR) & (ts < 4 * HOUR + 300)
        assert not outage.any()
        untouched = ts < HOUR  # as the market, quoted to the symbol's decimals
        assert np.array_equal(got["price"].to_numpy()[untouched],
                              np.round(true["price"].to_numpy()[:HOUR], 2))
    btc_true, btc = by_symbol(ticks, "BTC-USD"), by_symbol(feed, "BTC-USD")
    ts = (btc["ts"].cast("int64").to_numpy() - t0) // 10**9
    stale = (ts >= 3 * HOUR) & (ts < 3 * HOUR + 600)
    assert stale.sum() == 600  # ticks keep coming …
    held = round(btc_true["price"][3 * HOUR - 1].as_py(), 2)
    assert np.all(btc["price"].to_numpy()[stale] == held)
    labels = [lb for lb in read_stream(tmp_path / "r", "labels").to_pylist()
              if lb["kind"] == "feed_fault"]
    assert [(lb["symbol"], json.loads(lb["params"])["mode"]) for lb in labels] == [
        ("BTC-USD", "degraded"), ("ETH-USD", "degraded"), ("BTC-USD", "stale"),
        ("BTC-USD", "outage"), ("ETH-USD", "outage")]


def test_crash_across_symbols_from_the_cli(tmp_path):
    res = trapsim("run", "--symbols", ALL, "--scenario", SCENARIOS / "market_crash.yaml",
                  "--duration", 16, "--sleep", 0, "--seed", 5, "--frequency", 0,
                  "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    ticks = read_stream(tmp_path / "r", "ticks")
    price = {s: by_symbol(ticks, s)["price"].to_numpy() for s in ALL.split(",")}
    fall = {s: price[s][10 * HOUR] / price[s][6 * HOUR - 1] - 1 for s in price}
    assert -0.30 < fall["BTC-USD"] < -0.10
    assert fall["ETH-USD"] < fall["BTC-USD"]  # ETH falls further, as on 2024-08-05
    assert fall["BTC-USD-PERP"] == pytest.approx(fall["BTC-USD"], abs=0.01)
    assert abs(fall["USDT-USD"]) < 0.003  # not listed: the peg holds
    assert np.array_equal(price["BTC-ETH"], price["BTC-USD"] / price["ETH-USD"])
    labels = read_stream(tmp_path / "r", "labels").to_pylist()
    assert sorted(lb["symbol"] for lb in labels if lb["kind"] == "chaos") == [
        "BTC-USD", "ETH-USD"]


def test_usdt_depeg_from_the_cli(tmp_path):
    res = trapsim("run", "--symbols", "BTC-USD,USDT-USD", "--scenario",
                  SCENARIOS / "usdt_depeg.yaml", "--duration", 96, "--sleep", 0, "--seed", 5,
                  "--depth-every", 0, "--out", tmp_path / "r")
    assert res.returncode == 0, res.stderr
    usdt = by_symbol(read_stream(tmp_path / "r", "ticks"), "USDT-USD")["price"].to_numpy()
    hourly = usdt.reshape(-1, HOUR).mean(axis=1)
    assert hourly[6 + 12] == pytest.approx(0.91, abs=0.006)  # 12 h after the start
    assert abs(hourly[6 + 72] - 1) < 0.0025


@pytest.mark.parametrize("args, needle", [
    (["--symbols", "ETH-USD"], "symbols must include BTC-USD"),
    (["--symbols", "BTC-USD,DOGE-USD"], "symbols must be distinct names from"),
    (["--symbols", "BTC-USD,BTC-ETH"], "add ETH-USD"),
    (["--symbols", "BTC-USD", "--scenario", SCENARIOS / "usdt_depeg.yaml"],
     "needs USDT-USD in the run's symbols"),
])
def test_bad_symbols_exit_2(tmp_path, args, needle):
    res = trapsim("run", *args, "--duration", 1, "--sleep", 0, "--out", tmp_path / "r")
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
