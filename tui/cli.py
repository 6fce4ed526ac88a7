"""The `ftmon` console script: the TUI with no command, the headless CLI otherwise.

It lives in tui/ because it is the one place that knows both front ends; it imports textual only
when the TUI is really wanted, so `ftmon --help` and `ftmon --watch` start fast.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def wants_tui(argv: Sequence[str]) -> bool:
    """No arguments, `tui ...`, or a single recipe path (`ftmon recipes/demo.yaml`)."""
    if not argv:
        return True
    if argv[0] == "tui":
        return True
    if argv[0] == "run" and "--headless" not in argv and not {"-h", "--help"} & set(argv):
        return True  # `ftmon run RECIPE` without --headless opens the TUI with it launched
    first = argv[0]
    return not first.startswith("-") and first.endswith((".yaml", ".yml"))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if wants_tui(args):
        from tui.app import main as tui_main  # textual is imported only here

        return tui_main(args[1:] if args and args[0] in ("tui", "run") else args)
    from supervisor.cli import main as cli_main

    return cli_main(args)


if __name__ == "__main__":
    sys.exit(main())
