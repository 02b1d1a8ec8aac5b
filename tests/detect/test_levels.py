"""Swings, Fibonacci levels and trend on hand-built paths."""

import numpy as np
import pytest

from trapsim.core.errors import DataError
from trapsim.detect.levels import PERIOD, fibonacci, levels, wilder

MIN = 60 * 1_000_000_000
T0 = 1_736_121_600 * 1_000_000_000


def candles(closes, half_range=0.05):
    c = np.asarray(closes, float)
    ts = T0 + np.arange(len(c), dtype=np.int64) * MIN
    return ts, c, c + half_range, c - half_range


def sawtooth():
    """Flat at 100, up to 110 over 100 minutes, down to 105 over 50, up 3 over 30."""
    return np.concatenate(
        [
            np.full(40, 100.0),
            np.linspace(100.1, 110, 99),
            np.linspace(109.9, 105, 50),
            np.linspace(105.1, 108, 30),
        ]
    )


def test_last_swing_and_its_fibonacci_levels():
    ts, c, h, lo = candles(sawtooth())
    got = levels(ts, c, h, lo)["1m"]
    assert got["swing_high"] == {"ts": int(ts[138]), "price": pytest.approx(110.05)}
    assert got["swing_low"] == {"ts": int(ts[188]), "price": pytest.approx(104.95)}
    assert got["swing"]["direction"] == "down"
    span = 104.95 - 110.05
    assert got["retracements"]["0.618"] == pytest.approx(104.95 - 0.618 * span)
    assert got["retracements"]["0.236"] == pytest.approx(104.95 - 0.236 * span)
    assert got["extensions"]["1.618"] == pytest.approx(110.05 + 1.618 * span)
    assert got["bars"] == len(c) and got["close"] == pytest.approx(108.0)


def test_fibonacci_of_an_up_leg():
    f = fibonacci(100.0, 200.0)
    assert f["retracements"] == pytest.approx(
        {"0.236": 176.4, "0.382": 161.8, "0.5": 150.0, "0.618": 138.2, "0.786": 121.4}
    )
    assert f["extensions"] == pytest.approx({"1.272": 227.2, "1.618": 261.8})


def test_trend_direction_and_strength():
    up = levels(*candles(np.linspace(100, 130, 300)))["1m"]["trend"]
    assert up["direction"] == "up" and up["strength"] > 0.9 and up["slope_atr"] > 0
    down = levels(*candles(np.linspace(130, 100, 300)))["1m"]["trend"]
    assert down["direction"] == "down" and down["minus_di"] > down["plus_di"]
    flat = levels(*candles(100 + 0.2 * (np.arange(300) % 2)))["1m"]["trend"]
    assert flat["direction"] == "flat" and flat["adx"] < 20


def test_wilder_atr_of_a_constant_range():
    c = np.full(50, 100.0)
    atr, _, _, adx = wilder(c + 0.5, c - 0.5, c, PERIOD)
    assert np.isnan(atr[PERIOD - 1]) and atr[PERIOD:] == pytest.approx(1.0)
    assert np.isnan(adx[2 * PERIOD - 2]) and adx[2 * PERIOD - 1] == pytest.approx(0.0)


def test_timeframes_the_data_allows_from_ticks():
    n = 8 * 3600  # eight hours of 1-second ticks
    ts = T0 + np.arange(n, dtype=np.int64) * 1_000_000_000
    price = 100 + np.sin(np.arange(n) / 600.0)
    got = levels(ts, price)
    assert list(got) == ["1m", "5m", "15m"]
    assert got["15m"]["bars"] == 32 and got["1m"]["swing_high"] is not None


def test_bad_input():
    with pytest.raises(DataError, match="same length"):
        levels(np.arange(3), np.ones(2))
    with pytest.raises(DataError, match="increasing"):
        levels(np.array([3, 2, 1]), np.ones(3))
    with pytest.raises(DataError, match="both high and low"):
        levels(np.arange(3), np.ones(3), high=np.ones(3))
    assert levels(np.array([], np.int64), np.array([])) == {}
