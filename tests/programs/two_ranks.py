"""Test program: the output torchrun gives for two ranks, without torch: each line of the run's
log prefixed `[defaultN]:` (torchrun --tee) and each rank's lines also in its own file under
`RUN_DIR/ranks/<id>/attempt_0/<rank>/stdout.log` (torchrun --log-dir). Rank 1 is half as fast.

    python two_ranks.py --run_dir DIR [--steps 40] [--interval 0.05]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run_dir", required=True)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--interval", type=float, default=0.05)
    args = ap.parse_args()
    files = []
    for rank in (0, 1):
        path = Path(args.run_dir) / "ranks" / "job_x" / "attempt_0" / str(rank) / "stdout.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        files.append(path.open("a", buffering=1))
    for tick in range(1, 2 * args.steps + 1):
        for rank, fh in enumerate(files):
            if rank == 1 and tick % 2:
                continue
            step = tick if rank == 0 else tick // 2
            line = json.dumps({"type": "metric", "step": step, "loss": 3.0 / step + rank})
            fh.write(f"rank {rank} says {line}\n")
            print(f"[default{rank}]:{line}", flush=True)
        time.sleep(args.interval)
    print("done", flush=True)


if __name__ == "__main__":
    main()
