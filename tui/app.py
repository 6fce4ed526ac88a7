"""The `ftmon` Textual app: composes the screens over one `Supervisor`; no logic of its own.

    ftmon                       reattach to live runs from the history, then wait for a launch
    ftmon RECIPE [--set k=v]    the same, with RECIPE launched
    ftmon run RECIPE [...]      the same (what `ftmon run` without --headless opens)

The supervisor runs on the app's own asyncio loop; its events come back through the bridge as
messages, are folded into the `RunBook` and drawn by the main screen.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import sys
from collections.abc import Iterable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from textual import on, work
from textual.app import App, SystemCommand
from textual.screen import Screen

from supervisor.notify.config import NotifyTarget, load_user_targets
from supervisor.notify.delivery import DeliveryResult
from supervisor.notify.notifier import NOTIFY_CLOSE_SECS, Notifier, failure_line, tee
from supervisor.reading.tail import gc_paused
from supervisor.recipe.model import Recipe, RecipeError, load_recipe
from supervisor.runs.events import RunStarted
from supervisor.runs.reattach import AttachError
from supervisor.runs.supervise import LaunchRefused, Supervisor
from supervisor.store.history import History, HistoryError, default_logs_dir
from tui.bridge import Bridge, MetricsArrived, RunEventMessage, RunLaunched
from tui.screens.confirm import ConfirmQuit
from tui.screens.main import ACTIONS, MainScreen
from tui.state import FeedItem, RunBook


class FtmonApp(App[int]):
    """See the module docstring. `recipe` is launched once the screen is up."""

    TITLE = "ftmon"

    def __init__(
        self,
        logs_dir: Path | str | None = None,
        recipe: Recipe | None = None,
        *,
        force: bool = False,
        recipes_dir: Path | str = "recipes",
        reattach: bool = True,
        notify_targets: Sequence[NotifyTarget] = (),
        history: History | None = None,
        supervisor: Supervisor | None = None,
    ) -> None:
        """`history` and `supervisor` are made for `logs_dir` unless given (tests inject them:
        a supervisor with a fake executor, a history another process writes); an injected
        supervisor reports its events to this app."""
        super().__init__()
        self.logs_dir = Path(logs_dir) if logs_dir is not None else default_logs_dir()
        self.recipes_dir = Path(recipes_dir)
        self.initial_recipe = recipe
        self.force = force
        self.reattach = reattach
        self.book = RunBook()
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        self.history = history if history is not None else History.in_logs_dir(self.logs_dir)
        self.bridge = Bridge(self)
        if supervisor is None:
            supervisor = Supervisor(self.history, self.logs_dir, self.bridge)
        supervisor.on_event = self.bridge
        self.supervisor = supervisor
        self.main_screen = MainScreen()
        self.started = False  # set once reattach and the first launch are done
        self.history_behind = ""  # what `_check_history` last said ("" = all written)
        # Notifications hear what the screen hears and send in the background (supervisor/notify/).
        self.notifier = Notifier(notify_targets, self.history, on_result=self._notify_failed)
        self.supervisor.on_event = tee(self.supervisor.on_event, self.notifier)

    async def on_mount(self) -> None:
        # Mounted before start-up: a reattached run's events (a decision finished at once) must
        # find the screen's widgets.
        await self.push_screen(self.main_screen)
        # The app's own objects (modules, widgets, styles: about 80k) live as long as it does:
        # frozen out of the cyclic collector's sight, so that the full collections a long
        # catch-up's events trigger do not walk them again and again (4% of a 200k-line one).
        gc.freeze()
        self.set_interval(1.0, self._check_history)
        self.start_up()

    def on_unmount(self) -> None:
        gc.unfreeze()  # collectable again once the app is gone (tests run many in one process)

    def _check_history(self) -> None:
        """Say when the history database falls behind (another process holds its lock; nothing
        is lost meanwhile: store/pending.py) and when it has caught up."""
        behind = self.history.backlog().describe()
        if behind and not self.history_behind:
            self.notify(behind, title="history", severity="warning", markup=False)
        elif not behind and self.history_behind:
            self.notify("history caught up: every row is written", title="history", markup=False)
        self.history_behind = behind
        self.sub_title = behind

    @work(group="startup")
    async def start_up(self) -> None:
        """Reattach to runs the history says are live, then launch the recipe given, if any."""
        if self.reattach:
            for rec in self.history.live():
                try:
                    await self.supervisor.attach(rec.id)
                except (AttachError, OSError) as exc:
                    self.notify(
                        str(exc),
                        title=f"cannot reattach {rec.id}",
                        severity="warning",
                        markup=False,
                    )
        if self.initial_recipe is not None:
            await self.launch(self.initial_recipe, force=self.force)
        self.started = True

    async def launch(self, recipe: Recipe, force: bool = False) -> str | None:
        """Launch `recipe`; a refusal (memory estimate, bad plan) is shown, not raised."""
        if recipe.sweep is not None:  # its members start as the queue allows: no one run id
            self.run_sweep(recipe)
            return None
        try:
            self.notifier.watch_recipe(recipe)  # its own `notify:` targets, URLs included
            return await self.supervisor.launch(recipe, force=force)
        except LaunchRefused as exc:
            self.notify(
                str(exc), title=f"{recipe.name} not launched", severity="error", markup=False
            )
            return None

    @work(group="sweeps")
    async def run_sweep(self, recipe: Recipe) -> None:
        """Run a recipe's sweep here (supervisor/sweep/study.py): members appear as runs, `c`
        compares them."""
        from supervisor.monitoring.resources import default_nvml
        from supervisor.sweep.expand import expand
        from supervisor.sweep.study import run_study

        try:
            members = expand(recipe)
        except RecipeError as exc:
            self.notify(str(exc), title=f"{recipe.name}: no sweep", severity="error", markup=False)
            return
        for member in members:
            self.notifier.watch_recipe(member.recipe)
        lines: list[str] = []
        sweep_id, outcomes = await run_study(
            self.supervisor, self.history, recipe, members, gpu=default_nvml(),
            on_line=lines.append, on_queue=lambda q: self.notify(lines[0], markup=False),
        )  # fmt: skip
        done = sum(o.status == "finished" for o in outcomes)
        self.notify(f"{done} of {len(outcomes)} members finished; c compares them",
                    title=f"{sweep_id} ended", markup=False)  # fmt: skip

    async def call_supervisor(self, method: str, *args: Any) -> Any:
        """Ask the supervisor to act on a run; a run that ended meanwhile is a notice."""
        try:
            result = getattr(self.supervisor, method)(*args)
            if inspect.isawaitable(result):
                result = await result
            return result
        except (KeyError, LaunchRefused, AttachError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            self.notify(str(message), title=f"{method} failed", severity="error", markup=False)
            return None

    @on(RunEventMessage)
    def _run_event(self, message: RunEventMessage) -> None:
        items: list[FeedItem] = []
        if isinstance(message, MetricsArrived):
            # A catch-up's batches are thousands of plot points (plain tuples, no cycles): the
            # cyclic collector, paused meanwhile, would run over them and the app's objects.
            with gc_paused():
                for batch in self.bridge.take_metrics(message):
                    items += self.book.apply(batch)
        else:
            if isinstance(message, RunLaunched):
                self._add_ancestors(message.event)  # type: ignore[arg-type]
            items = self.book.apply(message.event)
            if isinstance(message, RunLaunched):  # where it runs (a Slurm job's id) is in history
                rec = self.history.get(message.run_id)
                self.book.set_executor(message.run_id, rec.executor if rec else None)
            if isinstance(message, RunLaunched) and message.event.reattached:  # type: ignore[union-attr]
                self._load_history(message.run_id)
        # Not once the app is closing: its screens are gone while supervisor events still come.
        if self.main_screen.is_mounted and self.main_screen in self.screen_stack:
            self.main_screen.show_event(message, items)

    def _add_ancestors(self, event: RunStarted) -> None:
        """A run reattached (or replayed) after a restart: show the runs it came from, from
        the history, so that it sits in its lineage and not alone."""
        if not event.parent_id or event.parent_id in self.book.runs:
            return
        for rec in self.history.lineage(event.run_id)[:-1]:
            if rec.id not in self.book.runs:
                self.book.add_record(rec)
                self._load_history(rec.id)

    def _load_history(self, run_id: str) -> None:
        self.book.load_history(run_id, self.history.anomalies(run_id), self.history.metrics(run_id))

    def _notify_failed(self, result: DeliveryResult) -> None:
        """From a delivery thread: a notification that was not delivered is a warning here
        (it is in the history too)."""
        if result.ok:
            return
        try:
            self.call_from_thread(
                self.notify, failure_line(result), title="notification not delivered",
                severity="warning", markup=False,
            )  # fmt: skip
        except RuntimeError:  # the app is not running (any more)
            pass

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for key, action, label, help_text in ACTIONS:
            shown_key = "/" if key == "slash" else key
            yield SystemCommand(
                f"{label} ({shown_key})", help_text, partial(self.main_screen.run_action, action)
            )

    @work(group="quit", exclusive=True)
    async def action_quit(self) -> None:
        """Quit; with live runs ask whether to keep them running (reattach later) or kill them."""
        live = self.supervisor.live_runs()
        if live:
            choice = await self.push_screen_wait(ConfirmQuit(live))
            if choice is None:
                return
            await self.supervisor.close(kill=choice == "kill")
        else:
            await self.supervisor.close()
        self.exit(0)


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ftmon", description="ftmon's interactive TUI.")
    parser.add_argument("recipe", nargs="?", help="a recipe to launch at start-up")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--logs-dir", type=Path, default=None)
    parser.add_argument("--recipes-dir", type=Path, default=Path("recipes"))
    parser.add_argument("--force", action="store_true", help="launch even if it may not fit")
    args = list(argv)
    if args and args[0] == "run":
        args = args[1:]
    return parser.parse_args(args)


def main(argv: list[str]) -> int:
    """`ftmon` with no command, `ftmon RECIPE`, `ftmon run RECIPE` (see the module docstring)."""
    args = parse_args(argv)
    recipe = None
    if args.recipe:
        try:
            recipe = load_recipe(args.recipe)
            if args.set:
                recipe = recipe.with_overrides(args.set)
        except RecipeError as exc:
            print(f"ftmon: {exc}", file=sys.stderr)
            return 2
    try:
        targets = load_user_targets()
    except RecipeError as exc:  # a bad ~/.config/ftmon/config.yaml: file:line: field: why
        print(str(exc), file=sys.stderr)
        return 2
    try:
        app = FtmonApp(
            args.logs_dir, recipe, force=args.force, recipes_dir=args.recipes_dir,
            notify_targets=targets,
        )  # fmt: skip
    except (HistoryError, OSError) as exc:
        print(f"ftmon: cannot open the history: {exc}", file=sys.stderr)
        return 2
    result = app.run()
    app.notifier.close(NOTIFY_CLOSE_SECS)  # the last messages go out before the history closes
    app.history.close()
    return int(result or 0)
