"""The live log of one run: only the lines on screen are read and drawn.

The file side is `supervisor.reading.logindex.LogIndex` (byte offsets of line starts, text on
demand);
this widget is a Line-API `ScrollView` whose virtual height is the number of lines, so a log of
millions of lines costs what one screen costs. Indexing runs in slices in a worker thread, so
the first screen appears after the first slice and a person can scroll while the rest is read.

Log text is data, never markup: each line becomes a `rich.text.Text` built from the plain
string, so `[bold red]` or `[@click=app.quit]` in a log shows literally and does nothing.
ANSI codes were removed by the tail sanitiser; other control characters are shown as `�`.

Follow mode keeps the end of the log in view as it grows; scrolling up stops it, End resumes it.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import ClassVar

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import work
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.worker import get_current_worker

from supervisor.events import Severity
from supervisor.reading.logindex import CHUNK, LogIndex
from tui.text import clean

POLL_SECS = 0.25  # how often a followed file is checked for growth
TAIL_LINES = 200  # lines read from the end of a log that is still being indexed
NOTIFY_SECS = 0.25  # while indexing, how often the view redraws with the lines found so far

MARK_STYLES = {
    Severity.INFO: Style(color="cyan"),
    Severity.WARNING: Style(color="black", bgcolor="yellow"),
    Severity.ERROR: Style(color="white", bgcolor="red"),
    Severity.CRITICAL: Style(color="white", bgcolor="red", bold=True),
}
GUTTER_STYLE = Style(dim=True)
HIT_STYLE = Style(reverse=True)
EMPTY_NOTE = "nothing printed yet: waiting for the run's first line"


def display_text(line: str) -> Text:
    """A log line as a Text: literal (no markup), tabs expanded, control characters visible."""
    return Text(clean(line.expandtabs(8)).replace("\n", "\ufffd"), no_wrap=True, end="")


class LogView(ScrollView, can_focus=True):
    """Lines of a log file, drawn on demand, with anomaly marks, follow mode and search."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end", "follow", "Follow", show=False),
        Binding("home", "top", "Top", show=False),
        Binding("n", "search_next", "Next match", show=False),
        Binding("N", "search_previous", "Previous match", show=False),
    ]

    DEFAULT_CSS = """
    LogView {
        background: $surface;
        overflow-x: auto;
        overflow-y: scroll;
    }
    """

    follow: reactive[bool] = reactive(True)

    class Grew(Message):
        """The log gained lines; `done` when the whole file as it is now is indexed. A newer
        one replaces an unhandled older one for the same view, so bursts cost one redraw."""

        def __init__(self, view: LogView, index: LogIndex, done: bool) -> None:
            super().__init__()
            self.view = view
            self.index = index
            self.done = done

        def can_replace(self, message: Message) -> bool:
            return isinstance(message, LogView.Grew) and message.view is self.view

    class SearchDone(Message):
        """A search ended: `lineno` (0-based) of the match, or None."""

        def __init__(self, needle: str, lineno: int | None) -> None:
            super().__init__()
            self.needle = needle
            self.lineno = lineno

    def __init__(
        self, path: str | Path | None = None, *, poll: bool = True, id: str | None = None
    ) -> None:
        super().__init__(id=id)
        self.index: LogIndex | None = None
        self.marks: dict[int, Severity] = {}  # 1-based line number -> severity
        self.needle = ""
        self.hit: int | None = None  # 0-based line of the current search match
        self._poll = poll
        self._tail: list[str] | None = None  # the file's last lines, shown until it is indexed
        self._widest = 0  # widest line drawn so far (cells): how far scrolling right goes
        self._path = Path(path) if path is not None else None
        self.indexed = asyncio.Event()  # set once the whole file as it was is indexed

    @property
    def path(self) -> Path | None:
        return self._path

    @property
    def line_count(self) -> int:
        return len(self.index) if self.index is not None else 0

    def on_mount(self) -> None:
        if self._path is not None:
            self.open(self._path)

    def on_unmount(self) -> None:
        if self.index is not None:
            self.index.close()

    def open(self, path: str | Path | None, marks: dict[int, Severity] | None = None) -> None:
        """Show `path` (None shows nothing) from its end, following."""
        if self.index is not None:
            self.index.close()
        self._path = Path(path) if path is not None else None
        self.index = LogIndex(self._path) if self._path is not None else None
        self.marks = dict(marks or {})
        self.hit = None
        self.follow = True
        self.indexed = asyncio.Event()
        self._tail = self.index.tail(TAIL_LINES) if self.index is not None else None
        self._widest = 0
        self.virtual_size = Size(0, 0)
        self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()
        if self.index is not None:
            self._keep_indexing(self.index)

    def set_marks(self, marks: dict[int, Severity]) -> None:
        self.marks = dict(marks)
        self.refresh()

    @work(thread=True, exclusive=True, group="logview-index")
    def _keep_indexing(self, index: LogIndex) -> None:
        """Index the file slice by slice in a thread, so the UI draws and scrolls meanwhile;
        then poll for growth. The UI hears of it at most every NOTIFY_SECS (and at the end)."""
        worker = get_current_worker()
        generation = index.generation
        told = 0.0
        while not worker.is_cancelled:
            try:
                added = index.refresh(max_bytes=CHUNK)
                caught_up = index.size >= _file_size(index.path)
            except (OSError, ValueError):
                return  # the file was closed under us: the view moved on
            changed = bool(added) or index.generation != generation
            generation = index.generation
            now = time.monotonic()
            if (changed and now - told >= NOTIFY_SECS) or (caught_up and (changed or not told)):
                self.post_message(self.Grew(self, index, done=caught_up))
                told = now
            if caught_up:
                if not self._poll:
                    return
                time.sleep(POLL_SECS)

    def on_log_view_grew(self, message: Grew) -> None:
        if message.view is not self or message.index is not self.index:
            return  # a slice of a file this view no longer shows
        count = self.line_count
        self.virtual_size = Size(self._widest, count)
        if message.done:
            self.indexed.set()
            self._tail = None
        elif self.follow:
            self._tail = message.index.tail(TAIL_LINES)  # the end may have moved on
        if self.follow:
            self.scroll_end(animate=False, immediate=True, x_axis=False)
        self.refresh()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        # Growth never moves scroll_y, and a resize clamps it to the (new) end; so a step up
        # that leaves the end can only be the person scrolling back.
        if new_value < old_value and new_value < self.max_scroll_y and self.follow:
            self.follow = False
        super().watch_scroll_y(old_value, new_value)

    def action_follow(self) -> None:
        self.follow = True
        self.scroll_end(animate=False, immediate=True, x_axis=False)

    def action_top(self) -> None:
        self.follow = False
        self.scroll_home(animate=False, immediate=True)

    def go_to(self, lineno: int) -> None:
        """Put 0-based line `lineno` in view (a third from the top) and stop following."""
        self.follow = False
        self.scroll_to(y=max(0, lineno - self.size.height // 3), animate=False, immediate=True)
        self.refresh()

    def search(self, needle: str, backwards: bool = False) -> int | None:
        """Find `needle` from the current match (or the top of the screen), going on from the
        other end of the log when that end is reached; returns the line."""
        self.needle = needle
        if self.index is None or not needle:
            self.hit = None
            self.refresh()
            return None
        if self.hit is None:
            start = int(self.scroll_y) if not backwards else int(self.scroll_y) + self.size.height
        else:
            start = self.hit - 1 if backwards else self.hit + 1
        found = self.index.find(needle, max(0, start), backwards=backwards)
        if found is None and self.line_count:
            # Past the end (or the top): go on from the other end, as `less` does. Following a
            # run, the screen is the log's end: the NaN printed earlier is above it.
            found = self.index.find(needle, self.line_count - 1 if backwards else 0, backwards)
        if found is not None:
            self.hit = found
            self.go_to(found)
        self.post_message(self.SearchDone(needle, found))
        return found

    def action_search_next(self) -> None:
        if self.needle:
            self.search(self.needle)

    def action_search_previous(self) -> None:
        if self.needle:
            self.search(self.needle, backwards=True)

    @property
    def showing_tail(self) -> bool:
        """Following a log whose index is not complete yet: its last lines are shown from a
        read of the file's end, without line numbers until the index catches up."""
        return self._tail is not None and self.follow and not self.indexed.is_set()

    def _tail_shown(self) -> list[str]:
        return (self._tail or [])[-max(1, self.size.height) :]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self.showing_tail:
            lines = self._tail_shown()
            if y >= len(lines):
                return Strip.blank(width, self.rich_style)
            digits = len(str(max(self.line_count, 1)))
            gutter = Segment(f"{'…':>{digits}}  ", GUTTER_STYLE)
            body = Strip(display_text(lines[y]).render(self.app.console))
            return self._compose_line(Strip([gutter]), body, width)
        lineno = int(self.scroll_y) + y
        index = self.index
        if index is not None and y == 0 and not len(index) and self.indexed.is_set():
            # A trainer can load for a minute before its first line: say so, not a blank box.
            note = Text(EMPTY_NOTE, style="dim", no_wrap=True, end="")
            return Strip(note.render(self.app.console)).crop_extend(0, width, self.rich_style)
        if index is None or lineno >= len(index):
            return Strip.blank(width, self.rich_style)
        gutter_width = len(str(max(len(index), 1)))
        mark = self.marks.get(lineno + 1)
        gutter_style = MARK_STYLES[mark] if mark is not None else GUTTER_STYLE
        sign = "▶" if mark is not None else " "
        gutter = Segment(f"{lineno + 1:>{gutter_width}}{sign}", gutter_style)
        text = display_text(index.line(lineno))
        if mark is not None and mark >= Severity.WARNING:
            text.stylize(Style(color="red" if mark >= Severity.ERROR else "yellow"))
        if lineno == self.hit and self.needle:
            for m in re.finditer(re.escape(self.needle), text.plain, re.IGNORECASE):
                text.stylize(HIT_STYLE, m.start(), m.end())
        body = Strip(text.render(self.app.console))
        return self._compose_line(Strip([gutter, Segment(" ")]), body, width)

    def _compose_line(self, gutter: Strip, body: Strip, width: int) -> Strip:
        """The gutter stays put; the text scrolls sideways. Only lines that were drawn widen
        the scroll range, so a long log is never measured as a whole."""
        full = gutter.cell_length + body.cell_length
        if full > self._widest:
            self._widest = full
            self.call_after_refresh(self._widen)
        left = int(self.scroll_x)
        room = max(0, width - gutter.cell_length)
        return gutter + body.crop_extend(left, left + room, self.rich_style)

    def _widen(self) -> None:
        if self.virtual_size.width < self._widest:
            self.virtual_size = Size(self._widest, self.virtual_size.height)

    def visible_text(self) -> list[str]:
        """The lines on screen as the screen shows them (secrets hidden, controls visible), as
        plain text, for tests and the e2e check."""
        if self.index is None:
            return []
        if self.showing_tail:
            raw = self._tail_shown()
        else:
            top = int(self.scroll_y)
            raw = [
                self.index.line(i) for i in range(top, min(top + self.size.height, self.line_count))
            ]
        return [display_text(line).plain for line in raw]


def _file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
