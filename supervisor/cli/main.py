"""`ftmon` command line: the headless subcommands. The TUI entry point is tui/cli.py.

Exit codes (documented in README):
    0  nothing found / the run finished cleanly
    1  anomalies found (watch, scan) / the last attempt failed or was killed (run, replay)
    2  bad usage, a bad recipe or an unreadable input
    130 interrupted by Ctrl-C (supervision stopped; a launched run keeps running)
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from supervisor import __version__

# Order is the order `ftmon --help` lists them in.
COMMAND_MODULES = (
    "supervisor.cli.watch",
    "supervisor.cli.scan",
    "supervisor.cli.run",
    "supervisor.cli.attach",
    "supervisor.cli.history",
    "supervisor.cli.estimate",
    "supervisor.cli.notify",
    "supervisor.cli.sweep",
    "supervisor.cli.compare",
    "supervisor.cli.report",
)

# The exit codes of every command, here only (README "Exit codes").
EXIT_OK = 0
EXIT_FOUND = 1  # `--watch` / `scan`: anomalies found
EXIT_FAILED = 1  # `run` / `attach` / `replay`: the last attempt failed or was killed, or the
# chain of relaunches stopped
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ftmon",
        description="Training monitor and supervisor for language-model fine-tuning. "
        "With no command, opens the interactive TUI.",
        epilog="Exit codes: 0 nothing found / clean, 1 anomalies found / run failed, "
        "2 bad usage or input, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"ftmon {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def normalise_argv(argv: Sequence[str]) -> list[str]:
    """`ftmon --watch LOG ...` is the documented spelling of `ftmon watch LOG ...`."""
    args = list(argv)
    if args and (args[0] == "--watch" or args[0].startswith("--watch=")):
        if "=" in args[0]:
            return ["watch", args[0].split("=", 1)[1], *args[1:]]
        return ["watch", *args[1:]]
    return args


def main(argv: Sequence[str] | None = None, extra_rules: Sequence[object] = ()) -> int:
    """`extra_rules`: Rule objects a program embedding ftmon adds to `watch` and `scan`'s
    Monitor, after the built-in ones (tests/programs/ftmon_extra_rule.py)."""
    args_in = normalise_argv(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(args_in)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    if extra_rules:
        args.extra_rules = tuple(extra_rules)
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"ftmon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `ftmon history | head`: the reader left; stop quietly, as other Unix tools do.
        # Point stdout at /dev/null so the interpreter's final flush does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
