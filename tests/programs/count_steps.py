"""Test program: prints one metric line per step, N steps at an interval, then exits 0.

    python count_steps.py [--steps 60] [--interval 0.05] [--secret_env NAME] [--hub_token T]
                          [--wait_for PATH]

With --secret_env it also prints whether that variable arrived, with --hub_token the length
of the token it was given (never either value). With --wait_for it starts counting only once
PATH exists (a test's cue).
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
    ap.add_argument("--wait_for", default="")
    args = ap.parse_args()
    if args.hub_token is not None:
        print(f"hub_token length: {len(args.hub_token)}")
    if args.secret_env:
        print(f"{args.secret_env} set: {bool(os.environ.get(args.secret_env))}")
    while args.wait_for and not os.path.exists(args.wait_for):
        time.sleep(0.02)
    for step in range(1, args.steps + 1):
        print(json.dumps({"type": "metric", "step": step, "loss": 1.0 / step}))
        time.sleep(args.interval)
    print("done")


if __name__ == "__main__":
    main()
