"""The live view of ``orbitwin run`` in a terminal (rich): a :class:`~twin.runtime.fleet_view.Frame` redrawn in place.

Top to bottom: the header (sim time, tick, step, achieved speed, lag, events; a progress bar with the
time left when the run has a duration), the fleet counts, the worst satellites first with their limit
state and mode in colour, the last events, the MQTT counters and, always on screen, the connection
lines (broker, ``mosquitto_sub``, ``mosquitto_pub``). :func:`fit` sizes the table and the feed so the
whole view fits the terminal and nothing at the bottom is cropped.
"""

from __future__ import annotations

import math
from typing import TextIO

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from twin.runtime.fleet_view import COLUMNS, Frame, header_line, progress_text, summary_lines

ROW_STYLE = {"red": "bold red", "yellow": "yellow", "lost": "dim", "safe": "cyan", "nominal": ""}
LIMIT_STYLE = {"red": "bold red", "yellow": "bold yellow", "green": "green"}
MODE_STYLE = {"nominal": "green", "safe": "bold cyan", "lost": "dim"}
SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "dim"}
COUNT_STYLE = {"yellow": "bold yellow", "red": "bold red", "safe": "bold cyan", "lost": "bold magenta"}


def fit(height: int, width: int, f: Frame, rows_wanted: int, feed_wanted: int) -> tuple[int, int]:
    """(satellite rows, event lines) that fit ``height`` lines besides the rest of frame ``f``.

    At least five satellites before any event; the feed gets at most ``feed_wanted`` lines.
    """
    fixed = 1 + (1 if f.progress else 0) + len(summary_lines(f.summary)) + 2 + len(f.mqtt)
    fixed += (1 + sum(max(1, math.ceil(len(line) / max(width, 1))) for line in f.connection)) if f.connection else 0
    free = max(0, height - fixed - 1)  # the last line stays for the cursor
    feed = min(feed_wanted, max(0, free - min(rows_wanted, 5) - 1))
    rows = min(rows_wanted, max(0, free - (feed + 1 if feed else 0)))
    return rows, feed


def _counts(line: str) -> Text:
    """A counts line with the non-zero yellow, red, safe and lost counts in colour."""
    text = Text()
    words = line.split("  ")
    for j, word in enumerate(words):
        name, _, value = word.rpartition(" ")
        style = COUNT_STYLE.get(name, "") if value not in ("0", "") else ""
        text.append(word, style=style)
        if j < len(words) - 1:
            text.append("  ")
    return text


def _table(f: Frame) -> Table:
    t = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, padding=(0, 1), header_style="bold")
    for j, col in enumerate(COLUMNS):
        t.add_column(col, justify="left" if j < 3 else "right", no_wrap=True)
    for state, cells in f.rows:
        name, mode, limit, *rest = cells
        t.add_row(Text(name, style=ROW_STYLE[state]), Text(mode, style=MODE_STYLE.get(mode, "")),
                  Text(limit, style=LIMIT_STYLE.get(limit, "")), *rest, style=ROW_STYLE[state] if state != "nominal" else None)
    return t


def _progress(f: Frame) -> RenderableType:
    assert f.progress is not None
    grid = Table.grid(padding=(0, 1))
    grid.add_column(width=40)
    grid.add_column(no_wrap=True)
    grid.add_row(ProgressBar(total=1.0, completed=f.progress[0], width=40), progress_text(f.progress))
    return grid


def live_renderable(f: Frame, events_total: int) -> Group:
    """Frame ``f`` as rich renderables, top to bottom (``events_total``: the feed's title count)."""
    parts: list[RenderableType] = [Text.assemble(("Orbitwin  ", "bold"), header_line(f), no_wrap=True, overflow="ellipsis")]
    if f.progress:
        parts.append(_progress(f))
    parts += [_counts(line) for line in summary_lines(f.summary)]
    parts.append(_table(f))
    if f.feed:
        parts.append(Text(f"events (last {len(f.feed)} of {events_total})", style="bold"))
        parts += [Text.assemble(f"{e.t_s:10.1f} s  {e.sat:<17} ", (f"{e.severity:<8} ", SEVERITY_STYLE.get(e.severity, "")),
                                e.text, no_wrap=True, overflow="ellipsis") for e in f.feed]
    parts += [Text(line, no_wrap=True, overflow="ellipsis") for line in f.mqtt]
    if f.connection:
        parts.append(Text("connect (copy and paste)", style="bold reverse"))
        parts += [Text(line, style="bold" if j else "", overflow="fold") for j, line in enumerate(f.connection)]
    return Group(*parts)


class LiveScreen:
    """A rich ``Live`` on ``out``, redrawn in place on each :meth:`show` (no background thread)."""

    def __init__(self, out: TextIO) -> None:
        self.console = Console(file=out, highlight=False, soft_wrap=False)
        self.live: Live | None = None

    @property
    def size(self) -> tuple[int, int]:
        """(height, width) of the terminal, in lines and columns."""
        return self.console.size.height, self.console.size.width

    def show(self, renderable: RenderableType) -> None:
        if self.live is None:
            self.live = Live(renderable, console=self.console, auto_refresh=False, transient=False,
                             vertical_overflow="crop")
            self.live.start(refresh=True)
        else:
            self.live.update(renderable, refresh=True)

    def stop(self) -> None:
        """Leave the last frame on screen and give the terminal back."""
        live, self.live = self.live, None
        if live is not None:
            live.stop()

    def print(self, text: str, style: str = "") -> None:
        self.console.print(Text(text, style=style), soft_wrap=True)
