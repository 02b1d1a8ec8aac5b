"""Hand-built tick paths whose σ, ranges and volumes are known exactly.

The background is a square wave in log price: every even minute at ``LO``, every
odd minute at ``HI = LO + A``. Its 1-minute log returns alternate ``+A``/``−A``, so
σ (docs/labels.md: sample std of the 60 returns of the 61 minute closes before a
move's minute) is exactly ``SIGMA = A·sqrt(60/59)`` wherever those closes are
background, and every prior range is ``[LO, HI]``. Volume is 1 per tick unless a
segment says otherwise. Segments overwrite the log price (and volume) of 1-second
ticks; tick ``i`` is second ``i`` of the path.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa

from trapsim.detect import TrapDetector

NS = 1_000_000_000
T0 = 1_736_121_600 * NS  # 2025-01-06T00:00:00Z
A = 1e-3
SIGMA = A * math.sqrt(60 / 59)
LO = math.log(100.0)
HI = LO + A


def rows(table: pa.Table) -> list[dict]:
    """A detections table as dicts with int ns times."""
    return table.cast(
        pa.schema(
            [
                (f.name, pa.int64() if pa.types.is_timestamp(f.type) else f.type)
                for f in table.schema
            ]
        )
    ).to_pylist()


class Path:
    """A 1-second tick path under construction."""

    def __init__(self, minutes: int):
        sec = np.arange(minutes * 60)
        self.y = LO + A * ((sec // 60) % 2)
        self.volume = np.ones(len(sec))

    @property
    def ts(self) -> np.ndarray:
        return T0 + np.arange(len(self.y), dtype=np.int64) * NS

    @property
    def price(self) -> np.ndarray:
        return np.exp(self.y)

    def ramp(self, i0: int, i1: int, y1: float, volume: float = 1.0) -> int:
        """Ticks ``i0+1 … i1`` go linearly from tick ``i0``'s price to ``y1``; returns ``i1``."""
        k = np.arange(1, i1 - i0 + 1)
        self.y[i0 + 1 : i1 + 1] = self.y[i0] + (y1 - self.y[i0]) * k / (i1 - i0)
        self.volume[i0 + 1 : i1 + 1] = volume
        return i1

    def hold(self, i0: int, i1: int, volume: float = 1.0) -> int:
        """Ticks ``i0+1 … i1`` stay at tick ``i0``'s price; returns ``i1``."""
        self.y[i0 + 1 : i1 + 1] = self.y[i0]
        self.volume[i0 + 1 : i1 + 1] = volume
        return i1

    def flag(self, i: int, y: float) -> None:
        """One tick at ``y``, mid-minute so that minute closes (and σ) stay background."""
        assert 0 < i % 60 < 59
        self.y[i] = y

    def detect(self, **kwargs) -> list[dict]:
        """All detections of the path (every reading that meets a definition by default),
        times as int ns."""
        kwargs.setdefault("min_confidence", 0.0)
        return rows(TrapDetector(**kwargs).detect(self.ts, self.price, self.volume))

    def first(self, i0: int, condition) -> int:
        """First tick after ``i0`` whose log price meets ``condition``."""
        return i0 + 1 + int(np.argmax(condition(self.y[i0 + 1 :])))


def liquidity_grab(mag=5.5, volume=5.0, rise=10, retrace=0.75, back=90, stay=0, flag=True):
    """An up spike of ``mag`` σ over ``rise`` s on ``volume`` × volume from an even
    minute's ``LO``, then down to ``retrace`` of it over ``back`` s (and ``stay`` s
    there), then back to the square wave. With ``flag`` an earlier one-tick high 30 σ up
    keeps the spike short of the prior 240-minute extreme.

    Returns (path, start tick, peak tick).
    """
    path = Path(200)
    if flag:
        path.flag(20 * 60 + 30, HI + 30 * SIGMA)
    start = 150 * 60 + 10
    peak = path.ramp(start - 1, start - 1 + rise, LO + mag * SIGMA, volume)
    end = path.ramp(peak, peak + back, LO + (1 - retrace) * mag * SIGMA)
    end = path.hold(end, end + stay)
    path.ramp(end, end + 60, LO)
    path.y[end + 61 :] = LO + A * ((np.arange(end + 61, len(path.y)) // 60) % 2)
    return path, start, peak


def stop_hunt(pierce=2.0, volume=3.5, beyond=10, back=3.5, ret=20, flag=False):
    """A down stop hunt of the square wave's low ``LO``: from an odd minute (``HI``,
    inside) down ``pierce`` σ beyond ``LO`` in 6 s on ``volume`` ×, ``beyond`` s below
    ``LO``, then back up to ``back`` σ inside over ``ret`` s. With ``flag`` an earlier
    one-tick low 30 σ down sets the prior 240-minute low.

    Returns (path, start tick, peak tick).
    """
    path = Path(200)
    if flag:
        path.flag(20 * 60 + 30, LO - 30 * SIGMA)
    start = 151 * 60 + 10
    peak = path.ramp(start - 1, start + 5, LO - pierce * SIGMA, volume)
    end = path.ramp(peak, start + beyond - 1, LO - (pierce - 0.1) * SIGMA)
    end = path.ramp(end, end + ret, LO + back * SIGMA)
    end = path.hold(end, end + 60)
    path.ramp(end, end + 120, HI)
    return path, start, peak


def bull_trap(brk=5.0, volume=2.5, hold=300, hold_volume=1.0, past=4.5, fall=300):
    """A bull trap of the square wave's high ``HI``: from an odd minute (at ``HI``) up
    ``brk`` σ beyond it in 90 s on ``volume`` ×, held above it (volume ``hold_volume``)
    until ``hold`` s after the start, back through it and down to ``past`` σ below it
    over ``fall`` s.

    Returns (path, start tick, tick of the fall back through ``HI``).
    """
    path = Path(220)
    start = 151 * 60 + 10
    peak = path.ramp(start - 1, start + 89, HI + brk * SIGMA, volume)
    end = path.ramp(peak, peak + 30, HI + (brk - 1) * SIGMA, hold_volume)
    end = path.hold(end, start + hold - 10, hold_volume)
    end = path.ramp(end, end + 20, HI - 0.5 * SIGMA)
    t_fall = path.first(start, lambda y: y <= HI)
    end = path.ramp(end, end + fall, HI - past * SIGMA)
    end = path.hold(end, end + 60)
    path.ramp(end, end + 600, LO)
    return path, start, t_fall


def fibonacci_trap(swing=31.0, ratio=0.618, over=2.0, touch=60, rev=4.5, rev_time=120):
    """A down Fibonacci trap: the square wave steps up mid-minute 80 so that its top is
    ``swing`` σ above ``LO`` (the swing runs 70 minutes, from the step to minute 151);
    from there the price falls over 10 min to the ``ratio`` level of the swing, through
    it to ``over`` σ beyond over ``touch`` s, then back up ``rev`` σ over ``rev_time`` s.

    Returns (path, start tick, peak tick).
    """
    path = Path(320)
    path.y[80 * 60 + 30 :] += swing * SIGMA - A
    start = 151 * 60
    top = path.y[start]
    level = math.log(math.exp(top) - ratio * (math.exp(top) - math.exp(LO)))
    end = path.ramp(start, start + 600, level + 0.01 * SIGMA)
    peak = path.ramp(end, end + touch, level - over * SIGMA)
    end = path.ramp(peak, peak + rev_time, level - (over - rev) * SIGMA)
    path.y[end + 1 :] = path.y[end]
    return path, start, peak
