"""Scoring detections against ground-truth labels by the ``TRAPS.md`` rule.

A detection **matches** a label when ``trap_type`` and ``direction`` are equal and
``start_ts <= detected_at <= end_ts + 300 s``. Labels are taken in order of
``start_ts`` (then ``id``); each takes the earliest matching detection that no earlier
label took, so a label is matched at most once and a detection matches at most one
label. Precision, recall and F1 are computed per type and averaged over the five
types (macro); latency is ``detected_at − peak_ts`` of matched pairs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from trapsim.core.schemas import detections_table
from trapsim.core.time import NS, iso
from trapsim.detect.kernel import TYPES

GRACE_NS = 300 * NS
"""How long after a label's ``end_ts`` a detection still matches it."""


def _ints(table: pa.Table, name: str) -> np.ndarray:
    return table.column(name).cast(pa.int64()).to_numpy(zero_copy_only=False)


def _strs(table: pa.Table, name: str) -> np.ndarray:
    return np.asarray(table.column(name).to_pylist(), dtype=object)


def _match(lab_start, lab_end, lab_order, det_at):
    """Indices of the detection each label takes (-1 for none) by the rule above.

    ``det_at`` must be sorted; ``lab_order`` is the order labels choose in.
    """
    taken = np.zeros(len(det_at), bool)
    out = np.full(len(lab_start), -1, np.int64)
    for i in lab_order:
        j = int(np.searchsorted(det_at, lab_start[i], side="left"))
        last = lab_end[i] + GRACE_NS
        while j < len(det_at) and det_at[j] <= last:
            if not taken[j]:
                taken[j] = True
                out[i] = j
                break
            j += 1
    return out


def _pairs(labels: pa.Table, detections: pa.Table, keep: np.ndarray | None = None) -> dict:
    """Per type: label count, detection count, and (label row, detection row) matched pairs."""
    traps = (
        labels.filter(pc.equal(labels["kind"], "trap")) if "kind" in labels.column_names else labels
    )
    l_type = _strs(traps, "type")
    l_dir = _strs(traps, "direction")
    l_start = _ints(traps, "start_ts")
    l_end = _ints(traps, "end_ts")
    l_id = _ints(traps, "id") if "id" in traps.column_names else np.arange(len(traps))
    d_type = _strs(detections, "trap_type")
    d_dir = _strs(detections, "direction")
    d_at = _ints(detections, "detected_at")
    if keep is None:
        keep = np.ones(len(d_at), bool)
    out = {}
    for kind in TYPES:
        pairs = []
        n_lab = n_det = 0
        for direction in ("up", "down"):
            li = np.flatnonzero((l_type == kind) & (l_dir == direction))
            di = np.flatnonzero((d_type == kind) & (d_dir == direction) & keep)
            di = di[np.argsort(d_at[di], kind="stable")]
            order = np.lexsort((l_id[li], l_start[li]))
            got = _match(l_start[li], l_end[li], order, d_at[di])
            pairs += [(li[a], di[b]) for a, b in enumerate(got) if b >= 0]
            n_lab += len(li)
            n_det += len(di)
        out[kind] = (n_lab, n_det, pairs)
    other = int(np.sum(keep & ~np.isin(d_type, TYPES)))
    return {"types": out, "other_detections": other}


def _prf(n_lab: int, n_det: int, tp: int) -> tuple[float, float, float]:
    nan = float("nan")
    precision = tp / n_det if n_det else (nan if n_lab == 0 else 0.0)
    recall = tp / n_lab if n_lab else nan
    f1 = 2 * tp / (n_lab + n_det) if n_lab + n_det else nan
    return precision, recall, f1


def _nanmean(values: Iterable[float]) -> float:
    arr = np.asarray(list(values), float)
    return float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")


def _latency(seconds: np.ndarray) -> tuple[float, float]:
    if len(seconds) == 0:
        return float("nan"), float("nan")
    return float(np.median(seconds)), float(np.percentile(seconds, 90))


