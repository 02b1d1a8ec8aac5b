"""Reading candle files: real recorded data, format variants and every kind of defect."""

from __future__ import annotations

import csv
import gzip
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as pa_feather
import pyarrow.parquet as pa_parquet
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import DataError
from trapsim.core.time import MINUTE_NS, NS, parse_ts
from trapsim.feeds.candles import Candles, read_candles

RAW = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "raw"

T0 = parse_ts("2024-08-05T00:00:00Z")
FIELDS = ("open", "high", "low", "close", "volume")

# (file, rows, first open time, last open time), from data/raw/SOURCES.md.
REAL_FILES = [
    ("BTC_USDT-1m.feather", 130_708, "2025-05-20T00:00:00Z", "2025-08-18T18:27:00Z"),
    ("ETH_USDT-1m.feather", 130_708, "2025-05-20T00:00:00Z", "2025-08-18T18:27:00Z"),
    ("BTC_USDT-1m_2024-08.feather", 43_209, "2024-07-26T14:15:00Z", "2024-08-25T14:23:00Z"),
    ("ETH_USDT-1m_2024-08.feather", 43_208, "2024-07-26T14:16:00Z", "2024-08-25T14:23:00Z"),
    (
        "binanceus_BTCUSD_1m_20230301_20230321.csv",
        30_240,
        "2023-03-01T00:00:00Z",
        "2023-03-21T23:59:00Z",
    ),
    (
        "binanceus_BTCUSDT_1m_20230301_20230321.csv",
        30_240,
        "2023-03-01T00:00:00Z",
        "2023-03-21T23:59:00Z",
    ),
    (
        "binanceus_BTCUSDC_1m_20230301_20230321.csv",
        30_240,
        "2023-03-01T00:00:00Z",
        "2023-03-21T23:59:00Z",
    ),
]


@pytest.mark.parametrize(("name", "rows", "first", "last"), REAL_FILES)
def test_real_candle_files_read(name, rows, first, last):
    c = read_candles(RAW / name)
    assert len(c) == rows
    assert c.interval_ns == MINUTE_NS
    assert c.ts.dtype == np.int64
    assert int(c.ts[0]) == parse_ts(first)
    assert int(c.ts[-1]) == parse_ts(last)
    for field in FIELDS:
        assert getattr(c, field).dtype == np.float64


@pytest.mark.parametrize("name", [f[0] for f in REAL_FILES if f[0].endswith(".feather")])
def test_real_feather_values_are_the_stored_ones(name):
    table = pa_feather.read_table(RAW / name)
    c = read_candles(RAW / name)
    assert np.array_equal(c.ts, table.column("date").cast(pa.int64()).to_numpy())
    for field in FIELDS:
        assert np.array_equal(getattr(c, field), table.column(field).to_numpy())


@pytest.mark.parametrize("name", [f[0] for f in REAL_FILES if f[0].endswith(".csv")])
def test_real_csv_values_match_python_parsing(name):
    with open(RAW / name, newline="") as fh:
        rows = list(csv.DictReader(fh))
    c = read_candles(RAW / name)
    assert np.array_equal(c.ts, [parse_ts(r["open_time"]) for r in rows])
    for field in FIELDS:
        assert np.array_equal(getattr(c, field), [float(r[field]) for r in rows])
    # The thin venue's zero-volume minutes are kept, not dropped.
    assert np.count_nonzero(c.volume == 0) > 0


# ----------------------------------------------------------------------------- writing helpers


def good_rows(n: int = 6) -> dict[str, list]:
    """``n`` valid 1-minute candles from T0 as plain columns."""
    return {
        "ts": [T0 + i * MINUTE_NS for i in range(n)],
        "open": [100.0 + i for i in range(n)],
        "high": [102.0 + i for i in range(n)],
        "low": [99.0 + i for i in range(n)],
        "close": [101.0 + i for i in range(n)],
        "volume": [1.5 * (i + 1) for i in range(n)],
    }


