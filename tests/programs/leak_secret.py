"""Test program: a run that fails the way a bad credential does, printing one secret.

    python leak_secret.py [--leak NAME] [any --flag value ...]

Prints two metric lines, then raises an exception whose message holds the value of the
environment variable NAME (a child printing `$HF_TOKEN` in a 401 error), so that its
traceback reaches ftmon's rules. Other flags (secret args by shape) are accepted and ignored.
"""

from __future__ import annotations

import argparse
import json
import os


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--leak", default="")
    args, _ = ap.parse_known_args()
    for step in (1, 2):
        print(json.dumps({"type": "metric", "step": step, "loss": 1.0 / step}), flush=True)
    if args.leak:
        raise RuntimeError(f"401 Unauthorized: token {os.environ.get(args.leak, '')} rejected")


if __name__ == "__main__":
    main()
