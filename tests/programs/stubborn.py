"""Test program: ignores SIGTERM and starts a grandchild in a session of its own.

    python stubborn.py --output_dir DIR [--nan_after N]

The grandchild (setsid) is in neither the run's group nor its session, and ignores SIGTERM
too; both pids go to DIR/pids ("child PID" / "grandchild PID") once both run. Prints a metric
line every 0.1 s; with --nan_after N, the loss is NaN from step N+1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--nan_after", type=int, default=0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.setsid()
        os.write(ready_w, b"1")  # only now is it in a session of its own
        while True:
            time.sleep(1)
    os.read(ready_r, 1)  # the pid file is written once the grandchild has left the session
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pids.tmp").write_text(f"child {os.getpid()}\ngrandchild {pid}\n")
    os.replace(out / "pids.tmp", out / "pids")
    step = 0
    while True:
        step += 1
        if args.nan_after and step > args.nan_after:
            print(f"{{'loss': nan, 'step': {step}}}", flush=True)
        else:
            print(json.dumps({"type": "metric", "step": step, "loss": 1.0}), flush=True)
        time.sleep(0.1)


if __name__ == "__main__":
    main()
