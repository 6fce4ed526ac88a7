"""Losses and metrics over logits, computed a chunk of positions at a time.

A (B, L, V) softmax beside the logits doubles memory (log_softmax, softmax and the logits of a
big vocabulary held at once is how an entropy plot once ran out of memory). Here each chunk's
log-probabilities live only while that chunk is reduced.

With gradients, each loss is one autograd Function: its forward keeps nothing but the logits
(alive anyway) and the labels; its backward allocates the logits' gradient once and fills it
chunk by chunk, recomputing the chunk's softmax. Checkpointing each chunk of a slice would not
do: a slice's backward scatters the chunk's gradient into a full-size (B, L, V) zero tensor, and
autograd sums those out of place, so three full-size tensors are alive at once. Peak extra
memory of backward here is one full-size gradient (in the logits' dtype) plus one chunk's fp32
buffers; of forward, one chunk's buffers. GKD's JSD and its added cross-entropy (sft_alpha) are
one Function with two outputs for the same reason: their backward fills one gradient.

All functions take *unshifted* logits and labels (labels = input ids, -100 where no loss): the
prediction at position t is scored against the label at t + 1.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

IGNORE = -100


def _shift(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return logits[:, :-1], labels[:, 1:]


def _into_gradient(
    grad: torch.Tensor | None, logits: torch.Tensor, vocab: int, part: slice, g: torch.Tensor
) -> torch.Tensor:
    """Copy one chunk's gradient into the logits' gradient (positions `part` of the shifted
    logits), allocating it at the first chunk: once that chunk's other buffers are freed, so
    that with a single chunk the peak is no higher than the chunk's own."""
    if grad is None:
        grad = torch.empty_like(logits)
        grad[:, -1].zero_()  # the last position predicts nothing
        if vocab < logits.shape[-1]:
            grad[..., vocab:].zero_()
    grad[:, :-1][:, part, :vocab] = g
    return grad


