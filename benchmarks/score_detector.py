"""The trap detector's scores on held-out runs, through the live path (`trapsim run --detect`).

Prints, per configuration, the TRAPS.md score of the detections the live detector
wrote (the same rows `trapsim detect` gives for the finished run):

- synthetic default 30-day runs of the held-out seeds 2000-2004 (never used while
  developing the detector), pooled and per seed: per-type and macro F1, median
  latency;
- the same seeds at --volatility 0.5 and 2.0: macro F1;
- the real BTC files (2025 and 2024-08) replayed with traps: recall per type;
  and with --frequency 0: false alarms per day on the real background.

Usage: .venv/bin/python benchmarks/score_detector.py [--raw ../shared/data/raw]
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa

from trapsim.detect.scoring import score
from trapsim.store.rundir import read_stream

SEEDS = (2000, 2001, 2002, 2003, 2004)
FILES = ("BTC_USDT-1m.feather", "BTC_USDT-1m_2024-08.feather")


def run(out: Path, *args) -> tuple[pa.Table, pa.Table, float]:
    """Labels, live detections and market days of one `trapsim run --detect`."""
    cmd = [sys.executable, "-m", "trapsim", "run", "--sleep", "0", "--detect", "--out", str(out)]
    subprocess.run([*cmd, *map(str, args)], check=True, capture_output=True)
    days = json.loads((out / "stats.json").read_text())["market_hours"] / 24
    return read_stream(out, "labels"), read_stream(out, "detections"), days


def pooled(runs: list[tuple[pa.Table, pa.Table, float]]) -> dict:
    """Per type, the label, detection and match counts summed over runs scored one by one."""
    totals: dict = {}
    for lab, det, days in runs:
        for kind, t in score(lab, det, days=days)["types"].items():
            acc = totals.setdefault(kind, dict.fromkeys(("labels", "detections", "matched"), 0))
            for key in acc:
                acc[key] += t[key]
    return totals


def f1(t: dict) -> float:
    n = t["labels"] + t["detections"]
    return 2 * t["matched"] / n if n else float("nan")


def main() -> None:
    raw = Path(sys.argv[sys.argv.index("--raw") + 1]) if "--raw" in sys.argv else (
        Path(__file__).resolve().parents[2] / "shared" / "data" / "raw")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for vol in (1.0, 0.5, 2.0):
            runs, macro, latency = [], [], []
            for seed in SEEDS:
                lab, det, days = run(tmp / f"s{seed}v{vol}", "--duration", 720, "--seed", seed,
                                     "--volatility", vol)
                s = score(lab, det, days=days)
                runs.append((lab, det, days))
                macro.append(s["macro"]["f1"])
                latency.append(s["all"]["latency_median_s"])
                if vol == 1.0:
                    per_type = " ".join(f"{k} {t['f1']:.3f}" for k, t in s["types"].items())
                    print(f"seed {seed}: macro F1 {s['macro']['f1']:.3f}  {per_type}"
                          f"  median latency {s['all']['latency_median_s']:.0f} s")
            tot = pooled(runs)
            per = {k: f1(t) for k, t in tot.items()}
            print(f"volatility {vol}: pooled macro F1 {sum(per.values()) / len(per):.3f}"
                  f" (per seed {min(macro):.3f}-{max(macro):.3f}); pooled per type "
                  + " ".join(f"{k} {v:.3f}" for k, v in per.items())
                  + f"; per-seed median latency {min(latency):.0f}-{max(latency):.0f} s")
        for name in FILES:
            lab, det, days = run(tmp / f"{name}.traps", "--replay", raw / name, "--seed", 2000)
            s = score(lab, det, days=days)
            recall = " ".join(f"{k} {t['recall']:.3f} ({t['labels']})"
                              for k, t in s["types"].items())
            print(f"{name} with traps: recall {recall}")
            _, det, days = run(tmp / f"{name}.bare", "--replay", raw / name, "--frequency", 0,
                               "--seed", 2000)
            print(f"{name} without traps: {det.num_rows} detections in {days:.1f} days,"
                  f" {det.num_rows / days:.1f} false alarms per day")


if __name__ == "__main__":
    main()
