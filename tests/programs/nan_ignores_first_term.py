"""Test program: a run whose loss turns NaN unless its learning rate is small, and whose first
SIGTERM is ignored (so a kill's grace period runs its full length).

    python nan_ignores_first_term.py --lr LR [--steps 40] [--interval 0.05]

With lr >= 1e-3 the loss is NaN from step 5 on and the run goes on printing until killed; with a
smaller lr it prints `--steps` finite steps and exits 0. The first SIGTERM prints
"ignoring SIGTERM" and is ignored; a second one ends the process (exit 143).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    terms = []

    def on_term(signum: int, frame: object) -> None:
        terms.append(1)
        if len(terms) > 1:
            os._exit(143)
        print("ignoring SIGTERM", flush=True)

    signal.signal(signal.SIGTERM, on_term)
    step = 0
    while True:
        step += 1
        if args.lr >= 1e-3 and step >= 5:
            print(f"{{'loss': nan, 'step': {step}}}", flush=True)
        else:
            print(json.dumps({"type": "metric", "step": step, "loss": 1.0 / step}), flush=True)
            if step >= args.steps:
                return
        time.sleep(args.interval)


if __name__ == "__main__":
    main()
