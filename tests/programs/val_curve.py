"""Test program: a run whose validation loss settles at a level of its own.

    python val_curve.py --level L [--steps 40] [--interval 0.02]

Prints a training metric line each step and an eval line (`val_loss = level + 1/step`) every
5 steps, then exits 0: members of a sweep that differ only in how good they are.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--level", type=float, required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--interval", type=float, default=0.02)
    args = ap.parse_args()
    for step in range(1, args.steps + 1):
        print(json.dumps({"type": "metric", "step": step, "loss": args.level + 2.0 / step}))
        if step % 5 == 0:
            print(json.dumps({"type": "eval", "step": step, "val_loss": args.level + 1.0 / step}))
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
