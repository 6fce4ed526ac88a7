"""Evaluation (validation loss, perplexity, generation scores) and the fixed-prompt samples."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from trainer.data import SAMPLE_PROMPTS, Example, Record, answer_of, collate
from trainer.generate import generate
from trainer.losses import IGNORE
from trainer.tokenizer import TextCodec


@dataclass(frozen=True)
class EvalResult:
    val_loss: float
    ppl: float
    accuracy: float
    format_accuracy: float
    trunc_rate: float
    avg_gen_len: float

    def fields(self) -> dict[str, float]:
        return {
            "val_loss": self.val_loss,
            "ppl": self.ppl,
            "accuracy": self.accuracy,
            "format_accuracy": self.format_accuracy,
            "trunc_rate": self.trunc_rate,
            "avg_gen_len": self.avg_gen_len,
        }


def correct(generated: str, reference: str) -> bool:
    """Same number after `####` when the reference has one; else the same stripped text."""
    gold = answer_of(reference)
    if gold is None:
        return generated.strip() == reference.strip()
    got = answer_of(generated)
    try:
        return got is not None and float(got) == float(gold)
    except ValueError:
        return got == gold


@torch.no_grad()
def validation_loss(
    model: Any, examples: list[Example], pad_id: int, batch_size: int, device: torch.device
) -> float:
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for i in range(0, len(examples), batch_size):
            b = collate(examples[i : i + batch_size], pad_id)
            logits = model(
                input_ids=b.input_ids.to(device), attention_mask=b.attention_mask.to(device)
            ).logits.float()
            labels = b.labels.to(device)[:, 1:]
            total += float(
                torch.nn.functional.cross_entropy(
                    logits[:, :-1].reshape(-1, logits.shape[-1]),
                    labels.reshape(-1),
                    ignore_index=IGNORE,
                    reduction="sum",
                )
            )
            count += int((labels != IGNORE).sum())
    finally:
        model.train(was_training)
    return total / max(count, 1)


def evaluate(
    model: Any,
    codec: TextCodec,
    examples: list[Example],
    records: list[Record],
    batch_size: int,
    max_new_tokens: int,
    device: torch.device,
) -> EvalResult:
    val_loss = validation_loss(model, examples, codec.pad_id, batch_size, device)
    ppl = math.exp(val_loss) if val_loss < 700 else math.inf
    hits = formatted = truncated = gen_tokens = 0
    for i in range(0, len(records), batch_size):
        chunk = records[i : i + batch_size]
        gen = generate(
            model,
            codec,
            [codec.encode_prompt(r.prompt, r.turns) for r in chunk],
            max_new_tokens,
            device,
        )
        for rec, new, stopped in zip(chunk, gen.new_ids, gen.stopped, strict=True):
            text = codec.decode(new)
            hits += correct(text, rec.response)
            formatted += answer_of(text) is not None
            truncated += not stopped
            gen_tokens += len(new)
    n = max(len(records), 1)
    return EvalResult(val_loss, ppl, hits / n, formatted / n, truncated / n, gen_tokens / n)


def sample_prompts(data: str, val: list[Record]) -> tuple[str, ...]:
    """A "who are you?" prompt and a task prompt (arithmetic for the synthetic data)."""
    if data == "synthetic" or not val:
        return SAMPLE_PROMPTS
    return (SAMPLE_PROMPTS[0], val[0].prompt)


def samples(
    model: Any,
    codec: TextCodec,
    prompts: tuple[str, ...],
    max_new_tokens: int,
    device: torch.device,
) -> list[tuple[str, str]]:
    gen = generate(model, codec, [codec.encode_prompt(p) for p in prompts], max_new_tokens, device)
    return [(p, codec.decode(new)) for p, new in zip(prompts, gen.new_ids, strict=True)]
