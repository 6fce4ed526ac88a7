"""`ftmon notify test [RECIPE]`: send a test message to every configured notification target
(the user config's `notify:`, and RECIPE's when given) and say which worked.

Each target gets one attempt, with its own timeout, all at once. Exit code: 0 every target
worked, 1 at least one failed, 2 a bad config file or recipe, or no target configured.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "notify",
        help="notifications: `ftmon notify test` sends a test message to every target",
        description="Notifications (webhooks, commands, the desktop) are configured under "
        "`notify:` in ~/.config/ftmon/config.yaml ($XDG_CONFIG_HOME) and in recipes.",
    )
    actions = p.add_subparsers(dest="notify_action", metavar="ACTION", required=True)
    t = actions.add_parser(
        "test",
        help="send a test message to every configured target and say which worked",
        description="Send a test message to each target of the user config (and of RECIPE). "
        "Exit: 0 all worked, 1 some failed, 2 bad config or recipe, or no target.",
    )
    t.add_argument("recipe", nargs="?", type=Path, help="also test this recipe's targets")
    t.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default: $XDG_CONFIG_HOME/ftmon/config.yaml, ~/.config/...)",
    )
    t.add_argument("--json", action="store_true", help="one JSON object per target, in a list")
    t.set_defaults(func=run_test)


def run_test(args: argparse.Namespace) -> int:
    import time
    from concurrent.futures import ThreadPoolExecutor

    from supervisor.events import Severity
    from supervisor.notify.config import load_user_targets, user_config_path
    from supervisor.notify.delivery import deliver
    from supervisor.notify.message import Notice, redacted, secret_values
    from supervisor.notify.send import send
    from supervisor.recipe.model import RecipeError, load_recipe

    config = args.config or user_config_path()
    try:
        targets = load_user_targets(config)
        if args.recipe is not None:
            targets += load_recipe(args.recipe).notify
    except RecipeError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    if not targets:
        where = f"{config}" + (f" or {args.recipe}" if args.recipe else "")
        print(f"ftmon: no notification targets: add `notify:` to {where}", file=sys.stderr)
        return EXIT_USAGE
    notice = redacted(
        Notice(
            "test", "", time.time(), "ftmon: test message", Severity.INFO,
            seen="nothing: this is a test from `ftmon notify test`",
            did="sent this message to every configured target", look="ftmon history",
        ),
        secret_values(),
    )  # fmt: skip
    once = [t.model_copy(update={"retries": 0}) for t in targets]
    with ThreadPoolExecutor(max_workers=len(once)) as pool:
        results = list(pool.map(lambda t: deliver(t, notice, send), once))
    failed = sum(not r.ok for r in results)
    if args.json:
        rows = [{"target": r.target, "ok": r.ok, "error": r.error, "secs": round(r.secs, 3)}
                for r in results]  # fmt: skip
        print(json.dumps(rows, indent=2))
        return EXIT_FAILED if failed else EXIT_OK
    width = max(len(r.target) for r in results)
    for r in results:
        if r.ok:
            print(f"ok      {r.target:{width}}  ({r.secs:.2f} s)")
        else:
            print(f"FAILED  {r.target:{width}}  {r.error}")
    print(f"{len(results) - failed} of {len(results)} target(s) worked")
    return EXIT_FAILED if failed else EXIT_OK
