"""`ftmon sweep RECIPE`: run a recipe's `sweep:` members as ordinary supervised runs that share a
sweep id; `ftmon replay SWEEP` (cli/history.py hands sweeps here) runs the whole study again.

Members start as the machine allows (supervisor/sweep/queue.py): `--max-parallel N` at a time
on the CPU, by free GPU memory against each member's preflight estimate where NVML sees GPUs.
Every member keeps the recipe's policies, so one that goes NaN is relaunched by its own rule.
Prints each run's lines as `ftmon run` does, then the comparison table. Exit: 0 every member
finished, 1 any failed, was killed or refused, 2 bad recipe, 130 Ctrl-C (members keep running
unless --kill-on-exit; reattach each with `ftmon attach RUN`).
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
        "failed/killed/refused, 2 bad recipe, 130 Ctrl-C.",
    )
    p.add_argument("recipe", type=Path, help="recipe YAML file with a `sweep:` section")
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


def run_sweep(
    logs_dir: Path,
    recipe: Any,
    members: list[Any],
    *,
    max_parallel: int | None = None,
    kill_on_exit: bool = False,
    replay_of: str | None = None,
) -> int:
    """Record the sweep, run its members to their ends and print the comparison; the user's
    notification targets and the recipe's hear of each run and of the sweep's end."""
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
                   kill_on_exit, replay_of, printer, notifier)
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
) -> int:
    import asyncio
    import signal

    from supervisor.notify.notifier import tee
    from supervisor.runs.supervise import Supervisor
    from supervisor.sweep.study import run_study

    sup = Supervisor(history, logs_dir, tee(printer, notifier))
    queues: list[Any] = []
    loop = asyncio.get_running_loop()
    interrupted = False

    def on_signal() -> None:
        nonlocal interrupted
        interrupted = True
        for queue in queues:
            queue.stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        sweep_id, outcomes = await run_study(
            sup, history, recipe, members, gpu=gpu, max_parallel=max_parallel,
            on_line=printer.line, replay_of=replay_of, on_queue=queues.append,
        )  # fmt: skip
        live = sup.live_runs()
        await sup.close(kill=kill_on_exit)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
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
        return EXIT_INTERRUPTED
    ok = all(o.status in ("finished", "pruned") for o in outcomes)
    printer.line(f"compare: ftmon compare {sweep_id}    report: ftmon report {sweep_id}")
    return EXIT_OK if ok else EXIT_FAILED


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