def write(path: Path, cols: dict[str, list], *, time_name: str = "date") -> Path:
    """Write ``cols`` (``ts`` as int64 ns) to ``path`` in the format its extension names."""
    if path.suffix == ".csv":
        names = [time_name if k == "ts" else k for k in cols]
        lines = [",".join(names)]
        for row in zip(*cols.values(), strict=True):
            lines.append(",".join(_csv_cell(k, x) for k, x in zip(cols, row, strict=True)))
        path.write_text("\n".join(lines) + "\n")
        return path
    arrays = {
        (time_name if k == "ts" else k): (
            pa.array(v, pa.int64()).cast(pa.timestamp("ns", tz="UTC"))
            if k == "ts" and all(isinstance(x, int) or x is None for x in v)
            else pa.array(v)
        )
        for k, v in cols.items()
    }
    table = pa.table(arrays)
    if path.suffix == ".parquet":
        pa_parquet.write_table(table, path)
    else:
        pa_feather.write_feather(table, path)
    return path


def _csv_cell(key: str, value) -> str:
    if key == "ts" and isinstance(value, int):
        return np.datetime_as_string(np.datetime64(value, "ns"), unit="s") + "Z"
    return "" if value is None else repr(value) if isinstance(value, float) else str(value)


FORMATS = [".csv", ".parquet", ".feather"]


# ----------------------------------------------------------------------------- defects


def _unsorted(c):
    c["ts"][2] = c["ts"][1] - MINUTE_NS


def _duplicate(c):
    c["ts"][2] = c["ts"][1]


def _gap(c):
    c["ts"][2:] = [t + MINUTE_NS for t in c["ts"][2:]]


def _nan(c):
    c["close"][2] = float("nan")


def _inf(c):
    c["volume"][2] = float("inf")


def _missing(c):
    c["open"][2] = None


def _high_below_low(c):
    c["high"][2] = c["low"][2] - 1.0


def _open_above_high(c):
    c["open"][2] = c["high"][2] + 0.5


def _close_below_low(c):
    c["close"][2] = c["low"][2] - 0.5


def _negative_volume(c):
    c["volume"][2] = -1.0


DEFECTS = [
    (_unsorted, "earlier than row 2"),
    (_duplicate, "duplicate of row 2"),
    (_gap, "1 candle(s) missing"),
    (_nan, "close is nan"),
    (_inf, "volume is inf"),
    (_missing, "open is nan or missing"),
    (_high_below_low, "< low"),
    (_open_above_high, "open 104.5 outside"),
    (_close_below_low, "close 100.5 outside"),
    (_negative_volume, "volume -1.0 is negative"),
]


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("defect", "what"), DEFECTS, ids=[d[0].__name__ for d in DEFECTS])
def test_defect_is_a_one_line_error_naming_file_and_row(tmp_path, fmt, defect, what):
    cols = good_rows()
    defect(cols)
    path = write(tmp_path / f"bad{fmt}", cols)
    with pytest.raises(DataError) as info:
        read_candles(path)
    message = str(info.value)
    assert message.startswith(f"{path}: row 3 (")
    assert what in message
    assert "\n" not in message


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_column_is_named(tmp_path, fmt):
    cols = good_rows()
    del cols["volume"]
    with pytest.raises(DataError, match=r"missing column\(s\) volume; found: date, open"):
        read_candles(write(tmp_path / f"bad{fmt}", cols))


def test_missing_time_column_is_named(tmp_path):
    path = write(tmp_path / "bad.csv", good_rows(), time_name="when")
    with pytest.raises(DataError, match="missing column.*date/open_time/timestamp/ts"):
        read_candles(path)


def test_garbage_number_names_row(tmp_path):
    cols = good_rows()
    cols["high"][2] = "abc"
    path = write(tmp_path / "bad.csv", cols)
    expected = r"row 3 \(2024-08-05T00:02:00Z\): high 'abc' is not a number"
    with pytest.raises(DataError, match=expected):
        read_candles(path)


def test_garbage_time_names_row(tmp_path):
    cols = good_rows()
    cols["ts"][2] = "yesterday"
    with pytest.raises(DataError, match="row 3: time 'yesterday' is not ISO 8601"):
        read_candles(write(tmp_path / "bad.csv", cols))


def test_null_time_names_row(tmp_path):
    cols = good_rows()
    table = pa.table(
        {"ts": pa.array([*cols["ts"][:2], None, *cols["ts"][3:]], pa.timestamp("ns"))}
        | {k: cols[k] for k in FIELDS}
    )
    pa_parquet.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="row 3: time is missing"):
        read_candles(tmp_path / "bad.parquet")


