"""Data-parallel training under torchrun: the rank, the process group, the gradient average.

`torchrun --nproc_per_node N -m trainer ...` sets RANK, WORLD_SIZE, LOCAL_RANK and the
rendezvous address; `from_env()` reads them (a plain `python -m trainer` is rank 0 of 1 and
never touches torch.distributed). Gradients are averaged with one all-reduce of a flat buffer
after backward rather than through a DistributedDataParallel wrapper: the chunked loss and the
GKD teacher call the model's parts directly, which DDP's forward hooks would not see.

Every rank takes part in exactly two collectives per optimizer step (the finite flag, then the
gradients), so a rank that skips a non-finite step skips it on every rank and no collective is
left unmatched.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class Ranks:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes checkpoints, samples and evaluations."""
        return self.rank == 0


def from_env(env: dict[str, str] | None = None) -> Ranks:
    env = dict(os.environ) if env is None else env
    return Ranks(
        rank=int(env.get("RANK", "0")),
        world=int(env.get("WORLD_SIZE", "1")),
        local_rank=int(env.get("LOCAL_RANK", "0")),
    )


def device_for(ranks: Ranks, device: torch.device) -> torch.device:
    """One GPU per local rank on a CUDA machine."""
    if ranks.distributed and device.type == "cuda":
        return torch.device("cuda", ranks.local_rank)
    return device


def init(ranks: Ranks, device: torch.device) -> None:
    """Join the process group torchrun's environment describes: nccl on a GPU, gloo on the CPU."""
    if not ranks.distributed:
        return
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown(ranks: Ranks) -> None:
    if not ranks.distributed:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def all_finite(ranks: Ranks, finite: bool, device: torch.device) -> bool:
    """True only if every rank's step was finite (one rank's NaN skips the step everywhere)."""
    if not ranks.distributed:
        return finite
    import torch.distributed as dist

    flag = torch.tensor([1.0 if finite else 0.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() > 0.5)


def average_gradients(ranks: Ranks, params: list[torch.nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks (one all-reduce of a flat buffer)."""
    if not ranks.distributed or not params:
        return
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ranks.world
    offset = 0
    for p, g in zip(params, grads, strict=True):
        n = g.numel()
        p.grad = flat[offset : offset + n].view_as(g).clone()
        offset += n
