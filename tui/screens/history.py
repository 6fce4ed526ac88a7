"""The history screen: every run ftmon started, with its exact command, outcome, reason, parent.

Read from the history database (the same rows `ftmon history` prints). From here a person copies
a run's command (as it ran, ready to paste into a shell), replays a run, or diffs two runs.
"""

from __future__ import annotations

import difflib
import time
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from supervisor.history import RunRecord
from supervisor.plan import shell_command
from supervisor.recipe import RecipeError, recipe_from_yaml

if TYPE_CHECKING:
    from tui.app import FtmonApp

STATUS_STYLES = {"finished": "green", "failed": "red", "killed": "red", "paused": "yellow"}


def command_of(rec: RunRecord) -> str:
    """The run's command as it ran, ready to paste (secrets read from the shell's own env)."""
    return shell_command(list(rec.argv), rec.env, rec.cwd or ".")


def run_diff(a: RunRecord, b: RunRecord) -> Text:
    """What differs between two runs: command and recipe, as a coloured unified diff."""
    left = [f"command: {command_of(a)}", *a.recipe_yaml.splitlines()]
    right = [f"command: {command_of(b)}", *b.recipe_yaml.splitlines()]
    out = Text()
    for line in difflib.unified_diff(left, right, a.id, b.id, lineterm="", n=1):
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        out.append(line + "\n", style=style)
    return out if out.plain else Text(f"{a.id} and {b.id} ran the same command and recipe.")


def started(ts: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


class HistoryScreen(Screen[None]):
    """See the module docstring."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy", "Copy command"),
        Binding("r", "replay", "Replay"),
        Binding("d", "diff", "Diff (mark, then pick)"),
        Binding("escape,h,q", "back", "Back"),
    ]

    DEFAULT_CSS = """
    HistoryScreen #runs { height: 1fr; }
    HistoryScreen #detail-box { height: 14; border: round $primary-lighten-2; padding: 0 1; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.records: list[RunRecord] = []
        self.marked: str | None = None
        self.copied: str = ""  # the last command copied (what the clipboard was given)

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
        table.add_columns("run", "parent", "#", "status", "reason", "started")
        self.query_one("#detail-box").border_title = "command"
        self.reload()
        table.focus()

    def reload(self) -> None:
        """Read the runs again (newest first)."""
        table = self.query_one(DataTable)
        table.clear()
        self.records = self.ftmon.history.runs()
        for rec in self.records:
            reason = rec.end_reason or rec.reason_started
            table.add_row(
                Text(rec.id),
                Text(rec.parent_id or "-"),
                str(rec.attempt),
                Text(rec.status, style=STATUS_STYLES.get(rec.status, "")),
                Text(reason if len(reason) <= 60 else reason[:59] + "…"),
                started(rec.started_at),
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
        detail = self.query_one("#detail", Static)
        if rec is None:
            detail.update(Text("no runs yet: launch one with o on the main screen"))
            return
        text = Text(command_of(rec) + "\n\n", style="bold")
        text.append(f"outcome: {rec.status}")
        if rec.returncode is not None or rec.signal:
            text.append(f" (exit {rec.returncode}, signal {rec.signal})")
        text.append(f"\nreason: {rec.end_reason or '-'}\n")
        text.append(f"started as: {rec.reason_started or 'first launch'}\n")
        if rec.changes:
            text.append(f"changes: {'; '.join(rec.changes)}\n")
        text.append(f"parent: {rec.parent_id or '-'}   log: {rec.log_path}\n", style="dim")
        if self.marked:
            text.append(f"marked for diff: {self.marked} (d on another run shows the diff)")
        detail.update(text)

    def action_copy(self) -> None:
        rec = self.current()
        if rec is None:
            return
        self.copied = command_of(rec)
        self.app.copy_to_clipboard(self.copied)
        self.notify(f"copied the command of {rec.id}")

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
        self.query_one("#detail-box").border_title = f"diff {other.id} -> {rec.id}"
        self.query_one("#detail", Static).update(run_diff(other, rec))

    @work(exclusive=True, group="replay")
    async def action_replay(self) -> None:
        rec = self.current()
        if rec is None:
            return
        try:
            recipe = recipe_from_yaml(rec.recipe_yaml, source=f"history:{rec.id}")
        except RecipeError as exc:
            self.notify(str(exc), title=f"cannot replay {rec.id}", severity="error")
            return
        run_id = await self.ftmon.launch(recipe)
        if run_id:
            self.notify(f"replaying {rec.id} as {run_id}")
            self.reload()

    def action_back(self) -> None:
        self.app.pop_screen()