def score(labels: pa.Table, detections: pa.Table, *, days: float) -> dict:
    """Score detections against labels by the ``TRAPS.md`` rule.

    Parameters
    ----------
    labels : pyarrow.Table
        Ground truth with the ``LABELS`` columns; rows whose ``kind`` is not ``trap``
        are ignored.
    detections : pyarrow.Table
        Detector output with the ``DETECTIONS`` columns.
    days : float
        Length of the scored data in days, for false alarms per day.

    Returns
    -------
    dict
        ``types``: per trap type ``labels``, ``detections``, ``matched``,
        ``precision``, ``recall``, ``f1``, ``latency_median_s``, ``latency_p90_s``,
        ``false_alarms`` and ``false_alarms_per_day``. ``macro``: the mean over the
        five types of precision, recall, F1 and of the latency median and 90th
        percentile (types where a value is undefined are left out). ``all``: the same
        counts pooled over types, with micro precision/recall/F1 and the pooled
        latency median and 90th percentile. ``days``. Precision is 0 for a type
        with labels and no detections; a value is NaN when it is 0/0.
    """
    if days <= 0:
        raise ValueError(f"days must be > 0, got {days}")
    got = _pairs(labels, detections)
    l_peak = _ints(
        labels.filter(pc.equal(labels["kind"], "trap"))
        if "kind" in labels.column_names
        else labels,
        "peak_ts",
    )
    d_at = _ints(detections, "detected_at")
    types = {}
    all_lat = []
    tot_lab = tot_det = tot_tp = 0
    for kind, (n_lab, n_det, pairs) in got["types"].items():
        tp = len(pairs)
        lat = np.array([(d_at[b] - l_peak[a]) / NS for a, b in pairs], float)
        all_lat.append(lat)
        precision, recall, f1 = _prf(n_lab, n_det, tp)
        med, p90 = _latency(lat)
        types[kind] = {
            "labels": n_lab,
            "detections": n_det,
            "matched": tp,
            "precision": precision,
            "recall": recall,
            "f1": f1,
            "latency_median_s": med,
            "latency_p90_s": p90,
            "false_alarms": n_det - tp,
            "false_alarms_per_day": (n_det - tp) / days,
        }
        tot_lab += n_lab
        tot_det += n_det
        tot_tp += tp
    tot_det += got["other_detections"]
    macro = {
        name: _nanmean(t[name] for t in types.values())
        for name in ("precision", "recall", "f1", "latency_median_s", "latency_p90_s")
    }
    precision, recall, f1 = _prf(tot_lab, tot_det, tot_tp)
    med, p90 = _latency(np.concatenate(all_lat))
    pooled = {
        "labels": tot_lab,
        "detections": tot_det,
        "matched": tot_tp,
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "latency_median_s": med,
        "latency_p90_s": p90,
        "false_alarms": tot_det - tot_tp,
        "false_alarms_per_day": (tot_det - tot_tp) / days,
    }
    return {"types": types, "macro": macro, "all": pooled, "days": days}


def pr_curve(labels: pa.Table, detections: pa.Table, thresholds: np.ndarray | None = None) -> dict:
    """Precision and recall when only detections with ``confidence >= c`` are kept.

    Parameters
    ----------
    labels, detections : pyarrow.Table
        As for :func:`score`.
    thresholds : ndarray of float64, shape (k,), optional
        Confidence thresholds; default 0, 0.01, …, 1.

    Returns
    -------
    dict
        ``thresholds`` (list), ``types`` {type: {``precision``, ``recall``}} and
        ``macro`` {``precision``, ``recall``}, each a list aligned with the thresholds
        (matching is redone at every threshold; macro values average the types
        where they are defined).
    """
    if thresholds is None:
        thresholds = np.round(np.linspace(0.0, 1.0, 101), 2)
    conf = detections.column("confidence").to_numpy(zero_copy_only=False)
    curves = {kind: {"precision": [], "recall": []} for kind in TYPES}
    macro = {"precision": [], "recall": []}
    for c in thresholds:
        got = _pairs(labels, detections, conf >= c)["types"]
        ps, rs = [], []
        for kind, (n_lab, n_det, pairs) in got.items():
            precision, recall, _ = _prf(n_lab, n_det, len(pairs))
            if n_det == 0:
                precision = float("nan")
            curves[kind]["precision"].append(precision)
            curves[kind]["recall"].append(recall)
            ps.append(precision)
            rs.append(recall)
        macro["precision"].append(_nanmean(ps))
        macro["recall"].append(_nanmean(rs))
    return {"thresholds": [float(c) for c in thresholds], "types": curves, "macro": macro}


def write_pr_html(curve: dict, path: str | os.PathLike[str], title: str = "Trap detector") -> None:
    """Write a :func:`pr_curve` result as a self-contained plotly HTML page.

    One precision-recall line per type and one for the macro average; hovering a
    point shows its confidence threshold.
    """
    import plotly.graph_objects as go

    fig = go.Figure()
    series = [(kind, c) for kind, c in curve["types"].items()] + [("macro", curve["macro"])]
    for name, c in series:
        fig.add_trace(
            go.Scatter(
                x=c["recall"],
                y=c["precision"],
                mode="lines+markers",
                name=name,
                text=[f"confidence >= {t:.2f}" for t in curve["thresholds"]],
                line={"width": 4 if name == "macro" else 2},
                marker={"size": 4},
            )
        )
    fig.update_layout(
        title=f"{title}: precision-recall over confidence thresholds",
        xaxis={"title": "recall", "range": [0, 1.02]},
        yaxis={"title": "precision", "range": [0, 1.02]},
        template="plotly_white",
    )
    fig.write_html(os.fspath(path), include_plotlyjs=True, full_html=True)


