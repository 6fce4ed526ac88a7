"""Test program: prints metric lines in two phases, waiting for a cue in between, then exits 0.

    python two_phases.py --first 50 --then 300 --wait_for PATH

Steps 1..first, then (once PATH exists) steps first+1..first+then, one JSON metric line each.
"""

from __future__ import annotations

import argparse
import json
import os
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--first", type=int, default=50)
    ap.add_argument("--then", type=int, default=300)
    ap.add_argument("--wait_for", required=True)
    args = ap.parse_args()
    for step in range(1, args.first + args.then + 1):
        if step == args.first + 1:
            while not os.path.exists(args.wait_for):
                time.sleep(0.02)
        print(json.dumps({"type": "metric", "step": step, "loss": 1.0 / step}), flush=True)


if __name__ == "__main__":
    main()
