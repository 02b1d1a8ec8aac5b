"""The interface every price source of the path engine implements."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True, slots=True)
class BaseChunk:
    """Consecutive 1-second ticks of the untouched (trap-free) market.

    All arrays have shape ``(n,)``: ``ts`` int64 ns UTC, one second apart;
    ``price`` float64 last price (quote currency); ``volume`` float64 traded
    volume in the second (base units); ``regime`` int8 code into the source's
    ``regime_names``.
    """

    ts: np.ndarray
    price: np.ndarray
    volume: np.ndarray
    regime: np.ndarray

    def __len__(self) -> int:
        return len(self.ts)


class Market(Protocol):
    """A source of base ticks: synthetic process or replayed file."""

    symbol: str
    regime_names: tuple[str, ...]

    def next_chunk(self, n: int) -> BaseChunk | None:
        """The next ``n`` ticks (fewer at the end of a finite source), or ``None`` when exhausted.

        The output depends only on the source's configuration, its seed and the
        sequence of ``n`` requested, never on wall time.
        """
        ...
