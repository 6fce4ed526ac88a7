"""Text generation for samples, evaluation and GKD's on-policy sequences (HF `generate`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from trainer.tokenizer import TextCodec


@dataclass(frozen=True)
class Generated:
    prompt_ids: list[list[int]]
    new_ids: list[list[int]]  # generated ids, cut at (and without) the first eos
    stopped: list[bool]  # False: ran into max_new_tokens before an eos


def left_pad(
    rows: list[list[int]], pad_id: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, width - len(r) :] = torch.tensor(r, dtype=torch.long)
        mask[i, width - len(r) :] = 1
    return ids.to(device), mask.to(device)


@torch.no_grad()
def generate(
    model: Any,
    codec: TextCodec,
    prompt_ids: list[list[int]],
    max_new_tokens: int,
    device: torch.device,
    sample: bool = False,
    temperature: float = 1.0,
) -> Generated:
    """Greedy (or sampled) continuations of each prompt, batched with left padding."""
    was_training = model.training
    model.eval()
    try:
        ids, mask = left_pad(prompt_ids, codec.pad_id, device)
        kwargs: dict[str, Any] = {"do_sample": sample}
        if sample:
            kwargs.update(temperature=temperature, top_k=0, top_p=1.0)
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=max_new_tokens,
            pad_token_id=codec.pad_id,
            eos_token_id=codec.eos_id,
            use_cache=True,
            **kwargs,
        )
    finally:
        model.train(was_training)
    new_ids: list[list[int]] = []
    stopped: list[bool] = []
    for row in out[:, ids.shape[1] :].tolist():
        if codec.eos_id in row:
            new_ids.append(row[: row.index(codec.eos_id)])
            stopped.append(True)
        else:
            new_ids.append(row)
            stopped.append(False)
    return Generated(prompt_ids, new_ids, stopped)
