"""The feed of anomalies and actions, newest at the bottom, for all runs.

One entry per thing that happened, readable at a glance in a narrow side panel:

    15:36:05 #1 nan       grad_norm is nan at step 17 (line 6)
    15:36:05 #1 killed    signal 15: killed by ftmon:
                          rule nan

The time, the run and what happened stay in their own columns; a long message wraps under
itself, not under the time. Messages can quote log text, so every cell is a `Text` built from
plain strings, never markup.
"""

from __future__ import annotations

import time

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.widgets import RichLog

from supervisor.events import Severity
from tui.state import FeedItem
from tui.text import clean

SEVERITY_STYLES = {
    Severity.INFO: "",
    Severity.WARNING: "yellow",
    Severity.ERROR: "bold red",
    Severity.CRITICAL: "bold white on red",
}


def feed_line(item: FeedItem) -> Text:
    """The entry as one line of text (what the feed shows, without its columns)."""
    line = Text(f"{time.strftime('%H:%M:%S', time.localtime(item.ts))} ", style="dim")
    line.append(clean(item.who or item.run_id), style="cyan")
    line.append(" ")
    style = SEVERITY_STYLES.get(item.severity, "")
    if item.tag:
        line.append(clean(item.tag), style=f"bold {style}".strip())
        line.append(" ")
    line.append(clean(item.text), style=style)
    return line


def feed_entry(item: FeedItem) -> RenderableType:
    """The entry in columns: time, run, then what happened (wrapping under itself)."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True, style="dim")
    grid.add_column(no_wrap=True, style="cyan")
    grid.add_column(ratio=1, overflow="fold")
    style = SEVERITY_STYLES.get(item.severity, "")
    what = Text(style=style)
    if item.tag:
        what.append(clean(item.tag), style="bold")
        what.append(" ")
    what.append(clean(item.text))
    clock = time.strftime("%H:%M:%S", time.localtime(item.ts))
    grid.add_row(Text(clock), Text(clean(item.who or item.run_id)), what)
    return grid


class Feed(RichLog):
    """Anomalies and actions as they happen; the newest stays in view."""

    DEFAULT_CSS = """
    Feed { height: 1fr; scrollbar-size-vertical: 1; scrollbar-gutter: stable; overflow-x: hidden; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(markup=False, highlight=False, wrap=True, id=id, min_width=20)
        self.items: list[FeedItem] = []

    def add(self, items: list[FeedItem]) -> None:
        if not items:
            return
        for item in items:
            self.items.append(item)
            self.write(feed_entry(item), expand=True)
        # RichLog scrolls to the end it knew when writing; a layout pass in between (a run
        # selected, the tree grown) can leave the newest entry's last lines below the box.
        self.call_after_refresh(self.scroll_end, animate=False)
