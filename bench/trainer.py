"""Tokens per second of the reference trainer and of plain `transformers.Trainer`.

Same tiny model (trainer/tiny_config.json, same seed), same synthetic data and padding, same
micro-batch, AdamW, clipping at 1.0, fp32, the same CPU thread count. Each side runs a few
warm-up steps first; the figure is real (non-pad) tokens over wall time of the measured steps.
Prints figures, asserts nothing: `python bench/trainer.py [--steps 60] [--threads 2]`.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

# Run as `python bench/trainer.py`, this file's folder comes first on sys.path and its own name
# would hide the `trainer` package: put the repository root there instead.
HERE = Path(__file__).resolve().parent
sys.path[:] = [str(HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

import torch  # noqa: E402
import transformers  # noqa: E402

from trainer.cli import parse_args  # noqa: E402
from trainer.data import collate, encode, load_records  # noqa: E402
from trainer.model import build_tiny  # noqa: E402
from trainer.tokenizer import ByteTokenizer  # noqa: E402
from trainer.train import Trainer  # noqa: E402

WARMUP = 10


def reference(steps: int, micro_batch: int, threads: int) -> float:
    """Median tok/s over the trainer's own log windows, the warm-up window left out."""
    args = parse_args(
        ["--steps", str(steps), "--micro_batch", str(micro_batch), "--threads", str(threads),
         "--log_every", str(WARMUP), "--eval_size", "4", "--max_new_tokens", "1",
         "--train_size", "4000", "--lr", "2e-3"]
    )  # fmt: skip
    out = io.StringIO()
    with redirect_stdout(out):
        Trainer(args).run()
    rates = [
        json.loads(line)["tok_s"]
        for line in out.getvalue().splitlines()
        if line.startswith('{"type": "metric"')
    ]
    return statistics.median(rates[1:])


class Rows(torch.utils.data.Dataset):
    def __init__(self, examples: list) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> object:
        return self.examples[i]


class Clock(transformers.TrainerCallback):
    """Wall time and tokens of the steps after the warm-up."""

    def __init__(self, counter: list[int]) -> None:
        self.counter = counter
        self.start = 0.0
        self.tokens0 = 0
        self.rate = 0.0

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == WARMUP:
            self.start, self.tokens0 = time.perf_counter(), self.counter[0]
        elif state.global_step == state.max_steps:
            self.rate = (self.counter[0] - self.tokens0) / (time.perf_counter() - self.start)


def hf_trainer(steps: int, micro_batch: int, threads: int, outdir: str) -> float:
    torch.set_num_threads(threads)
    codec = ByteTokenizer()
    train, _ = load_records("synthetic", 4, 4000, 0)
    examples = encode(train, codec, 96)
    counter = [0]

    def collator(rows: list) -> dict[str, torch.Tensor]:
        b = collate(rows, codec.pad_id)
        counter[0] += b.n_tokens
        return {"input_ids": b.input_ids, "attention_mask": b.attention_mask, "labels": b.labels}

    clock = Clock(counter)
    args = transformers.TrainingArguments(
        output_dir=outdir, max_steps=steps, per_device_train_batch_size=micro_batch,
        learning_rate=2e-3, max_grad_norm=1.0, lr_scheduler_type="cosine", warmup_steps=10,
        logging_steps=WARMUP, save_strategy="no", report_to=[], use_cpu=True, disable_tqdm=True,
        dataloader_num_workers=0, seed=0,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=build_tiny(0), args=args, train_dataset=Rows(examples), data_collator=collator,
        callbacks=[clock],
    )  # fmt: skip
    with redirect_stdout(io.StringIO()):
        trainer.train()
    return clock.rate


def main() -> None:
    import tempfile

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--micro_batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    ours = reference(a.steps, a.micro_batch, a.threads)
    with tempfile.TemporaryDirectory() as tmp:
        theirs = hf_trainer(a.steps, a.micro_batch, a.threads, tmp)
    print(f"tiny model, micro_batch {a.micro_batch}, {a.threads} threads, {a.steps} steps, CPU")
    print(f"reference trainer      {ours:9.0f} tok/s")
    print(f"transformers.Trainer   {theirs:9.0f} tok/s")
    print(f"ratio (reference / HF) {ours / theirs:9.2f}")


if __name__ == "__main__":
    main()
