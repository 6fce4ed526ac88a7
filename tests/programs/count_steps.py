"""Test program: prints one metric line per step, N steps at an interval, then exits 0.

    python count_steps.py [--steps 60] [--interval 0.05] [--secret_env NAME] [--hub_token T]

With --secret_env it also prints whether that variable arrived, with --hub_token the length
of the token it was given (never either value).
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--secret_env", default="")
    ap.add_argument("--hub_token", default=None)
    args = ap.parse_args()
    if args.hub_token is not None:
        print(f"hub_token length: {len(args.hub_token)}")
    if args.secret_env:
        print(f"{args.secret_env} set: {bool(os.environ.get(args.secret_env))}")
    for step in range(1, args.steps + 1):
        print(json.dumps({"type": "metric", "step": step, "loss": 1.0 / step}))
        time.sleep(args.interval)
    print("done")


if __name__ == "__main__":
    main()
