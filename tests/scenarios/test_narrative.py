"""The narrative rules of `POST /scenario`: keywords, clauses, sizes, numbers and overrides,
and the projection of the phases they build."""

import numpy as np
import pytest
from pydantic import TypeAdapter

from trapsim.core.time import HOUR_NS, parse_ts
from trapsim.scenarios.chaos import Phase, Scenario, check
from trapsim.scenarios.narrative import KEYWORDS, RULES, interpret
from trapsim.scenarios.projection import project

PHASE = TypeAdapter(Phase)
ALL = ("BTC-USD", "ETH-USD", "USDT-USD", "BTC-ETH", "BTC-USD-PERP")


def one(text: str) -> dict:
    fired = interpret(text)
    assert len(fired) == 1, [f.rule for f in fired]
    return fired[0].phase


def test_the_seed_example_is_a_major_depeg_of_the_stablecoin():
    fired = interpret("What if a major stablecoin loses its peg?")
    assert [f.rule for f in fired] == ["stablecoin_depeg"]
    assert fired[0].phase == {"type": "stablecoin_depeg", "symbol": "USDT-USD",
                              "target_deviation": -0.09, "duration_hours": 12.0}


@pytest.mark.parametrize(("text", "rule"), [
    ("tether depegs", "stablecoin_depeg"),
    ("a flash crash", "flash_crash"),
    ("black swan", "market_crash"),
    ("the market collapses", "market_crash"),
    ("BTC plunges", "price_shock"),
    ("a short squeeze", "price_shock"),
    ("volatility explodes", "volatility_spike"),
    ("the exchange goes down", "feed_disruption"),
    ("prices go stale", "feed_disruption"),
    ("the perp basis widens", "gradual_divergence"),
    ("ETH decouples from BTC", "correlation_break"),
])
def test_each_rule_fires_on_its_keywords(text, rule):
    assert [f.rule for f in interpret(text)] == [rule]
    assert any(f.keyword.startswith(k.split()[0]) for f in interpret(text)
               for k in KEYWORDS[rule])


def test_severity_scales_the_default_size():
    sizes = [one(f"a {w} crash")["crash_percentage"] for w in ("mild", "", "massive")]
    assert sizes == sorted(sizes, reverse=True) and sizes[1] == -18


def test_numbers_override_sizes_and_set_lengths_and_symbols():
    p = one("a flash crash of ETH of 7% in 2 minutes")
    assert (p["symbol"], p["shock_percentage"], p["duration_seconds"]) == ("ETH-USD", -7, 120)
    assert one("USDT falls to 0.97")["target_deviation"] == pytest.approx(-0.03)
    assert one("volatility 4x for 3 hours")["volatility_multiplier"] == 4
    assert one("volatility 4x for 3 hours")["duration_hours"] == 3
    assert one("a 200 bps discount on the perp")["max_spread_bps"] == -200
    assert one("bitcoin futures trade at a premium")["max_spread_bps"] > 0


def test_direction_words_and_written_signs_set_the_sign():
    assert one("BTC surges 8%")["shock_percentage"] == 8
    assert one("BTC +8% jump down")["shock_percentage"] == 8
    assert one("BTC drops 8%")["shock_percentage"] == -8
    assert one("BTC -8% spike")["shock_percentage"] == -8


def test_clauses_take_their_own_numbers_and_rules_override_inside_one():
    fired = interpret("volatility spikes 4x while bitcoin drops 12%, then exchanges go "
                      "offline for 2 hours")
    assert [f.rule for f in fired] == ["volatility_spike", "price_shock", "feed_disruption"]
    assert fired[0].phase["volatility_multiplier"] == 4
    assert fired[1].phase["shock_percentage"] == -12
    assert fired[2].phase["duration_seconds"] == 7200 and fired[2].phase["mode"] == "outage"
    # A depeg "drops" the coin and a crash "falls": neither is also a price shock.
    assert [f.rule for f in interpret("USDT drops below its peg")] == ["stablecoin_depeg"]
    assert [f.rule for f in interpret("a crash: BTC falls 20%")] == ["market_crash"]


def test_unmatched_text_fires_nothing():
    assert interpret("a sunny afternoon in the park") == []
    assert interpret("") == []


@pytest.mark.parametrize("rule", RULES, ids=lambda r: r.name)
def test_every_rule_builds_a_phase_within_the_guard_rails(rule):
    text = {"feed_disruption": "outage", "gradual_divergence": "basis"}.get(
        rule.name, rule.keywords[-1].replace("?", "").replace("-", ""))
    for severity in ("mild", "", "major"):
        fired = [f for f in interpret(f"{severity} {text}") if f.rule == rule.name]
        phase = PHASE.validate_python({**fired[0].phase, "at": "0s"})
        check(Scenario(phases=(phase,)))


def test_a_projection_moves_what_the_phases_move_and_starts_at_the_prices():
    prices = {"BTC-USD": 95_000.0, "ETH-USD": 3_300.0, "USDT-USD": 1.0,
              "BTC-ETH": 95_000 / 3_300, "BTC-USD-PERP": 95_050.0}
    start = parse_ts("2025-01-06T00:00:00Z")
    phases = [PHASE.validate_python({**f.phase, "at": "0s"}) for f in interpret(
        "a major black swan crash")]
    kw = dict(symbols=ALL, prices=prices, start_ts=start, seconds=6 * 3600,
              interval_ns=HOUR_NS, seed=7)
    out = project(phases, **kw)
    assert list(out) == list(ALL)
    for s, p in out.items():
        assert len(p.projected["close"]) == len(p.baseline["close"]) == 6
        assert p.baseline["open"][0] == pytest.approx(prices[s])
        assert np.all(p.projected["low"] <= np.minimum(p.projected["open"],
                                                        p.projected["close"]))
    assert out["BTC-USD"].peak_move == pytest.approx(-0.24, abs=0.01)
    assert out["ETH-USD"].peak_move < out["BTC-USD"].peak_move  # ETH loads more than 1
    assert out["USDT-USD"].peak_move == 0  # a crash does not move the peg
    again = project(phases, **kw)
    assert np.array_equal(again["ETH-USD"].projected["close"], out["ETH-USD"].projected["close"])
