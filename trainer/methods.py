"""What each method optimises: `sft` and `lora` the response cross-entropy, `gkd` the
generalized JSD between the LoRA student and the same model with its adapters disabled.

GKD (on-policy distillation, Agarwal et al. 2024) as self-distillation: the teacher costs no
extra memory because it *is* the base model; `with model.disable_adapter():` under no_grad
gives its logits. With probability `lmbda` a step's responses are sampled from the student
instead of taken from the data (on-policy); `sft_alpha` adds that much plain cross-entropy on
the data's own responses.
"""

from __future__ import annotations

import argparse
import random
from dataclasses import dataclass
from typing import Any

import torch

from trainer.data import Batch, Example, collate
from trainer.generate import generate
from trainer.losses import IGNORE, cross_entropy, generalized_jsd, jsd_and_cross_entropy
from trainer.tokenizer import TextCodec

ALL_LINEAR = "all-linear"


def wrap_lora(model: Any, args: argparse.Namespace) -> Any:
    """Fresh LoRA adapters (B = 0, so the wrapped model starts equal to the base) on `model`."""
    from peft import LoraConfig, get_peft_model

    targets: str | list[str] = args.lora_targets
    if targets != ALL_LINEAR:
        targets = [t.strip() for t in args.lora_targets.split(",") if t.strip()]
    config = LoraConfig(
        r=args.lora_rank,
        lora_alpha=args.lora_alpha,
        lora_dropout=args.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


@dataclass(frozen=True)
class StepLoss:
    loss: torch.Tensor
    logits: torch.Tensor  # the student's, detached, for metrics
    labels: torch.Tensor
    n_tokens: int
    jsd: float | None = None
    on_policy: bool = False


def _forward(model: Any, batch: Batch) -> torch.Tensor:
    return model(
        input_ids=batch.input_ids, attention_mask=batch.attention_mask, use_cache=False
    ).logits


def sft_loss(model: Any, batch: Batch, chunk: int) -> StepLoss:
    logits = _forward(model, batch)
    loss = cross_entropy(logits, batch.labels, chunk)
    return StepLoss(loss, logits.detach(), batch.labels, batch.n_tokens)


def prompts_of(batch: Batch) -> list[list[int]]:
    """The prompt ids of each row: everything before the first scored label."""
    rows: list[list[int]] = []
    for ids, labels in zip(batch.input_ids.tolist(), batch.labels.tolist(), strict=True):
        first = next((i for i, lab in enumerate(labels) if lab != IGNORE), len(labels))
        rows.append(ids[:first])
    return rows


def on_policy_batch(
    model: Any,
    batch: Batch,
    codec: TextCodec,
    seq_len: int,
    temperature: float,
    device: torch.device,
) -> Batch:
    """The batch's prompts with responses sampled from the current student."""
    prompts = prompts_of(batch)
    room = max(1, seq_len - max(len(p) for p in prompts))
    gen = generate(model, codec, prompts, room, device, sample=True, temperature=temperature)
    examples = []
    for p, new, stopped in zip(prompts, gen.new_ids, gen.stopped, strict=True):
        response = [*new, codec.eos_id] if stopped else new
        response = response or [codec.eos_id]
        ids = (p + response)[:seq_len]
        examples.append(Example(tuple(ids), len(p), not stopped))
    out = collate(examples, codec.pad_id)
    return Batch(
        out.input_ids.to(device), out.attention_mask.to(device), out.labels.to(device), out.n_tokens
    )


def gkd_loss(
    model: Any,
    batch: Batch,
    codec: TextCodec,
    args: argparse.Namespace,
    coin: random.Random,
    device: torch.device,
) -> StepLoss:
    on_policy = coin.random() < args.lmbda
    seqs = (
        on_policy_batch(model, batch, codec, args.seq_len, args.temperature, device)
        if on_policy
        else batch
    )
    student = _forward(model, seqs)
    with torch.no_grad(), model.disable_adapter():
        teacher = _forward(model, seqs)
    settings = (args.beta, args.temperature, args.loss_chunk)
    if args.sft_alpha > 0 and not on_policy:
        # one loss function for both terms: their backward fills one gradient of the logits
        jsd, ce = jsd_and_cross_entropy(student, teacher, seqs.labels, *settings)
        loss = jsd + args.sft_alpha * ce
    else:
        jsd = loss = generalized_jsd(student, teacher, seqs.labels, *settings)
    if args.sft_alpha > 0 and on_policy:  # the data's responses: another forward of the student
        data_logits = _forward(model, batch)
        loss = loss + args.sft_alpha * cross_entropy(data_logits, batch.labels, args.loss_chunk)
    return StepLoss(
        loss, student.detach(), seqs.labels, seqs.n_tokens, float(jsd.detach()), on_policy
    )
