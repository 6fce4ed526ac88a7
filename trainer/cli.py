"""Command-line flags of `python -m trainer`; parsing imports nothing heavy, so `--help` is quick.

Recipes render their `args` keys as flags verbatim (`micro_batch: 8` -> `--micro_batch 8`), while
people type `--micro-batch 8`: every multi-word flag accepts both spellings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

METHODS = ("sft", "lora", "gkd")
OPTIMIZERS = ("adamw", "sgd")
SCHEDULES = ("cosine", "linear", "constant")
DTYPES = ("fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")


def parse_bool(text: str) -> bool:
    """`true/false`, `yes/no`, `1/0`, `on/off`, in any case."""
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", "y", "t"):
        return True
    if value in ("0", "false", "no", "off", "n", "f", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def unit_float(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


@dataclass(frozen=True)
class Flag:
    name: str  # the underscore spelling, which is also the attribute name
    kwargs: dict[str, object]


FLAGS: tuple[Flag, ...] = (
    Flag(
        "model",
        {"default": "tiny", "help": "`tiny` (built from tiny_config.json) or a local HF model dir"},
    ),
    Flag("method", {"default": "sft", "choices": METHODS}),
    Flag("data", {"default": "synthetic", "help": "`synthetic` arithmetic, or a JSONL file"}),
    Flag("output_dir", {"default": None, "help": "checkpoint-N/ and final/ go here"}),
    Flag("steps", {"type": positive_int, "default": 300, "help": "optimizer steps"}),
    Flag("micro_batch", {"type": positive_int, "default": 8}),
    Flag("grad_accum", {"type": positive_int, "default": 1}),
    Flag("seq_len", {"type": positive_int, "default": 96}),
    Flag("lr", {"type": float, "default": 2e-3}),
    Flag("optimizer", {"default": "adamw", "choices": OPTIMIZERS}),
    Flag("momentum", {"type": float, "default": 0.9, "help": "SGD momentum"}),
    Flag("weight_decay", {"type": float, "default": 0.0}),
    Flag("schedule", {"default": "cosine", "choices": SCHEDULES}),
    Flag("warmup", {"type": non_negative_int, "default": 10, "help": "warm-up steps"}),
    Flag("clip", {"type": float, "default": 1.0, "help": "max grad norm; 0 turns clipping off"}),
    Flag("dtype", {"default": "fp32", "choices": DTYPES, "help": "autocast dtype"}),
    Flag("grad_checkpointing", {"type": parse_bool, "nargs": "?", "const": True, "default": False}),
    Flag("lora_rank", {"type": positive_int, "default": 8}),
    Flag("lora_alpha", {"type": float, "default": 16.0}),
    Flag("lora_dropout", {"type": unit_float, "default": 0.0}),
    Flag("lora_targets", {"default": "q_proj,v_proj", "help": "comma list, or all-linear"}),
    Flag("beta", {"type": unit_float, "default": 0.5, "help": "GKD: generalized JSD mix"}),
    Flag("temperature", {"type": float, "default": 1.0, "help": "GKD: softmax temperature"}),
    Flag("lmbda", {"type": unit_float, "default": 0.5, "help": "GKD: on-policy probability"}),
    Flag("sft_alpha", {"type": float, "default": 0.0, "help": "GKD: weight of an added SFT loss"}),
    Flag("log_every", {"type": positive_int, "default": 10}),
    Flag("sample_every", {"type": non_negative_int, "default": 0, "help": "0: never"}),
    Flag("eval_every", {"type": non_negative_int, "default": 0, "help": "0: only at the end"}),
    Flag("eval_size", {"type": positive_int, "default": 32, "help": "held-out records"}),
    Flag("train_size", {"type": positive_int, "default": 20000, "help": "synthetic records"}),
    Flag("max_new_tokens", {"type": positive_int, "default": 32, "help": "for samples and eval"}),
    Flag(
        "mc_eval",
        {
            "default": "",
            "help": "multiple-choice sets NAME=FILE.jsonl[,...] (MMLU/ARC shaped), "
            "scored by likelihood at each eval; reported as NAME_acc",
        },
    ),
    Flag("loss_chunk", {"type": positive_int, "default": 256, "help": "tokens per loss chunk"}),
    Flag("seed", {"type": int, "default": 0}),
    Flag("resume", {"type": parse_bool, "nargs": "?", "const": True, "default": False}),
    Flag(
        "resume_from_checkpoint",
        {"default": None, "help": "a checkpoint-N folder to start from (ftmon's last good one)"},
    ),
    Flag("skip_batches", {"type": non_negative_int, "default": 0, "help": "after a resume"}),
    Flag("device", {"default": "auto", "choices": DEVICES}),
    Flag(
        "threads", {"type": non_negative_int, "default": 0, "help": "torch CPU threads; 0: default"}
    ),
    Flag("save_every", {"type": non_negative_int, "default": 0, "help": "0: only final/"}),
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m trainer",
        description="ftmon's reference trainer: SFT, LoRA and GKD self-distillation. Prints one "
        "JSON object per line (metric, sample, eval, summary) for ftmon to read.",
    )
    for flag in FLAGS:
        spellings = [f"--{flag.name}"]
        if "_" in flag.name:
            spellings.insert(0, f"--{flag.name.replace('_', '-')}")
        parser.add_argument(*spellings, dest=flag.name, **flag.kwargs)  # type: ignore[arg-type]
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.resume and not args.output_dir:
        parser.error("--resume needs --output_dir (where the checkpoints are)")
    if args.temperature <= 0:
        parser.error(f"--temperature must be above 0, got {args.temperature}")
    if args.lr < 0:
        parser.error(f"--lr must be 0 or more, got {args.lr}")
    return args
