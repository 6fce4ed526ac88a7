"""`ftmon history`, `ftmon show RUN`, `ftmon replay RUN`, `ftmon diff RUN RUN`.

All read the history database (`ftmon.db` in the logs folder: `--logs-dir`, else `$FTMON_HOME`,
else `./logs`). RUN is a run id, a unique prefix of one, or `last`. Commands are printed so that
they can be pasted into a shell as they ran: the recipe's environment as a prefix (secrets as
`"$NAME"` references, never their values), `cd`, and the argv quoted.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from typing import Any

from supervisor.cli.main import EXIT_OK, EXIT_USAGE, UsageError
from supervisor.cli.run import add_supervision_flags, logs_dir_of, supervise_headless
from supervisor.store.schema import DB_NAME


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="the runs ftmon started, newest first, with commands")
    p.add_argument("--json", action="store_true", help="one JSON list, for scripts")
    p.add_argument("-n", type=int, default=None, metavar="N", help="only the newest N runs")
    p.add_argument("--logs-dir", type=_path, default=None, help="(default: $FTMON_HOME or logs)")
    p.set_defaults(func=history_cmd)

    p = sub.add_parser("show", help="one run: recipe, command, env, outcome, lineage")
    p.add_argument("run_ref", metavar="RUN", help="run id, a unique prefix of one, or `last`")
    p.add_argument("--json", action="store_true")
    p.add_argument("--logs-dir", type=_path, default=None)
    p.set_defaults(func=show_cmd)

    p = sub.add_parser(
        "replay",
        help="run a recorded recipe again, as a new run linked to the old one (a SWEEP: "
        "the whole study, as a new sweep)",
        description="Launch RUN's recorded recipe (with --set overrides) as a new run whose "
        "parent is RUN, and supervise it headless. Exit codes as for `ftmon run`. Secrets "
        "were not recorded: they are read from the environment.",
    )
    p.add_argument("run_ref", metavar="RUN")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--headless", action="store_true", help="(always headless; accepted)")
    p.add_argument(
        "--force",
        action="store_true",
        help="launch even if the memory estimate or the check of what it writes says no",
    )
    add_supervision_flags(p)
    p.set_defaults(func=replay_cmd)

    p = sub.add_parser("diff", help="what differs between two runs: recipe, argv, environment")
    p.add_argument("run_a", metavar="RUN")
    p.add_argument("run_b", metavar="RUN")
    p.add_argument("--json", action="store_true")
    p.add_argument("--logs-dir", type=_path, default=None)
    p.set_defaults(func=diff_cmd)


def _path(text: str) -> Any:
    from pathlib import Path

    return Path(text)


def _open(args: argparse.Namespace, quiet_if_missing: bool = False) -> Any:
    """The history database, or None after printing why (exit 2)."""
    from supervisor.store.history import History, HistoryError

    db = logs_dir_of(args) / DB_NAME
    if db.parent.exists() and not db.parent.is_dir():
        print(f"ftmon: {db.parent} is a file, not a logs folder", file=sys.stderr)
        return None
    if not db.exists():
        if not quiet_if_missing:
            print(
                f"ftmon: no history yet: {db} does not exist (runs started with `ftmon run` are "
                "recorded there; another folder: --logs-dir or $FTMON_HOME)",
                file=sys.stderr,
            )
        return None
    try:
        return History(db)
    except HistoryError as exc:
        print(f"ftmon: {exc}", file=sys.stderr)
        return None


def _resolve(history: Any, ref: str) -> Any:
    from supervisor.store.history import HistoryError

    try:
        return history.resolve(ref)
    except HistoryError as exc:
        print(f"ftmon: {exc}", file=sys.stderr)
        return None


def _started(rec: Any) -> str:
    """Why the run started, with what it changed (a replay's --set) unless the reason says it."""
    what = "; ".join(rec.changes)
    if not what or what in rec.reason_started:
        return rec.reason_started
    return f"{rec.reason_started}: {what}"


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _record_json(rec: Any) -> dict[str, Any]:
    from supervisor.runs.records import command_line

    return {
        "id": rec.id,
        "name": rec.name,
        "attempt": rec.attempt,
        "parent_id": rec.parent_id,
        "status": rec.status,
        "reason_started": rec.reason_started,
        "end_reason": rec.end_reason,
        "changes": list(rec.changes),
        "started_at": rec.started_at,
        "ended_at": rec.ended_at,
        "returncode": rec.returncode,
        "signal": rec.signal,
        "pid": rec.pid,
        "argv": list(rec.argv),
        "cwd": rec.cwd,
        "env": rec.env,
        "command": command_line(rec),
        "run_dir": rec.run_dir,
        "log_path": rec.log_path,
        "executor": rec.executor,  # where it runs: a Slurm job's id, torchrun's ranks
    }


# --- history --------------------------------------------------------------------------------


def history_cmd(args: argparse.Namespace) -> int:
    from supervisor.runs.records import command_line

    if args.n is not None and not 1 <= args.n <= 1_000_000:  # 0 said "no runs recorded yet"
        raise UsageError(f"-n {args.n}: a number of runs from 1 to 1000000")
    # No database yet is an empty history, not an error: a script reading `--json` gets [].
    history = _open(args, quiet_if_missing=True)
    db = logs_dir_of(args) / DB_NAME
    if history is None and (db.exists() or (not db.parent.is_dir() and db.parent.exists())):
        return EXIT_USAGE
    runs = history.runs(limit=args.n) if history is not None else []
    if args.json:
        from supervisor.report.metrics import latest_json

        rows = [{**_record_json(r), "metrics": latest_json(history, r.id)} for r in runs]
        print(json.dumps(rows, indent=2))
        return EXIT_OK
    if not runs:
        where = logs_dir_of(args) / DB_NAME
        print(f"no runs recorded yet in {where} (start one with `ftmon run RECIPE --headless`)")
        return EXIT_OK
    # One line a run within 100 columns (the parent goes on the line below, with why it
    # started), then the command, which is pasted whole however long it is.
    width = max(len(r.id) for r in runs)
    print(f"{'ID':{width}}  {'NAME':16} {'ATT':>3}  {'STATUS':9} REASON")
    for r in runs:
        reason = r.end_reason if not r.live else ("paused" if r.status == "paused" else "")
        reason = "" if reason == r.status else reason  # not `finished  finished`
        row = f"{r.id:{width}}  {r.name:16} {r.attempt:>3}  {r.status:9} {reason}"
        print(row if len(row) <= 100 else row[:99] + "…")  # `ftmon show` has it whole
        started = _started(r)
        if r.parent_id and r.parent_id not in started:
            started = f"{started} (parent {r.parent_id})" if started else f"parent {r.parent_id}"
        if started:
            print(f"    started: {started}")
        if r.executor and r.executor.get("job_id"):
            print(f"    slurm job: {r.executor['job_id']}")
        print(f"    $ {command_line(r)}")
    return EXIT_OK


# --- show -----------------------------------------------------------------------------------


def show_cmd(args: argparse.Namespace) -> int:
    from supervisor.report.metrics import run_metrics
    from supervisor.runs.executors.choose import where_it_runs
    from supervisor.runs.records import command_line, outcome

    history = _open(args)
    rec = _resolve(history, args.run_ref) if history is not None else None
    if rec is None:
        return EXIT_USAGE
    parent = history.get(rec.parent_id) if rec.parent_id else None
    children = history.children(rec.id)
    anomalies = history.anomalies(rec.id)
    actions = history.actions(rec.id)
    states = history.states(rec.id)
    decisions = history.decisions(rec.id)
    if args.json:
        data = _record_json(rec)
        data["recipe_yaml"] = rec.recipe_yaml
        data["anomalies"] = [
            {"rule": a.rule, "severity": str(a.severity), "message": a.message,
             "lineno": a.lineno, "ts": a.ts, "evidence": list(a.evidence)}
            for a in anomalies
        ]  # fmt: skip
        data["actions"] = [
            {"kind": a.kind, "rule": a.rule, "detail": a.detail, "ok": a.ok, "ts": a.ts}
            for a in actions
        ]
        data["states"] = [
            {"ts": s.ts, "old": s.old, "new": s.new, "cause": s.cause, "rule": s.rule}
            for s in states
        ]
        data["decisions"] = [
            {"ts": d.ts, "kind": d.kind, "rule": d.rule, "reason": d.reason,
             "changes": list(d.changes), "done_at": d.done_at, "outcome": d.outcome}
            for d in decisions
        ]  # fmt: skip
        data["notify_failures"] = [
            {"target": f.target, "event": f.event, "title": f.title, "attempts": f.attempts,
             "error": f.error, "ts": f.ts}
            for f in history.notify_failures(rec.id)
        ]  # fmt: skip
        data["lineage"] = [r.id for r in history.lineage(rec.id)]
        member = history.sweep_member_of(rec.id)
        data["sweep"] = (
            {"id": member.sweep_id, "member": member.member, "values": member.values}
            if member
            else None
        )
        data["children"] = [
            {"id": c.id, "reason": c.reason_started, "changes": list(c.changes)} for c in children
        ]
        data["metrics"] = run_metrics(history, rec.id).to_json()
        data["runs_on"] = where_it_runs(rec.executor)
        print(json.dumps(data, indent=2))
        return EXIT_OK
    out = [f"run       {rec.id}  ({rec.name}, attempt {rec.attempt})"]
    how = outcome(rec.status, rec.end_reason or "")
    if rec.returncode is not None:
        how += f" (exit code {rec.returncode})"
    if rec.signal is not None:
        how += f" (signal {rec.signal})"
    out.append(f"outcome   {how}")
    out.append(f"started   {_when(rec.started_at)}   ended {_when(rec.ended_at)}")
    if rec.reason_started:
        out.append(f"reason    {_started(rec)}")
    member = history.sweep_member_of(rec.id)
    if member is not None:
        values = " ".join(f"{k}={v}" for k, v in member.values.items())
        out.append(f"sweep     {member.sweep_id}  member {member.member} ({values})")
    where = where_it_runs(rec.executor)
    if where:
        out.append(f"runs on   {where}")
    out.append(f"folder    {rec.run_dir}")
    out.append(f"log       {rec.log_path}")
    out.append(f"command   {command_line(rec)}")
    out.append("environment (set by ftmon on top of its own; secrets redacted)")
    out += [f"    {k}={v}" for k, v in sorted(rec.env.items())] or ["    (none)"]
    out.append("recipe")
    out += [f"    {line}" for line in rec.recipe_yaml.rstrip().splitlines()]
    out.append(f"anomalies ({len(anomalies)})")
    out += [f"    {a.one_line()}" for a in anomalies]
    out.append(f"actions ({len(actions)})")
    out += [f"    {_when(a.ts)}  {a.kind} [{a.rule}]{'' if a.ok else ' FAILED'}: {a.detail}"
            for a in actions]  # fmt: skip
    out.append(f"states ({len(states)})")
    out += [f"    {_when(s.ts)}  {s.old or '(new)'} -> {s.new}: {s.cause}" for s in states]
    if decisions:
        out.append(f"decisions ({len(decisions)})")
        out += [
            f"    {_when(d.ts)}  {d.kind} [{d.rule}]: "
            + (f"done {_when(d.done_at)}: {d.outcome}" if d.done_at else "NOT FINISHED")
            for d in decisions
        ]
    failures = history.notify_failures(rec.id)
    if failures:
        out.append(f"notifications not delivered ({len(failures)})")
        out += [f"    {_when(f.ts)}  {f.target}: {f.event} after {f.attempts} attempt(s): {f.error}"
                for f in failures]  # fmt: skip
    out.append("lineage")
    for r in history.lineage(rec.id):
        mark = "*" if r.id == rec.id else " "
        changes = f"  [{'; '.join(r.changes)}]" if r.changes else ""
        out.append(f"  {mark} {r.id}  attempt {r.attempt}  {r.status}{changes}")
    if parent is not None:
        out.append(f"    parent: {parent.id}")
    for c in children:
        why = c.reason_started or "-"
        out.append(f"    child:  {c.id}  ({why})")
    out += run_metrics(history, rec.id).lines()  # last: what people look for first
    print("\n".join(out))
    return EXIT_OK


# --- replay ---------------------------------------------------------------------------------


def replay_cmd(args: argparse.Namespace) -> int:
    from supervisor.recipe.model import RecipeError
    from supervisor.runs.replay import replay_recipe

    history = _open(args)
    sweep = history.sweep(args.run_ref) if history is not None else None
    if sweep is not None:  # `ftmon replay SWEEP` runs the whole study again
        from supervisor.cli.sweep import replay_sweep

        return replay_sweep(args, history, sweep)
    rec = _resolve(history, args.run_ref) if history is not None else None
    if rec is None:
        return EXIT_USAGE
    history.close()
    try:  # a recipe or a --set that does not validate is bad usage, said before anything starts
        replay_recipe(rec, args.sets)
    except RecipeError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE

    async def start(sup: Any) -> str:
        return await sup.replay(rec.id, args.sets, force=args.force)

    return supervise_headless(logs_dir_of(args), start, kill_on_exit=args.kill_on_exit)


# --- diff -----------------------------------------------------------------------------------


def diff_cmd(args: argparse.Namespace) -> int:
    from supervisor.runs.records import diff_runs

    history = _open(args)
    if history is None:
        return EXIT_USAGE
    a, b = _resolve(history, args.run_a), _resolve(history, args.run_b)
    if a is None or b is None:
        return EXIT_USAGE
    diff = diff_runs(a, b)
    if args.json:
        print(json.dumps(diff.to_json(), indent=2, default=str))
    else:
        print("\n".join(diff.lines()))
    return EXIT_OK
