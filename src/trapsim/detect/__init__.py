"""Trap detection from price and volume, HF mode from detections, scoring, levels and trend.

- :class:`TrapDetector` finds the five ``TRAPS.md`` trap types online or in batches;
  :func:`detect_table` runs it over a tick or candle table; :func:`hf_mode` gives HF
  activations of its detections.
- :func:`score`, :func:`pr_curve` and :func:`write_pr_html` judge detections against
  labels by the ``TRAPS.md`` rule.
- :func:`levels` gives swings, Fibonacci levels and trend per timeframe.
"""

from trapsim.detect.detector import (
    DEFAULT_MIN_CONFIDENCE,
    TRAP_TYPES,
    TrapDetector,
    detect_table,
    detections_table,
    hf_mode,
)
from trapsim.detect.levels import levels
from trapsim.detect.scoring import pr_curve, score, write_pr_html

__all__ = [
    "DEFAULT_MIN_CONFIDENCE",
    "TRAP_TYPES",
    "TrapDetector",
    "detect_table",
    "detections_table",
    "hf_mode",
    "levels",
    "pr_curve",
    "score",
    "write_pr_html",
]
