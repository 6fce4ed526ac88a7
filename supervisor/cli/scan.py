"""`ftmon scan LOG`: read a finished log once and print what `--watch` would have reported.

    ftmon scan train.log
    ftmon scan train.log --json --min-severity error

Exit codes: 0 nothing of at least --min-severity (default warning) found, 1 anomalies found,
2 bad usage or an unreadable log (missing, or not text: a checkpoint given by mistake).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from supervisor.cli.watch import add_common_options

SEVERITIES = ("info", "warning", "error", "critical")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "scan",
        help="read a finished log once and report its anomalies",
        description="Read LOG once and print its anomalies and a summary. Exit codes: 0 "
        "nothing found, 1 anomalies found, 2 bad usage or unreadable input.",
    )
    p.add_argument("log", metavar="LOG", help="the log file to read")
    p.add_argument(
        "--min-severity",
        choices=SEVERITIES,
        default="warning",
        help="report (and count for the exit code) anomalies at least this severe (warning)",
    )
    add_common_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from supervisor.cli.main import EXIT_FOUND, EXIT_OK, UsageError
    from supervisor.cli.watch import Printer, build_monitor, check_log, watch_settings
    from supervisor.events import Anomaly, Severity
    from supervisor.monitoring.watch import WatchSummary, scan_file

    path = check_log(args.log)  # also refuses a file that is not text
    monitor = build_monitor(args, watch_settings(args.set))
    minimum = Severity[args.min_severity.upper()]
    printer = Printer(args.json)
    summary = WatchSummary(path=str(path))
    try:
        events = scan_file(path, monitor, summary, keep=lambda e: isinstance(e, Anomaly))
    except OSError as exc:
        raise UsageError(f"{args.log}: cannot read: {exc.strerror or exc}") from None
    for event in events:
        if isinstance(event, Anomaly) and event.severity >= minimum:
            printer.anomaly(event)
    printer.summary(summary)
    if summary.lines == 0:
        print(
            f"ftmon: {args.log} is empty; to follow a log as it grows: ftmon --watch {args.log}",
            file=sys.stderr,
        )
    return EXIT_FOUND if summary.found(minimum) else EXIT_OK


def looks_like_text(path: Path, sample: int = 8192) -> bool:
    """False for a file whose first bytes are a binary's (a checkpoint or an archive given by
    mistake): over 1 in 20 of them NUL or control bytes no text log has. A log with a few stray
    NULs or invalid bytes is still a log (the reader cleans them); so is a Latin-1 one."""
    try:
        with path.open("rb") as f:
            head = f.read(sample)
    except OSError:
        return True  # the scan itself says why it cannot read
    if not head:
        return True
    # Control bytes, not undecodable ones: a Latin-1 log is still a log.
    odd = sum(1 for b in head if b < 32 and b not in b"\t\n\r\x1b\x08\x0c\x07")
    return odd * 20 <= len(head)
