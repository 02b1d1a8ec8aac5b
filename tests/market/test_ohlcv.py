import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError, DataError
from trapsim.core.schemas import CANDLES
from trapsim.core.time import DAY_NS, HOUR_NS, MINUTE_NS, NS, parse_ts
from trapsim.market.ohlcv import INTERVALS, CandleAggregator, candles


def reference(ts, price, volume, interval_ns):
    """Plain-Python OHLCV: one dict per non-empty interval, volume summed in tick order."""
    out = []
    for t, p, v in zip(ts.tolist(), price.tolist(), volume.tolist(), strict=True):
        b = t // interval_ns * interval_ns
        if out and out[-1]["ts"] == b:
            c = out[-1]
            c["high"] = max(c["high"], p)
            c["low"] = min(c["low"], p)
            c["close"] = p
            c["volume"] += v
        else:
            out.append({"ts": b, "open": p, "high": p, "low": p, "close": p, "volume": v})
    return out


@st.composite
def ticks(draw, max_size=300):
    n = draw(st.integers(0, max_size))
    start = draw(st.integers(-10 * DAY_NS, 10 * DAY_NS))
    gaps = np.array(draw(st.lists(st.integers(0, 90 * NS), min_size=n, max_size=n)), np.int64)
    ts = start + np.cumsum(gaps)
    finite = st.floats(1e-3, 1e6, allow_nan=False)
    price = np.array(draw(st.lists(finite, min_size=n, max_size=n)))
    volume = np.array(draw(st.lists(st.floats(0, 1e3), min_size=n, max_size=n)))
    return ts, price, volume


def as_rows(table: pa.Table) -> list[dict]:
    d = table.to_pydict()
    d["ts"] = table["ts"].cast(pa.int64()).to_pylist()
    return [
        {k: d[k][i] for k in ("ts", "open", "high", "low", "close", "volume")}
        for i in range(table.num_rows)
    ]


@settings(max_examples=150, deadline=None)
@given(ticks(), st.sampled_from(sorted(INTERVALS.values())))
def test_candles_match_plain_python_reference(data, interval_ns):
    ts, price, volume = data
    got = candles(ts, price, volume, interval_ns)
    want = reference(ts, price, volume, interval_ns)
    assert len(got["ts"]) == len(want)
    for k in ("ts", "open", "high", "low", "close", "volume"):
        assert got[k].tolist() == [c[k] for c in want], k


@settings(max_examples=150, deadline=None)
@given(ticks(), st.sampled_from(["1m", "5m", "1h"]), st.data())
def test_output_identical_whatever_the_batch_boundaries(data, interval, draw):
    ts, price, volume = data
    cuts = sorted(draw.draw(st.lists(st.integers(0, len(ts)), max_size=8)))
    agg = CandleAggregator("BTC-USD", interval)
    parts = []
    for lo, hi in zip([0, *cuts], [*cuts, len(ts)], strict=True):
        parts.append(agg.update(ts[lo:hi], price[lo:hi], volume[lo:hi]))
    parts.append(agg.flush())
    streamed = pa.concat_tables(parts)

    whole = candles(ts, price, volume, INTERVALS[interval])
    # Bit-identical, volume included: the carried accumulator sums in tick order.
    assert streamed["ts"].cast(pa.int64()).to_numpy().tolist() == whole["ts"].tolist()
    for k in ("open", "high", "low", "close", "volume"):
        assert streamed[k].to_numpy().tolist() == whole[k].tolist(), k
    assert streamed.schema.equals(CANDLES)
    assert set(streamed["symbol"].to_pylist()) <= {"BTC-USD"}
    assert set(streamed["interval"].to_pylist()) <= {interval}


