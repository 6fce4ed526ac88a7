"""Test program: memory grows with the micro-batch, step by step, until it is killed.

    python grow_memory.py --micro_batch N [--mb_per_sample 30] [--steps 40]

Each step keeps N x MB more megabytes (every page touched, so they are resident) and prints a
metric line; after the last step it exits 0.
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--micro_batch", type=int, required=True)
    ap.add_argument("--mb_per_sample", type=int, default=30)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    kept = []
    for step in range(1, args.steps + 1):
        block = bytearray(args.micro_batch * args.mb_per_sample * 1024 * 1024)
        for i in range(0, len(block), 4096):
            block[i] = 1
        kept.append(block)
        mem_mb = step * args.micro_batch * args.mb_per_sample
        print(json.dumps({"type": "metric", "step": step, "loss": 1.0, "mem_mb": mem_mb}))
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
