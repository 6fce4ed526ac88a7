"""`ftmon compare RUN... | SWEEP [--json | --csv] [--sort METRIC]`: one row per run (a run's
relaunches fold into its row), made from the history database alone. See report/compare.py."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from supervisor.cli.main import EXIT_OK, EXIT_USAGE
from supervisor.cli.run import logs_dir_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "compare",
        help="runs or a sweep side by side: swept values, val loss, accuracy, tokens/s, ...",
    )
    p.add_argument(
        "refs", nargs="*", metavar="RUN|SWEEP",
        help="run ids (or prefixes), or a sweep id; none: list the sweeps",
    )  # fmt: skip
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="one JSON object, for scripts")
    out.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.add_argument(
        "--sort",
        default="",
        metavar="METRIC",
        help="best first by METRIC (best_val_loss, accuracy, tok_s, a swept key, ...)",
    )
    p.add_argument("--logs-dir", type=Path, default=None, help="(default: $FTMON_HOME or logs)")
    p.set_defaults(func=compare_cmd)


def open_history(args: argparse.Namespace) -> Any:
    """The history database, or None after saying why (the caller exits 2)."""
    from supervisor.store.history import DB_NAME, History, HistoryError

    db = logs_dir_of(args) / DB_NAME
    if not db.is_file():
        print(
            f"ftmon: no history at {db} (--logs-dir or $FTMON_HOME names another)", file=sys.stderr
        )
        return None
    try:
        return History(db)
    except HistoryError as exc:
        print(f"ftmon: {exc}", file=sys.stderr)
        return None


def load_table(history: Any, refs: list[str], sort: str) -> Any:
    """A sweep's table when the one ref names a sweep, else the runs'; raises HistoryError or
    KeyError with a message for a person."""
    from supervisor.report.compare import compare_runs, compare_sweep, sort_names

    if len(refs) == 1 and history.sweep(refs[0]) is not None:
        table = compare_sweep(history, refs[0])
    elif len(refs) == 1 and refs[0].startswith("sweep-"):  # run ids start with a digit
        raise KeyError(history.why_no_sweep(refs[0]))
    else:
        table = compare_runs(history, refs)
    if sort and sort not in sort_names(table):
        raise KeyError(f"--sort {sort}: no such column (one of: {', '.join(sort_names(table))})")
    if sort:
        from supervisor.report.compare import sort_table

        sort_table(table, sort)
    return table


def compare_cmd(args: argparse.Namespace) -> int:
    from supervisor.report.compare import format_table, to_csv, to_json
    from supervisor.store.history import HistoryError

    history = open_history(args)
    if history is None:
        return EXIT_USAGE
    if not args.refs:
        return _list_sweeps(history, args.json)
    try:
        table = load_table(history, args.refs, args.sort)
    except (HistoryError, KeyError) as exc:
        print(f"ftmon: {exc.args[0] if isinstance(exc, KeyError) else exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        history.close()
    if args.json:
        print(to_json(table))
    elif args.csv:
        sys.stdout.write(to_csv(table))
    else:
        print(format_table(table))
    return EXIT_OK


def _list_sweeps(history: Any, as_json: bool) -> int:
    """`ftmon compare` alone: the sweeps recorded, newest first, with their members' states."""
    import json
    from datetime import datetime

    rows = []
    for sweep in history.sweeps():
        members = history.sweep_members(sweep.id)
        rows.append({"id": sweep.id, "name": sweep.name, "created_at": sweep.created_at,
                     "keys": list(sweep.keys), "members": len(members),
                     "replay_of": sweep.replay_of})  # fmt: skip
    history.close()
    if as_json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("no sweeps recorded yet (start one with `ftmon sweep RECIPE`)")
    for r in [] if as_json else rows:
        when = datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M")
        print(f"{r['id']}  {when}  {r['members']} members over {', '.join(r['keys'])}")
    return EXIT_OK