@settings(max_examples=100, deadline=None)
@given(ticks(), st.sampled_from(sorted(INTERVALS.values())))
def test_ohlc_invariants(data, interval_ns):
    ts, price, volume = data
    c = candles(ts, price, volume, interval_ns)
    assert np.all(c["low"] <= np.minimum(c["open"], c["close"]))
    assert np.all(c["high"] >= np.maximum(c["open"], c["close"]))
    assert np.all(c["ts"] % interval_ns == 0)
    assert np.all(np.diff(c["ts"]) > 0)
    assert c["volume"].sum() == pytest.approx(volume.sum(), rel=1e-9, abs=1e-9)


@pytest.mark.parametrize(
    ("interval", "tick", "open_time"),
    [
        ("1m", "2024-03-05T13:47:59.999", "2024-03-05T13:47:00"),
        ("5m", "2024-03-05T13:47:59", "2024-03-05T13:45:00"),
        ("15m", "2024-03-05T13:47:59", "2024-03-05T13:45:00"),
        ("1h", "2024-03-05T13:47:59", "2024-03-05T13:00:00"),
        ("4h", "2024-03-05T13:47:59", "2024-03-05T12:00:00"),
        ("1d", "2024-03-05T13:47:59", "2024-03-05T00:00:00"),
    ],
)
def test_candle_ts_is_open_time_floored_in_utc(interval, tick, open_time):
    agg = CandleAggregator("ETH-USD", interval)
    assert agg.update(np.array([parse_ts(tick)]), np.array([1.0]), np.array([2.0])).num_rows == 0
    last = agg.flush()
    assert last["ts"].cast(pa.int64()).to_pylist() == [parse_ts(open_time)]
    assert last["interval"].to_pylist() == [interval]
    assert last["symbol"].to_pylist() == ["ETH-USD"]


def test_update_returns_only_completed_candles_and_carries_the_open_one():
    agg = CandleAggregator("BTC-USD", "1m")
    t0 = parse_ts("2024-01-01T00:00:00")
    first = agg.update(np.array([t0, t0 + 30 * NS]), np.array([10.0, 12.0]), np.ones(2))
    assert first.num_rows == 0
    second = agg.update(np.array([t0 + 59 * NS, t0 + MINUTE_NS]), np.array([9.0, 11.0]), np.ones(2))
    assert as_rows(second) == [
        {"ts": t0, "open": 10.0, "high": 12.0, "low": 9.0, "close": 9.0, "volume": 3.0}
    ]
    # A gap of several intervals closes the open candle; empty intervals give no candle.
    third = agg.update(np.array([t0 + HOUR_NS]), np.array([20.0]), np.array([5.0]))
    assert third["ts"].cast(pa.int64()).to_pylist() == [t0 + MINUTE_NS]
    assert as_rows(agg.flush()) == [
        {"ts": t0 + HOUR_NS, "open": 20.0, "high": 20.0, "low": 20.0, "close": 20.0,
         "volume": 5.0}
    ]
    assert agg.flush().num_rows == 0


def test_empty_inputs_give_empty_tables_with_schema():
    agg = CandleAggregator("BTC-USD")
    empty = np.empty(0)
    for table in (agg.update(empty.astype(np.int64), empty, empty), agg.flush()):
        assert table.num_rows == 0
        assert table.schema.equals(CANDLES)


def test_unknown_interval_is_a_config_error():
    with pytest.raises(ConfigError, match="2m"):
        CandleAggregator("BTC-USD", "2m")
    with pytest.raises(ConfigError):
        candles(np.zeros(1, np.int64), np.ones(1), np.ones(1), 0)


def test_bad_tick_arrays_are_data_errors():
    agg = CandleAggregator("BTC-USD")
    with pytest.raises(DataError, match="non-decreasing"):
        agg.update(np.array([2 * NS, NS]), np.ones(2), np.ones(2))
    with pytest.raises(DataError, match="shape"):
        agg.update(np.array([NS, 2 * NS]), np.ones(3), np.ones(2))
    agg.update(np.array([5 * MINUTE_NS]), np.ones(1), np.ones(1))
    with pytest.raises(DataError, match="across batches"):
        agg.update(np.array([4 * MINUTE_NS]), np.ones(1), np.ones(1))