@pytest.mark.parametrize(
    ("name", "content", "what"),
    [
        ("garbage.csv", b"\x00\xffnot,a\ncandle file\x00", "cannot read: CSV parse error"),
        ("prose.csv", b"Dear reader, hello\nthis is, a letter\n", "missing column"),
        ("garbage.parquet", b"this is not parquet at all", "cannot read"),
        ("garbage.feather", b"this is not feather either", "cannot read"),
        ("empty.csv", b"date,open,high,low,close,volume\n", "no candles"),
        ("candles.xlsx", b"whatever", "unknown candle format '.xlsx'"),
    ],
)
def test_unreadable_files(tmp_path, name, content, what):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(DataError, match=what) as info:
        read_candles(path)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="cannot read"):
        read_candles(tmp_path / "absent.csv")


def test_single_candle_needs_an_interval(tmp_path):
    path = write(tmp_path / "one.csv", good_rows(1))
    with pytest.raises(DataError, match="single candle"):
        read_candles(path)
    assert read_candles(path, interval_ns=MINUTE_NS).interval_ns == MINUTE_NS


def test_irregular_step_is_rejected(tmp_path):
    cols = good_rows()
    cols["ts"][3:] = [t + 30 * NS for t in cols["ts"][3:]]
    with pytest.raises(DataError, match=r"row 4 .*step 90 s from row 3 is not .*irregular"):
        read_candles(write(tmp_path / "bad.csv", cols))


# ----------------------------------------------------------------------------- time variants


