"""The `ftmon` console script: the TUI with no command, the headless CLI otherwise.

It lives in tui/ because it is the one place that knows both front ends; it imports textual only
when the TUI is really wanted, so `ftmon --help` and `ftmon --watch` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

# Flags only a headless run has: with them, a recipe is run without the TUI.
HEADLESS_FLAGS = ("--headless", "--kill-on-exit")


def is_recipe(arg: str) -> bool:
    return not arg.startswith("-") and arg.endswith((".yaml", ".yml"))


def route(argv: Sequence[str]) -> tuple[str, list[str]]:
    """("tui", its args) or ("cli", the headless CLI's args).

    The TUI: no arguments, `tui ...`, `ftmon RECIPE ...` or `ftmon run RECIPE ...`. Either recipe
    form with `--headless` or `--kill-on-exit` is the headless `ftmon run`.
    """
    args = list(argv)
    if not args:
        return "tui", []
    if args[0] == "tui":
        return "tui", args[1:]
    headless = any(a in HEADLESS_FLAGS for a in args) or bool({"-h", "--help"} & set(args))
    if args[0] == "run":
        return ("cli", args) if headless else ("tui", args[1:])
    if is_recipe(args[0]):
        return ("cli", ["run", *args]) if headless else ("tui", args)
    return "cli", args


def main(argv: Sequence[str] | None = None) -> int:
    where, args = route(sys.argv[1:] if argv is None else argv)
    if where == "tui":
        from tui.app import main as tui_main  # textual is imported only here

        return tui_main(args)
    from supervisor.cli.main import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
