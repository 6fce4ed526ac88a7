"""The feed of anomalies and actions, newest at the bottom, for all runs.

Messages can quote log text, so each line is a `Text` built from plain strings, never markup.
"""

from __future__ import annotations

import time

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
    clock = time.strftime("%H:%M:%S", time.localtime(item.ts))
    line = Text(f"{clock} ", style="dim")
    line.append(clean(item.who or item.run_id), style="cyan")
    line.append(" ")
    line.append(clean(item.text), style=SEVERITY_STYLES.get(item.severity, ""))
    return line


class Feed(RichLog):
    """Anomalies and actions as they happen."""

    DEFAULT_CSS = """
    Feed { height: 1fr; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(markup=False, highlight=False, wrap=True, id=id, min_width=20)
        self.items: list[FeedItem] = []

    def add(self, items: list[FeedItem]) -> None:
        for item in items:
            self.items.append(item)
            self.write(feed_line(item))
