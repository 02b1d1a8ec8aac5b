"""Consensus over sources, the circuit breaker, and failover between live local venues."""

import asyncio
import json
import logging
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.feeds.binance import BinanceSpotAdapter
from trapsim.feeds.consensus import CircuitBreaker, Consensus
from trapsim.feeds.sources import BinanceSource, CandleReplaySource, FeedManager
from trapsim.feeds.venue import RecordedVenue

NS = 1_000_000_000
RAW = Path(__file__).resolve().parents[3] / "shared" / "data" / "raw"
PRIORITIES = {"a": 3.0, "b": 2.0, "c": 1.0}


def test_an_outlier_is_dropped_and_lowers_confidence():
    c = Consensus(PRIORITIES, halflife_s=0)
    c.update("a", 1 * NS, 100.0)
    c.update("b", 1 * NS, 100.02)
    got = c.update("c", 1 * NS, 103.0)  # 3 % away from two sources that agree
    assert got.used == ("a", "b")
    assert got.raw == pytest.approx((3 * 100.0 + 2 * 100.02) / 5)
    assert got.confidence == pytest.approx(5 / 6)
    back = c.update("c", 2 * NS, 100.01)
    assert back.used == ("a", "b", "c") and back.confidence == 1.0


def test_two_disagreeing_sources_trust_the_higher_priority_and_stale_ones_drop_out():
    c = Consensus(PRIORITIES, halflife_s=0, stale_s=30)
    c.update("b", 0, 100.0)
    got = c.update("c", 0, 110.0)
    assert got.used == ("b",) and got.price == 100.0
    later = c.update("c", 31 * NS, 110.0)  # b has said nothing for 31 s
    assert later.used == ("c",) and later.confidence == pytest.approx(1 / 6)


def test_volume_weights_and_smoothing_follow_their_definitions():
    c = Consensus({"a": 1.0, "b": 1.0}, halflife_s=2.0, floor_bps=1000)
    c.update("a", 0, 100.0, volume=0.0)
    first = c.update("b", 0, 101.0, volume=100.0)
    wb = 1 + 100.0 * (1 - 0.5 ** (1 / 20))
    assert first.raw == pytest.approx((100.0 + wb * 101.0) / (1 + wb))
    nxt = c.update("a", 2 * NS, 100.0)  # one half-life later: half way to the new raw
    assert nxt.price == pytest.approx(first.price + 0.5 * (nxt.raw - first.price))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abc"), st.floats(90, 110), st.floats(0, 50)),
                min_size=1, max_size=40))
def test_consensus_stays_within_the_sources_and_confidence_in_0_1(updates):
    c = Consensus(PRIORITIES)
    for i, (s, p, v) in enumerate(updates):
        got = c.update(s, i * NS, p, v)
        prices = [c._price[u] for u in got.used]
        assert min(prices) - 1e-9 <= got.raw <= max(prices) + 1e-9
        assert 0 < got.confidence <= 1 and got.used


def test_bad_parameters_are_config_errors():
    with pytest.raises(ConfigError):
        Consensus({})
    with pytest.raises(ConfigError):
        Consensus({"a": 0})
    with pytest.raises(ConfigError, match="unknown source"):
        Consensus({"a": 1}).update("z", 0, 1.0)
    with pytest.raises(ConfigError):
        CircuitBreaker(max_move=0)


def test_circuit_breaker_trips_on_a_large_move_within_the_window_and_resets(caplog):
    b = CircuitBreaker(max_move=0.20, window_s=60, cooldown_s=300)
    assert b.allow(0, 100.0)
    assert b.allow(30 * NS, 85.0)  # -15 %
    assert b.allow(90 * NS, 70.0)  # -17.6 % from 85 within the last minute
    with caplog.at_level(logging.WARNING, logger="trapsim.feeds"):
        assert not b.allow(100 * NS, 55.0)  # -21.4 % from 70 within a minute
    assert b.halted and b.trips == 1
    assert '"event": "circuit_breaker_tripped"' in caplog.text
    assert not b.allow(200 * NS, 55.0)  # halted during the cool-down
    assert b.allow(400 * NS, 56.0) and not b.halted  # resumed, reference reset
    assert b.allow(430 * NS, 50.0)  # -10.7 %: fine


def test_failover_when_the_primary_venue_stops_and_back_when_it_returns(caplog):
    async def main():
        venue = RecordedVenue(RAW / "btcusdt_20240808.gz", speed=20)
        port = await venue.start()
        adapter = BinanceSpotAdapter(ws_url=f"ws://127.0.0.1:{port}",
                                     rest_url=f"http://127.0.0.1:{port}", timeout=5)
        manager = FeedManager([
            BinanceSource(adapter),
            CandleReplaySource(RAW / "BTC_USDT-1m_2024-08.feather", speed=60),
        ], stale_s=5)
        seen = []
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        stopped = restarted = False
        async for pub in manager.run():
            seen.append(pub.primary)
            now = loop.time() - t0
            if now > 1.5 and not stopped:
                await venue.stop()
                stopped = True
            elif now > 3.5 and not restarted:
                await venue.start(port)
                restarted = True
            elif restarted and pub.primary == "binance-ws" and now > 4:
                break
            elif now > 20:
                break
        # Before the venue stops again: its stop would mark the source down.
        status = manager.status()
        await venue.stop()
        return seen, manager, status

    with caplog.at_level(logging.WARNING, logger="trapsim.feeds"):
        seen, manager, status = asyncio.run(main())
    runs = [p for i, p in enumerate(seen) if i == 0 or seen[i - 1] != p]
    # The replay may speak first, while the venue's stream opens.
    assert runs[runs.index("binance-ws"):][:3] == ["binance-ws", "replay", "binance-ws"]
    assert manager.failovers >= 2
    events = [json.loads(r.getMessage()) for r in caplog.records if r.getMessage().startswith("{")]
    kinds = [e["event"] for e in events]
    assert "source_down" in kinds and "failover" in kinds
    assert status["sources"]["binance-ws"]["state"] == "up"
