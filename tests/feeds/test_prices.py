"""Input and output of ``trapsim detect``: real candles, run directories, tick files, defects."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.feather as pa_feather
import pyarrow.parquet as pa_parquet
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError, DataError, SinkError
from trapsim.core.schemas import DETECTIONS, TS
from trapsim.core.time import MINUTE_NS, NS, iso, parse_ts
from trapsim.feeds import prices as prices_module
from trapsim.feeds.candles import read_candles, time_ns
from trapsim.feeds.prices import Prices, read_prices, write_detections
from trapsim.store.rundir import read_stream

RAW = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "raw"
REAL_1M = sorted(p.name for p in RAW.glob("*1m*"))

T0 = parse_ts("2024-08-05T00:00:00Z")
# Irregular tick steps, s: sub-second fractions, a long gap, the 1 s minimum.
STEPS_S = (1.0, 2.5, 1.0, 40.0, 1.2)


def test_all_seven_real_files_are_found():
    assert len(REAL_1M) == 7


@pytest.mark.parametrize("name", REAL_1M)
def test_real_1m_files_read_as_candles(name):
    p = read_prices(RAW / name)
    c = read_candles(RAW / name)
    assert p.is_candles
    assert p.interval_ns == MINUTE_NS
    assert p.source == str(RAW / name)
    assert np.array_equal(p.ts, c.ts)
    for mine, theirs in [
        ("price", "close"),
        ("high", "high"),
        ("low", "low"),
        ("volume", "volume"),
    ]:
        assert np.array_equal(getattr(p, mine), getattr(c, theirs))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("detect") / "run"
    subprocess.run(
        [sys.executable, "-m", "trapsim", "run"]
        + ["--duration", "1", "--sleep", "0", "--seed", "1", "--out", str(out)],
        check=True,
        capture_output=True,
    )
    return out


def test_run_directory_reads_its_ticks(run_dir):
    p = read_prices(run_dir)
    ticks = read_stream(run_dir, "ticks")
    assert not p.is_candles
    assert p.high is None and p.low is None
    assert p.interval_ns == NS
    assert p.source == f"{run_dir} (ticks)"
    assert len(p) == ticks.num_rows == 3600
    assert np.array_equal(p.ts, ticks.column("ts").cast(pa.int64()).to_numpy())
    assert np.array_equal(p.price, ticks.column("price").to_numpy())
    assert np.array_equal(p.volume, ticks.column("volume").to_numpy())


def test_directory_without_ticks_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="no ticks.parquet"):
        read_prices(tmp_path)


# ----------------------------------------------------------------------------- tick files


def good_ticks(n: int = 6) -> dict[str, list]:
    """``n`` valid irregular ticks from T0 (one zero volume) as plain columns."""
    steps = [round(s * NS) for s in STEPS_S[: n - 1]]
    return {
        "ts": np.cumsum([T0, *steps]).tolist(),
        "price": [100.0 + 0.5 * i for i in range(n)],
        "volume": [0.0] + [0.25 * i for i in range(1, n)],
    }


def good_candles(n: int = 6) -> dict[str, list]:
    """``n`` valid 1-minute candles with one missing minute after the second."""
    return {
        "ts": [T0 + (i + (i >= 2)) * MINUTE_NS for i in range(n)],
        "open": [100.5 + i for i in range(n)],
        "close": [101.0 + i for i in range(n)],
        "high": [102.0 + i for i in range(n)],
        "low": [99.0 + i for i in range(n)],
        "volume": [1.5 * (i + 1) for i in range(n)],
    }


def _time_cell(t: int, unit: str) -> str:
    if unit == "iso":
        return iso(t)
    return str(t // {"s": NS, "ms": 1_000_000, "ns": 1}[unit])


def write(path: Path, cols: dict[str, list], *, time_name: str = "timestamp", unit="iso") -> Path:
    """Write ``cols`` (``ts`` as int64 ns) in the format ``path``'s extension names.

    CSV times are written as ``unit`` (ISO 8601 or epoch s, ms, ns); other formats
    store a ``timestamp[ns, UTC]`` column.
    """
    if path.suffix == ".csv":
        names = [time_name if k == "ts" else k for k in cols]
        lines = [",".join(names)]
        for row in zip(*cols.values(), strict=True):
            cells = [
                _time_cell(x, unit) if k == "ts" and isinstance(x, int) else _cell(x)
                for k, x in zip(cols, row, strict=True)
            ]
            lines.append(",".join(cells))
        path.write_text("\n".join(lines) + "\n")
        return path
    table = pa.table(
        {
            (time_name if k == "ts" else k): (
                pa.array(v, pa.int64()).cast(TS) if k == "ts" else pa.array(v, pa.float64())
            )
            for k, v in cols.items()
        }
    )
    if path.suffix == ".parquet":
        pa_parquet.write_table(table, path)
    else:
        pa_feather.write_feather(table, path)
    return path


def _cell(value) -> str:
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


@pytest.mark.parametrize(
    ("unit", "time_name"), [("iso", "timestamp"), ("ms", "timestamp"), ("ns", "ts")]
)
def test_irregular_tick_csv_reads(tmp_path, unit, time_name):
    cols = good_ticks()
    if unit == "ms":
        cols["ts"] = [t // 1_000_000 * 1_000_000 for t in cols["ts"]]
    p = read_prices(write(tmp_path / "ticks.csv", cols, time_name=time_name, unit=unit))
    assert not p.is_candles
    assert p.high is None and p.low is None
    assert np.array_equal(p.ts, cols["ts"])
    assert np.array_equal(p.price, cols["price"])
    assert np.array_equal(p.volume, cols["volume"])
    # Steps 1, 2.5, 1, 40, 1.2 s: the lower median is 1.2 s.
    assert p.interval_ns == round(1.2 * NS)


@pytest.mark.parametrize("fmt", [".parquet", ".feather", ".arrow"])
def test_tick_files_with_timestamp_columns_read(tmp_path, fmt):
    cols = good_ticks()
    p = read_prices(write(tmp_path / f"ticks{fmt}", cols, time_name="TS"))
    assert np.array_equal(p.ts, cols["ts"])
    assert np.array_equal(p.price, cols["price"])


def test_candles_may_have_gaps_unlike_read_candles(tmp_path):
    path = write(tmp_path / "candles.csv", good_candles(), time_name="open_time")
    with pytest.raises(DataError, match="1 candle\\(s\\) missing"):
        read_candles(path, interval_ns=MINUTE_NS)
    p = read_prices(path)
    assert p.is_candles
    assert p.interval_ns == MINUTE_NS
    assert np.array_equal(p.high, good_candles()["high"])


def test_candles_without_extremes_read(tmp_path):
    cols = good_candles()
    del cols["open"], cols["high"], cols["low"]
    p = read_prices(write(tmp_path / "closes.csv", cols, time_name="date"))
    assert p.is_candles
    assert p.high is None and p.low is None


def test_price_column_wins_over_close_and_ticks_have_no_extremes(tmp_path):
    cols = good_ticks() | {"close": [1.0] * 6, "high": [1e6] * 6, "low": [1.0] * 6}
    p = read_prices(write(tmp_path / "both.csv", cols))
    assert not p.is_candles
    assert np.array_equal(p.price, cols["price"])
    assert p.high is None


def test_ts_column_is_preferred_to_a_calendar_date(tmp_path):
    cols = good_ticks()
    path = tmp_path / "dated.csv"
    lines = ["Date,TS,Price,Volume"]
    lines += [f"2024-08-05,{t},{x!r},{v!r}" for t, x, v in zip(*cols.values(), strict=True)]
    path.write_text("\n".join(lines) + "\n")
    assert np.array_equal(read_prices(path).ts, cols["ts"])


def test_one_symbol_column_is_fine_several_are_not(tmp_path):
    cols = good_ticks()
    one = write(tmp_path / "one.csv", cols | {"symbol": ["BTC-USD"] * 6})
    assert len(read_prices(one)) == 6
    two = write(tmp_path / "two.csv", cols | {"symbol": ["BTC-USD", "ETH-USD"] * 3})
    with pytest.raises(DataError, match=r"2 symbols \(.*\); give one symbol's prices"):
        read_prices(two)


# ----------------------------------------------------------------------------- defects


def _set(key, value):
    """A defect that sets row 3 of column ``key`` to ``value`` (or ``value(columns)``)."""

    def defect(c):
        c[key][2] = value(c) if callable(value) else value

    return defect


TICK_DEFECTS = [
    ("unsorted", _set("ts", lambda c: c["ts"][1] - NS), "time is earlier than row 2"),
    ("duplicate", _set("ts", lambda c: c["ts"][1]), "duplicate of row 2"),
    ("too_close", _set("ts", lambda c: c["ts"][1] + NS // 2), "step 0.5 s from row 2 is under 1 s"),
    ("nan_price", _set("price", float("nan")), "price is nan or missing"),
    ("inf_volume", _set("volume", float("inf")), "volume is inf or missing"),
    ("missing_price", _set("price", None), "price is nan or missing"),
    ("zero_price", _set("price", 0.0), "price 0.0 is not positive"),
    ("negative_price", _set("price", -5.0), "price -5.0 is not positive"),
    ("negative_volume", _set("volume", -1.0), "volume -1.0 is negative"),
]

CANDLE_DEFECTS = [
    ("too_close", _set("ts", lambda c: c["ts"][1] + 30 * NS), "step 30 s from row 2 is under 60 s"),
    ("high_below_low", _set("high", 50.0), "high 50.0 < low 101.0"),
    ("close_outside", _set("close", 110.0), "close 110.0 outside [low 101.0, high 104.0]"),
    ("low_not_positive", _set("low", -1.0), "low -1.0 is not positive"),
    ("nan_low", _set("low", float("nan")), "low is nan or missing"),
]


@pytest.mark.parametrize("fmt", [".csv", ".parquet"])
@pytest.mark.parametrize(
    ("make", "defect", "what"),
    [(good_ticks, *d[1:]) for d in TICK_DEFECTS] + [(good_candles, *d[1:]) for d in CANDLE_DEFECTS],
    ids=[f"tick_{d[0]}" for d in TICK_DEFECTS] + [f"candle_{d[0]}" for d in CANDLE_DEFECTS],
)
def test_defect_is_a_one_line_error_naming_file_and_row(tmp_path, fmt, make, defect, what):
    cols = make()
    defect(cols)
    path = write(tmp_path / f"bad{fmt}", cols)
    with pytest.raises(DataError) as info:
        read_prices(path)
    message = str(info.value)
    assert message.startswith(f"{path}: row 3 (")
    assert what in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("column", "cell", "what"),
    [
        ("price", "abc", r"row 3 \(2024-08-05T00:00:03\.5Z\): price 'abc' is not a number"),
        ("ts", "yesterday", "row 3: time 'yesterday' is not ISO 8601"),
        ("ts", "", "row 3: time is missing"),
    ],
)
def test_unparsable_cell_names_row(tmp_path, column, cell, what):
    cols = good_ticks()
    cols[column][2] = cell
    path = write(tmp_path / "bad.csv", cols)
    with pytest.raises(DataError, match=what) as info:
        read_prices(path)
    assert str(info.value).startswith(f"{path}: row 3")


@pytest.mark.parametrize(
    ("drop", "time_name", "what"),
    [
        ("volume", "timestamp", r"missing column\(s\) volume; found: timestamp, price$"),
        ("price", "timestamp", r"missing column\(s\) price/close; found: timestamp, volume$"),
        (None, "when", r"missing column\(s\) ts/timestamp/date/open_time; found: when, price"),
    ],
)
def test_missing_column_is_named(tmp_path, drop, time_name, what):
    cols = {k: v for k, v in good_ticks().items() if k != drop}
    with pytest.raises(DataError, match=what):
        read_prices(write(tmp_path / "bad.csv", cols, time_name=time_name))


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("garbage.csv", b"\x00\xffnot,a\nprice file\x00", "cannot read: CSV parse error"),
        ("garbage.parquet", b"this is not parquet at all", "cannot read"),
        ("garbage.feather", b"this is not feather either", "cannot read"),
        ("empty.csv", b"ts,price,volume\n", "no prices"),
        ("one.csv", b"ts,price,volume\n1722816000000000000,1,1\n", "1 row\\(s\\); at least 2"),
        ("prices.xlsx", b"whatever", "unknown price file format '.xlsx'"),
        (
            "case.csv",
            b"ts,price,Price,volume\n1,1,1,1\n",
            "'price' and 'Price' differ only in case",
        ),
        ("half.csv", b"date,close,high,volume\n2024-08-05,1,1,1\n", "high and low together"),
    ],
)
def test_unreadable_files(tmp_path, name, content, what):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=what) as info:
        read_prices(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["absent.csv", "absent_run"])
def test_missing_path(tmp_path, name):
    with pytest.raises(DataError, match=f"{name}: no such file or run directory$"):
        read_prices(tmp_path / name)


def test_prices_are_read_only_and_independent_of_the_callers_arrays():
    cols = {k: np.asarray(v) for k, v in good_ticks().items()}
    p = Prices(**cols)
    with pytest.raises(ValueError, match="read-only"):
        p.price[0] = 0.0
    cols["price"][0] = 1e9
    assert p.price[0] == 100.0
    assert cols["price"].flags.writeable


# ----------------------------------------------------------------------------- detections


def detections(n: int = 4) -> pa.Table:
    start = [T0 + i * 90 * NS for i in range(n)]
    return pa.table(
        {
            "detected_at": pa.array([t + 30 * NS + 250_000_000 * i for i, t in enumerate(start)]),
            "trap_type": ["stop_hunt", "bull_trap", "fibonacci_trap", "liquidity_grab"][:n],
            "direction": ["down", "up", "up", "down"][:n],
            "start": pa.array(start),
            "confidence": [0.5, 0.75, 1.0, 0.125][:n],
            "features": [json.dumps({"sigma": 2.5, "note": 'a "quoted", comma'})] * n,
        }
    ).cast(DETECTIONS)


def read_csv_detections(path: Path) -> pa.Table:
    """A detections CSV with its ISO times parsed back to ``timestamp[ns, UTC]``."""
    table = pa_csv.read_csv(
        path,
        convert_options=pa_csv.ConvertOptions(
            column_types=dict.fromkeys(DETECTIONS.names, pa.string())
        ),
    )
    for name in ("detected_at", "start"):
        ns = time_ns(table.column(name), str(path))
        table = table.set_column(table.schema.get_field_index(name), name, pa.array(ns).cast(TS))
    return table.cast(DETECTIONS)


def test_parquet_detections_round_trip(tmp_path):
    write_detections(detections(), tmp_path / "d.parquet")
    back = pa_parquet.read_table(tmp_path / "d.parquet")
    assert back.schema.field("detected_at").type == TS
    assert back.equals(detections())


def test_csv_detections_round_trip_with_iso_times(tmp_path):
    path = tmp_path / "d.CSV"
    write_detections(detections(), path)
    text = path.read_text()
    assert text.splitlines()[1].startswith('"2024-08-05T00:00:30Z","stop_hunt"')
    assert "2024-08-05T00:02:00.25Z" in text
    assert read_csv_detections(path).equals(detections())


def test_empty_detections_write_a_header(tmp_path):
    write_detections(detections(0), tmp_path / "d.csv")
    assert (tmp_path / "d.csv").read_text().strip() == ",".join(f'"{n}"' for n in DETECTIONS.names)


def test_unknown_output_extension_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown detections format '.json'"):
        write_detections(detections(), tmp_path / "d.json")
    assert not list(tmp_path.iterdir())


def test_wrong_schema_is_refused(tmp_path):
    with pytest.raises(SinkError, match="need columns detected_at: timestamp.*; got detected_at"):
        write_detections(detections().drop_columns(["features"]), tmp_path / "d.csv")


def test_failed_write_keeps_the_existing_file_whole(tmp_path, monkeypatch):
    path = tmp_path / "d.csv"
    write_detections(detections(), path)
    before = path.read_bytes()

    def half_then_fail(table, sink):
        sink.write(b'"detected_at","trap_')
        raise OSError("disk full")

    monkeypatch.setitem(prices_module._WRITERS, ".csv", half_then_fail)
    with pytest.raises(SinkError, match=f"cannot write {path}: disk full"):
        write_detections(detections(1), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["d.csv"]


def test_rewrite_replaces_the_file(tmp_path):
    path = tmp_path / "d.parquet"
    write_detections(detections(), path)
    write_detections(detections(1), path)
    assert pa_parquet.read_table(path).num_rows == 1
    assert [p.name for p in tmp_path.iterdir()] == ["d.parquet"]


# ----------------------------------------------------------------------------- properties

# Epoch units are told apart by magnitude, exact from 1973-03-03 to 2262.
_LO, _HI = 10**17, 9 * 10**18


@st.composite
def tick_times(draw, unit: str) -> list[int]:
    """Strictly increasing tick times, steps >= 1 s, at the precision ``unit`` keeps."""
    grain = {"s": NS, "ms": 1_000_000, "ns": 1, "iso": 1}[unit]
    n = draw(st.integers(2, 20))
    steps = draw(st.lists(st.integers(NS, 10**6 * NS), min_size=n - 1, max_size=n - 1))
    start = draw(st.integers(_LO, _HI - sum(steps)))
    ts = np.cumsum([start, *steps])
    return (ts // grain * grain).tolist()


@settings(max_examples=60, deadline=None)
@given(data=st.data(), unit=st.sampled_from(["iso", "s", "ms", "ns"]))
def test_tick_times_round_trip_through_csv(data, unit):
    ts = data.draw(tick_times(unit))
    cols = {"ts": ts, "price": [1.0] * len(ts), "volume": [0.0] * len(ts)}
    with tempfile.TemporaryDirectory() as tmp:
        p = read_prices(write(Path(tmp) / "t.csv", cols, unit=unit))
    assert p.ts.tolist() == ts


@settings(max_examples=40, deadline=None)
@given(times=st.lists(st.integers(0, _HI), min_size=1, max_size=10))
def test_detection_times_round_trip_through_csv(times):
    table = detections(1).take([0] * len(times))
    for name in ("detected_at", "start"):
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pa.array(times, pa.int64()).cast(TS))
    with tempfile.TemporaryDirectory() as tmp:
        write_detections(table, Path(tmp) / "d.csv")
        assert read_csv_detections(Path(tmp) / "d.csv").equals(table)
