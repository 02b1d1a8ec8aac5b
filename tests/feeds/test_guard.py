"""Per-symbol settings and the publication guard: price band, circuit breaker, depeg alert."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError
from trapsim.core.schemas import TickBatch
from trapsim.core.time import NS
from trapsim.feeds.guard import PublicationGuard
from trapsim.market.multi import SYMBOLS
from trapsim.market.symbols import load_symbol_settings

SPECS = load_symbol_settings()
T0 = 1_736_121_600 * NS


def batch(symbol: str, price) -> TickBatch:
    price = np.asarray(price, float)
    n = len(price)
    return TickBatch(symbol, T0 + np.arange(n, dtype=np.int64) * NS, price, price * 0.9999,
                     price * 1.0001, np.ones(n), np.zeros(n, np.int8), ("calm",))


def events(alerts):
    return [(a["event"], (a["ts"] - T0) // NS) for a in alerts]


def test_shipped_settings_cover_every_symbol_as_in_the_seed():
    assert set(SPECS) == set(SYMBOLS)
    btc, usdt = SPECS["BTC-USD"], SPECS["USDT-USD"]
    assert (btc.decimals, btc.min_price, btc.max_price, btc.circuit_breaker_threshold) == (
        2, 1000, 200000, 0.20)
    assert (usdt.min_price, usdt.max_price, usdt.depeg_alert_threshold) == (0.90, 1.10, 0.02)


def test_a_large_move_halts_publishing_until_the_cooldown_ends():
    price = np.r_[np.full(100, 100_000.0), np.full(500, 75_000.0)]  # −25 % at t = 100 s
    keep, alerts = PublicationGuard(SPECS["BTC-USD"]).check(batch("BTC-USD", price))
    assert events(alerts) == [("circuit_breaker_tripped", 100), ("circuit_breaker_reset", 400)]
    assert alerts[0]["value"] == pytest.approx(0.25)
    assert keep[:100].all() and not keep[100:400].any() and keep[400:].all()


def test_a_move_within_the_threshold_publishes_everything():
    price = 100_000 * np.exp(np.linspace(0, np.log(1.19), 60))  # +19 % in a minute
    keep, alerts = PublicationGuard(SPECS["BTC-USD"]).check(batch("BTC-USD", price))
    assert keep.all() and not alerts


def test_prices_outside_the_band_are_withheld_and_alerted():
    spec = SPECS["ETH-USD"].model_copy(update={"circuit_breaker_threshold": None})
    price = np.r_[np.full(10, 19_990.0), np.full(5, 20_010.0), np.full(10, 19_995.0)]
    keep, alerts = PublicationGuard(spec).check(batch("ETH-USD", price))
    assert events(alerts) == [("price_out_of_range", 10), ("price_in_range", 15)]
    assert [a["value"] for a in alerts] == [20_000, 20_000]
    assert np.array_equal(keep, np.r_[np.ones(10), np.zeros(5), np.ones(10)].astype(bool))


def test_a_depeg_is_alerted_once_and_cleared_once_back_within_half_the_threshold():
    # Down through 2 %, flickering around it, back to 1.5 % (still alerted), then 0.5 %.
    price = np.r_[np.full(10, 1.0), np.linspace(0.99, 0.97, 10), [0.981, 0.979, 0.981],
                  np.full(10, 0.985), np.full(10, 0.995)]
    keep, alerts = PublicationGuard(SPECS["USDT-USD"]).check(batch("USDT-USD", price))
    dev = np.abs(price - 1)
    first = int(np.argmax(dev > 0.02))
    assert events(alerts) == [("depeg_alert", first), ("depeg_cleared", 33)]
    assert alerts[0]["value"] == pytest.approx(dev[first])
    assert keep.all()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 2999), max_size=6),
       symbol=st.sampled_from(["BTC-USD", "USDT-USD"]))
def test_alerts_and_halts_do_not_depend_on_how_the_stream_is_cut(seed, cuts, symbol):
    rng = np.random.default_rng(seed)
    if symbol == "BTC-USD":
        r = rng.standard_normal(3000) * 0.002
        r[rng.integers(0, 3000, 4)] += rng.choice([-0.3, 0.3], 4)  # jumps that trip the breaker
        price = 150_000 * np.exp(np.cumsum(r))  # near the band's top: out-of-range prints too
    else:  # wandering across the depeg alert's two thresholds
        price = 0.985 + 0.01 * np.sin(np.arange(3000) / 50) + 0.002 * rng.standard_normal(3000)
    whole = batch(symbol, price)
    keep, alerts = PublicationGuard(SPECS[symbol]).check(whole)
    assert alerts  # the path exercises the rules
    guard = PublicationGuard(SPECS[symbol])
    bounds = sorted(set(cuts))
    parts = [guard.check(whole.slice(lo, hi))
             for lo, hi in zip([0, *bounds], [*bounds, 3000], strict=True)]
    assert np.array_equal(np.concatenate([k for k, _ in parts]), keep)
    assert [a for _, al in parts for a in al] == alerts


def test_a_settings_file_overrides_field_by_field(tmp_path):
    path = tmp_path / "symbols.yaml"
    path.write_text("market_data:\n  supported_symbols:\n"
                    "    - symbol: BTC-USD\n      circuit_breaker_threshold: 0.05\n"
                    "    - symbol: USDT-USD\n      decimals: 4\n")
    specs = load_symbol_settings(path)
    assert specs["BTC-USD"].circuit_breaker_threshold == 0.05
    assert specs["BTC-USD"].max_price == SPECS["BTC-USD"].max_price
    assert specs["USDT-USD"].tick_size == pytest.approx(1e-4)
    assert specs["ETH-USD"] == SPECS["ETH-USD"]


ENTRY = "supported_symbols:\n  - symbol: "


@pytest.mark.parametrize("body, needle", [
    (ENTRY + "DOGE-USD\n    decimals: 2\n", "unknown symbol 'DOGE-USD'"),
    (ENTRY + "BTC-USD\n    decimals: -1\n", "supported_symbols[0]: decimals"),
    (ENTRY + "BTC-USD\n    max_price: 500\n", "must exceed min_price"),
    (ENTRY + "BTC-USD\n    tick: 1\n", "supported_symbols[0]: tick"),
    ("symbols: []\n", "expected supported_symbols"),
    ("supported_symbols: BTC-USD\n", "must be a list of mappings"),
])
def test_bad_settings_files_are_one_clear_error(tmp_path, body, needle):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        load_symbol_settings(path)
    assert needle in str(err.value) and str(path) in str(err.value)


def test_quotes_go_on_the_grid_outwards():
    spec = SPECS["BTC-USD"]
    price, bid, ask = spec.on_grid(np.array([100.005, 0.29]), np.array([100.0049, 0.29]),
                                   np.array([100.0051, 0.29]))
    assert np.array_equal(bid, [100.0, 0.29]) and np.array_equal(ask, [100.01, 0.29])
    assert np.all(bid <= price) and np.all(price <= ask)
