"""`ftmon sweep RECIPE`: run a recipe's `sweep:` members as ordinary supervised runs that share a
sweep id; `ftmon replay SWEEP` (cli/history.py hands sweeps here) runs the whole study again.

Members start as the machine allows (supervisor/sweep/queue.py): `--max-parallel N` at a time
on the CPU, by free GPU memory against each member's preflight estimate where NVML sees GPUs.
Every member keeps the recipe's policies, so one that goes NaN is relaunched by its own rule.
Prints each run's lines as `ftmon run` does, then the comparison table. Exit: 0 every member
finished, 1 any failed, was killed or refused, 2 bad recipe, 130 Ctrl-C, SIGTERM or SIGHUP (the
terminal went away): members keep running unless --kill-on-exit, queued ones stay queued, and
`ftmon sweep --resume SWEEP` (supervisor/sweep/resume.py) starts them in the same sweep and adopts
the running ones.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from supervisor.cli.main import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE
from supervisor.cli.run import add_supervision_flags, logs_dir_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep",
        help="run a recipe's sweep: its members as runs that share a sweep id",
        description="Expand RECIPE's `sweep:` (grid, zip, random) into member runs and supervise "
        "them headless, each with the recipe's own policies. Exit: 0 all finished, 1 any "
        "failed/killed/refused, 2 bad recipe or unknown sweep, 130 Ctrl-C/SIGHUP (queued members "
        "wait for `ftmon sweep --resume SWEEP`).",
    )
    p.add_argument(
        "recipe", type=Path, nargs="?", default=None,
        help="recipe YAML file with a `sweep:` section",
    )  # fmt: skip
    p.add_argument(
        "--resume", metavar="SWEEP", default=None,
        help="carry on a stopped sweep (id or unique prefix): start its queued members, adopt "
        "its running ones, leave the ended ones",
    )  # fmt: skip
    p.add_argument(
        "--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
        help="override a recipe field for every member (sweep.max_parallel=2 works too)",
    )  # fmt: skip
    p.add_argument(
        "--max-parallel", type=int, default=None, metavar="N",
        help="members at a time (default: sweep.max_parallel, else 1 on the CPU; with GPUs, as "
        "many as their free memory fits)",
    )  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="list the members and exit")
    add_supervision_flags(p)
    p.set_defaults(func=sweep_cmd)


def sweep_cmd(args: argparse.Namespace) -> int:
    from supervisor.recipe.model import RecipeError, load_recipe
    from supervisor.sweep.expand import expand

    if args.max_parallel is not None and args.max_parallel < 1:
        print("ftmon: --max-parallel: must be 1 or more", file=sys.stderr)
        return EXIT_USAGE
    if args.resume is not None:
        if args.recipe is not None or args.sets:
            print("ftmon sweep: --resume SWEEP takes no RECIPE and no --set (the sweep runs its "
                  "recorded recipe; `ftmon replay SWEEP --set ...` starts a new one)",
                  file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        return resume_cmd(args)
    if args.recipe is None:
        print("ftmon sweep: give a RECIPE, or --resume SWEEP", file=sys.stderr)
        return EXIT_USAGE
    try:
        recipe = load_recipe(args.recipe)
        if args.sets:
            recipe = recipe.with_overrides(args.sets)
        if recipe.sweep is None:
            print(f"{args.recipe}: sweep: this recipe has no `sweep:` section "
                  "(`ftmon run` runs it once)", file=sys.stderr)  # fmt: skip
            return EXIT_USAGE
        members = expand(recipe)
    except RecipeError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if args.dry_run:
        for m in members:
            extra = f"  [{'; '.join(m.changes)}]" if m.changes else ""
            print(f"{m.recipe.name}: {m.label()}{extra}")
        return EXIT_OK
    return run_sweep(
        logs_dir_of(args), recipe, members, max_parallel=args.max_parallel,
        kill_on_exit=args.kill_on_exit,
    )  # fmt: skip


def resume_cmd(args: argparse.Namespace) -> int:
    """`ftmon sweep --resume SWEEP`: what is left of the sweep, run in the same sweep."""
    from supervisor.store.history import History, HistoryError
    from supervisor.store.schema import DB_NAME
    from supervisor.sweep.resume import ResumeError, plan_resume

    logs_dir = logs_dir_of(args)
    if not (logs_dir / DB_NAME).exists():  # no history here: create none
        print(f"ftmon: no sweep matches {args.resume!r}: no history in {logs_dir}",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    try:
        history = History.in_logs_dir(logs_dir)
    except HistoryError as exc:
        print(f"ftmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        plan = plan_resume(history, args.resume)
    except ResumeError as exc:
        print(f"ftmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        history.close()
    sweep_id = plan.sweep.id
    if args.dry_run or plan.nothing_left:
        said = [(m, "queued: would start") for m in plan.queued]
        said += [(m, f"running as {rec.id}: would adopt") for m, rec in plan.alive]
        said += [(m, status) for m, status in plan.ended]
        for m, what in sorted(said, key=lambda pair: pair[0].index):
            print(f"{m.recipe.name}: {m.label()}  ({what})")
        if plan.nothing_left:
            print(f"{sweep_id}: nothing left to run ({plan.summary()}); "
                  f"compare: ftmon compare {sweep_id}")  # fmt: skip
        return EXIT_OK
    members = plan.queued + [m for m, _ in plan.alive]
    return run_sweep(
        logs_dir, plan.recipe, members, max_parallel=args.max_parallel,
        kill_on_exit=args.kill_on_exit, resume=sweep_id,
    )  # fmt: skip


def run_sweep(
    logs_dir: Path,
    recipe: Any,
    members: list[Any],
    *,
    max_parallel: int | None = None,
    kill_on_exit: bool = False,
    replay_of: str | None = None,
    resume: str | None = None,
) -> int:
    """Record the sweep (or take up the recorded `resume`), run its members to their ends and
    print the comparison; the user's notification targets and the recipe's hear of each run
    and of the sweep's end."""
    import asyncio

    from supervisor.cli.run import Printer
    from supervisor.monitoring.resources import default_nvml
    from supervisor.notify.config import load_user_targets
    from supervisor.notify.notifier import NOTIFY_CLOSE_SECS, Notifier, failure_line
    from supervisor.recipe.model import RecipeError
    from supervisor.store.history import History, HistoryError

    try:
        targets = load_user_targets()
        history = History.in_logs_dir(logs_dir)
    except (RecipeError, HistoryError) as exc:
        print(str(exc) if isinstance(exc, RecipeError) else f"ftmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    printer = Printer()

    def on_result(result: Any) -> None:
        if not result.ok:
            printer.line(failure_line(result))

    notifier = Notifier(targets, history, on_result=on_result)
    for member in members:
        notifier.watch_recipe(member.recipe)
    try:
        return asyncio.run(
            _drive(history, logs_dir, recipe, members, default_nvml(), max_parallel,
                   kill_on_exit, replay_of, printer, notifier, resume)
        )  # fmt: skip
    finally:
        notifier.close(NOTIFY_CLOSE_SECS)  # the last messages go out before the history closes
        history.close()


async def _drive(
    history: Any,
    logs_dir: Path,
    recipe: Any,
    members: list[Any],
    gpu: Any,
    max_parallel: int | None,
    kill_on_exit: bool,
    replay_of: str | None,
    printer: Any,
    notifier: Any,
    resume: str | None = None,
) -> int:
    import asyncio
    import signal

    from supervisor.notify.notifier import tee
    from supervisor.runs.supervise import Supervisor
    from supervisor.sweep.resume import ResumeError, resume_study
    from supervisor.sweep.study import run_study

    sup = Supervisor(history, logs_dir, tee(printer, notifier))
    queues: list[Any] = []
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_signal(sig: int) -> None:
        nonlocal interrupted
        interrupted = True
        if sig == signal.SIGHUP:
            _terminal_gone(ttys)
        for queue in queues:
            queue.stop.set()

    # SIGHUP (the SSH session or terminal went away) is an interrupt too; under `nohup` it stays
    # ignored, as the user asked.
    ttys = _tty_fds()  # asked now: a terminal that hung up no longer answers isatty()
    signals = [signal.SIGINT, signal.SIGTERM]
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signals.append(signal.SIGHUP)
    for sig in signals:
        loop.add_signal_handler(sig, on_signal, sig)
    ended_before: list[str] = []
    try:
        if resume is not None:
            try:
                plan, outcomes = await resume_study(
                    sup, history, resume, gpu=gpu, max_parallel=max_parallel,
                    on_line=printer.line, on_queue=queues.append,
                )  # fmt: skip
            except ResumeError as exc:
                await sup.close()
                print(f"ftmon: {exc}", file=sys.stderr)
                return EXIT_USAGE
            sweep_id = plan.sweep.id
            ended_before = [status for _, status in plan.ended]
        else:
            sweep_id, outcomes = await run_study(
                sup, history, recipe, members, gpu=gpu, max_parallel=max_parallel,
                on_line=printer.line, replay_of=replay_of, on_queue=queues.append,
            )  # fmt: skip
        live = sup.live_runs()
        await sup.close(kill=kill_on_exit)
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
    printer.summary()
    _print_table(history, sweep_id, printer)
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    how = ", ".join(f"{n} {status}" for status, n in counts.items())
    notifier.sweep_finished(
        sweep_id, f"{len(outcomes)} members: {how}", [o.run_id for o in outcomes if o.run_id],
        look=f"ftmon report {sweep_id}",
    )  # fmt: skip
    if interrupted:
        if not kill_on_exit:
            for rid in live:
                printer.line(f"{rid} is still running; reattach with: ftmon attach {rid}")
        queued = sum(o.status == "stopped" for o in outcomes)
        if queued or (live and not kill_on_exit):
            printer.line(
                f"{sweep_id}: {queued} member(s) still queued, {len(live)} running; carry on "
                f"with: {_resume_command(sweep_id, logs_dir)}"
            )
        return EXIT_INTERRUPTED
    ok = all(o.status in ("finished", "pruned") for o in outcomes)
    ok = ok and all(status in ("finished", "pruned") for status in ended_before)
    printer.line(f"compare: ftmon compare {sweep_id}    report: ftmon report {sweep_id}")
    return EXIT_OK if ok else EXIT_FAILED


def _resume_command(sweep_id: str, logs_dir: Path) -> str:
    from supervisor.store.history import default_logs_dir

    same = Path(logs_dir).resolve() == Path(default_logs_dir()).resolve()
    return f"ftmon sweep --resume {sweep_id}" + ("" if same else f" --logs-dir {logs_dir}")


def _tty_fds() -> list[int]:
    """Which of stdout and stderr are a terminal."""
    import os

    return [fd for fd in (1, 2) if os.isatty(fd)]


def _terminal_gone(ttys: list[int]) -> None:
    """SIGHUP: writes to the terminal that hung up would fail (EIO) and end ftmon before it
    detached its runs; what is printed from now on goes to /dev/null instead (a file or a pipe
    ftmon writes to is kept)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in ttys:
        try:
            os.dup2(devnull, fd)
        except OSError:  # already closed
            pass
    os.close(devnull)


def _print_table(history: Any, sweep_id: str, printer: Any) -> None:
    from supervisor.report.compare import compare_sweep, format_table

    table = compare_sweep(history, sweep_id)
    for line in format_table(table).splitlines():
        printer.line(line)


def replay_sweep(args: argparse.Namespace, history: Any, sweep: Any) -> int:
    """`ftmon replay SWEEP`: the recorded sweep recipe (with --set) as a new sweep."""
    from supervisor.recipe.model import RecipeError, recipe_from_yaml
    from supervisor.sweep.expand import expand

    history.close()
    try:
        recipe = recipe_from_yaml(sweep.recipe_yaml, f"sweep {sweep.id}")
        if recipe.cwd is None and sweep.cwd:  # run where the study ran
            recipe = recipe.model_copy(update={"cwd": sweep.cwd})
        if args.sets:
            recipe = recipe.with_overrides(args.sets)
        members = expand(recipe)
    except RecipeError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    return run_sweep(
        logs_dir_of(args), recipe, members, kill_on_exit=args.kill_on_exit, replay_of=sweep.id,
    )  # fmt: skip