def format_table(result: dict) -> str:
    """A plain-text table of a :func:`score` result (one row per type, macro, all)."""
    head = (
        f"{'type':<16}{'labels':>7}{'det':>7}{'match':>7}{'P':>7}{'R':>7}{'F1':>7}"
        f"{'lat_med':>9}{'lat_p90':>9}{'FA/day':>8}"
    )
    lines = [head]

    def row(name, r):
        counts = "".join(
            f"{r[c]:>7}" if c in r else f"{'':>7}" for c in ("labels", "detections", "matched")
        )
        fa = f"{r['false_alarms_per_day']:>8.2f}" if "false_alarms_per_day" in r else ""
        return (
            f"{name:<16}{counts}{r['precision']:>7.3f}{r['recall']:>7.3f}{r['f1']:>7.3f}"
            f"{r['latency_median_s']:>9.1f}{r['latency_p90_s']:>9.1f}{fa}"
        )

    for kind, r in result["types"].items():
        lines.append(row(kind, r))
    lines.append(row("macro", result["macro"]))
    lines.append(row("all", result["all"]))
    return "\n".join(lines)


def to_json(result: dict) -> str:
    """A :func:`score` or :func:`pr_curve` result as JSON (NaN written as null)."""

    def clean(x):
        if isinstance(x, dict):
            return {k: clean(v) for k, v in x.items()}
        if isinstance(x, list | tuple):
            return [clean(v) for v in x]
        if isinstance(x, float) and not np.isfinite(x):
            return None
        return x

    return json.dumps(clean(result), indent=2)


def _finite(x: float) -> float | None:
    return float(x) if np.isfinite(x) else None


class LiveScore:
    """Precision and recall of a detector running live, so far, by the ``TRAPS.md`` rule.

    At market time ``now`` a label is *decided* once no detection can match it
    any more (``end_ts + 300 s <= now``), and a detection once no open label can
    claim it (``detected_at`` before the ``start_ts`` of every undecided label);
    only decided ones are scored, so a number never counts a trap as missed
    that a detection may still catch. Once the stream has ended everything is
    decided and the result is :func:`score` of the whole run.

    Parameters
    ----------
    start_ns : int
        Market time the stream started, ns UTC (for false alarms per day).
    """

    def __init__(self, start_ns: int) -> None:
        self.start_ns = int(start_ns)
        self._labels: list[dict] = []
        self._detections: list[dict] = []

    def add_labels(self, labels: list[dict]) -> None:
        """Labels the run has written (as the injector gives them: int ns times)."""
        self._labels += [lb for lb in labels if lb.get("kind", "trap") == "trap"]

    def add_detections(self, rows: list[dict]) -> None:
        """Detection rows as :meth:`~trapsim.detect.detector.TrapDetector.feed` gives them."""
        self._detections += rows

    def report(self, now_ns: int, *, pending: Iterable[int] = (), ended: bool = False) -> dict:
        """The score of what is decided at ``now_ns`` (everything if ``ended``).

        Parameters
        ----------
        now_ns : int
            Market time of the newest tick fed to the detector, ns UTC.
        pending : iterable of int
            ``start_ts`` of the traps injected but not yet written (not ended).
        ended : bool
            The stream has ended: no detection is still to come.

        Returns
        -------
        dict
            ``as_of`` (ISO time), ``labels``, ``detections``, ``matched``,
            ``precision``, ``recall``, ``f1`` (pooled over types), ``macro``
            (``precision``, ``recall``, ``f1``) and ``per_type`` (the same per
            trap type, with counts); None where a value is 0/0.
        """
        if ended:
            labels, cut = self._labels, None
        else:
            labels = [lb for lb in self._labels if lb["end_ts"] + GRACE_NS <= now_ns]
            open_starts = [lb["start_ts"] for lb in self._labels
                           if lb["end_ts"] + GRACE_NS > now_ns]
            cut = min([*open_starts, *pending, now_ns + 1])
        dets = [d for d in self._detections if cut is None or d["detected_at"] < cut]
        table = pa.table({
            "id": pa.array([lb["id"] for lb in labels], pa.int64()),
            "type": pa.array([lb["type"] for lb in labels], pa.string()),
            "direction": pa.array([lb["direction"] for lb in labels], pa.string()),
            **{name: pa.array([lb[name] for lb in labels], pa.int64())
               for name in ("start_ts", "peak_ts", "end_ts")},
        })
        days = max(now_ns - self.start_ns, 1) / (86_400 * NS)
        result = score(table, detections_table(dets), days=days)
        counts = ("labels", "detections", "matched")
        rates = ("precision", "recall", "f1")
        return {
            "as_of": iso(now_ns),
            **{k: result["all"][k] for k in counts},
            **{k: _finite(result["all"][k]) for k in rates},
            "macro": {k: _finite(result["macro"][k]) for k in rates},
            "per_type": {
                kind: {**{k: t[k] for k in counts}, **{k: _finite(t[k]) for k in rates}}
                for kind, t in result["types"].items()
            },
        }
