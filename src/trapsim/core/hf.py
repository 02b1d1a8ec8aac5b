"""HF mode: clusters of traps (TRAPS.md, "HF mode"; pinned down in docs/labels.md).

HF mode switches on at the first trap time ``t`` with at least ``min_traps``
trap times in ``(t - window, t]``, stays on while each next trap comes within
``window`` of the previous one, and ends ``window`` after the last trap. The
simulator feeds it injected traps (ground truth); the detector its detections.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from trapsim.core.errors import ConfigError
from trapsim.core.time import NS


@dataclass(slots=True)
class HFTracker:
    """Streaming HF mode over trap times given in increasing order.

    Parameters
    ----------
    min_traps : int
        Traps within ``window_ns`` that switch HF mode on (TRAPS.md default 3).
    window_ns : int
        The window, ns (TRAPS.md default 5 min).

    Raises
    ------
    ConfigError
        If ``min_traps < 1`` or ``window_ns <= 0``.
    """

    min_traps: int = 3
    window_ns: int = 300 * NS
    _recent: deque = field(default_factory=deque)
    _active: dict | None = None

    def __post_init__(self) -> None:
        if self.min_traps < 1:
            raise ConfigError(f"hf_min_traps must be >= 1, got {self.min_traps}")
        if self.window_ns <= 0:
            raise ConfigError(f"hf_window must be > 0, got {self.window_ns} ns")

    @property
    def active(self) -> bool:
        """Whether HF mode is on after the last trap or time seen."""
        return self._active is not None

    @property
    def current(self) -> dict | None:
        """The open activation (``start_ts``, scheduled ``end_ts``, ``trap_count``, ``types``)."""
        return self._active

    def advance(self, now_ns: int) -> list[dict]:
        """Move the clock to ``now_ns``; returns the activation that ended by then, if any."""
        if self._active is not None and now_ns >= self._active["end_ts"]:
            done, self._active = self._active, None
            return [done]
        return []

    def add(self, ts_ns: int, trap_type: str) -> tuple[list[dict], bool]:
        """Feed one trap.

        Returns
        -------
        (ended, switched_on) : (list of dict, bool)
            Activations that ended before this trap, and whether this trap
            switched HF mode on. Activation dicts have ``start_ts``, ``end_ts``
            (int ns), ``trap_count`` and ``types`` (list of str).
        """
        ended = self.advance(ts_ns)
        self._recent.append((ts_ns, trap_type))
        while self._recent[0][0] <= ts_ns - self.window_ns:
            self._recent.popleft()
        if self._active is not None:
            self._active["trap_count"] += 1
            self._active["types"].append(trap_type)
            self._active["end_ts"] = ts_ns + self.window_ns
            return ended, False
        if len(self._recent) >= self.min_traps:
            self._active = {
                "start_ts": ts_ns,
                "end_ts": ts_ns + self.window_ns,
                "trap_count": len(self._recent),
                "types": [t for _, t in self._recent],
            }
            return ended, True
        return ended, False

    def close(self) -> list[dict]:
        """End of stream: the open activation, with its scheduled end."""
        done, self._active = self._active, None
        return [done] if done is not None else []


def hf_activations(times_ns, types, min_traps: int = 3, window_ns: int = 300 * NS) -> list[dict]:
    """HF activations of sorted trap times and their types, by the rule of :class:`HFTracker`.

    Returns
    -------
    list of dict
        ``start_ts``, ``end_ts`` (ns), ``trap_count``, ``types`` per activation.
    """
    tracker = HFTracker(min_traps, window_ns)
    out: list[dict] = []
    for t, kind in zip(times_ns, types, strict=True):
        out += tracker.add(int(t), kind)[0]
    return out + tracker.close()
