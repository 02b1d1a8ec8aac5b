import json
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from trapsim.core.errors import ConfigError, DataError, SinkError
from trapsim.core.schemas import TICKS, TS, TickBatch
from trapsim.core.time import NS
from trapsim.store.rundir import PARTS_DIR, RUN_STREAMS, STREAM_SCHEMAS, RunDir, read_stream

STREAMS = RUN_STREAMS  # a run directory's streams by default


def make_table(schema: pa.Schema, start: int, n: int) -> pa.Table:
    """Rows ``start … start + n - 1`` of any stream schema; row ``i`` is recognisable by ``i``."""
    i = np.arange(start, start + n, dtype=np.int64)
    cols = {}
    for f in schema:
        if pa.types.is_timestamp(f.type):
            cols[f.name] = pa.array(i * NS, pa.int64()).cast(f.type)
        elif pa.types.is_string(f.type):
            cols[f.name] = pa.array([f"{f.name}-{k}" for k in range(3)], f.type).take(i % 3)
        elif pa.types.is_floating(f.type):
            cols[f.name] = pa.array(i * 0.5, f.type)
        elif pa.types.is_integer(f.type):
            cols[f.name] = pa.array(i, f.type)
        elif pa.types.is_list(f.type) and pa.types.is_floating(f.type.value_type):
            cols[f.name] = pa.array([[k * 0.5] * (k % 3) for k in i], f.type)
        else:
            raise TypeError(f"no test data for column {f.name} of type {f.type}")
    return pa.table(cols, schema=schema)


