"""`trapsim replay`: a recorded Binance stream through the live adapter, over a local venue."""

from __future__ import annotations

import asyncio
import bisect
import time
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from trapsim.core.errors import ConfigError
from trapsim.core.time import iso
from trapsim.feeds.binance import BinanceSpotAdapter, BookTop, Quote, Trade
from trapsim.feeds.venue import RecordedVenue

STATUS_HZ = 5


def parse_speed(text: str) -> float | None:
    """``--speed``: a factor > 0 on the recorded pace, or ``max`` (None: as fast as read).

    Raises
    ------
    ConfigError
        If it is neither.
    """
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = float("nan")
    if not speed > 0 or speed == float("inf"):
        raise ConfigError(f"--speed must be a number > 0 or 'max', got {text!r}")
    return speed


class _Tally:
    """Counts and the book-versus-bookTicker check of a replay, as events arrive."""

    def __init__(self) -> None:
        self.trades = self.quotes = self.tops = 0
        self.last_trade: Trade | None = None
        self.last_top: BookTop | None = None
        self._quote_ids: list[int] = []
        self._quotes: list[Quote] = []
        self._tops: list[BookTop] = []

    def add(self, event) -> None:
        if isinstance(event, Trade):
            self.trades += 1
            self.last_trade = event
        elif isinstance(event, Quote):
            self.quotes += 1
            self._quotes.append(event)
        else:
            self.tops += 1
            self.last_top = event
            self._tops.append(event)

    def agreement(self) -> tuple[int, int]:
        """Book tops equal / unequal to the last bookTicker at or before their update id
        (the bookTicker stream reports every change of the best levels)."""
        quotes = sorted(self._quotes, key=lambda q: q.update_id)
        ids = [q.update_id for q in quotes]
        agree = disagree = 0
        for top in self._tops:
            i = bisect.bisect_right(ids, top.update_id) - 1
            if i >= 0:
                q = quotes[i]
                same = (q.bid, q.bid_qty, q.ask, q.ask_qty) == (
                    top.bid, top.bid_qty, top.ask, top.ask_qty)
                agree += same
                disagree += not same
        return agree, disagree

    def status(self) -> Text:
        t, b = self.last_trade, self.last_top
        line = f"trades {self.trades:,}  quotes {self.quotes:,}  book updates {self.tops:,}"
        if t is not None:
            line = f"[bold]{iso(t.ts)}[/]  last {t.price:,.2f} ({t.taker})  " + line
        if b is not None:
            line += f"  book {b.bid:,.2f} / {b.ask:,.2f}"
        return Text.from_markup(line)


async def _replay(path: Path, speed: float | None, console: Console) -> tuple[_Tally, dict]:
    venue = RecordedVenue(path, speed=speed)
    port = await venue.start()
    adapter = BinanceSpotAdapter(ws_url=f"ws://127.0.0.1:{port}",
                                 rest_url=f"http://127.0.0.1:{port}")
    tally = _Tally()
    t0 = time.perf_counter()
    last = 0.0
    try:
        with Live(tally.status(), console=console, refresh_per_second=STATUS_HZ) as live:
            async for event in adapter.events():
                tally.add(event)
                now = time.perf_counter()
                if now - last > 1 / STATUS_HZ:
                    live.update(tally.status())
                    last = now
            live.update(tally.status())
    finally:
        await venue.stop()
    wall = time.perf_counter() - t0
    return tally, {"messages": len(venue.messages) + 1, "wall": wall,
                   "resyncs": adapter.stream.resyncs, "crossed": adapter.stream.book.crossed}


def replay_recording(path: Path, speed: float | None, console: Console) -> bool:
    """Serve ``path`` from a local Binance-protocol venue, consume it with the adapter and
    print what came through; returns whether the rebuilt book always agreed with the
    venue's best levels.

    Raises
    ------
    DataError
        If the recording is malformed.
    """
    tally, info = asyncio.run(_replay(path, speed, console))
    agree, disagree = tally.agreement()
    table = Table(title=f"replay of {path.name} through the Binance adapter", show_header=False)
    rows = [
        ("messages served", f"{info['messages']:,}"),
        ("trades", f"{tally.trades:,}"),
        ("best quotes (bookTicker)", f"{tally.quotes:,}"),
        ("book updates (depth diffs applied)", f"{tally.tops:,}"),
        ("book = venue best quotes (by update id)", f"{agree:,} of {agree + disagree:,}"),
        ("resyncs (sequence gaps)", str(info["resyncs"])),
        ("book crossed at the end", str(info["crossed"])),
        ("wall seconds", f"{info['wall']:.2f}"),
        ("events per wall second",
         f"{(tally.trades + tally.quotes + tally.tops) / info['wall']:,.0f}"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    console.print(table)
    return not disagree
