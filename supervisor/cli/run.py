"""`ftmon run RECIPE --headless`: launch a recipe and supervise it (and its relaunches) here.

Prints one line per anomaly and action as they happen and a summary at the end. Exit code: 0
when the last attempt finished cleanly, 1 when it failed, was killed or the chain stopped, 2 for a
bad recipe or `--set` (one line per problem: file:line: field: message), 130 on Ctrl-C, which
asks nothing: it stops supervising, leaves the run running and prints how to reattach
(`--kill-on-exit` kills it instead). Without `--headless` the console script opens the TUI.

`ftmon attach` and `ftmon replay` share the printing and the Ctrl-C handling defined here.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from supervisor.recipe.model import Recipe
    from supervisor.report.progress import Progress

from supervisor.cli.main import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE


def add_supervision_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by run, attach and replay."""
    p.add_argument(
        "--kill-on-exit",
        action="store_true",
        help="on Ctrl-C kill the run instead of leaving it running",
    )
    p.add_argument(
        "--logs-dir",
        type=Path,
        default=None,
        help="folder of run folders and ftmon.db (default: $FTMON_HOME, else ./logs)",
    )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="launch a recipe and supervise it (headless with --headless; else the TUI)",
        description="Launch RECIPE, watch it, act per its `on:` policy, relaunch from the base "
        "weights. Exit: 0 last attempt finished, 1 failed/killed/chain stopped, 2 bad recipe, "
        "130 Ctrl-C (the run keeps running; reattach with `ftmon attach RUN`).",
    )
    p.add_argument("recipe", type=Path, help="recipe YAML file")
    p.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe field (lr=1e-5, args.micro_batch=4, env.HF_HOME=/x)",
    )
    p.add_argument("--headless", action="store_true", help="supervise here, without the TUI")
    p.add_argument(
        "--force",
        action="store_true",
        help="launch even if the memory estimate or the check of what it writes says no",
    )
    add_supervision_flags(p)
    p.set_defaults(func=run)


def logs_dir_of(args: argparse.Namespace) -> Path:
    from supervisor.store.history import default_logs_dir

    return args.logs_dir if args.logs_dir is not None else default_logs_dir()


def run(args: argparse.Namespace) -> int:
    from supervisor.recipe.model import RecipeError, load_recipe

    try:
        recipe = load_recipe(args.recipe)
        if args.sets:
            recipe = recipe.with_overrides(args.sets)
    except RecipeError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if recipe.sweep is not None:  # a study, not one run: its members need the sweep queue
        how = f"`ftmon sweep {args.recipe}` (or in the TUI: `ftmon {args.recipe}`)"
        print(f"{args.recipe}: sweep: this recipe is a sweep; run it with {how}", file=sys.stderr)
        return EXIT_USAGE

    async def start(sup) -> str:  # type: ignore[no-untyped-def]
        return await sup.launch(recipe, force=args.force)

    return supervise_headless(
        logs_dir_of(args), start, kill_on_exit=args.kill_on_exit, recipe=recipe
    )


# --- shared by run, attach and replay -------------------------------------------------------


