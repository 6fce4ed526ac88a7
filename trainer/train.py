"""The training loop of `python -m trainer`: load, train, log JSON lines, evaluate, save.

A step whose loss (or gradient norm) is not finite is reported and skipped: the metric line is
printed at once with the NaN/inf value and the running `skipped` count, and no optimizer step is
taken. Nothing non-finite is ever averaged away.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import torch

from trainer import checkpoints, distributed, protocol
from trainer.choices import choice_accuracy, load_choices, parse_mc_spec
from trainer.data import BatchStream, DataError, encode, load_records
from trainer.evaluate import evaluate, sample_prompts, samples
from trainer.losses import mean_entropy
from trainer.methods import StepLoss, gkd_loss, sft_loss, wrap_lora
from trainer.model import count_parameters, load_model
from trainer.tokenizer import load_tokenizer

AUTOCAST = {"bf16": torch.bfloat16, "fp16": torch.float16}


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda: no CUDA device is available (try --device cpu)")
    return torch.device(name)


def memory_gb(device: torch.device) -> float:
    """Peak CUDA memory allocated, or this process's resident memory on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e9
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the base rate before optimizer step `step` (0-based)."""
    if warmup and step < warmup:
        return (step + 1) / (warmup + 1)
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_optimizer(
    params: list[torch.nn.Parameter], args: argparse.Namespace
) -> torch.optim.Optimizer:
    if args.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
        )
    return torch.optim.AdamW(params, lr=args.lr, weight_decay=args.weight_decay)


def autocast_context(device: torch.device, dtype: str) -> Any:
    if dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST[dtype])


def build_model(args: argparse.Namespace, device: torch.device, resume_from: Path | None) -> Any:
    if args.method == "sft":
        source = str(resume_from) if resume_from else args.model
        model = load_model(source, args.seed, device)
    else:
        model = load_model(args.model, args.seed, device)
    if args.grad_checkpointing:
        model.config.use_cache = False
        kwargs = {"use_reentrant": False}
        if hasattr(model, "activation_checkpointing_enable"):  # the transformers 5 name
            model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    if args.method in ("lora", "gkd"):
        if resume_from:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(resume_from), is_trainable=True)
        else:
            model = wrap_lora(model, args)
    model.train()
    return model


class Trainer:
    """One run; `run()` returns the process exit code."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.ranks = distributed.from_env()
        self.device = distributed.device_for(self.ranks, pick_device(args.device))
        self.output = Path(args.output_dir) if args.output_dir else None

    def setup(self) -> None:
        args = self.args
        if args.threads:
            torch.set_num_threads(args.threads)
        random.seed(args.seed)
        torch.manual_seed(args.seed)  # the same on every rank: the replicas start equal
        distributed.init(self.ranks, self.device)
        self.codec = load_tokenizer(args.model)
        train_recs, self.val_records = load_records(
            args.data, args.eval_size, args.train_size, args.seed
        )
        train_ex = encode(train_recs, self.codec, args.seq_len)
        self.val_examples = encode(self.val_records, self.codec, args.seq_len)
        cut = sum(e.truncated for e in train_ex)
        protocol.say(
            f"data: {len(train_ex)} train / {len(self.val_examples)} validation records from "
            f"{args.data}; {cut} truncated at seq_len {args.seq_len} ({cut / len(train_ex):.1%})"
        )
        self.truncated = cut
        if self.ranks.distributed:  # rank-strided shards: each rank sees its own records
            train_ex = train_ex[self.ranks.rank :: self.ranks.world]
            protocol.say(
                f"rank {self.ranks.rank} of {self.ranks.world}: {len(train_ex)} train records"
            )
        self.stream = BatchStream(train_ex, args.micro_batch, args.seed, self.codec.pad_id)
        self.resume_from = (
            Path(args.resume_from_checkpoint)
            if args.resume_from_checkpoint
            else checkpoints.latest(self.output)
            if args.resume and self.output
            else None
        )
        self.model = build_model(args, self.device, self.resume_from)
        trainable, total = count_parameters(self.model)
        protocol.say(
            f"model: {args.model} ({total / 1e6:.2f}M parameters, "
            f"{trainable / 1e6:.2f}M trainable), "
            f"method {args.method}, device {self.device}, dtype {args.dtype}"
        )
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_optimizer(self.params, args)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, args.steps, args.warmup, args.schedule)
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=args.dtype == "fp16")
        self.step, self.skipped, self.seen = 0, 0, 0
        if self.resume_from:
            state = checkpoints.read_state(self.resume_from)
            checkpoints.restore_optimizer(self.resume_from, self.optimizer, self.scheduler)
            self.step, self.skipped, self.seen = state.step, state.skipped, state.examples_seen
            protocol.say(f"resumed from {self.resume_from} at step {self.step}")
            if args.resume_from_checkpoint:  # a rollback: this command's lr wins over the saved
                self.scheduler.base_lrs = [args.lr] * len(self.scheduler.base_lrs)
                factor = lr_factor(
                    self.scheduler.last_epoch, args.steps, args.warmup, args.schedule
                )
                for group in self.optimizer.param_groups:
                    group["initial_lr"], group["lr"] = args.lr, args.lr * factor
            if args.skip_batches:  # past the batches that went wrong, as large runs do
                self.seen += args.skip_batches * args.micro_batch
                protocol.say(f"skipping the next {args.skip_batches} batches")
        elif args.resume:
            protocol.say(
                f"--resume: no checkpoint in {self.output}; starting from the base weights"
            )
        self.prompts = sample_prompts(args.data, self.val_records)
        # Multiple-choice sets (trainer/choices.py), read now so a bad file fails before training.
        self.choice_sets = [(n, load_choices(p)) for n, p in parse_mc_spec(args.mc_eval)]

    def compute(self, batch: Any, coin: random.Random) -> StepLoss:
        args = self.args
        with autocast_context(self.device, args.dtype):
            if args.method == "gkd":
                return gkd_loss(self.model, batch, self.codec, args, coin, self.device)
            return sft_loss(self.model, batch, args.loss_chunk)

    def train_step(self, batches: Any) -> tuple[float, float | None, int, dict[str, float]]:
        """One optimizer step over `grad_accum` micro-batches: (loss, grad_norm, tokens, extra).

        `extra` holds the last micro-batch's `entropy` (on logging steps) and `jsd` (gkd); no
        logits outlive the micro-batch that made them.
        """
        args = self.args
        coin = random.Random(args.seed * 7919 + self.step)  # reproducible across --resume
        logging = (self.step + 1) % args.log_every == 0
        self.optimizer.zero_grad(set_to_none=True)
        total, tokens, finite = 0.0, 0, True
        extra: dict[str, float] = {}
        for micro in range(args.grad_accum):
            batch = next(batches)
            self.seen += args.micro_batch
            if not finite:
                continue  # keep the data position, skip the work
            batch = type(batch)(
                batch.input_ids.to(self.device),
                batch.attention_mask.to(self.device),
                batch.labels.to(self.device),
                batch.n_tokens,
            )
            out = self.compute(batch, coin)
            value = float(out.loss.detach())
            total += value / args.grad_accum
            tokens += out.n_tokens
            if out.jsd is not None:
                extra["jsd"] = out.jsd
            if logging and micro == args.grad_accum - 1 and math.isfinite(value):
                extra["entropy"] = mean_entropy(out.logits, out.labels, args.loss_chunk)
            if not math.isfinite(value):
                finite = False
                total = value
                continue
            self.scaler.scale(out.loss / args.grad_accum).backward()
            del out
        grad_norm: float | None = None
        finite = distributed.all_finite(self.ranks, finite, self.device)
        if finite:
            distributed.average_gradients(self.ranks, self.params)
            self.scaler.unscale_(self.optimizer)
            limit = args.clip if args.clip > 0 else math.inf
            grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, limit))
            if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
                finite = False
        if finite:
            self.scaler.step(self.optimizer)  # with fp16, skips by itself on overflow
            self.scaler.update()
        else:
            self.skipped += 1
            self.optimizer.zero_grad(set_to_none=True)
        if grad_norm is not None and not math.isfinite(grad_norm) and self.scaler.is_enabled():
            grad_norm = None  # fp16 loss-scale overflow: the scaler lowers its scale; not a NaN
        self.scheduler.step()
        self.step += 1
        return total, grad_norm, tokens, extra if finite else {}

    def log_metric(
        self, loss: float, grad_norm: float | None, tok_s: float, extra: dict[str, Any]
    ) -> None:
        protocol.metric(
            self.step,
            loss=loss,
            grad_norm=grad_norm,
            lr=self.scheduler.get_last_lr()[0],
            tok_s=tok_s,
            mem_gb=memory_gb(self.device),
            epoch=self.stream.epoch_at(self.seen),
            skipped=self.skipped,
            rank=self.ranks.rank if self.ranks.distributed else None,
            **extra,
        )

    def run_eval(self) -> dict[str, float]:
        args = self.args
        if not self.ranks.is_main:  # rank 0 evaluates, samples and saves for all
            return {}
        result = evaluate(
            self.model,
            self.codec,
            self.val_examples,
            self.val_records,
            args.micro_batch * 2,
            args.max_new_tokens,
            self.device,
        )
        fields = result.fields()
        for name, items in self.choice_sets:
            fields[f"{name}_acc"] = choice_accuracy(
                self.model, self.codec, items, self.device, args.seq_len
            )
        protocol.evaluation(self.step, **fields)
        return fields

    def run_samples(self) -> None:
        if not self.ranks.is_main:
            return
        for prompt, text in samples(
            self.model, self.codec, self.prompts, self.args.max_new_tokens, self.device
        ):
            protocol.sample(self.step, prompt, text)

    def save(self, name: str, with_optimizer: bool) -> None:
        if self.output is None or not self.ranks.is_main:
            return
        state = checkpoints.TrainState(
            self.step, self.skipped, self.seen, self.args.method, self.args.model
        )
        where = checkpoints.save(
            self.output / name,
            self.model,
            self.codec,
            state,
            self.optimizer if with_optimizer else None,
            self.scheduler if with_optimizer else None,
        )
        protocol.say(f"saved {where}")

    def run(self) -> int:
        args = self.args
        try:
            self.setup()
        except (DataError, OSError, ValueError, RuntimeError) as exc:
            # Bad flags, data or model directory: one clear line, no traceback. Errors while
            # training (CUDA out of memory, ...) keep their traceback: ftmon's rules read it.
            text = str(exc).strip().splitlines()
            protocol.say(f"error: {text[0] if text else type(exc).__name__}")
            return 2
        batches = self.stream.batches(self.seen)
        first_loss: float | None = None
        last_loss: float | None = None
        window: list[float] = []
        window_tokens, window_start = 0, time.perf_counter()
        started = time.perf_counter()
        last_eval: dict[str, float] = {}
        while self.step < args.steps:
            skipped_before = self.skipped
            loss, grad_norm, tokens, extra = self.train_step(batches)
            window_tokens += tokens
            if self.skipped > skipped_before:
                what = "loss" if not math.isfinite(loss) else "grad norm"
                value = loss if not math.isfinite(loss) else grad_norm
                protocol.say(
                    f"step {self.step}: {what} is {value}: skip non-finite step, no optimizer "
                    f"update ({self.skipped} skipped so far)"
                )
                self.log_metric(loss, grad_norm, 0.0, {})
                reported = True
            else:
                reported = False
                window.append(loss)
                last_loss = loss
                if first_loss is None:
                    first_loss = loss
            if self.step % args.log_every == 0 and window and not reported:
                now = time.perf_counter()
                self.log_metric(
                    sum(window) / len(window),
                    grad_norm,
                    window_tokens / max(now - window_start, 1e-9),
                    extra,
                )
                window, window_tokens, window_start = [], 0, now
            if args.sample_every and self.step % args.sample_every == 0:
                self.run_samples()
            if args.eval_every and self.step % args.eval_every == 0:
                last_eval = self.run_eval()
            if args.save_every and self.step % args.save_every == 0:
                self.save(f"checkpoint-{self.step}", with_optimizer=True)
        if not (args.eval_every and self.step % args.eval_every == 0 and last_eval):
            last_eval = self.run_eval()
        self.save("final", with_optimizer=False)
        protocol.summary(
            steps=self.step,
            skipped=self.skipped,
            first_loss=first_loss,
            last_loss=last_loss,
            seconds=time.perf_counter() - started,
            truncated=self.truncated,
            method=args.method,
            rank=self.ranks.rank if self.ranks.distributed else None,
            **last_eval,
        )
        distributed.shutdown(self.ranks)
        return 0


def run(args: argparse.Namespace) -> int:
    try:
        trainer = Trainer(args)
    except RuntimeError as exc:  # --device cuda without a CUDA device
        protocol.say(f"error: {exc}")
        return 2
    return trainer.run()