def ids(table: pa.Table) -> list[int]:
    """Row numbers of a table made by :func:`make_table` (its first timestamp column)."""
    col = next(f.name for f in table.schema if pa.types.is_timestamp(f.type))
    return (table[col].cast(pa.int64()).to_numpy() // NS).tolist()


def part_files(run: Path, stream: str) -> list[str]:
    return sorted(p.name for p in (run / PARTS_DIR / stream).glob("*.arrow"))


def test_schema_registry_covers_the_design_streams():
    assert {"ticks", "labels", "hf_activations", "candles_1m"} <= set(STREAM_SCHEMAS)
    assert STREAM_SCHEMAS["ticks"] is TICKS


def test_a_run_directory_holds_the_streams_it_was_created_with(tmp_path):
    run = RunDir.create(tmp_path / "a")
    with pytest.raises(SinkError, match="unknown stream 'detections'"):
        run.append("detections", make_table(STREAM_SCHEMAS["detections"], 0, 1))
    run.close()
    assert sorted(p.name for p in run.path.glob("*.parquet")) == sorted(
        f"{s}.parquet" for s in RUN_STREAMS)
    with pytest.raises(ConfigError, match="unknown run directory streams"):
        RunDir.create(tmp_path / "b", streams=("ticks", "quotes"))


@pytest.mark.parametrize("stream", sorted(STREAM_SCHEMAS))
def test_round_trip_before_and_after_close(tmp_path, stream):
    schema = STREAM_SCHEMAS[stream]
    run = RunDir.create(tmp_path / "run", flush_rows=100, streams=STREAM_SCHEMAS)
    expected = []
    start = 0
    for n, flush in [(30, False), (80, False), (5, True), (0, False), (250, False), (7, False)]:
        table = make_table(schema, start, n)
        run.append(stream, table)
        expected.append(table)
        start += n
        if flush:
            run.flush()
    want = pa.concat_tables(expected)
    # The 7 last rows are still buffered: a reader of the open run sees the flushed ones.
    assert read_stream(run.path, stream).equals(want.slice(0, start - 7))
    run.close()
    got = read_stream(run.path, stream)
    assert got.equals(want)
    assert got.schema.equals(schema)


def test_ticks_keep_ns_utc_timestamps_and_values(tmp_path):
    ts = np.array([1_700_000_000_123_456_789, 1_700_000_001_000_000_001], np.int64)
    batch = TickBatch(
        "BTC-USD", ts, np.array([1.5, 2.5]), np.array([1.0, 2.0]), np.array([2.0, 3.0]),
        np.array([0.1, 0.2]), np.array([1, 0], np.int8), ("calm", "storm"),
    )
    with RunDir.create(tmp_path / "run") as run:
        run.append("ticks", batch.to_arrow())
    got = read_stream(tmp_path / "run", "ticks")
    assert got.schema.field("ts").type == TS
    assert got["ts"].cast(pa.int64()).to_pylist() == ts.tolist()
    assert got["regime"].to_pylist() == ["storm", "calm"]
    assert got.equals(batch.to_arrow())


def test_parquet_files_use_zstd_dictionary_strings_delta_times_and_split_floats(tmp_path):
    with RunDir.create(tmp_path / "run") as run:
        run.append("ticks", make_table(TICKS, 0, 1000))
    meta = pq.ParquetFile(tmp_path / "run" / "ticks.parquet").metadata
    rg = meta.row_group(0)
    cols = {rg.column(j).path_in_schema: rg.column(j) for j in range(rg.num_columns)}
    assert {c.compression for c in cols.values()} == {"ZSTD"}
    assert "RLE_DICTIONARY" in cols["symbol"].encodings
    assert "RLE_DICTIONARY" in cols["regime"].encodings
    assert "RLE_DICTIONARY" not in cols["price"].encodings
    assert "BYTE_STREAM_SPLIT" in cols["price"].encodings
    assert "DELTA_BINARY_PACKED" in cols["ts"].encodings


def test_close_leaves_one_file_per_stream_and_no_parts(tmp_path):
    run = RunDir.create(tmp_path / "run", flush_rows=10)
    for k in range(12):
        run.append("ticks", make_table(TICKS, k * 4, 4))
        run.flush()
    run.append("labels", make_table(STREAM_SCHEMAS["labels"], 0, 3))
    run.write_json("stats.json", {"ticks": 48})
    run.close()
    run.close()  # idempotent
    expected = [f"{s}.parquet" for s in STREAMS] + ["stats.json"]
    assert sorted(os.listdir(run.path)) == sorted(expected)
    for stream in STREAMS:
        table = pq.read_table(run.path / f"{stream}.parquet")
        assert table.schema.equals(STREAM_SCHEMAS[stream])
    assert ids(read_stream(run.path, "ticks")) == list(range(48))
    assert read_stream(run.path, "hf_activations").num_rows == 0


def test_append_after_close_is_a_sink_error(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.close()
    with pytest.raises(SinkError, match="closed"):
        run.append("ticks", make_table(TICKS, 0, 1))


def test_create_refuses_a_non_empty_directory_and_keeps_it(tmp_path):
    old = tmp_path / "old"
    with RunDir.create(old) as run:
        run.append("ticks", make_table(TICKS, 0, 5))
    before = {p.name: p.read_bytes() for p in old.iterdir()}
    with pytest.raises(SinkError, match="not empty"):
        RunDir.create(old)
    assert {p.name: p.read_bytes() for p in old.iterdir()} == before


def test_create_accepts_an_empty_directory_and_makes_parents(tmp_path):
    (tmp_path / "empty").mkdir()
    RunDir.create(tmp_path / "empty").close()
    RunDir.create(tmp_path / "a" / "b" / "c").close()
    assert (tmp_path / "a" / "b" / "c" / "ticks.parquet").is_file()


def test_create_fails_cleanly_when_path_cannot_be_a_directory(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(SinkError):
        RunDir.create(tmp_path / "file")
    with pytest.raises(SinkError):
        RunDir.create(tmp_path / "file" / "run")


@pytest.mark.parametrize(
    "bad",
    [
        make_table(TICKS, 0, 3).drop_columns(["regime"]),
        make_table(TICKS, 0, 3).set_column(0, "ts", pa.array([1, 2, 3], pa.int64())),
        make_table(TICKS, 0, 3).set_column(
            0, "ts", pa.array([1, 2, 3], pa.int64()).cast(pa.timestamp("ns"))
        ),
        make_table(TICKS, 0, 3).set_column(
            1, "symbol", make_table(TICKS, 0, 3)["symbol"].dictionary_encode()
        ),
        make_table(TICKS, 0, 3).select(["symbol", "ts", "price", "bid", "ask", "volume", "regime"]),
        make_table(STREAM_SCHEMAS["candles_1m"], 0, 3),
    ],
    ids=["missing-column", "int-ts", "naive-ts", "dictionary-symbol", "column-order", "candles"],
)
def test_wrong_schema_is_a_sink_error_and_writes_nothing(tmp_path, bad):
    run = RunDir.create(tmp_path / "run")
    with pytest.raises(SinkError, match="schema"):
        run.append("ticks", bad)
    run.close()
    assert read_stream(run.path, "ticks").num_rows == 0


def test_unknown_stream_is_a_sink_error(tmp_path):
    run = RunDir.create(tmp_path / "run")
    with pytest.raises(SinkError, match="unknown stream"):
        run.append("tick", make_table(TICKS, 0, 1))


def test_buffer_flushes_itself_at_flush_rows(tmp_path):
    run = RunDir.create(tmp_path / "run", flush_rows=50)
    run.append("ticks", make_table(TICKS, 0, 49))
    assert part_files(run.path, "ticks") == []
    run.append("ticks", make_table(TICKS, 49, 1))
    assert part_files(run.path, "ticks") == ["part-000001.arrow"]
    assert ids(read_stream(run.path, "ticks")) == list(range(50))


def test_flush_with_nothing_buffered_writes_nothing(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.append("ticks", make_table(TICKS, 0, 3))
    run.flush()
    files = sorted(p.relative_to(run.path) for p in run.path.rglob("*"))
    run.flush()
    run.flush()
    assert sorted(p.relative_to(run.path) for p in run.path.rglob("*")) == files


def base_digit_sum(n: int, base: int) -> int:
    s = 0
    while n:
        n, r = divmod(n, base)
        s += r
    return s


@pytest.mark.parametrize("fanout", [2, 3, 8])
def test_merge_policy_keeps_part_count_logarithmic(tmp_path, fanout):
    n = 300
    run = RunDir.create(tmp_path / "run", merge_fanout=fanout)
    levels = int(np.ceil(np.log(n + 1) / np.log(fanout)))
    for k in range(1, n + 1):
        run.append("ticks", make_table(TICKS, k - 1, 1))
        run.flush()
        count = len(part_files(run.path, "ticks"))
        # Parts behave like the digits of k in base `fanout`: one part per unit of each digit.
        assert count == base_digit_sum(k, fanout)
        assert count <= (fanout - 1) * levels
    assert ids(read_stream(run.path, "ticks")) == list(range(n))
    assert not list((run.path / PARTS_DIR / "ticks").glob("*.tmp"))
    run.close()
    assert ids(read_stream(run.path, "ticks")) == list(range(n))


def test_full_parts_are_never_rewritten(tmp_path):
    run = RunDir.create(tmp_path / "run", flush_rows=20, merge_fanout=2)
    for k in range(6):
        run.append("ticks", make_table(TICKS, 20 * k, 20))  # each append flushes a full part
    assert part_files(run.path, "ticks") == [f"part-{k:06d}.arrow" for k in range(1, 7)]
    # Small parts still merge among themselves, after the full ones.
    for k in range(4):
        run.append("ticks", make_table(TICKS, 120 + k, 1))
        run.flush()
    names = part_files(run.path, "ticks")
    assert names[:6] == [f"part-{k:06d}.arrow" for k in range(1, 7)]
    assert names[6:] == ["part-000007-000010.arrow"]
    assert ids(read_stream(run.path, "ticks")) == list(range(124))


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 30), st.booleans()), max_size=40),
    st.integers(1, 40),
    st.integers(2, 5),
)
def test_any_append_and_flush_sequence_reads_back_in_order(steps, flush_rows, fanout):
    with tempfile.TemporaryDirectory() as d:
        run = RunDir.create(Path(d) / "run", flush_rows=flush_rows, merge_fanout=fanout)
        n = 0
        for rows, flush in steps:
            run.append("ticks", make_table(TICKS, n, rows))
            n += rows
            if flush:
                run.flush()
        run.flush()
        assert ids(read_stream(run.path, "ticks")) == list(range(n))
        run.close()
        assert ids(read_stream(run.path, "ticks")) == list(range(n))
        assert not (run.path / PARTS_DIR).exists()


