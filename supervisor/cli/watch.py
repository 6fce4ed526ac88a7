"""`ftmon --watch LOG`: follow a training log, print each anomaly, act on a process if asked.

    ftmon --watch train.log                       # from the end of the file, until Ctrl-C
    ftmon --watch train.log --from-start --json   # read it all first; JSON lines
    ftmon --watch train.log --pid 4242 --on nan=kill --on vram=pause

It ends when `--pid` exits, or on Ctrl-C / SIGTERM, and prints a summary. Exit codes: 0 nothing
of severity warning or worse found, 1 anomalies found, 2 bad usage or an unreadable log.
This module also holds what `ftmon scan` shares with it: option parsing and the printer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import stat
import sys
import time
from pathlib import Path
from typing import Any, TextIO

ACTIONS = ("alert", "pause", "kill")
_CONTROL = {c: " " for c in range(32)}  # one line stays one line on any terminal


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="follow a training log and report anomalies (also spelled `ftmon --watch LOG`)",
        description="Follow LOG (from its end unless --from-start), print each anomaly as it "
        "is found, and end with a summary when --pid exits or on Ctrl-C. Exit codes: 0 nothing "
        "found, 1 anomalies found, 2 bad usage or unreadable input.",
    )
    p.add_argument("log", metavar="LOG", help="the log file to follow")
    p.add_argument("--from-start", action="store_true", help="read the whole file first")
    p.add_argument("--pid", type=int, help="watch this process: its memory, and end when it ends")
    p.add_argument(
        "--on",
        action="append",
        default=[],
        metavar="RULE=ACTION",
        help="act on the --pid process when RULE fires: alert, pause or kill (repeatable)",
    )
    p.add_argument(
        "--grace", type=float, default=10.0, help="seconds between SIGTERM and SIGKILL (10)"
    )
    add_common_options(p)
    p.set_defaults(func=run)


def add_common_options(p: argparse.ArgumentParser) -> None:
    """Options `watch` and `scan` share."""
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--pattern",
        action="append",
        default=[],
        metavar="REGEX",
        help="an extra line parser: a regex with named groups, e.g. 'it (?P<step>\\d+) "
        "l=(?P<loss>\\S+)' (repeatable)",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a rule setting, e.g. watch.stall.secs=60 or spike.factor=3 (repeatable)",
    )
    p.set_defaults(extra_rules=())  # rules of a program's own: `cli.main.main(argv, rules)`


# ------------------------------------------------------------------ options -> Monitor


def check_log(path: str) -> Path:
    """The log must be a readable regular file of text: otherwise one clear line, exit 2."""
    from supervisor.cli.main import UsageError

    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise UsageError(f"{path}: is a directory, not a log file")
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path}: not a regular file (a pipe or device cannot be followed)")
    if not os.access(p, os.R_OK):
        raise UsageError(f"{path}: permission denied")
    from supervisor.cli.scan import looks_like_text

    if not looks_like_text(p):  # a checkpoint given by mistake: "no anomalies" would mean nothing
        raise UsageError(
            f"{path}: does not look like a text log (binary bytes near its start); "
            "give the training log, e.g. logs/RUN/output.log"
        )
    return p


def watch_settings(sets: list[str]) -> Any:
    """WatchSettings with `--set` overrides (`watch.` prefix optional); bad keys name themselves."""
    from pydantic import ValidationError

    from supervisor.cli.main import UsageError
    from supervisor.recipe.yaml_lines import load_scalar
    from supervisor.rules import WatchSettings

    data: dict[str, Any] = WatchSettings().model_dump()
    for item in sets:
        key, eq, raw = item.partition("=")
        parts = key.strip().split(".")
        if parts and parts[0] == "watch":
            parts = parts[1:]
        if not eq or not parts or not all(parts):
            raise UsageError(f"--set {item!r}: expected KEY=VALUE, e.g. watch.stall.secs=60")
        node = data
        for i, part in enumerate(parts[:-1]):
            if not isinstance(node.get(part), dict):
                where = ".".join(["watch", *parts[: i + 1]])
                raise UsageError(f"--set {item!r}: {where} is not a rule with settings")
            node = node[part]
        node[parts[-1]] = load_scalar(raw)
    try:
        settings = WatchSettings.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(["watch", *(str(x) for x in err["loc"])])
        raise UsageError(f"--set: {where}: {err['msg'].removeprefix('Value error, ')}") from None
    from supervisor.recipe.model import duration_problems

    for loc, msg in duration_problems(settings.model_dump(), ("watch",)):  # finite, bounded
        raise UsageError(f"--set: {'.'.join(map(str, loc))}: {msg}")
    return settings


def build_monitor(args: argparse.Namespace, settings: Any) -> Any:
    """The Monitor that `--pattern` and the settings (from `--set`) describe."""
    from supervisor.cli.main import UsageError
    from supervisor.monitoring.monitor import Monitor

    for pattern in args.pattern:
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise UsageError(f"--pattern {pattern!r}: {exc}") from None
        if not compiled.groupindex:
            raise UsageError(f"--pattern {pattern!r}: needs named groups, e.g. (?P<loss>[0-9.]+)")
    try:
        return Monitor(settings, patterns=tuple(args.pattern), extra_rules=args.extra_rules)
    except (ValueError, re.error) as exc:
        raise UsageError(f"--pattern: {exc}") from None


def parse_on(items: list[str], have_pid: bool) -> dict[str, str]:
    """`--on RULE=ACTION` options as {rule: action}."""
    from supervisor.cli.main import UsageError
    from supervisor.rules import WatchSettings  # the rule names, without the recipe machinery

    out: dict[str, str] = {}
    known = tuple(WatchSettings.model_fields)
    for item in items:
        rule, eq, action = item.partition("=")
        rule, action = rule.strip(), action.strip()
        if not eq or not rule or not action:
            raise UsageError(f"--on {item!r}: expected RULE=ACTION, e.g. nan=kill")
        if rule not in known:
            raise UsageError(f"--on {item!r}: unknown rule {rule!r} (rules: {', '.join(known)})")
        if action not in ACTIONS:
            raise UsageError(f"--on {item!r}: unknown action {action!r} (alert, pause, kill)")
        if rule == "exit" and action != "alert":
            raise UsageError(
                f"--on {item!r}: the process has already ended when `exit` fires: only alert"
            )
        if action != "alert" and not have_pid:
            raise UsageError(f"--on {item!r}: {action} needs --pid PID")
        out[rule] = action
    return out


# ------------------------------------------------------------------ output


class Printer:
    """Anomalies, actions and the summary, as readable lines or as JSON lines."""

    def __init__(self, as_json: bool, out: TextIO | None = None) -> None:
        self.as_json = as_json
        # sys.stdout as it is now, not as it was at import (a default argument would keep the
        # stream of the first import, closed or redirected since).
        self.out = out if out is not None else sys.stdout
        # The log each line is about, when one command reports several (`ftmon scan a b`).
        self.source = ""

    def _json(self, obj: dict[str, Any]) -> None:
        if self.source:
            obj = {"log": self.source, **obj}
        try:
            self.out.write(json.dumps(obj, ensure_ascii=False, allow_nan=False) + "\n")
        except UnicodeEncodeError:  # a lone surrogate (a JSON log's "\\ud800"), an ASCII stdout
            self.out.write(json.dumps(obj, ensure_ascii=True, allow_nan=False) + "\n")
        self.out.flush()

    def _write(self, text: str) -> None:
        """`text` as it is, or with what the output cannot encode (a lone surrogate from a
        JSON log's `"\\ud800"`, or any letter on an ASCII terminal) escaped: `\\ud800`."""
        try:
            self.out.write(text)
        except UnicodeEncodeError:
            encoding = getattr(self.out, "encoding", None) or "utf-8"
            self.out.write(text.encode(encoding, "backslashreplace").decode(encoding))

    def _text(self, ts: float, text: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(ts))
        where = f"{self.source}: " if self.source else ""
        self._write(f"{stamp}  {where}{text.translate(_CONTROL)}\n")
        self.out.flush()

    def anomaly(self, a: Any) -> None:
        from supervisor.redaction import redact_anomaly

        a = redact_anomaly(a)  # a token the child printed is not shown again (issue 10)
        if self.as_json:
            self._json(
                {
                    "type": "anomaly",
                    "rule": a.rule,
                    "severity": str(a.severity),
                    "message": a.message,
                    "lineno": a.lineno,
                    "evidence": list(a.evidence),
                    "ts": a.ts,
                    "run_id": a.run_id,
                }
            )
        else:
            self._text(a.ts, a.one_line())

    def action(self, act: Any) -> None:
        if self.as_json:
            self._json(
                {
                    "type": "action",
                    "kind": act.kind,
                    "rule": act.rule,
                    "detail": act.detail,
                    "ok": act.ok,
                    "ts": act.ts,
                }
            )
        else:
            outcome = "" if act.ok else "  (FAILED)"
            self._text(act.ts, f"ACTION   {act.kind} on {act.rule}: {act.detail}{outcome}")

    def summary(self, summary: Any, min_severity: Any = None) -> None:
        """`min_severity`: the anomalies below it were not printed, so not counted either."""
        from supervisor.events import Severity

        minimum = Severity.INFO if min_severity is None else min_severity
        if self.as_json:
            self._json(summary.to_json(minimum))
        else:
            self.out.write("-- summary --\n")
            for line in summary.report(minimum):
                self._write(line + "\n")
            self.out.flush()


# ------------------------------------------------------------------ acting on the pid


class Actor:
    """Carries out `--on` actions on the watched pid: the run's state (runs/state.py) and the
    one policy engine the supervisor uses (runs/engine.py) decide, the local executor acts.
    So a paused run is not paused twice, is not judged stalled while stopped (by ftmon or
    from a shell), and is killed once."""

    def __init__(self, pid: int, start_time: float, log: Path, grace: float, on: dict[str, str],
                 printer: Printer) -> None:  # fmt: skip
        import asyncio

        from supervisor.runs.engine import PolicyEngine
        from supervisor.runs.executors.local import LocalExecutor
        from supervisor.runs.state import RunState

        self.executor = LocalExecutor()
        self.handle = self.executor.foreign(pid, start_time, log)
        self.grace = grace
        self.printer = printer
        self.state = RunState.RUNNING
        self.engine = PolicyEngine(lambda rule: on.get(rule, ""))
        self.tasks: set[asyncio.Task[None]] = set()
        self.killed_because = ""
        self.monitor: Any = None

    def watching(self, monitor: Any) -> Any:
        """`monitor` as this run's state lets it see time (StateAwareMonitor)."""
        from supervisor.runs.engine import StateAwareMonitor
        from supervisor.runs.state import RunState

        self.monitor = StateAwareMonitor(
            monitor,
            state=lambda: self.state,
            stopped=lambda: self.executor.stopped(self.handle),
            on_stopped=lambda ts: self._move(RunState.PAUSED),
            on_continued=self._continued,
            kill_reason=lambda: self.killed_because,
            on_exit=lambda exit_: self._move(RunState.EXITED),
        )
        return self.monitor

    def _move(self, new: Any) -> None:
        from supervisor.runs.state import change_state

        if self.state is not new:
            change_state("--pid", self.state, new, ts=time.time(), cause="")  # checks the move
            self.state = new

    def _continued(self, ts: float) -> None:
        """`kill -CONT` from a shell: running again, the stall clock restarts now."""
        from supervisor.events import Action
        from supervisor.runs.state import RunState

        self._move(RunState.RUNNING)
        self.monitor.resumed(ts)
        self.printer.action(Action("resume", "user", ts, detail="resumed from outside ftmon"))

    def act(self, anomaly: Any) -> None:
        import asyncio

        from supervisor.events import Action
        from supervisor.runs.state import RunState

        action = self.engine.decide(self.state, anomaly)
        now = time.time()
        if action == "alert":
            if self.printer.out.isatty():
                sys.stderr.write("\a")  # the terminal bell: someone may be in another window
            self.printer.action(Action("alert", anomaly.rule, now, detail=anomaly.message))
        elif action == "pause":
            self._move(RunState.PAUSING)
            ok = self.executor.pause(self.handle)
            self._move(RunState.PAUSED if ok else RunState.RUNNING)
            pid = self.handle.pid
            detail = f"SIGSTOP to {pid} and its descendants; resume: kill -CONT {pid}"
            detail = detail if ok else "it is gone"
            self.printer.action(Action("pause", anomaly.rule, now, detail=detail, ok=ok))
        elif action == "kill":
            self._move(RunState.KILLING)
            self.killed_because = f"{anomaly.rule}: {anomaly.message}"
            task = asyncio.create_task(self._kill(anomaly.rule))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def _kill(self, rule: str) -> None:
        from supervisor.events import Action

        report = await self.executor.kill(self.handle, self.grace)
        self.printer.action(
            Action("kill", rule, time.time(), detail=report.detail(), ok=report.all_gone)
        )

    async def finish(self) -> None:
        import asyncio

        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


# ------------------------------------------------------------------ the command


def run(args: argparse.Namespace) -> int:
    import asyncio

    from supervisor.cli.main import EXIT_FOUND, EXIT_OK, UsageError
    from supervisor.runs.executors import process

    path = check_log(args.log)
    if not 0 <= args.grace <= 3600:  # nan, inf, negative: a kill that never ends or fails
        raise UsageError(f"--grace {args.grace:g}: seconds from 0 to 3600")
    on = parse_on(args.on, args.pid is not None)
    settings = watch_settings(args.set)
    monitor = build_monitor(args, settings)
    start_time = None
    if args.pid is not None:
        if args.pid <= 0:  # psutil raises on these; kill(2) would read them as groups
            raise UsageError(f"--pid {args.pid}: a process id is a positive number")
        start_time = process.start_time_of(args.pid)
        if start_time is None:
            raise UsageError(f"--pid {args.pid}: no such process")
        if set(on.values()) - {"alert"} and args.pid in _self_and_parents():
            raise UsageError(
                f"--pid {args.pid}: is ftmon itself or one of its parents (your shell?): "
                "pause or kill would hit ftmon too"
            )
    printer = Printer(args.json)
    poll_secs = float(getattr(getattr(settings, "vram", None), "poll_secs", 0.5) or 0.5)

    async def main() -> Any:
        from supervisor.events import Anomaly
        from supervisor.monitoring.watch import start_of_last_line, watch_log

        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        offset, lineno = (0, 0) if args.from_start else start_of_last_line(path)
        # On stderr, so that stdout stays anomalies only (and pure JSON with --json). Anything
        # written to the log from now on will be read: scripts may wait for this line.
        target = f", pid {args.pid}" if args.pid is not None else ""
        print(f"ftmon: watching {path} from line {lineno + 1}{target}", file=sys.stderr, flush=True)
        actor = None
        if args.pid is not None:
            assert start_time is not None
            actor = Actor(args.pid, start_time, path, args.grace, on, printer)

        def on_event(event: Any) -> None:
            if not isinstance(event, Anomaly):
                return
            printer.anomaly(event)
            if actor is not None:
                actor.act(event)

        try:
            summary = await watch_log(
                path,
                actor.watching(monitor) if actor is not None else monitor,
                on_event,
                offset=offset,
                lineno=lineno,
                pid=args.pid,
                poll_secs=poll_secs,
                stop=stop,
                start_time=start_time,
            )
            if actor is not None:
                await actor.finish()
                if summary.exit is not None and actor.killed_because:
                    summary.exit = _killed(summary.exit, actor.killed_because)
            return summary
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)

    try:
        summary = asyncio.run(main())
    except OSError as exc:
        raise UsageError(f"{args.log}: cannot read: {exc.strerror or exc}") from None
    printer.summary(summary)
    return EXIT_FOUND if summary.found() else EXIT_OK


def _self_and_parents() -> set[int]:
    import psutil

    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


def _killed(exit_: Any, why: str) -> Any:
    from dataclasses import replace

    return replace(exit_, killed_by_ftmon=why)
