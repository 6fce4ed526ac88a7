"""Test program shaped like a `transformers.Trainer` script where ftmon meets it: flags as
TrainingArguments spells them, a tqdm bar `N/M [..]` on stderr, `{'loss': ...}` dict lines
every `logging_steps`, an `output_dir/checkpoint-N/` folder every `save_steps`, and
`--resume_from_checkpoint PATH` to start from one (it prints where it resumed).

    python hf_checkpoints.py --model_name_or_path BASE --output_dir OUT --learning_rate LR
        [--max_steps N] [--save_steps K] [--logging_steps L] [--nan_above X] [--nan_at S]
        [--resume_from_checkpoint DIR] [--skip_batches B]

With LR above `nan_above` the loss is NaN from step `nan_at` on; NaN weights are saved as
such, and a run resumed from a NaN checkpoint is NaN from its first step. No torch.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model_name_or_path", required=True)
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--learning_rate", type=float, required=True)
    ap.add_argument("--max_steps", type=int, default=40)
    ap.add_argument("--save_steps", type=int, default=10)
    ap.add_argument("--logging_steps", type=int, default=5)
    ap.add_argument("--nan_above", type=float, default=1e-3)
    ap.add_argument("--nan_at", type=int, default=33)
    ap.add_argument("--resume_from_checkpoint", default=None)
    ap.add_argument("--skip_batches", type=int, default=0)
    ap.add_argument("--interval", type=float, default=0.01)
    args = ap.parse_args()
    Path(args.model_name_or_path).read_bytes()
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    step, nan = 0, False
    if args.resume_from_checkpoint:
        state = json.loads((Path(args.resume_from_checkpoint) / "trainer_state.json").read_text())
        step, nan = state["global_step"], state["nan"]
        print(f"Continuing training from checkpoint, will skip to saved global_step {step}")
        print(f"resumed from {args.resume_from_checkpoint} at step {step}")
    if args.skip_batches:
        print(f"skipping the first {args.skip_batches} batches")
    while step < args.max_steps:
        step += 1
        nan = nan or (args.learning_rate > args.nan_above and step >= args.nan_at)
        frame = f"{100 * step // args.max_steps}%| | {step}/{args.max_steps} [00:01<00:01, 9.5it/s]"
        sys.stderr.write(f"\r{frame}")
        sys.stderr.flush()
        if step % args.save_steps == 0 or (nan and step % args.logging_steps == 0):
            # The save before the log line: a checkpoint of a step that logged NaN exists on
            # disk when ftmon reads that line (the one a rollback must never pick).
            folder = out / f"checkpoint-{step}"
            folder.mkdir(exist_ok=True)
            (folder / "trainer_state.json").write_text(
                json.dumps({"global_step": step, "nan": nan})
            )
        if step % args.logging_steps == 0:
            loss = "nan" if nan else f"{2.0 / step:.4f}"
            lr = args.learning_rate
            sys.stdout.write(f"\n{{'loss': {loss}, 'grad_norm': {loss}, 'learning_rate': {lr}}}\n")
            sys.stdout.flush()
        time.sleep(args.interval)
    print("\nTraining completed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
