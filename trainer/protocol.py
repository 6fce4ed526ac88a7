"""The JSON lines ftmon reads: one object per line on stdout, flushed, next to human lines.

    {"type": "metric", "step", "loss", "grad_norm", "lr", "tok_s", "mem_gb", "epoch", "skipped"}
    {"type": "sample", "step", "prompt", "text"}
    {"type": "eval", "step", "val_loss", "ppl", "accuracy", "format_accuracy", "trunc_rate",
     "avg_gen_len"}
    {"type": "summary", "steps", "skipped", ...}

Non-finite numbers are written as `NaN` / `Infinity` (json.dumps's default), never dropped: a
loss that went NaN is the very thing ftmon watches for. This module imports no torch.
"""

from __future__ import annotations

import json
import math
import sys
from typing import TextIO


def _clean(value: object) -> object:
    """Round floats for readability; keep NaN/inf as they are (they are the message)."""
    if isinstance(value, float) and math.isfinite(value):
        return float(f"{value:.6g}")
    return value


def emit(kind: str, out: TextIO | None = None, **fields: object) -> str:
    """Print one protocol line and return it."""
    record = {"type": kind, **{k: _clean(v) for k, v in fields.items() if v is not None}}
    line = json.dumps(record, allow_nan=True, ensure_ascii=False)
    stream = out if out is not None else sys.stdout
    stream.write(line + "\n")
    stream.flush()
    return line


def say(text: str, out: TextIO | None = None) -> None:
    """A short human-readable line (ftmon's text rules read these too)."""
    stream = out if out is not None else sys.stdout
    stream.write(f"[trainer] {text}\n")
    stream.flush()


def metric(step: int, **fields: object) -> str:
    return emit("metric", step=step, **fields)


def sample(step: int, prompt: str, text: str) -> str:
    return emit("sample", step=step, prompt=prompt, text=text)


def evaluation(step: int, **fields: object) -> str:
    return emit("eval", step=step, **fields)


def summary(**fields: object) -> str:
    return emit("summary", **fields)
