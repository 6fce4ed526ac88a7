"""Test program: a training-shaped run that goes NaN when its learning rate is too high.

    python train_nan.py --model BASE --output_dir DIR --lr LR [--nan_above X] [--steps N]

Reads the base weights file (it must exist), writes a checkpoint into DIR, prints healthy
metric lines (one JSON object a step, as the reference trainer does) and, when LR is above X,
then prints `{'loss': nan, ...}` lines (Hugging Face's dict style) until it is killed.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--nan_above", type=float, default=1e-4)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--interval", type=float, default=0.02)
    args = ap.parse_args()
    weights = Path(args.model).read_bytes()
    print(f"loaded base weights from {args.model} ({len(weights)} bytes), lr {args.lr}")
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "checkpoint.bin").write_bytes(weights + str(args.lr).encode())
    for step in range(1, args.steps + 1):
        print(json.dumps({"type": "metric", "step": step, "loss": 2.0 / step, "lr": args.lr}))
        time.sleep(args.interval)
    if args.lr <= args.nan_above:
        print("training finished")
        return
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # a NaN run goes on printing NaN until someone stops it
        print(f"{{'loss': nan, 'grad_norm': nan, 'learning_rate': {args.lr}, 'epoch': 0.5}}")
        time.sleep(0.2)


if __name__ == "__main__":
    main()