class Printer:
    """Turns run events into the lines `ftmon run` prints, and remembers the lineage."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out  # None: whatever sys.stdout is when a line is printed
        self.started: list[str] = []
        self.ended: dict[str, tuple[str, str]] = {}
        self.changes: dict[str, tuple[str, ...]] = {}
        self.chain_stopped = ""
        self.progress: Progress | None = None  # made on the first metric (tty or not)
        self._drawn = False  # a progress line is on the terminal, to be cleared first

    def line(self, text: str) -> None:
        try:
            if self._drawn:
                self._drawn = False
                text = "\r\x1b[K" + text
            print(text, file=self.out or sys.stdout, flush=True)
        except BrokenPipeError:
            # `ftmon run ... | head`: the reader left; supervising goes on, printing stops.
            self.out = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the printer)

    def __call__(self, event: object) -> None:
        from supervisor.runs import events as ev
        from supervisor.runs.plan import shell_join

        if isinstance(event, ev.MetricsObserved):
            self._show_progress(event.run_id, event.events)
        elif isinstance(event, ev.RunStarted):
            self.started.append(event.run_id)
            self._progress().started(event.run_id, event.argv)
            how = "reattached" if event.reattached else f"started (attempt {event.attempt})"
            if event.pid == 0 and not event.reattached:  # the end line below says why
                how = f"could not be started (attempt {event.attempt})"
            pid = f", pid {event.pid}" if event.pid else ""
            self.line(f"{event.run_id}: {how}{pid}, log {event.log_path}")
            if event.finishing:  # a decision the ftmon that died did not see through
                when = time.strftime("%H:%M:%S", time.localtime(event.decided_at))
                self.line(
                    f"{event.run_id}:   finishing the {event.finishing} decided at {when} for"
                    f" rule {event.finishing_rule} (the ftmon that decided it stopped half way)"
                )
            if not event.reattached:
                self.line(f"{event.run_id}:   $ {shell_join(event.argv)}")
        elif isinstance(event, ev.AnomalyFound):
            self.line(f"{event.run_id}: anomaly {event.anomaly.one_line()}")
        elif isinstance(event, ev.ActionTaken):
            a = event.action
            failed = "" if a.ok else " (FAILED)"
            self.line(f"{event.run_id}: action  {a.kind} [{a.rule}]{failed}: {a.detail}")
        elif isinstance(event, ev.RunPaused):
            self.line(f"{event.run_id}: paused: {event.reason}")
        elif isinstance(event, ev.RunResumed):
            self.line(f"{event.run_id}: resumed")
        elif isinstance(event, ev.RunEnded):
            from supervisor.runs.records import outcome

            self.ended[event.run_id] = (event.status, event.reason)
            self.line(f"{event.run_id}: ended {outcome(event.status, event.reason)}")
        elif isinstance(event, ev.RunRelaunched):
            self.changes[event.run_id] = event.changes
            what = "; ".join(event.changes) or "no changes"
            self.line(f"{event.parent_id}: relaunched as {event.run_id} ({what})")
        elif isinstance(event, ev.ChainStopped):
            self.chain_stopped = event.reason
            self.line(f"{event.run_id}: chain stopped: {event.reason}")

    def _progress(self) -> Progress:
        if self.progress is None:
            from supervisor.report.progress import Progress

            stream = self.out or sys.stdout
            self.progress = Progress(tty=bool(getattr(stream, "isatty", bool)()))
        return self.progress

    def _show_progress(self, run_id: str, events: tuple[object, ...]) -> None:
        """A terminal redraws one line in place; a file or pipe gets plain periodic lines."""
        progress = self._progress()
        text = progress.update(run_id, events)
        if text is None:
            return
        if not progress.tty:
            self.line(text)
            return
        import shutil

        width = shutil.get_terminal_size().columns - 1
        try:
            stream = self.out or sys.stdout
            stream.write("\r\x1b[K" + text[:width])
            stream.flush()
            self._drawn = True
        except BrokenPipeError:
            self.out = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the printer)

    def summary(self) -> None:
        from supervisor.runs.records import outcome

        self.line("summary:")
        for run_id in self.started:
            status, reason = self.ended.get(run_id, ("running", ""))
            changes = "; ".join(self.changes.get(run_id, ()))
            extra = f" [{changes}]" if changes else ""
            # How to reattach is said once, on the last line; here only that it runs on.
            how = "detached, still running" if status == "detached" else outcome(status, reason)
            self.line(f"  {run_id}{extra}: {how}")
        if self.chain_stopped:
            self.line(f"  chain stopped: {self.chain_stopped}")


def supervise_headless(
    logs_dir: Path,
    start: Callable[..., Awaitable[str]],
    *,
    kill_on_exit: bool = False,
    out: TextIO | None = None,
    recipe: Recipe | None = None,
) -> int:
    """Open the history, run `start(supervisor) -> run_id`, supervise the lineage to its end
    and print as it goes. Ctrl-C (or SIGTERM) detaches, or kills with `kill_on_exit`.
    Notifications go to the user config's targets and `recipe`'s (a reattached run's: the
    history's), in the background; one that fails is a line here."""
    import asyncio

    from supervisor.notify.config import load_user_targets
    from supervisor.notify.delivery import DeliveryResult
    from supervisor.notify.notifier import NOTIFY_CLOSE_SECS, Notifier, failure_line
    from supervisor.recipe.model import RecipeError
    from supervisor.store.history import History, HistoryError

    try:
        targets = load_user_targets()
    except RecipeError as exc:  # a bad ~/.config/ftmon/config.yaml: file:line: field: why
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    try:
        history = History.in_logs_dir(logs_dir)
    except HistoryError as exc:
        print(f"ftmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    printer = Printer(out)

    def said_failed(result: DeliveryResult) -> None:
        if not result.ok:
            printer.line(failure_line(result))

    notifier = Notifier(targets, history, on_result=said_failed)
    if recipe is not None:
        notifier.watch_recipe(recipe)
    try:
        return asyncio.run(_supervise(history, logs_dir, start, kill_on_exit, printer, notifier))
    finally:
        notifier.close(NOTIFY_CLOSE_SECS)  # the last messages go out before the history closes
        history.close()


async def _supervise(
    history: object,
    logs_dir: Path,
    start: Callable[..., Awaitable[str]],
    kill_on_exit: bool,
    printer: Printer,
    notifier: Callable[[object], None],
) -> int:
    import asyncio
    import signal

    from supervisor.notify.notifier import tee
    from supervisor.runs.reattach import AttachError
    from supervisor.runs.supervise import LaunchRefused, Supervisor
    from supervisor.store.history import HistoryError

    sup = Supervisor(history, logs_dir, tee(printer, notifier))  # type: ignore[arg-type]
    interrupted = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, interrupted.set)
    try:
        try:
            run_id = await start(sup)
        except (LaunchRefused, AttachError, HistoryError) as exc:
            print(f"ftmon: {exc}", file=sys.stderr)
            return EXIT_USAGE if isinstance(exc, LaunchRefused | HistoryError) else EXIT_FAILED
        final = asyncio.ensure_future(sup.wait_lineage(run_id))
        stop = asyncio.ensure_future(interrupted.wait())
        await asyncio.wait({final, stop}, return_when=asyncio.FIRST_COMPLETED)
        if not final.done():
            live = sup.live_runs()
            await sup.close(kill=kill_on_exit)
            stop.cancel()
            printer.summary()
            if not kill_on_exit:
                for rid in live:
                    printer.line(f"{rid} is still running; reattach with: ftmon attach {rid}")
            return EXIT_INTERRUPTED
        stop.cancel()
        ended = final.result()
        printer.summary()
        return EXIT_OK if ended.status == "finished" and not printer.chain_stopped else EXIT_FAILED
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