def test_parts_left_by_a_crash_mid_merge_are_read_once(tmp_path):
    run = RunDir.create(tmp_path / "run", merge_fanout=2)
    parts = run.path / PARTS_DIR / "ticks"
    run.append("ticks", make_table(TICKS, 0, 3))
    run.flush()
    saved = (parts / "part-000001.arrow").read_bytes()
    run.append("ticks", make_table(TICKS, 3, 2))
    run.flush()
    assert part_files(run.path, "ticks") == ["part-000001-000002.arrow"]
    # As if killed after the merged part replaced in but before the merged-away ones went.
    (parts / "part-000001.arrow").write_bytes(saved)
    (parts / "part-000003.arrow.tmp").write_bytes(b"half an arrow file")
    assert ids(read_stream(run.path, "ticks")) == list(range(5))


def test_read_stream_names_what_is_missing(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        read_stream(tmp_path / "nope", "ticks")
    run = RunDir.create(tmp_path / "run")
    run.close()
    with pytest.raises(DataError, match="detections.parquet"):
        read_stream(run.path, "detections")
    (run.path / "ticks.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match="ticks"):
        read_stream(run.path, "ticks")


def test_read_stream_of_an_unflushed_open_run_is_empty_with_schema(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.append("labels", make_table(STREAM_SCHEMAS["labels"], 0, 2))
    for stream in STREAMS:
        table = read_stream(run.path, stream)
        assert table.num_rows == 0
        assert table.schema.equals(STREAM_SCHEMAS[stream])


# -- json / yaml -----------------------------------------------------------------


def test_json_and_yaml_round_trip(tmp_path):
    run = RunDir.create(tmp_path / "run")
    obj = {"seed": 7, "symbol": "BTC-USD", "sigma": 0.5, "bands": [1, 2], "note": "€"}
    run.write_json("stats.json", {**obj, "n": np.int64(3), "x": np.array([0.25, 0.5])})
    run.write_yaml("config.yaml", obj)
    assert json.loads((run.path / "stats.json").read_text("utf-8")) == {
        **obj, "n": 3, "x": [0.25, 0.5]
    }
    assert yaml.safe_load((run.path / "config.yaml").read_text("utf-8")) == obj
    assert list(yaml.safe_load((run.path / "config.yaml").read_text("utf-8"))) == list(obj)
    run.write_json("stats.json", {"replaced": True})
    assert json.loads((run.path / "stats.json").read_text("utf-8")) == {"replaced": True}


@pytest.mark.parametrize(
    ("writer", "name", "bad"),
    [
        ("write_json", "stats.json", {"x": object()}),
        ("write_json", "stats.json", {"x": float("nan")}),
        ("write_yaml", "config.yaml", {"x": object()}),
    ],
)
def test_failed_serialisation_leaves_the_old_file_intact(tmp_path, writer, name, bad):
    run = RunDir.create(tmp_path / "run")
    getattr(run, writer)(name, {"old": 1})
    before = (run.path / name).read_bytes()
    with pytest.raises(SinkError, match=name):
        getattr(run, writer)(name, bad)
    assert (run.path / name).read_bytes() == before
    assert sorted(os.listdir(run.path)) == sorted([PARTS_DIR, name])


def test_failed_file_write_leaves_the_old_file_intact(tmp_path):
    run = RunDir.create(tmp_path / "run")
    run.write_json("stats.json", {"old": 1})
    (run.path / "stats.json.tmp").mkdir()  # the temp file cannot be opened
    with pytest.raises(SinkError, match="stats.json"):
        run.write_json("stats.json", {"new": 2})
    assert json.loads((run.path / "stats.json").read_text()) == {"old": 1}


@pytest.mark.parametrize("name", ["", "..", "sub/stats.json", "/tmp/stats.json"])
def test_file_names_must_be_plain(tmp_path, name):
    run = RunDir.create(tmp_path / "run")
    with pytest.raises(SinkError, match="plain file name"):
        run.write_json(name, {})


# -- crash safety ----------------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    sys.path.insert(0, sys.argv[3])
    from test_rundir import make_table
    from trapsim.store.rundir import STREAM_SCHEMAS, RunDir

    run = RunDir.create(sys.argv[1], flush_rows=64, merge_fanout=3)
    rng = np.random.default_rng(int(sys.argv[2]))
    ticks = labels = 0
    print("ready", flush=True)
    while True:
        k = int(rng.integers(1, 3000))
        run.append("ticks", make_table(STREAM_SCHEMAS["ticks"], ticks, k))
        ticks += k
        if rng.random() < 0.3:
            run.append("labels", make_table(STREAM_SCHEMAS["labels"], labels, 1))
            labels += 1
        if rng.random() < 0.5:
            run.flush()
            print(ticks, labels, flush=True)
        if rng.random() < 0.002:
            run.close()
            print("closed", flush=True)
            break
    """
)


@pytest.mark.parametrize("seed", range(10))
def test_sigkill_at_any_moment_keeps_every_flushed_row(tmp_path, seed):
    rng = np.random.default_rng(100 + seed)
    path = tmp_path / "run"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), str(seed), str(Path(__file__).parent)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.02, 0.5))
        child.send_signal(signal.SIGKILL)
        lines = child.stdout.read().split()
    finally:
        child.kill()
        child.wait()
    numbers = [line for line in lines if line != "closed"]
    flushed_ticks = int(numbers[-2]) if numbers else 0
    flushed_labels = int(numbers[-1]) if numbers else 0

    for f in path.rglob("*.parquet"):
        pq.read_table(f)  # no corrupt file under a final name
    got_ticks = ids(read_stream(path, "ticks"))
    got_labels = ids(read_stream(path, "labels"))
    assert len(got_ticks) >= flushed_ticks
    assert got_ticks == list(range(len(got_ticks)))
    assert len(got_labels) >= flushed_labels
    assert got_labels == list(range(len(got_labels)))
    for stream in STREAMS:
        assert read_stream(path, stream).schema.equals(STREAM_SCHEMAS[stream])
