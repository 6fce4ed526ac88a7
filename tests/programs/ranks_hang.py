"""Test program, run under torchrun: ranks step in lockstep (a gloo all-reduce per step) and
print one metric line per step before the collective; rank `--hang_rank` stops for good before
printing step `--hang_at` (a hung data loader), so the other ranks print that step and wait.

    torchrun --nproc_per_node 2 ranks_hang.py [--steps 1000] [--interval 0.1] [--hang_rank 1]
                                              [--hang_at 8]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.distributed as dist


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=0.1)
    ap.add_argument("--hang_rank", type=int, default=1)
    ap.add_argument("--hang_at", type=int, default=8)
    args = ap.parse_args()
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    print(f"rank {rank} pid {os.getpid()}", flush=True)
    for step in range(1, args.steps + 1):
        time.sleep(args.interval)
        if rank == args.hang_rank and step == args.hang_at:
            while True:
                time.sleep(3600)
        print(json.dumps({"type": "metric", "step": step, "loss": 1.0 / step}), flush=True)
        dist.all_reduce(torch.ones(1))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
