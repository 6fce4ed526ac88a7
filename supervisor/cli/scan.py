"""`ftmon scan LOG...`: read finished logs once and print what `--watch` would have reported.

    ftmon scan train.log
    ftmon scan train.log --json --min-severity error
    ftmon scan logs/rank*.log            # a multi-node job's 64 rank logs, on every core

Several logs are read side by side, one process per core (`--jobs`), each by its own Monitor
(a log's rules never see another's lines), and reported in the order given, each anomaly
tagged with its log. Exit codes: 0 nothing of at least --min-severity (default warning) found,
1 anomalies found, 2 bad usage or an unreadable log (missing, or not text: a checkpoint given by
mistake); the other logs are still read and reported; 130 Ctrl-C or SIGTERM (the workers ended).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path
from typing import Any

from supervisor.cli.watch import add_common_options

SEVERITIES = ("info", "warning", "error", "critical")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan",
        help="read finished logs once and report their anomalies",
        description="Read each LOG once and print its anomalies and a summary; several logs "
        "are read in parallel, one process per core. Exit codes: 0 nothing found, 1 anomalies "
        "found, 2 bad usage or unreadable input.",
    )
    p.add_argument("logs", metavar="LOG", nargs="+", help="the log file(s) to read")
    p.add_argument(
        "--jobs", "-j", type=int, default=None, metavar="N",
        help="logs read at once (default: one per CPU core)",
    )  # fmt: skip
    p.add_argument(
        "--min-severity",
        choices=SEVERITIES,
        default="warning",
        help="report (and count for the exit code) anomalies at least this severe (warning)",
    )
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from supervisor.cli.main import EXIT_FOUND, EXIT_OK, EXIT_USAGE, UsageError
    from supervisor.cli.watch import Printer, build_monitor, watch_settings
    from supervisor.events import Severity

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs: must be 1 or more")
    minimum = Severity[args.min_severity.upper()]
    # Settings and patterns are checked here, once, so that a bad --set is one line, not one
    # per log; this Monitor reads the first log (each other log gets its own, in a worker).
    settings = watch_settings(args.set)
    monitor = build_monitor(args, settings)
    if len(args.logs) == 1:
        results = [_scan_one(args.logs[0], monitor)]
    else:
        rules = tuple(args.extra_rules)
        results = _scan_many(args.logs, args.pattern, settings, rules, args.jobs)
    printer = Printer(args.json)
    status = EXIT_OK
    for log, outcome in zip(args.logs, results, strict=True):
        if isinstance(outcome, str):  # could not be read: say why, read the others
            sys.stdout.flush()  # in order with what was printed about the logs before it
            print(f"ftmon: {outcome}", file=sys.stderr)
            status = EXIT_USAGE
            continue
        summary, anomalies = outcome
        if len(args.logs) > 1:
            printer.source = log
        for a in anomalies:
            if a.severity >= minimum:
                printer.anomaly(a)
        printer.summary(summary, minimum)
        if summary.lines == 0:
            print(
                f"ftmon: {log} is empty; to follow a log as it grows: ftmon --watch {log}",
                file=sys.stderr,
            )
        if summary.found(minimum) and status == EXIT_OK:
            status = EXIT_FOUND
    if len(args.logs) > 1 and not args.json:
        read = [r for r in results if not isinstance(r, str)]
        found = sum(1 for r in read if r[0].found(minimum))
        print(f"-- {len(read)} of {len(args.logs)} logs read, {found} with anomalies --")
    return status


def _scan_one(log: str, monitor: Any) -> Any:
    """(summary, anomalies) of one log, or why it could not be read (a line for the user)."""
    from supervisor.cli.main import UsageError
    from supervisor.cli.watch import check_log
    from supervisor.events import Anomaly
    from supervisor.monitoring.watch import WatchSummary, scan_file

    try:
        path = check_log(log)  # also refuses a file that is not text
        summary = WatchSummary(path=str(path))
        events = scan_file(path, monitor, summary, keep=lambda e: isinstance(e, Anomaly))
    except UsageError as exc:
        return str(exc)
    except OSError as exc:
        return f"{log}: cannot read: {exc.strerror or exc}"
    return summary, events


def _scan_own(log: str, patterns: list[str], settings: Any, rules: tuple[Any, ...]) -> Any:
    """`_scan_one` with a Monitor of the log's own (its rules never see another log's lines).

    Runs in a worker process when several logs are read: it takes and returns only what pickles.
    """
    from supervisor.cli.watch import build_monitor

    args = argparse.Namespace(pattern=patterns, extra_rules=rules)
    return _scan_one(log, build_monitor(args, settings))  # checked once by `run` already


def _scan_many(
    logs: list[str], patterns: list[str], settings: Any, rules: tuple[Any, ...], jobs: int | None
) -> list:
    """`_scan_own` of each log, `jobs` at a time in worker processes, in the order given."""
    import multiprocessing

    workers = min(len(logs), jobs or os.cpu_count() or 1)
    if workers == 1:
        return [_scan_own(log, patterns, settings, rules) for log in logs]
    # fork: the workers start with what this process has imported (no second start-up), and
    # nothing here runs threads yet. Ctrl-C is this process's to act on, by ending the workers
    # at once: a worker's own KeyboardInterrupt would only end its log and let it take the next
    # one, and a pool shut down in order first finishes the logs being read. `kill` (SIGTERM)
    # stops it the same way, as it stops `ftmon --watch` (ended where it stood, ftmon would
    # leave the workers reading on, orphaned). Both are blocked while the workers are forked,
    # so none reaches a half-started pool; the workers keep SIGINT blocked.
    context = multiprocessing.get_context("fork")
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    on_term = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        with context.Pool(workers, initializer=_start_worker) as pool:  # `with` terminates them
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            work = [(log, patterns, settings, rules) for log in logs]
            return pool.starmap(_scan_own, work, chunksize=1)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGTERM, on_term)


def _start_worker() -> None:
    """In each worker: SIGTERM, how the pool ends its workers, ends it (Ctrl-C stays blocked)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def looks_like_text(path: Path, sample: int = 8192) -> bool:
    """False for a file whose first bytes are a binary's (a checkpoint or an archive given by
    mistake): over 1 in 20 of them NUL or control bytes no text log has. A log with a few stray
    NULs or invalid bytes is still a log (the reader cleans them); so is a Latin-1 one. So is a
    log that starts with a run of NULs: logrotate's copytruncate under `train.py > train.log`
    (the trainer writes on at its old offset, leaving a hole), judged by the text after it."""
    try:
        with path.open("rb") as f:
            head = f.read(sample)
            while head and not head.strip(b"\x00"):  # all NUL so far: the hole goes on
                head = f.read(1 << 20)
            head = head.lstrip(b"\x00")
            head += f.read(max(0, sample - len(head)))
    except OSError:
        return True  # the scan itself says why it cannot read
    if not head:
        return True
    # Control bytes, not undecodable ones: a Latin-1 log is still a log.
    odd = sum(1 for b in head if b < 32 and b not in b"\t\n\r\x1b\x08\x0c\x07")
    return odd * 20 <= len(head)
