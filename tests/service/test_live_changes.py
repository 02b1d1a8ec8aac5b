"""Scenarios started and stopped while a run is going: the simulation's rewind, and the runner."""

import threading
import time

import numpy as np
import pyarrow.compute as pc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from trapsim.core.errors import ConfigError
from trapsim.scenarios.chaos import FeedDisruption, MarketCrash, PriceShock
from trapsim.service.config import RunConfig
from trapsim.service.runner import Runner
from trapsim.service.simulation import Simulation
from trapsim.store.rundir import read_stream

from ..scenarios.trap_checker import check_label

NS = 1_000_000_000
HOUR = 3600
ALL = ("BTC-USD", "ETH-USD", "USDT-USD", "BTC-ETH", "BTC-USD-PERP")
SHOCK = PriceShock(type="price_shock", at="0s", shock_percentage=-15, duration_seconds=300,
                   pattern="sudden_drop", recovery_time_seconds=1800)


def cfg(frequency=1.0, hours=30, seed=3, **kw) -> RunConfig:
    return RunConfig(symbols=ALL, duration=hours, sleep=0, seed=seed, frequency=frequency, **kw)


def consume(config: RunConfig, changes=(), live=True):
    """Run a simulation as the runner does: a change at offset ``s`` (seconds from the start)
    is made once the ticks before it are released (one a step: the next step starts at it),
    and what the next step voids is dropped.
    Returns per symbol (ts, price, volume, bid, ask), the labels by id and the funding."""
    sim = Simulation(config, live=live)
    todo = sorted(changes, key=lambda c: c[0])
    out = {s: [] for s in config.symbols}
    labels, funding = {}, []
    for step in sim.batches():
        if step.since is not None:
            for s in out:
                out[s] = [t.slice(0, int(np.searchsorted(t.ts, step.since))) for t in out[s]]
            funding = [f for f in funding if f.ts < step.since]
        for i in step.revoked:
            del labels[i]
        for lb in (*step.amended, *step.labels):
            labels[lb["id"]] = lb
        funding += step.funding
        for s in out:
            out[s].append(step.ticks[s])
        ts = step.ticks[config.symbol].ts
        if todo and len(ts) and sim.start_ts + todo[0][0] * NS <= ts[-1] + NS:
            offset, what = todo.pop(0)
            at = sim.start_ts + offset * NS
            if isinstance(what, str):
                sim.stop(what, at)
            else:
                sim.start(what, at, f"live-{offset}")
    ticks = {s: {k: np.concatenate([getattr(b, k) for b in bs])
                 for k in ("ts", "price", "volume", "bid", "ask")} for s, bs in out.items()}
    return sim, ticks, labels, funding


@pytest.fixture(scope="module")
def plain():
    return consume(cfg(), live=False)


def test_a_live_simulation_without_changes_gives_the_same_run(plain):
    _, base, labels, funding = plain
    _, live, live_labels, live_funding = consume(cfg())
    for s in ALL:
        for k in ("price", "bid", "ask", "volume"):
            assert np.array_equal(base[s][k], live[s][k]), (s, k)
    assert labels == live_labels and funding == live_funding


@settings(max_examples=6, deadline=None)
@given(offset=st.integers(2 * HOUR, 26 * HOUR))
def test_a_live_shock_keeps_the_past_and_every_trap_contract(plain, offset):
    _, base, _, base_funding = plain
    sim, ticks, labels, funding = consume(cfg(), [(offset, SHOCK)])
    at = sim.start_ts + offset * NS
    for s in ALL:
        ts = ticks[s]["ts"]
        assert np.array_equal(ts, base[s]["ts"])  # whole, in order, one second apart
        i = int(np.searchsorted(ts, at))
        assert np.array_equal(ticks[s]["price"][:i], base[s]["price"][:i])  # released: kept
        assert np.all(ticks[s]["bid"] < ticks[s]["ask"])
    assert np.array_equal(ticks["BTC-ETH"]["price"],
                          ticks["BTC-USD"]["price"] / ticks["ETH-USD"]["price"])
    assert [f.ts for f in funding] == [f.ts for f in base_funding]
    chaos = [lb for lb in labels.values() if lb["kind"] == "chaos"]
    assert [(lb["type"], lb["symbol"], lb["start_ts"]) for lb in chaos] == [
        ("price_shock", "BTC-USD", at)]
    # As a run writes them: a trap not over by the end is never released.
    traps = [lb for lb in labels.values() if lb["kind"] == "trap" and lb["end_ts"] < sim.end_ts]
    assert len(traps) > 100
    for label in traps:
        if "interrupted_ts" in label["params"]:
            assert label["symbol"] == "BTC-USD" and label["start_ts"] < at
            continue
        t = ticks[label["symbol"]]
        assert check_label(t["ts"], t["price"], t["volume"], label) == [], label


