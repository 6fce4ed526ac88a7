"""Checkpoints: `OUTPUT/checkpoint-N/` during training and `OUTPUT/final/` at the end.

For `sft` a checkpoint is the whole model (plus the tokenizer), for `lora` and `gkd` only the
adapter: the base weights are only ever read. Each checkpoint is written to a temporary folder
and renamed into place, so a run killed mid-save leaves the previous checkpoint whole.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from trainer.tokenizer import TextCodec

STATE_FILE = "trainer_state.json"
OPTIM_FILE = "optimizer.pt"
CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class TrainState:
    step: int
    skipped: int
    examples_seen: int
    method: str
    model: str


def save(
    directory: Path,
    model: Any,
    codec: TextCodec,
    state: TrainState,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
) -> Path:
    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(str(tmp))  # a PeftModel saves only its adapter
    codec.save(tmp)
    if optimizer is not None:
        torch.save(
            {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "torch_rng": torch.get_rng_state(),
            },
            tmp / OPTIM_FILE,
        )
    (tmp / STATE_FILE).write_text(json.dumps(asdict(state), indent=1) + "\n")
    shutil.rmtree(directory, ignore_errors=True)
    tmp.rename(directory)
    return directory


def latest(output_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, if any."""
    found: list[tuple[int, Path]] = []
    if output_dir.is_dir():
        for child in output_dir.iterdir():
            match = CHECKPOINT.match(child.name)
            if match and (child / STATE_FILE).is_file() and (child / OPTIM_FILE).is_file():
                found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


def read_state(directory: Path) -> TrainState:
    return TrainState(**json.loads((directory / STATE_FILE).read_text()))


def restore_optimizer(directory: Path, optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    saved = torch.load(directory / OPTIM_FILE, weights_only=False)
    optimizer.load_state_dict(saved["optimizer"])
    if scheduler is not None and saved["scheduler"] is not None:
        scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
