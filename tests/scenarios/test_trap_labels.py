"""End to end: every label the simulator writes meets docs/labels.md on its own ticks.

Runs ``python -m trapsim run`` for a few seeds (48 market hours each, in parallel)
and measures the run directory with the independent checker in trap_checker.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from .trap_checker import TYPES, check_label, check_no_overlap, hf_activations

NS = 10**9
RUNS = {
    "seed-11": ["--seed", "11"],
    "seed-12": ["--seed", "12"],
    "seed-13": ["--seed", "13"],
    "seed-14-f0.6": ["--seed", "14", "--frequency", "0.6"],
    "seed-15-symbols": ["--seed", "15", "--symbols", "BTC-USD,ETH-USD,USDT-USD,BTC-ETH",
                        "--depth-every", "0"],
}
TIME_COLUMNS = ("start_ts", "peak_ts", "end_ts")


@dataclass
class Run:
    out: Path
    returncode: int
    stderr: str

    def require(self) -> None:
        assert self.returncode == 0, f"trapsim run -> exit {self.returncode}\n{self.stderr[-3000:]}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Run]:
    base = tmp_path_factory.mktemp("trap_runs")
    procs = {}
    for name, extra in RUNS.items():
        out = base / name
        cmd = [
            sys.executable,
            "-m",
            "trapsim",
            "run",
            "--duration",
            "48",
            "--sleep",
            "0",
            *extra,
            "--out",
            str(out),
        ]
        procs[name] = (
            out,
            subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
        )
    done = {}
    for name, (out, proc) in procs.items():
        try:
            _, err = proc.communicate(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
            err = f"timed out after 300 s\n{err}"
        done[name] = Run(out, proc.returncode, err)
    return done


def _ints(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).combine_chunks().cast(pa.int64()).to_numpy()


def read_ticks(run: Run) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Per symbol: ts (int64 ns), price, volume."""
    run.require()
    t = pq.read_table(run.out / "ticks.parquet", columns=["ts", "symbol", "price", "volume"])
    out = {}
    for sym in pc.unique(t.column("symbol")).to_pylist():
        part = t.filter(pc.equal(t.column("symbol"), sym))
        out[sym] = (
            _ints(part, "ts"),
            part.column("price").to_numpy(),
            part.column("volume").to_numpy(),
        )
    return out


def read_traps(run: Run) -> list[dict]:
    """Trap labels with int ns times and params as JSON text, ordered by (start_ts, id)."""
    run.require()
    t = pq.read_table(run.out / "labels.parquet")
    rows = t.drop_columns(list(TIME_COLUMNS)).to_pylist()
    for name in TIME_COLUMNS:
        for row, v in zip(rows, _ints(t, name), strict=True):
            row[name] = int(v)
    traps = [r for r in rows if r["kind"] == "trap"]
    return sorted(traps, key=lambda r: (r["start_ts"], r["id"]))


@pytest.fixture(scope="module")
def loaded(runs):
    return {name: (read_ticks(run), read_traps(run)) for name, run in runs.items()}


@pytest.mark.parametrize("name", list(RUNS))
def test_ticks_are_one_second_apart(runs, name):
    for sym, (ts, price, volume) in read_ticks(runs[name]).items():
        assert len(ts) > 0, sym
        assert np.all(np.diff(ts) == NS), sym
        assert np.all(price > 0) and np.all(volume >= 0), sym


@pytest.mark.parametrize("name", list(RUNS))
def test_every_label_meets_its_definition(loaded, name):
    ticks, traps = loaded[name]
    assert traps, "a 48-hour run injected no trap"
    failures = []
    for lab in traps:
        assert isinstance(json.loads(lab["params"]), dict)
        if lab["symbol"] not in ticks:
            failures.append(f"label {lab['id']}: no ticks for symbol {lab['symbol']!r}")
            continue
        for v in check_label(*ticks[lab["symbol"]], lab):
            failures.append(f"label {lab['id']} {lab['type']} {lab['direction']}: {v}")
    assert not failures, f"{len(failures)} violations:\n" + "\n".join(failures[:40])


@pytest.mark.parametrize("name", list(RUNS))
def test_labels_do_not_overlap(loaded, name):
    _, traps = loaded[name]
    assert check_no_overlap(traps) == []


@pytest.mark.parametrize("name", list(RUNS))
def test_hf_activations_follow_from_the_labels(runs, loaded, name):
    # HF mode follows the headline symbol (BTC-USD) of a run of several.
    traps = [r for r in loaded[name][1] if r["symbol"] == "BTC-USD"]
    t = pq.read_table(runs[name].out / "hf_activations.parquet")
    got = [
        {"start_ts": int(a), "end_ts": int(b), "trap_count": int(n), "types": json.loads(ty)}
        for a, b, n, ty in zip(
            _ints(t, "start_ts"),
            _ints(t, "end_ts"),
            t.column("trap_count").to_pylist(),
            t.column("types").to_pylist(),
            strict=True,
        )
    ]
    want = hf_activations([r["start_ts"] for r in traps], [r["type"] for r in traps])
    assert got == want


def test_all_five_types_occur(loaded):
    seen = {lab["type"] for _, traps in loaded.values() for lab in traps}
    assert seen == set(TYPES)