def test_a_live_shock_has_its_size_and_the_same_changes_give_the_same_run():
    offset = 5 * HOUR + 17
    _, calm, _, _ = consume(cfg(frequency=0.0), live=False)
    sim, shocked, labels, _ = consume(cfg(frequency=0.0), [(offset, SHOCK)])
    i = int(np.searchsorted(calm["BTC-USD"]["ts"], sim.start_ts + offset * NS))
    ratio = shocked["BTC-USD"]["price"] / calm["BTC-USD"]["price"]
    assert ratio[i - 1] == 1.0
    assert ratio[i + 300] == pytest.approx(0.85, rel=1e-12)
    assert np.allclose(ratio[i + 2100:], 1.0, rtol=1e-12, atol=0)  # recovered after 1800 s
    again = consume(cfg(frequency=0.0), [(offset, SHOCK)])
    assert all(np.array_equal(shocked[s]["price"], again[1][s]["price"]) for s in ALL)
    assert labels == again[2]


def test_a_stopped_phase_fades_out_and_its_label_ends_there():
    crash = MarketCrash(type="market_crash", at="0s", crash_percentage=-20,
                        crash_duration_minutes=240, recovery_pattern="none")
    start, stop = 3 * HOUR, 4 * HOUR
    _, calm, _, _ = consume(cfg(frequency=0.0), live=False)
    sim, ticks, labels, _ = consume(cfg(frequency=0.0), [(start, crash), (stop, f"live-{start}")])
    ratio = ticks["ETH-USD"]["price"] / calm["ETH-USD"]["price"]
    i = int(np.searchsorted(calm["ETH-USD"]["ts"], sim.start_ts + stop * NS))
    assert ratio[i] < 0.97  # an hour into the crash
    assert np.array_equal(ratio[i + 300:], np.ones(len(ratio) - i - 300))  # 5 min later: gone
    for label in (lb for lb in labels.values() if lb["kind"] == "chaos"):
        assert label["params"]["stopped_ts"] == sim.start_ts + stop * NS
        assert label["end_ts"] == sim.start_ts + (stop + 300) * NS


def test_live_requests_out_of_range_are_refused_with_the_limit():
    sim = Simulation(cfg(), live=True)
    with pytest.raises(ConfigError, match="exceeds max_deviation 25%"):
        sim.check_phase(SHOCK.model_copy(update={"shock_percentage": -40}), "x")
    with pytest.raises(ConfigError, match="needs SOL-USD"):
        sim.check_phase(SHOCK.model_copy(update={"symbol": "SOL-USD"}), "x")
    with pytest.raises(ConfigError, match="no scenario with id"):
        sim.stop("nothing", sim.start_ts)
    with pytest.raises(RuntimeError):
        Simulation(cfg(), live=False).start(SHOCK, 0, "x")


def test_a_paced_run_takes_a_scenario_and_a_feed_outage_started_while_it_runs(tmp_path):
    """A paced run in a thread; requests from another thread; the run directory then equals a
    flat-out simulation given the same changes at the recorded times."""
    config = cfg(frequency=0.5, hours=3).model_copy(update={"sleep": 0.0002})
    runner = Runner(config, tmp_path / "run", Console(quiet=True),
                    sim=Simulation(config, live=True))
    thread = threading.Thread(target=runner.run)
    thread.start()
    while runner.last_tick is None or runner.last_tick.ts[-1] < runner.sim.start_ts + 1800 * NS:
        time.sleep(0.01)
    shock = runner.start_scenario(SHOCK.model_copy(update={"shock_percentage": -10}))
    outage = runner.start_scenario(FeedDisruption(type="feed_disruption", at="0s",
                                                  mode="outage", duration_seconds=600,
                                                  affect_symbols=("ETH-USD",)))
    with pytest.raises(ConfigError):
        runner.start_scenario(SHOCK.model_copy(update={"shock_percentage": 30}))
    thread.join(timeout=120)
    assert not thread.is_alive() and runner.stop_reason == "end"
    labels = read_stream(tmp_path / "run", "labels").to_pylist()
    chaos = {lb["type"]: lb for lb in labels if lb["kind"] != "trap"}
    assert set(chaos) == {"price_shock", "feed_disruption"}
    at = int(np.datetime64(chaos["price_shock"]["start_ts"], "ns").astype(np.int64))
    assert chaos["feed_disruption"]["start_ts"] == chaos["price_shock"]["start_ts"]
    assert (shock, outage) == ("live-1", "live-2")
    feed = read_stream(tmp_path / "run", "feed").filter(pc.field("symbol") == "ETH-USD")
    got = feed["ts"].to_numpy().astype(np.int64)
    assert not np.any((got >= at) & (got < at + 600 * NS)) and np.any(got >= at + 600 * NS)
    # The same change at the same time, flat out: the same ticks.
    _, flat, _, _ = consume(config.model_copy(update={"sleep": 0.0}),
                            [((at - runner.sim.start_ts) // NS, SHOCK.model_copy(
                                update={"shock_percentage": -10}))])
    ticks = read_stream(tmp_path / "run", "ticks")
    for s in ALL:
        rows = ticks.filter(pc.field("symbol") == s)
        assert np.array_equal(rows["price"].to_numpy(), flat[s]["price"]), s
