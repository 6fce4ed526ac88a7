"""Test program: prints a few metric lines, then exits with the code it is given.

python exit_code.py [--code 3] [--steps 3]
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--code", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    for step in range(1, args.steps + 1):
        print(json.dumps({"type": "metric", "step": step, "loss": 1.0 / step}), flush=True)
    sys.exit(args.code)


if __name__ == "__main__":
    main()
