"""The history screen: every run ftmon started, with its exact command, outcome, reason, parent.

Read from the history database (the same rows `ftmon history` prints). From here a person copies
a run's command (as it ran, ready to paste into a shell), replays a run, or diffs two runs.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from supervisor.recipe.model import RecipeError
from supervisor.runs.records import command_line, diff_runs, outcome
from supervisor.runs.supervise import LaunchRefused
from supervisor.store.history import RunRecord
from tui.text import clean, plain

if TYPE_CHECKING:
    from tui.app import FtmonApp

STATUS_STYLES = {"finished": "green", "failed": "red", "killed": "red", "paused": "yellow"}


def command_of(rec: RunRecord) -> str:
    """The run's command as it ran, ready to paste (`ftmon history` prints the same)."""
    return command_line(rec)


def run_diff(a: RunRecord, b: RunRecord) -> Text:
    """What differs between two runs: exactly the lines `ftmon diff A B` prints (one function,
    `diff_runs`, computes both), section titles in bold."""
    out = Text()
    for line in diff_runs(a, b).lines():
        out.append(clean(line) + "\n", style="" if line.startswith((" ", "a: ", "b: ")) else "bold")
    return out


def short_command(argv: tuple[str, ...] | list[str]) -> str:
    """The command abbreviated for the table (the detail pane shows it exactly): the program's
    base name, and long arguments (an inline script) cut in the middle."""
    parts = [Path(argv[0]).name] if argv else []
    for arg in argv[1:]:
        one = " ".join(arg.split())
        parts.append(one if len(one) <= 30 else f"{one[:14]}…{one[-10:]}")
    return shlex.join(parts)


def started(ts: float) -> str:
    return time.strftime("%m-%d %H:%M", time.localtime(ts))


class HistoryScreen(Screen[None]):
    """See the module docstring."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy", "Copy command"),
        Binding("r", "replay", "Replay"),
        Binding("d", "diff", "Diff (mark, then pick)"),
        Binding("escape,h,q", "back", "Back"),
    ]

    DEFAULT_CSS = """
    HistoryScreen #runs { height: 1fr; border: round $primary-lighten-2; }
    HistoryScreen #detail-box { height: 14; border: round $primary-lighten-2; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[RunRecord] = []
        self.marked: str | None = None
        self.copied: str = ""  # the last command copied (what the clipboard was given)
        self.diffed: str | None = None  # the row whose diff the detail pane shows

    @property
    def ftmon(self) -> FtmonApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield DataTable(id="runs", cursor_type="row", zebra_stripes=True)
        with VerticalScroll(id="detail-box"):
            yield Static("", id="detail")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.border_title = "history"
        # The command goes last: it is the longest and the detail pane shows it whole, so at
        # 100 columns the outcome and reason stay in view (the parent is in the detail too).
        table.add_columns("run", "#", "status", "started", "reason", "command")
        self.query_one("#detail-box").border_title = "command"
        self.reload()
        self.call_after_refresh(self.show_detail)
        table.focus()

    def reload(self) -> None:
        """Read the runs again (newest first)."""
        table = self.query_one(DataTable)
        table.clear()
        self.records = self.ftmon.history.runs()
        for rec in self.records:
            reason = rec.end_reason or rec.reason_started
            reason = "" if reason == rec.status else reason  # not `finished  finished`
            table.add_row(
                plain(rec.id),
                str(rec.attempt),
                plain(rec.status, style=STATUS_STYLES.get(rec.status, "")),
                started(rec.started_at),
                plain(reason if len(reason) <= 36 else reason[:35] + "…"),
                plain(short_command(rec.argv)),
                key=rec.id,
            )
        self.show_detail()

    def current(self) -> RunRecord | None:
        table = self.query_one(DataTable)
        if not self.records or table.cursor_row is None:
            return None
        row = min(max(table.cursor_row, 0), len(self.records) - 1)
        return self.records[row]

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.show_detail()

    def show_detail(self) -> None:
        rec = self.current()
        found = self.query("#detail")
        if not found:
            return  # not mounted yet; the first row highlight shows it
        detail = found.first(Static)
        if rec is not None and self.diffed == rec.id:
            return  # a row highlight that arrives after `d` leaves the diff of this row shown
        self.diffed = None
        self.query_one("#detail-box").border_title = "command"
        if rec is None:
            detail.update(Text("no runs yet: launch one with o on the main screen"))
            return
        text = plain(command_of(rec) + "\n\n", style="bold")
        # How it ended, worded as `ftmon show` words it (runs/records.py).
        text.append(clean(f"outcome: {outcome(rec.status, rec.end_reason)}"))
        if rec.signal:
            text.append(f" (signal {rec.signal})")
        elif rec.returncode is not None:
            text.append(f" (exit {rec.returncode})")
        text.append("\n")
        text.append(clean(f"started as: {rec.reason_started or 'first launch'}\n"))
        if rec.changes:
            text.append(clean(f"changes: {'; '.join(rec.changes)}\n"))
        text.append(clean(f"parent: {rec.parent_id or '-'}\nlog: {rec.log_path}\n"), style="dim")
        if self.marked:
            text.append(f"marked for diff: {self.marked} (d on another run shows the diff)")
        detail.update(text)

    def action_copy(self) -> None:
        rec = self.current()
        if rec is None:
            return
        self.copied = command_of(rec)
        self.app.copy_to_clipboard(self.copied)
        self.notify(f"copied the command of {rec.id}", markup=False)

    def action_diff(self) -> None:
        rec = self.current()
        if rec is None:
            return
        if self.marked is None or self.marked == rec.id:
            self.marked = rec.id
            self.show_detail()
            return
        other = self.ftmon.history.get(self.marked)
        self.marked = None
        if other is None:
            return
        self.diffed = rec.id  # shown until the cursor moves to another row
        self.query_one("#detail-box").border_title = f"diff {other.id} -> {rec.id}"
        self.query_one("#detail", Static).update(run_diff(other, rec))

    @work(exclusive=True, group="replay")
    async def action_replay(self) -> None:
        rec = self.current()
        if rec is None:
            return
        # As `ftmon replay RUN`: the same recipe, in the folder it ran in, a new lineage.
        try:
            run_id = await self.ftmon.supervisor.replay(rec.id)
        except (RecipeError, LaunchRefused) as exc:
            self.notify(
                clean(str(exc)), title=f"cannot replay {rec.id}", severity="error", markup=False
            )
            return
        self.notify(f"replaying {rec.id} as {run_id}", markup=False)
        self.reload()

    def action_back(self) -> None:
        self.app.pop_screen()