@pytest.mark.parametrize(
    ("unit", "scale"), [("s", NS), ("ms", 1_000_000), ("us", 1_000), ("ns", 1)]
)
@pytest.mark.parametrize("fmt", [".csv", ".parquet"])
def test_epoch_integers_parse_by_magnitude(tmp_path, fmt, unit, scale):
    cols = good_rows()
    cols["ts"] = [t // scale for t in cols["ts"]]
    path = tmp_path / f"epoch_{unit}{fmt}"
    if fmt == ".csv":
        lines = ["timestamp,open,high,low,close,volume"]
        lines += [",".join(map(str, row)) for row in zip(*cols.values(), strict=True)]
        path.write_text("\n".join(lines) + "\n")
    else:
        pa_parquet.write_table(
            pa.table({"timestamp": pa.array(cols.pop("ts"), pa.int64())} | cols), path
        )
    assert np.array_equal(read_candles(path).ts, good_rows()["ts"])


def test_epoch_seconds_beyond_ns_range_is_rejected(tmp_path):
    path = tmp_path / "far.csv"
    path.write_text("ts,open,high,low,close,volume\n50000000000,1,1,1,1,1\n50000000060,1,1,1,1,1\n")
    with pytest.raises(DataError, match="row 1: epoch time 50000000000 is out of range"):
        read_candles(path)


@pytest.mark.parametrize(
    "times",
    [
        ["2024-08-05T00:00:00Z", "2024-08-05T00:01:00Z"],
        ["2024-08-05 00:00:00+00:00", "2024-08-05 00:01:00+00:00"],
        ["2024-08-05T02:00:00+02:00", "2024-08-05T02:01:00.000+02:00"],
        ["2024-08-05T00:00:00", "2024-08-05T00:01:00"],
    ],
)
def test_iso_times_become_utc_ns(tmp_path, times):
    path = tmp_path / "iso.csv"
    path.write_text(
        "Open_Time,Open,High,Low,Close,Volume\n" + "".join(f"{t},1,2,0.5,1.5,3\n" for t in times)
    )
    assert np.array_equal(read_candles(path).ts, [T0, T0 + MINUTE_NS])


def test_timestamp_column_in_another_zone_and_unit(tmp_path):
    cols = good_rows()
    stamps = pa.array([t // 1_000_000 for t in cols.pop("ts")], pa.timestamp("ms", "Asia/Tokyo"))
    pa_feather.write_feather(pa.table({"TS": stamps} | cols), tmp_path / "tokyo.arrow")
    assert np.array_equal(read_candles(tmp_path / "tokyo.arrow").ts, good_rows()["ts"])


def test_date_column_is_preferred_to_later_names(tmp_path):
    cols = good_rows()
    table = pa.table(
        {"timestamp": pa.array([0] * 6, pa.int64())}
        | {"date": pa.array(cols.pop("ts"), pa.int64())}
        | cols
    )
    pa_parquet.write_table(table, tmp_path / "both.parquet")
    assert np.array_equal(read_candles(tmp_path / "both.parquet").ts, good_rows()["ts"])


def test_columns_differing_only_in_case_are_ambiguous(tmp_path):
    path = tmp_path / "case.csv"
    path.write_text("date,open,Open,high,low,close,volume\n2024-08-05T00:00:00Z,1,1,1,1,1,1\n")
    with pytest.raises(DataError, match="'open' and 'Open' differ only in case"):
        read_candles(path)


def test_gzipped_csv(tmp_path):
    plain = write(tmp_path / "c.csv", good_rows())
    packed = tmp_path / "c.csv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    a, b = read_candles(plain), read_candles(packed)
    for field in ("ts", *FIELDS):
        assert np.array_equal(getattr(a, field), getattr(b, field))


# ----------------------------------------------------------------------------- properties


@st.composite
def candle_columns(draw, min_size: int = 1, max_size: int = 30) -> dict[str, list]:
    """Valid 1-minute candles, including flat ones and zero volume."""
    n = draw(st.integers(min_size, max_size))
    start = draw(st.integers(0, 4_000_000_000)) * NS
    price = st.floats(1e-4, 1e7, allow_nan=False)
    frac = st.floats(0.0, 1.0)
    cols: dict[str, list] = {"ts": [start + i * MINUTE_NS for i in range(n)]}
    for key in FIELDS:
        cols[key] = []
    for _ in range(n):
        a, b = sorted((draw(price), draw(price)))
        if draw(st.booleans()):
            b = a  # flat candle
        lo, hi = np.float64(a), np.float64(b)
        cols["low"].append(float(lo))
        cols["high"].append(float(hi))
        for key in ("open", "close"):
            cols[key].append(float(np.clip(lo + draw(frac) * (hi - lo), lo, hi)))
        cols["volume"].append(draw(st.one_of(st.just(0.0), st.floats(0.0, 1e9))))
    return cols


@settings(max_examples=40, deadline=None)
@given(cols=candle_columns(min_size=2), fmt=st.sampled_from(FORMATS))
def test_written_candles_read_back_exactly(cols, fmt):
    with tempfile.TemporaryDirectory() as tmp:
        c = read_candles(write(Path(tmp) / f"c{fmt}", cols))
    assert c.interval_ns == MINUTE_NS
    for key, values in cols.items():
        assert np.array_equal(getattr(c, key), values)


@settings(max_examples=60, deadline=None)
@given(cols=candle_columns(min_size=4), data=st.data())
def test_any_single_bad_row_is_named(cols, data):
    row = data.draw(st.integers(1, len(cols["ts"]) - 1))
    kind = data.draw(st.sampled_from(["unsorted", "duplicate", "nan", "high<low", "volume"]))
    if kind == "unsorted":
        cols["ts"][row] = cols["ts"][row - 1] - MINUTE_NS
    elif kind == "duplicate":
        cols["ts"][row] = cols["ts"][row - 1]
    elif kind == "nan":
        cols[data.draw(st.sampled_from(FIELDS))][row] = float("nan")
    elif kind == "high<low":
        cols["high"][row] = cols["low"][row] * 0.5
    else:
        cols["volume"][row] = -cols["volume"][row] - 1.0
    with pytest.raises(DataError, match=rf"^<arrays>: row {row + 1} \("):
        Candles(**cols, interval_ns=MINUTE_NS)


def test_candles_are_read_only_and_independent_of_the_callers_arrays():
    cols = {k: np.asarray(v) for k, v in good_rows().items()}
    c = Candles(**cols, interval_ns=MINUTE_NS)
    with pytest.raises(ValueError, match="read-only"):
        c.close[0] = 0.0
    cols["close"][0] = 1e9
    assert c.close[0] == 101.0
    assert cols["close"].flags.writeable


def test_slice_keeps_interval_and_source():
    c = Candles(**good_rows(), interval_ns=MINUTE_NS, source="mem")
    part = c.slice(2, 5)
    assert len(part) == 3
    assert part.source == "mem"
    assert part.interval_ns == MINUTE_NS
    assert np.array_equal(part.ts, c.ts[2:5])
