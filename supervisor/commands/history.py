"""`ftmon history`: not built yet (placeholder so the CLI imports; replaced by its issue)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help="(not built yet)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print("ftmon history: not built yet")
    return 2
