"""Online == batch, causal cuts, input checks, candles and HF mode."""

import json

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError, DataError
from trapsim.core.hf import hf_activations
from trapsim.detect import TrapDetector, detect_table, hf_mode

from .paths import NS, T0, bull_trap, fibonacci_trap, liquidity_grab, rows, stop_hunt


def _joined():
    """The four hand-built traps one after another (each segment continues the last)."""
    parts = [liquidity_grab()[0], stop_hunt()[0], bull_trap()[0], fibonacci_trap()[0]]
    ys, vols = [], []
    for p in parts:
        y = p.y if not ys else p.y - p.y[0] + ys[-1][-1]
        ys.append(y)
        vols.append(p.volume)
    y = np.concatenate(ys)
    return T0 + np.arange(len(y), dtype=np.int64) * NS, np.exp(y), np.concatenate(vols)


TS, PRICE, VOLUME = _joined()
FULL = rows(TrapDetector(min_confidence=0.0).detect(TS, PRICE, VOLUME))
SLOW = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def test_the_joined_path_exercises_every_type():
    assert {r["trap_type"] for r in FULL} == {
        "liquidity_grab",
        "stop_hunt",
        "bull_trap",
        "fibonacci_trap",
    }


@SLOW
@given(st.integers(1, len(TS)))
def test_cut_stream_gives_the_full_rows_up_to_the_cut(k):
    got = rows(TrapDetector(min_confidence=0.0).detect(TS[:k], PRICE[:k], VOLUME[:k]))
    assert got == [r for r in FULL if r["detected_at"] <= TS[k - 1]]


@SLOW
@given(
    st.lists(st.integers(1, len(TS) - 1), max_size=12, unique=True), st.integers(0, len(TS) - 2000)
)
def test_chunks_and_single_ticks_give_the_batch_rows(cuts, single_from):
    """Any split into batches, with a run of single-tick updates, gives the batch rows."""
    det = TrapDetector(min_confidence=0.0)
    got = []
    bounds = sorted({0, len(TS), single_from, single_from + 2000, *cuts})
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        if a == single_from:
            for i in range(a, b):
                got += det.update(int(TS[i]), float(PRICE[i]), float(VOLUME[i]))
        else:
            got += rows(det.detect(TS[a:b], PRICE[a:b], VOLUME[a:b]))
    assert got == FULL


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_random_candles_with_uneven_spacing_stream_equals_batch(seed, candles):
    rng = np.random.default_rng(seed)
    n = 12_000
    ts = T0 + np.cumsum(rng.integers(1, 4, n)).astype(np.int64) * NS
    if candles:
        ts = T0 + np.arange(n, dtype=np.int64) * 60 * NS
    y = np.log(100.0) + np.cumsum(rng.standard_t(3, n) * 4e-4)
    wick = np.abs(rng.standard_normal((2, n))) * 3e-4 * candles
    price, high, low = np.exp(y), np.exp(y + wick[0]), np.exp(y - wick[1])
    vol = rng.lognormal(0.0, 1.0, n)
    full = rows(TrapDetector(min_confidence=0.0).detect(ts, price, vol, high, low))
    det = TrapDetector(min_confidence=0.0)
    half = n // 2
    got = rows(det.detect(ts[:half], price[:half], vol[:half], high[:half], low[:half]))
    for i in range(half, n):
        got += det.update(int(ts[i]), float(price[i]), float(vol[i]), float(high[i]), float(low[i]))
    assert got == full
    assert all(0.0 <= r["confidence"] <= 1.0 for r in full)


def test_rows_have_the_detections_schema_and_json_features():
    table = TrapDetector(min_confidence=0.0).detect(TS, PRICE, VOLUME)
    assert table.schema.names == [
        "detected_at",
        "trap_type",
        "direction",
        "start",
        "confidence",
        "features",
    ]
    for r in rows(table):
        feats = json.loads(r["features"])
        assert r["start"] <= r["detected_at"]
        assert {"sigma", "magnitude", "peak_ts", "end_ts", "timeframes"} <= set(feats)
        assert set(feats["timeframes"]) == {"1m", "5m", "15m", "1h"}


def test_detect_table_reads_ticks_and_candles():
    ticks = pa.table(
        {"ts": pa.array(TS).cast(pa.timestamp("ns", tz="UTC")), "price": PRICE, "volume": VOLUME}
    )
    assert rows(detect_table(ticks)) == rows(TrapDetector().detect(TS, PRICE, VOLUME))
    candles = pa.table(
        {
            "ts": TS[::60],
            "close": PRICE[::60],
            "high": PRICE[::60],
            "low": PRICE[::60],
            "volume": VOLUME[::60],
        }
    )
    assert detect_table(candles).num_rows >= 0
    with pytest.raises(DataError, match="need ts"):
        detect_table(pa.table({"ts": TS}))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t, p, v: (t[::-1], p, v), "not strictly increasing"),
        (lambda t, p, v: (t, np.where(np.arange(len(p)) == 5, -1.0, p), v), "bad tick at row 5"),
        (lambda t, p, v: (t, p, np.where(np.arange(len(v)) == 7, np.nan, v)), "row 7"),
        (lambda t, p, v: (t, p[:-1], v), "shape"),
    ],
)
def test_bad_batches_are_refused_and_leave_the_state(change, message):
    det = TrapDetector()
    det.detect(TS[:100], PRICE[:100], VOLUME[:100])
    with pytest.raises(DataError, match=message):
        det.detect(*change(TS[100:200], PRICE[100:200], VOLUME[100:200]))
    assert det.last_ts == TS[99]
    with pytest.raises(DataError, match="not after"):
        det.update(int(TS[99]), 100.0, 1.0)
    with pytest.raises(DataError, match="bad tick"):
        det.update(int(TS[100]), 100.0, 1.0, high=99.0, low=98.0)
    with pytest.raises(DataError, match="both high and low"):
        det.update(int(TS[100]), 100.0, 1.0, high=101.0)


def test_min_confidence_must_be_a_probability_for_known_types():
    with pytest.raises(ConfigError, match="unknown trap types"):
        TrapDetector(min_confidence={"spoofing": 0.5})
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        TrapDetector(min_confidence=1.5)


def test_hf_mode_follows_core_hf_on_detected_at():
    table = TrapDetector(min_confidence=0.0).detect(TS, PRICE, VOLUME)
    times = [r["detected_at"] for r in FULL]
    kinds = [r["trap_type"] for r in FULL]
    for k, w in ((1, 300 * NS), (2, 5 * 3600 * NS)):
        want = hf_activations(times, kinds, k, w)
        got = (
            hf_mode(table, k, w)
            .cast(
                pa.schema(
                    [
                        ("start_ts", pa.int64()),
                        ("end_ts", pa.int64()),
                        ("trap_count", pa.int64()),
                        ("types", pa.string()),
                    ]
                )
            )
            .to_pylist()
        )
        assert [
            (g["start_ts"], g["end_ts"], g["trap_count"], json.loads(g["types"])) for g in got
        ] == [(a["start_ts"], a["end_ts"], a["trap_count"], a["types"]) for a in want]
        assert len(want) > 0
