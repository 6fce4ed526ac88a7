"""The main screen: runs by lineage, the selected run's live log, plots, gauges and the feed.

It is the controller of the app: each action (pause/resume, kill, relaunch, launch, history,
follow, search, quit) is a key here, shown in the footer and offered in the command palette,
and each one asks the `Supervisor` to act. What the supervisor then does comes back as bridge
messages (see tui/bridge.py), which the app folds into its `RunBook` and hands to `show_event`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input, Static, Tree

from supervisor.monitoring.monitor import BATCH_LINES
from supervisor.runs.executors.torchrun import RANKS_DIR, rank_log_paths
from tui.bridge import (
    ActionDone,
    AnomalySeen,
    MetricsArrived,
    ResourcesSampled,
    RunEventMessage,
    RunFinished,
    RunLaunched,
    RunWasPaused,
    RunWasRelaunched,
)
from tui.screens.confirm import ConfirmKill
from tui.state import FeedItem, RunView
from tui.text import clean
from tui.widgets.feed import Feed
from tui.widgets.gauges import Gauges
from tui.widgets.logview import LogView
from tui.widgets.plots import Plots
from tui.widgets.runs import RunsTree, node_run

if TYPE_CHECKING:
    from tui.app import FtmonApp

PLOT_SECS = 0.25  # plots redraw at most this often
# ...and at most this share of the time: a run caught up from a long log sends metrics without
# pause, and redrawing 5000-point plots every PLOT_SECS cost more than reading the log did.
PLOT_SHARE = 0.1
# ...and while a backlog is read (a batch of metrics from this many lines or more: what the
# Monitor reads through its batch path), at most this share: the plots still grow every second
# or two, and the catch-up is not slowed by drawings that the next batch replaces at once.
CATCH_UP_LINES = BATCH_LINES
CATCH_UP_SHARE = 0.03

# (key, action, footer label, palette help): one list feeds the bindings and the command palette.
ACTIONS: tuple[tuple[str, str, str, str], ...] = (
    ("p", "toggle_pause", "Pause/Resume", "Pause the selected run (SIGSTOP), or resume it"),
    ("k", "kill", "Kill", "Kill the selected run's process group, after a confirmation"),
    ("l", "relaunch", "Relaunch", "Relaunch the selected run with changes, from base weights"),
    ("o", "launch", "Launch", "Launch a recipe from recipes/ or a path"),
    ("h", "history", "History", "Every run with its exact command; replay and diff"),
    ("c", "compare", "Compare", "A sweep or the latest runs side by side, with overlaid plots"),
    ("f", "follow", "Follow", "Follow the end of the log (End does the same)"),
    ("slash", "search", "Search", "Search in the log (n: next, N: previous)"),
    ("q", "quit", "Quit", "Quit; with live runs, keep them running or kill them"),
)


class MainScreen(Screen[None]):
    """See the module docstring."""

    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(key, action, label) for key, action, label, _ in ACTIONS),
        Binding("escape", "close_search", "Close search", show=False),
    ]

    DEFAULT_CSS = """
    MainScreen #side { width: 36%; min-width: 36; max-width: 64; }
    MainScreen #runs { height: 1fr; min-height: 4; border: round $primary-lighten-2; }
    MainScreen #gauges { border: round $primary-lighten-2; }
    MainScreen #feed { height: 2fr; border: round $primary-lighten-2; }
    MainScreen #plots { height: 35%; min-height: 14; }
    MainScreen #status { height: 1; padding: 0 1; background: $boost; }
    MainScreen #status.paused { background: $warning; color: $text; }
    MainScreen #status.failed { background: $error; color: $text; }
    MainScreen #log { height: 1fr; border: round $primary-lighten-2; }
    MainScreen #search { display: none; }
    MainScreen #search.shown { display: block; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.selected: str | None = None
        self._plots_drawn_at = 0.0  # monotonic time of the last plot redraw
        self._plots_timer: Timer | None = None  # the redraw scheduled, if any

    @property
    def ftmon(self) -> FtmonApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="side"):
                yield RunsTree(id="runs")
                yield Gauges(id="gauges")
                yield Feed(id="feed")
            with Vertical(id="center"):
                yield Plots(id="plots")
                yield Static(status_text(None), id="status")
                yield LogView(id="log")
                yield Input(placeholder="search the log (Enter: find, Esc: close)", id="search")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#runs").border_title = "runs"
        self.query_one("#gauges").border_title = "resources"
        self.query_one("#feed").border_title = "anomalies and actions"
        self.query_one("#log").border_title = "log"
        self.refresh_runs()
        for item in self.ftmon.book.feed:
            self.query_one(Feed).add([item])

    # --- what the supervisor did ----------------------------------------------------------

    def show_event(self, message: RunEventMessage, items: list[FeedItem]) -> None:
        """Draw what one bridge message changed (the app has already recorded it)."""
        if items:
            self.query_one(Feed).add(items)
        run_id = message.run_id
        if isinstance(message, MetricsArrived):
            if run_id == self.selected:
                self._plots_changed()
            return
        if isinstance(message, ResourcesSampled):
            if run_id == self.selected:
                self._show_gauges()
            return
        if isinstance(message, ActionDone):
            # Its feed line (if any) is drawn above; what an action changes about the run (paused,
            # ended, relaunched) arrives as an event of its own. An alert per anomaly rebuilt the
            # runs tree and the status line for nothing: 123 times in the 200k-line bench log.
            return
        if isinstance(message, AnomalySeen):
            if message.event.anomaly.rule == "slurm":  # type: ignore[union-attr]
                self.refresh_runs()  # the job's queue state is in its label and status
                if run_id == self.selected:
                    self._show_status()
            elif run_id == self.selected:
                self._show_marks()
            return
        if isinstance(message, RunLaunched):
            current = self.ftmon.book.get(self.selected) if self.selected else None
            new = self.ftmon.book.get(run_id)
            # Follow a lineage: a relaunch of the run on screen takes its place.
            if current is None or not current.live or (new and new.parent_id == self.selected):
                self.select(run_id)
                return
        if isinstance(message, RunWasRelaunched):
            child = message.event.run_id  # type: ignore[union-attr]
            if self.selected == run_id:
                self.select(child)
                return
        if isinstance(message, RunWasPaused):
            self.notify(
                clean(message.event.reason),
                title=f"{run_id} paused",
                severity="warning",
                markup=False,
            )  # type: ignore[union-attr]
        self.refresh_runs()
        if run_id == self.selected:
            self._show_status()
            self._show_gauges()  # an ended run's gauges say they are its last figures
            if isinstance(message, RunFinished) and self._plots_timer is not None:
                self._show_plots()  # its last points now, not a catch-up's redraw gap later

    # --- drawing the selected run ---------------------------------------------------------

    def refresh_runs(self) -> None:
        tree = self.query_one(RunsTree)
        tree.show(self.ftmon.book, self.selected)
        # An empty box says what to do; past runs live in the history, not here.
        tree.border_subtitle = "" if self.ftmon.book.runs else "none yet: o launch · h history"

    def select(self, run_id: str | None, rank: int | None = None) -> None:
        """Show `run_id`'s log (or one rank's own log), plots, gauges and status."""
        view = self.ftmon.book.get(run_id) if run_id else None
        self.selected = view.run_id if view else None
        log = self.query_one(LogView)
        own = (
            rank_log_paths(Path(view.log_path).parent / RANKS_DIR)
            if rank is not None and view
            else {}
        )
        if view is not None and rank in own:
            log.open(str(own[rank]), None)  # the marks are line numbers of the run's log
            log.border_title = f"log: {view.run_id} rank {rank}"
        else:
            log.open(
                view.log_path if view and view.log_path else None, view.marks if view else None
            )
            log.border_title = f"log: {view.run_id}" if view else "log"
        self._show_plots()
        self._show_gauges()
        self._show_status()
        self.refresh_runs()

    @on(Tree.NodeSelected, "#runs")
    def _run_chosen(self, event: Tree.NodeSelected[str]) -> None:
        # Enter or a click chooses; a highlight alone does not (a rebuilt tree moves it too).
        if not event.node.data:
            return
        run_id, rank = node_run(event.node.data)
        if rank is not None or run_id != self.selected:
            self.select(run_id, rank)  # a rank's node: that rank's own log

    def _view(self) -> RunView | None:
        return self.ftmon.book.get(self.selected) if self.selected else None

    def _plots_changed(self) -> None:
        """Redraw the plots now, or once PLOT_SECS after the last redraw: a chatty run sends
        metrics many times a second, and plotext redraws cost milliseconds each."""
        view = self._view()
        catching_up = view is not None and view.batch_lines >= CATCH_UP_LINES
        share = CATCH_UP_SHARE if catching_up else PLOT_SHARE
        gap = max(PLOT_SECS, self.query_one(Plots).draw_secs() / share)
        wait = gap - (time.monotonic() - self._plots_drawn_at)
        if wait <= 0:
            self._show_plots()
        elif self._plots_timer is None:
            self._plots_timer = self.set_timer(wait, self._scheduled_plots)

    def _scheduled_plots(self) -> None:
        self._plots_timer = None
        self._show_plots()

    def _show_plots(self) -> None:
        if self._plots_timer is not None:  # drawn now: the scheduled redraw is not needed
            self._plots_timer.stop()
            self._plots_timer = None
        self._plots_drawn_at = time.monotonic()
        view = self._view()
        ranked = view is not None and len(view.rank_series) > 1
        self.query_one(Plots).show(
            view.series if view else {}, view.rank_series if ranked else None
        )
        if (
            view is not None
            and view.ranks.ranks
            and not self.query_one(RunsTree).update_ranks(view)
        ):
            self.refresh_runs()  # a rank appeared: its node is added

    def _show_gauges(self) -> None:
        view = self._view()
        self.query_one(Gauges).show(view.resources if view else None, bool(view and not view.live))

    def _show_marks(self) -> None:
        view = self._view()
        if view is not None:
            self.query_one(LogView).set_marks(view.marks)

    def _show_status(self) -> None:
        status = self.query_one("#status", Static)
        view = self._view()
        status.set_class(bool(view and view.status == "paused"), "paused")
        status.set_class(bool(view and view.status in ("failed", "killed")), "failed")
        status.update(status_text(view))

    # --- actions ----------------------------------------------------------------------------

    def _selected_or_say(self, live: bool = True) -> RunView | None:
        view = self._view()
        if view is None:
            self.notify("No run selected.", severity="warning", markup=False)
            return None
        if live and not view.live:
            self.notify(
                f"{view.run_id} is not running ({view.status}).", severity="warning", markup=False
            )
            return None
        return view

    @work(group="actions")
    async def action_toggle_pause(self) -> None:
        view = self._selected_or_say()
        if view is None:
            return
        if view.status == "paused":
            await self.ftmon.call_supervisor("resume", view.run_id)
        else:
            await self.ftmon.call_supervisor("pause", view.run_id)

    @work(group="actions")
    async def action_kill(self) -> None:
        view = self._selected_or_say()
        if view is None:
            return
        if await self.app.push_screen_wait(ConfirmKill(view.run_id, view.status)):
            await self.ftmon.call_supervisor("kill", view.run_id)

    @work(group="actions")
    async def action_relaunch(self) -> None:
        view = self._selected_or_say(live=False)
        if view is None:
            return
        from tui.screens.relaunch import RelaunchScreen

        screen = RelaunchScreen.for_run(self.ftmon.supervisor, view.run_id)
        if isinstance(screen, str):
            self.notify(screen, title="cannot relaunch", severity="error", markup=False)
            return
        await self.app.push_screen_wait(screen)

    def action_launch(self) -> None:
        from tui.screens.relaunch import LaunchScreen

        self.app.push_screen(LaunchScreen(self.ftmon.recipes_dir))

    def action_history(self) -> None:
        from tui.screens.history import HistoryScreen

        self.app.push_screen(HistoryScreen())

    def action_compare(self) -> None:
        from tui.screens.compare import CompareScreen

        self.app.push_screen(CompareScreen())

    def action_follow(self) -> None:
        log = self.query_one(LogView)
        log.action_follow()
        log.focus()

    def action_search(self) -> None:
        search = self.query_one("#search", Input)
        search.add_class("shown")
        search.focus()

    def action_close_search(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_class("shown"):
            search.remove_class("shown")
            self.query_one(LogView).focus()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        log = self.query_one(LogView)
        log.hit = None
        found = log.search(event.value)
        self.action_close_search()
        if found is None and event.value:
            self.notify(f"{event.value!r} is not in this log.", severity="warning", markup=False)

    def action_quit(self) -> None:
        self.ftmon.action_quit()


def status_text(view: RunView | None) -> Text:
    """One line about the selected run; when paused, why and what the person can do."""
    if view is None:
        return Text("no run selected: o launches a recipe, h shows the history")
    text = Text(clean(view.run_id), style="bold")
    text.append(f"  {view.status}")
    if view.pid and view.live:
        text.append(f"  pid {view.pid}")
    if view.job_id:
        state = f" {view.job_state}" if view.job_state and view.live else ""
        text.append(clean(f"  slurm job {view.job_id}{state}"))
    if view.status == "paused":
        # What the person can do first: a long reason is cut at the screen's edge, not this.
        text.append("  p: resume · k: kill · l: relaunch with changes", style="bold")
        text.append(clean(f"  {view.reason or 'paused'}"))
    elif view.reason:
        text.append(clean(f"  {view.reason}"))
    return text
