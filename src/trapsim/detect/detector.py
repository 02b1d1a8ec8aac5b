"""The trap detector: the five ``TRAPS.md`` trap types from price and volume alone.

:class:`TrapDetector` is online and causal. :meth:`TrapDetector.update` takes one
tick and :meth:`TrapDetector.detect` a batch; both run the same compiled state
machine (:func:`trapsim.detect.kernel.run`) over the same state, so feeding a
stream tick by tick, in chunks or whole gives the same rows, and cutting it at any
time ``T`` gives exactly the rows with ``detected_at <= T``.

**What is detected.** Every threshold is the one of ``TRAPS.md``, measured as
``docs/labels.md`` measures labels (σ of the move's first minute from the 61 minute
closes before it, volume ×k against the 30 minutes before the move, prior ranges
to the second). A row is emitted on the first tick at which some reading of the
data meets a type's whole definition, its "what makes it a trap" end included, so
``detected_at`` is that tick and ``start`` the reading's first tick:

- ``liquidity_grab``: a tick that is the first at its extreme since a start 5–60 s
  back, 5–12 σ beyond that start's reference price on volume ×3, short of the prior
  240-minute extreme; from 60 s after the peak, the first of these readings (the
  shortest spike) to be 70 % retraced — unless it was already before 60 s (too fast)
  — completes it, at most 10 min after the peak.
- ``stop_hunt``: each break of the prior 30-minute range anchors a move; its start is
  the earliest point of the 2 minutes before the break lying below everything up to
  the break whose volume multiple up to the peak is ×2. Levels are that start's prior
  range extremes over 30–240 minutes; one completes the trap when the peak lies 1–4 σ
  beyond it, at most 120 s were spent beyond it, and the price is first back 3 σ
  inside it within 5 min of first crossing it.
- ``bull_trap`` / ``bear_trap``: each break of the prior 60-minute range opens a
  candidate (start: the lowest point of the 2 minutes before) whose levels — the
  prior range extremes over 60–240 minutes — are followed through their break, hold
  (2–20 min) and fall back; a fallen level whose peak was 2–8 σ beyond, with breakout
  volume ×1.5 and fading during the hold, completes the trap once the price is 4 σ
  past it within 30 min of the fall.
- ``fibonacci_trap``: a zigzag whose legs reverse at 4 σ. A leg that reverses within
  10 min of its extreme is a fake move from the swing end where it started; swing
  starts are searched 30–240 min back (points that are the swing's other extreme
  while its end stays its extreme, swing >= 15 σ), and the trap is complete when the
  leg's extreme is 1–3 σ past the swing's 0.618 or 0.786 retracement and no tick
  touched that level more than 3 min before the extreme.

A move that is a liquidity grab is reported as one only: its stop-hunt or Fibonacci
reading waits for the liquidity grab's decision (made at most 60 s after the peak)
and is emitted then, or dropped. On development seeds 1–10 every row emitted with
``min_confidence=0`` met its definition under the independent label checker of
``tests/scenarios/trap_checker.py``.

**Confidence and the reported rows.** Plain market paths meet the letter of the
definitions too: on a 30-day synthetic run without traps (``--frequency 0``, seed 31)
the definitions are met 1.3 (liquidity grab), 5.7 (stop hunt), 0.7 (bull), 0.7
(bear) and 3.7 (Fibonacci) times a day, against about 29, 11, 2.7, 2.4 and 1.9
injected traps a day. ``confidence`` ranks readings by how far inside the
definition their evidence lies: the mean, over the clauses tested, of a margin in
[0, 1] — for a band ``[lo, hi]`` 0 at an edge and 1 in its middle half; for a
limit "within ``T``" 1 at ``T/2`` or less; for a floor (volume ×k, swing >= 15 σ) 1
at twice the floor; for the 240-minute extreme of a liquidity grab 1 at 1 σ of room.
A type's rows below :data:`DEFAULT_MIN_CONFIDENCE` are not reported. Those floors
were chosen on development seeds 1–10 (30-day default runs) as round values on the
plateau of each type's F1 against the floor: 0.6 for liquidity grabs and 0.5 for stop
hunts; 0.85 for Fibonacci traps, whose natural readings outnumber the injected ones
and sit nearer the bounds (swings just over 15 σ, extremes right at the touch or the
reversal right after it); none for bull and bear traps, where no floor raised F1.
``min_confidence=0`` reports every reading that meets a definition.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from trapsim.core.errors import ConfigError, DataError
from trapsim.core.hf import hf_activations
from trapsim.core.schemas import HF_ACTIVATIONS, detections_table
from trapsim.core.time import NS, iso
from trapsim.detect import kernel as k

TRAP_TYPES = k.TYPES
"""The five trap types, in ``TRAPS.md`` order."""

DEFAULT_MIN_CONFIDENCE = {
    "liquidity_grab": 0.6,
    "stop_hunt": 0.5,
    "bull_trap": 0.0,
    "bear_trap": 0.0,
    "fibonacci_trap": 0.85,
}
"""Per type, the confidence below which a detection is not reported (see the module notes)."""

_MTF_NAMES = tuple(f"{m}m" if m < 60 else f"{m // 60}h" for m in k.MTF_MINUTES)
_EXTRA = {
    k.LIQUIDITY_GRAB: ("retrace", "rise_s", "room_sigma"),
    k.STOP_HUNT: ("lookback_min", "beyond_s", "back_s"),
    k.BULL_TRAP: ("lookback_min", "hold_s", "fall_s"),
    k.BEAR_TRAP: ("lookback_min", "hold_s", "fall_s"),
    k.FIBONACCI_TRAP: ("ratio", "swing_sigma", "swing_from"),
}
_TIMES = {
    k.LIQUIDITY_GRAB: (),
    k.STOP_HUNT: ("beyond_ts",),
    k.BULL_TRAP: ("break_ts", "fall_ts"),
    k.BEAR_TRAP: ("break_ts", "fall_ts"),
    k.FIBONACCI_TRAP: ("swing_start_ts", "touch_ts"),
}
_LEVEL_NAME = {k.LIQUIDITY_GRAB: "p0"}


def _num(x: float) -> float | None:
    return None if not math.isfinite(x) else float(f"{x:.10g}")


def _features(ri: np.ndarray, rf: np.ndarray) -> str:
    kind = int(ri[k.O_TYPE])
    feats = {
        "peak_ts": iso(int(ri[k.O_PEAK])),
        "end_ts": iso(int(ri[k.O_END])),
        "sigma": _num(rf[k.OF_SIGMA]),
        "magnitude": _num(rf[k.OF_MAG]),
        _LEVEL_NAME.get(kind, "level"): _num(rf[k.OF_LEVEL]),
    }
    if kind != k.FIBONACCI_TRAP:
        feats["volume_ratio"] = _num(rf[k.OF_VR])
    for name, slot in zip(_EXTRA[kind], (k.OF_A, k.OF_B, k.OF_C), strict=True):
        feats[name] = _num(rf[slot])
    for name, slot in zip(_TIMES[kind], (k.O_T2, k.O_T3), strict=False):
        feats[name] = iso(int(ri[slot]))
    n = len(k.MTF_MINUTES)
    feats["timeframes"] = {
        name: {"trend": _num(rf[k.OF_MTF + j]), "range": _num(rf[k.OF_MTF + n + j])}
        for j, name in enumerate(_MTF_NAMES)
    }
    return json.dumps(feats, separators=(",", ":"))


def _rows(oi: np.ndarray, of: np.ndarray, count: int, floor: np.ndarray) -> list[dict]:
    return [
        {
            "detected_at": int(oi[r, k.O_DETECTED]),
            "trap_type": TRAP_TYPES[int(oi[r, k.O_TYPE])],
            "direction": "up" if oi[r, k.O_DIR] > 0 else "down",
            "start": int(oi[r, k.O_START]),
            "confidence": float(of[r, k.OF_CONF]),
            "features": _features(oi[r], of[r]),
        }
        for r in range(count)
        if of[r, k.OF_CONF] >= floor[oi[r, k.O_TYPE]]
    ]


def _ns(ts) -> np.ndarray:
    if isinstance(ts, pa.ChunkedArray):
        ts = ts.combine_chunks()
    if isinstance(ts, pa.Array):
        if pa.types.is_timestamp(ts.type):
            ts = ts.cast(pa.timestamp("ns", tz=ts.type.tz)).cast(pa.int64())
        return np.asarray(ts.to_numpy(zero_copy_only=False), np.int64)
    arr = np.asarray(ts)
    if np.issubdtype(arr.dtype, np.datetime64):
        return arr.astype("datetime64[ns]").view(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise DataError(f"ts must be int64 ns or datetime64, got {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _floats(x, name: str, n: int) -> np.ndarray:
    if isinstance(x, pa.ChunkedArray | pa.Array):
        x = x.to_numpy(zero_copy_only=False)
    arr = np.ascontiguousarray(x, dtype=np.float64)
    if arr.shape != (n,):
        raise DataError(f"{name} has shape {arr.shape}, expected ({n},)")
    return arr


class TrapDetector:
    """Online, causal detector of the five ``TRAPS.md`` trap types.

    Feed ticks (any spacing of 1 s or more) or 1-minute candles in time order, one at
    a time with :meth:`update` or in batches with :meth:`detect`; both continue the
    same stream. For candles pass ``ts`` = the candle's open time (the ``CANDLES``
    schema), ``price`` = its close and ``high``/``low``; a detection's
    ``detected_at`` is then the open time of the candle that completed it, and the
    seconds-scale clauses (a 5–60 s spike, 120 s beyond a level) are only as sharp
    as one candle.

    Moves need σ, so none starts in the first 62 minutes of a stream (as for labels).
    The state is bounded (rings of 16,384 ticks and 512 minutes), so a stream may run
    forever.

    Parameters
    ----------
    min_confidence : float or mapping of str to float, optional
        Rows of a type with a lower ``confidence`` are not reported: one floor for
        all types, or one per type name (missing types: 0). Default
        :data:`DEFAULT_MIN_CONFIDENCE`; 0 reports every reading that meets a
        definition.

    Raises
    ------
    ConfigError
        If a floor is outside [0, 1] or names an unknown type.

    Notes
    -----
    ``features`` (JSON) holds, for every type: ``peak_ts`` and ``end_ts`` (ISO 8601;
    ``end_ts`` is the tick the definition was met, earlier than ``detected_at`` only
    for a reading that waited for a liquidity grab's decision), ``sigma`` (σ, log
    return units), ``magnitude`` (σ: the spike, the distance beyond the level, or the
    Fibonacci overshoot), ``volume_ratio`` (×, not for Fibonacci traps), and
    ``timeframes``: for 1m, 5m, 15m and 1h, ``trend`` (log return over the timeframe
    in σ·sqrt(minutes)) and ``range`` (high − low in σ) at ``detected_at``. Then per
    type: liquidity grab ``p0`` (reference price), ``retrace`` (share, at
    ``end_ts``), ``rise_s``, ``room_sigma`` (below the 240-minute extreme); stop hunt
    ``level`` (price), ``lookback_min``, ``beyond_s``, ``back_s`` (from the first tick
    beyond to ``end_ts``), ``beyond_ts``; bull/bear trap ``level``, ``lookback_min``,
    ``hold_s``, ``fall_s`` (fall to ``end_ts``), ``break_ts``, ``fall_ts``; Fibonacci
    trap ``level``, ``ratio``, ``swing_sigma``, ``swing_from`` (price),
    ``swing_start_ts``, ``touch_ts``. The swing ends at ``start``.

    Examples
    --------
    >>> det = TrapDetector()
    >>> table = det.detect(ts_ns, price, volume)          # doctest: +SKIP
    >>> rows = det.update(next_ts, next_price, next_vol)  # doctest: +SKIP
    """

    __slots__ = ("_state", "_oi", "_of", "_one", "_last_ts", "_floor")

    def __init__(self, min_confidence: float | Mapping[str, float] | None = None) -> None:
        if min_confidence is None:
            min_confidence = DEFAULT_MIN_CONFIDENCE
        if isinstance(min_confidence, Mapping):
            unknown = set(min_confidence) - set(TRAP_TYPES)
            if unknown:
                raise ConfigError(f"min_confidence: unknown trap types {sorted(unknown)}")
            floor = [float(min_confidence.get(t, 0.0)) for t in TRAP_TYPES]
        else:
            floor = [float(min_confidence)] * len(TRAP_TYPES)
        if not all(0.0 <= f <= 1.0 for f in floor):
            raise ConfigError(f"min_confidence must lie in [0, 1], got {min_confidence}")
        self._floor = np.array(floor)
        self._state = k.new_state()
        self._oi = np.zeros((k.OUT_CAP, k.O_INTS), np.int64)
        self._of = np.zeros((k.OUT_CAP, k.O_FLOATS))
        self._one = (np.zeros(1, np.int64), np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1))
        self._last_ts: int | None = None

    @property
    def last_ts(self) -> int | None:
        """Time (ns) of the last tick fed, ``None`` before the first."""
        return self._last_ts

    def _feed(self, ts, close, high, low, volume) -> list[dict]:
        rows: list[dict] = []
        i = 0
        n = len(ts)
        while i < n:
            i, count = k.run(ts, close, high, low, volume, i, *self._state, self._oi, self._of)
            if count:
                rows += _rows(self._oi, self._of, count, self._floor)
        return rows

    def update(
        self,
        ts: int,
        price: float,
        volume: float,
        high: float | None = None,
        low: float | None = None,
    ) -> list[dict]:
        """Feed one tick (or candle) and return the detections it completes.

        Parameters
        ----------
        ts : int
            Tick time, ns since the epoch UTC; later than the previous tick.
        price : float
            Last price (a candle's close), > 0.
        volume : float
            Volume of the tick or candle, >= 0.
        high, low : float, optional
            A candle's high and low (both or neither); default ``price``.

        Returns
        -------
        list of dict
            Rows with the ``DETECTIONS`` columns, at or over the confidence floors:
            ``detected_at`` and ``start`` in int ns, ``trap_type``, ``direction``,
            ``confidence``, ``features`` (JSON).

        Raises
        ------
        DataError
            If the tick is out of order or a value is not finite and positive.
        """
        ts = int(ts)
        hi = price if high is None else high
        lo = price if low is None else low
        if (high is None) != (low is None):
            raise DataError("give both high and low, or neither")
        if self._last_ts is not None and ts <= self._last_ts:
            raise DataError(
                f"tick at {iso(ts)} is not after the previous one at {iso(self._last_ts)}"
            )
        if not (0.0 < lo <= price <= hi < math.inf) or not (0.0 <= volume < math.inf):
            raise DataError(
                f"bad tick at {iso(ts)}: price={price} high={hi} low={lo} volume={volume}"
            )
        t1, c1, h1, l1, v1 = self._one
        t1[0] = ts
        c1[0] = price
        h1[0] = hi
        l1[0] = lo
        v1[0] = volume
        self._last_ts = ts
        _, count = k.run(t1, c1, h1, l1, v1, 0, *self._state, self._oi, self._of)
        return _rows(self._oi, self._of, count, self._floor) if count else []

    def feed(self, ts, price, volume, high=None, low=None) -> list[dict]:
        """Feed a batch of ticks (or candles) and return the detections they complete, as rows.

        Parameters
        ----------
        ts : array-like of int64 ns or datetime64, shape (n,)
            Strictly increasing, after any tick fed before.
        price, volume : array-like of float64, shape (n,)
            Last price (> 0) and volume (>= 0) of each tick or candle.
        high, low : array-like of float64, shape (n,), optional
            Candle highs and lows (both or neither), ``low <= price <= high``.

        Returns
        -------
        list of dict
            Rows as :meth:`update` gives them, in emission order.

        Raises
        ------
        DataError
            On out-of-order times, mismatched shapes or non-finite values; the
            state is left as it was.
        """
        t = np.ascontiguousarray(_ns(ts))
        n = len(t)
        close = _floats(price, "price", n)
        vol = _floats(volume, "volume", n)
        if (high is None) != (low is None):
            raise DataError("give both high and low, or neither")
        hi = close if high is None else _floats(high, "high", n)
        lo = close if low is None else _floats(low, "low", n)
        if n == 0:
            return []
        bad = np.flatnonzero(np.diff(t) <= 0)
        if len(bad):
            raise DataError(f"ts not strictly increasing at row {bad[0] + 1}")
        if self._last_ts is not None and t[0] <= self._last_ts:
            raise DataError(f"first tick at {iso(int(t[0]))} is not after the previous one")
        ok = (lo > 0) & (lo <= close) & (close <= hi) & np.isfinite(hi) & (vol >= 0)
        ok &= np.isfinite(vol)
        if not ok.all():
            row = int(np.flatnonzero(~ok)[0])
            raise DataError(
                f"bad tick at row {row}: price={close[row]} high={hi[row]} "
                f"low={lo[row]} volume={vol[row]}"
            )
        rows = self._feed(t, close, hi, lo, vol)
        self._last_ts = int(t[-1])
        return rows

    def detect(self, ts, price, volume, high=None, low=None) -> pa.Table:
        """:meth:`feed` a batch, returning the rows as a ``DETECTIONS`` table.

        Raises
        ------
        DataError
            As :meth:`feed`.
        """
        return detections_table(self.feed(ts, price, volume, high, low))


def detect_table(table: pa.Table) -> pa.Table:
    """Detections of a whole tick table (``TICKS``) or 1-minute candle table (``CANDLES``).

    Uses ``ts``, ``volume`` and ``price`` (ticks) or ``close``, ``high``, ``low``
    (candles) of a single symbol.

    Raises
    ------
    DataError
        If a needed column is missing or the data are invalid.
    """
    names = set(table.column_names)
    if {"ts", "volume"} - names or not ({"price"} <= names or {"close", "high", "low"} <= names):
        raise DataError(f"need ts, volume and price (or close, high, low); got {sorted(names)}")
    det = TrapDetector()
    if "price" in names:
        return det.detect(table["ts"], table["price"], table["volume"])
    return det.detect(table["ts"], table["close"], table["volume"], table["high"], table["low"])


def hf_mode(detections: pa.Table, min_traps: int = 3, window_ns: int = 300 * NS) -> pa.Table:
    """HF activations (``TRAPS.md`` HF mode) of detections, by their ``detected_at`` times.

    Parameters
    ----------
    detections : pyarrow.Table
        ``DETECTIONS`` rows in time order.
    min_traps, window_ns : int
        HF parameters (defaults 3 and 5 min), as in :class:`trapsim.core.hf.HFTracker`.

    Returns
    -------
    pyarrow.Table
        Schema ``HF_ACTIVATIONS``.
    """
    times = detections["detected_at"].cast(pa.int64()).to_numpy()
    order = np.argsort(times, kind="stable")
    kinds = detections["trap_type"].to_pylist()
    acts = hf_activations(times[order], [kinds[i] for i in order], min_traps, window_ns)
    ts_type = HF_ACTIVATIONS.field("start_ts").type
    return pa.table(
        {
            "start_ts": pa.array([a["start_ts"] for a in acts], pa.int64()).cast(ts_type),
            "end_ts": pa.array([a["end_ts"] for a in acts], pa.int64()).cast(ts_type),
            "trap_count": pa.array([a["trap_count"] for a in acts], pa.int64()),
            "types": pa.array([json.dumps(a["types"]) for a in acts], pa.string()),
        },
        schema=HF_ACTIVATIONS,
    )
