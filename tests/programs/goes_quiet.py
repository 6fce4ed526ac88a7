"""Test program: prints `--lines` metric lines, then says nothing for `--quiet` seconds and
exits 0 (a run that stalls, or is about to be paused and looks stalled).

    python goes_quiet.py [--lines 3] [--quiet 60]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=3)
    ap.add_argument("--quiet", type=float, default=60.0)
    args = ap.parse_args()
    for step in range(1, args.lines + 1):
        print(json.dumps({"type": "metric", "step": step, "loss": 1.0 / step}), flush=True)
    time.sleep(args.quiet)


if __name__ == "__main__":
    main()
