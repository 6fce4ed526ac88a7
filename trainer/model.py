"""The model: a tiny Llama/Qwen3-style causal LM built from `tiny_config.json`, or a local dir.

The tiny config is an ordinary Hugging Face `config.json` dict (model_type, vocab_size,
hidden_size, ...), so estimate.py can read the same file and so can `AutoConfig`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

TINY_CONFIG = Path(__file__).with_name("tiny_config.json")


def tiny_config_dict() -> dict[str, Any]:
    return dict(json.loads(TINY_CONFIG.read_text()))


def build_tiny(seed: int) -> Any:
    """A freshly initialised tiny model; the same seed gives the same weights."""
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    cfg = tiny_config_dict()
    cfg.pop("architectures", None)
    cfg.pop("torch_dtype", None)  # the weights are made here, in float32
    config = CONFIG_MAPPING[cfg.pop("model_type")](**cfg)
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def load_model(name: str, seed: int, device: torch.device) -> Any:
    """`tiny` or a local model directory (read only: nothing is ever written into it).

    The weights are kept in float32 on CPU; on CUDA they load in the dtype the directory says
    (bf16 for most recent models) so a 4B model fits, and autocast does the rest.
    """
    if name == "tiny":
        model = build_tiny(seed)
    else:
        from transformers import AutoModelForCausalLM

        path = Path(name)
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"{name}: not a model directory (no config.json) and not `tiny`"
            )
        dtype: Any = "auto" if device.type == "cuda" else torch.float32
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    return model.to(device)


def count_parameters(model: Any) -> tuple[int, int]:
    """(trainable, total)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total
