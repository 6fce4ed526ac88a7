"""Training tables printed as columns under a header row.

HF Trainer's notebook table (`Step  Training Loss  Validation Loss`, pasted from Jupyter into
countless issues), fastai's (`epoch  train_loss  valid_loss  accuracy  time`), DeepXDE's
(`Step  Train loss  Test loss  Test metric`, each cell a bracketed list) and ultralytics'
(`Epoch  GPU_mem  box_loss  obj_loss  cls_loss  Instances  Size`; YOLOv5 up to v6.1 without
the word: `Epoch  gpu_mem  box  obj  cls  labels  img_size`) print one row per step or epoch:
no cell names its value, the header does.

A header is a line without digits of two or more names apart by a tab, a `|` or two spaces or
more, the first naming the step or the epoch and one naming a loss. A row is a line with as
many cells as the header has names, each a number (nan and inf included, bracketed or not), a
count of a total (`1/99`: its count), or a cell that says nothing: a time (`00:12`), a size
with its unit (`3.86G`), HF's `No log` (a loss not logged yet). A progress bar after the row
(ultralytics prints the epoch's bar there) is not a cell. A results table (`model  loss
accuracy`, one row per model) has no step column and is not read: its rows are not a series
in time. An RL optimisation table (a KL column, one row per optimisation epoch) is one. A
Markdown table (`| Epoch | Training Loss | Validation Loss |`, its `|---|` rule a row that says
nothing) is how GitHub issues show HF's notebook table.
"""

from __future__ import annotations

import math
import re

from supervisor.parsing.kv import normalise_name

_SPLIT = re.compile(r"\t+|\s*\|\s*|\s{2,}")
_NAME = re.compile(r"[A-Za-z][\w ./()-]*")
_NUMBER = re.compile(
    r"[\[(]?([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|inf|infinity))[\])]?%?",
    re.I,
)
_SAYS_NOTHING = re.compile(
    r"\d+:\d\d(?::\d\d)?(?:\.\d+)?|no log|-+|\d+(?:\.\d+)?\s?[KMGT]i?B?", re.I
)
_OF_TOTAL = re.compile(r"(\d+)/\d+")
# A tqdm bar printed after the row's cells (`640: 100%|█████| 8/8 [00:03<00:00, 2.12it/s]`).
_TRAILING_BAR = re.compile(r":?\s*\d{1,3}%\|.*$")
_PROGRESS = ("step", "epoch")  # what the first column must name (after normalise_name)
# ...unless a column names the KL of a policy update: an RL trainer's optimisation table
# (OpenAI baselines' PPO1 `fmt_row`: `pol_surr | pol_entpen | vf_loss | kl | ent`, one row per
# optimisation epoch over the batch) is a series in time without a step column.
_UPDATE_KL = ("kl", "approxkl", "approx_kl", "meankl")
# YOLOv5 up to v6.1 names its loss columns without the word: train.py prints
# `('Epoch', 'gpu_mem', 'box', 'obj', 'cls', 'labels', 'img_size')` over the epoch's mean
# losses (older versions add 'total', the sum; yolov5_obb adds 'theta', the angle loss), where
# v6.2 and ultralytics print `box_loss`, `obj_loss`, `cls_loss`.
_YOLO_LOSSES = {"box": "box_loss", "obj": "obj_loss", "cls": "cls_loss", "theta": "theta_loss"}
_YOLO_TOTAL = "total"


def cells(text: str) -> list[str]:
    """The cells of a header or a row."""
    # (a Markdown table's row, `| 1 | 0.45 |`: the spaces inside its outer bars go too)
    return [c for c in _SPLIT.split(text.strip().strip("|").strip()) if c]


def may_be_header(text: str) -> bool:
    """A cheap gate before `header`: a header names a loss (or is YOLOv5's, by its gpu_mem)."""
    return "oss" in text or "OSS" in text or "gpu_mem" in text


def header(text: str) -> tuple[str, ...] | None:
    """The metric names of a training table's header row, or None if `text` is not one."""
    if any(c.isdigit() for c in text):
        return None
    names = cells(text)
    if len(names) < 2 or not all(_NAME.fullmatch(n) for n in names):
        return None
    keys = tuple(normalise_name(n) for n in names)
    if {"box", "obj", "cls"} <= set(keys) and not any("loss" in k for k in keys):
        keys = tuple("loss" if k == _YOLO_TOTAL else _YOLO_LOSSES.get(k, k) for k in keys)
    if not any("loss" in k for k in keys):
        return None
    if keys[0] not in _PROGRESS and not any(k in _UPDATE_KL for k in keys):
        return None
    return keys


def row(text: str, keys: tuple[str, ...]) -> tuple[dict[str, float], int | None] | None:
    """A row's values by name and its step, or None if `text` is not a row of that table."""
    if "%|" in text:
        text = _TRAILING_BAR.sub("", text)
    parts = cells(text)
    if len(parts) != len(keys):
        return None
    values: dict[str, float] = {}
    step: int | None = None
    for key, cell in zip(keys, parts, strict=True):
        m = _NUMBER.fullmatch(cell) or _OF_TOTAL.fullmatch(cell)
        if m is None:
            if _SAYS_NOTHING.fullmatch(cell):
                continue
            return None
        value = float(m.group(1))
        if key == "step" and math.isfinite(value) and value.is_integer():
            step = int(value)
        else:
            values[key] = value
    return values, step
