"""`ftmon attach RUN`: supervise again a run whose supervisor stopped or died.

The run is found in the history (an id, a unique prefix, or `last`); it must still be alive,
with the process start time recorded at launch (a reused pid is not taken for it). Reading goes
on at the stored byte offset and line number: no line read twice, none skipped. Output, exit
codes and Ctrl-C are those of `ftmon run --headless`; a run that ended while nobody watched is
read to its end and closed.
"""

from __future__ import annotations

import argparse

from supervisor.cli.run import add_supervision_flags, logs_dir_of, supervise_headless


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "attach",
        help="reattach to a live run and supervise it headless",
        description="Reattach to RUN (id, unique prefix or `last`) and supervise it as "
        "`ftmon run --headless` would. Exit codes as for `ftmon run`.",
    )
    p.add_argument("run_ref", metavar="RUN", help="run id, a unique prefix of one, or `last`")
    add_supervision_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    async def start(sup) -> str:  # type: ignore[no-untyped-def]
        return await sup.attach(args.run_ref)

    return supervise_headless(logs_dir_of(args), start, kill_on_exit=args.kill_on_exit)
