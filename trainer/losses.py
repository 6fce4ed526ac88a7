"""Losses and metrics over logits, computed a chunk of positions at a time.

A (B, L, V) softmax beside the logits doubles memory (log_softmax, softmax and the logits of a
big vocabulary held at once is how an entropy plot once ran out of memory). Here each chunk's
log-probabilities live only while that chunk is reduced; with gradients, each chunk is wrapped
in activation checkpointing, so backward recomputes the chunk's log_softmax instead of keeping
it. Peak extra memory grows with `chunk`, not with `L`.

All functions take *unshifted* logits and labels (labels = input ids, -100 where no loss): the
prediction at position t is scored against the label at t + 1.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

IGNORE = -100


def _shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits[:, :-1], labels[:, 1:]


def _chunked_sum(
    fn: Callable[..., torch.Tensor], tensors: tuple[torch.Tensor, ...], length: int, chunk: int
) -> torch.Tensor:
    """Sum of fn over sequence chunks; checkpointed when a gradient will be taken."""
    total: torch.Tensor | None = None
    for start in range(0, length, chunk):
        parts = tuple(t[:, start : start + chunk] for t in tensors)
        if torch.is_grad_enabled() and any(t.requires_grad for t in parts):
            part = checkpoint(fn, *parts, use_reentrant=False)
        else:
            part = fn(*parts)
        total = part if total is None else total + part
    assert total is not None
    return total


def _ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not -100."""
    logits, labels = _shift(logits, labels)
    n = (labels != IGNORE).sum().clamp(min=1)
    return _chunked_sum(_ce_sum, (logits, labels), logits.shape[1], chunk) / n


def _jsd_sum(
    student: torch.Tensor,
    teacher: torch.Tensor,
    labels: torch.Tensor,
    beta: float,
    temperature: float,
) -> torch.Tensor:
    s = F.log_softmax(student.float() / temperature, dim=-1)
    t = F.log_softmax(teacher.float() / temperature, dim=-1)
    if beta == 0.0:  # forward KL(teacher || student)
        per_tok = F.kl_div(s, t, reduction="none", log_target=True).sum(-1)
    elif beta == 1.0:  # reverse KL(student || teacher)
        per_tok = F.kl_div(t, s, reduction="none", log_target=True).sum(-1)
    else:
        mix = torch.logsumexp(torch.stack([s + math.log(1.0 - beta), t + math.log(beta)]), dim=0)
        per_tok = beta * F.kl_div(mix, t, reduction="none", log_target=True).sum(-1) + (
            1.0 - beta
        ) * F.kl_div(mix, s, reduction="none", log_target=True).sum(-1)
    return (per_tok * (labels != IGNORE)).sum()


def generalized_jsd(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
    chunk: int = 256,
) -> torch.Tensor:
    """Generalized Jensen-Shannon divergence (GKD, Agarwal et al. 2024), mean over scored tokens.

    beta = 0 is KL(teacher || student), beta = 1 is KL(student || teacher); in between, both
    are measured against the mixture beta * teacher + (1 - beta) * student.
    """
    if student_logits.shape[-1] != teacher_logits.shape[-1]:
        vocab = min(student_logits.shape[-1], teacher_logits.shape[-1])
        student_logits, teacher_logits = student_logits[..., :vocab], teacher_logits[..., :vocab]
    s, labels_s = _shift(student_logits, labels)
    t = teacher_logits[:, :-1]
    n = (labels_s != IGNORE).sum().clamp(min=1)

    def fn(sc: torch.Tensor, tc: torch.Tensor, lc: torch.Tensor) -> torch.Tensor:
        return _jsd_sum(sc, tc, lc, beta, temperature)

    return _chunked_sum(fn, (s, t, labels_s), s.shape[1], chunk) / n


@torch.no_grad()
def token_entropy(logits: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Entropy (nats) of the predicted distribution at every position: (B, L), no gradient."""
    out = torch.empty(logits.shape[:-1], dtype=torch.float32, device=logits.device)
    for start in range(0, logits.shape[1], chunk):
        logp = F.log_softmax(logits[:, start : start + chunk].float(), dim=-1)
        out[:, start : start + chunk] = -(logp.exp() * logp).sum(-1)
        del logp
    return out


def mean_entropy(logits: torch.Tensor, labels: torch.Tensor, chunk: int = 256) -> float:
    """Mean token entropy over the positions that predict a scored label."""
    ent = token_entropy(logits[:, :-1], chunk)
    mask = labels[:, 1:] != IGNORE
    return float(ent[mask].mean()) if mask.any() else float("nan")