def _ce_sum(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(
        logits.float().reshape(-1, logits.shape[-1]),
        labels.reshape(-1),
        ignore_index=IGNORE,
        reduction="sum",
    )


def _ce_chunk_gradient(
    chunk: torch.Tensor, labels: torch.Tensor, scale: torch.Tensor
) -> torch.Tensor:
    """d(summed CE)/dz of one chunk of shifted logits, times `scale`: softmax(z) - onehot(label),
    zero where the label is ignored; fp32, the chunk's shape."""
    scored = (labels != IGNORE).unsqueeze(-1)
    # torch.softmax (a softmax by hand rounds differently, and a diverging run's fate hangs on
    # such bits) of a contiguous fp32 copy, freed once the softmax is out
    g = torch.softmax(chunk.float().contiguous(), dim=-1)
    g.scatter_add_(-1, labels.clamp(min=0).unsqueeze(-1), -scored.float())
    return g.mul_(scored * scale)


class _ChunkedCrossEntropy(torch.autograd.Function):
    """Summed next-token cross-entropy of unshifted logits, a chunk of positions at a time."""

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, labels: torch.Tensor, chunk: int) -> torch.Tensor:
        ctx.save_for_backward(logits, labels)
        ctx.chunk = chunk
        s, y = _shift(logits, labels)
        total = torch.zeros((), dtype=torch.float32, device=logits.device)
        for start in range(0, s.shape[1], chunk):
            total += _ce_sum(s[:, start : start + chunk], y[:, start : start + chunk])
        return total

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        logits, labels = ctx.saved_tensors
        grad: torch.Tensor | None = None
        s, y = _shift(logits, labels)
        for start in range(0, s.shape[1], ctx.chunk):
            part = slice(start, start + ctx.chunk)
            g = _ce_chunk_gradient(s[:, part], y[:, part], grad_out)
            grad = _into_gradient(grad, logits, logits.shape[-1], part, g)
            del g
        if grad is None:  # a single position: nothing is predicted
            grad = torch.zeros_like(logits)
        return grad, None, None


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Mean next-token cross-entropy over positions whose label is not -100."""
    n = (labels[:, 1:] != IGNORE).sum().clamp(min=1)
    return _ChunkedCrossEntropy.apply(logits, labels, chunk) / n


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


def _with_ce(
    jsd_grad: torch.Tensor, chunk: torch.Tensor, labels: torch.Tensor, grad_ce: torch.Tensor
) -> torch.Tensor:
    """The CE's gradient of a chunk (fp32, whole vocabulary) with the JSD's added (the shared
    vocabulary): summed in fp32 and rounded once, where two losses would round each."""
    g = _ce_chunk_gradient(chunk, labels, grad_ce)
    g[..., : jsd_grad.shape[-1]] += jsd_grad
    return g


class _ChunkedGKD(torch.autograd.Function):
    """Summed generalized JSD of unshifted student and teacher logits and, when asked, the
    summed cross-entropy of the student's logits against the labels, a chunk at a time.

    Both sums come out of one Function so that their backward fills one gradient buffer: as
    two losses, each backward would allocate its own full-size gradient of the student's logits
    and autograd would add them (one more B x L x V tensor alive). The JSD's chunk gradient is
    taken with autograd on detached chunk views (its gradient by hand is easy to get wrong);
    only that chunk's graph is alive at a time.
    """

    @staticmethod
    def forward(
        ctx: Any,
        student: torch.Tensor,
        teacher: torch.Tensor,
        labels: torch.Tensor,
        beta: float,
        temperature: float,
        chunk: int,
        with_ce: bool,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.save_for_backward(student, teacher, labels)
        ctx.settings = (beta, temperature, chunk, with_ce)
        # a teacher with another vocabulary size: compare the tokens both know
        vocab = min(student.shape[-1], teacher.shape[-1])
        (s, y), t = _shift(student, labels), teacher[:, :-1]
        jsd = torch.zeros((), dtype=torch.float32, device=student.device)
        ce = torch.zeros((), dtype=torch.float32, device=student.device)
        for start in range(0, s.shape[1], chunk):
            part = slice(start, start + chunk)
            jsd += _jsd_sum(s[:, part, :vocab], t[:, part, :vocab], y[:, part], beta, temperature)
            if with_ce:
                ce += _ce_sum(s[:, part], y[:, part])
        return jsd, ce

    @staticmethod
    @once_differentiable
    def backward(
        ctx: Any, grad_jsd: torch.Tensor, grad_ce: torch.Tensor
    ) -> tuple[torch.Tensor | None, ...]:
        student, teacher, labels = ctx.saved_tensors
        beta, temperature, chunk, with_ce = ctx.settings
        need_s, need_t = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        vocab = min(student.shape[-1], teacher.shape[-1])
        grad_s: torch.Tensor | None = None
        grad_t: torch.Tensor | None = None
        (s, y), t = _shift(student, labels), teacher[:, :-1]
        for start in range(0, s.shape[1], chunk):
            part = slice(start, start + chunk)
            sc = s[:, part, :vocab].detach().requires_grad_(need_s)
            tc = t[:, part, :vocab].detach().requires_grad_(need_t)
            with torch.enable_grad():
                value = _jsd_sum(sc, tc, y[:, part], beta, temperature)
            wanted = [x for x in (sc, tc) if x.requires_grad]
            grads = list(torch.autograd.grad(value, wanted, grad_jsd))
            del value  # the chunk's graph: its buffers go before the gradient is allocated
            if need_s:
                g, width = grads.pop(0), vocab
                if with_ce:  # one chunk gradient for both losses: the JSD's added to the CE's
                    g, width = _with_ce(g, s[:, part], y[:, part], grad_ce), student.shape[-1]
                grad_s = _into_gradient(grad_s, student, width, part, g)
                del g
            if need_t:
                grad_t = _into_gradient(grad_t, teacher, vocab, part, grads.pop(0))
            del grads
        return grad_s, grad_t, None, None, None, None, None


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
    n = (labels[:, 1:] != IGNORE).sum().clamp(min=1)
    total, _ = _ChunkedGKD.apply(
        student_logits, teacher_logits, labels, beta, temperature, chunk, False
    )
    return total / n


def jsd_and_cross_entropy(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
    chunk: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(generalized_jsd, cross_entropy) of the same student logits and labels, whose backward
    makes one gradient of the student's logits for both (the memory of the JSD's alone)."""
    n = (labels[:, 1:] != IGNORE).sum().clamp(min=1)
    jsd, ce = _ChunkedGKD.apply(
        student_logits, teacher_logits, labels, beta, temperature, chunk, True
    )
    return jsd / n, ce / n


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
