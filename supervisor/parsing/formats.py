"""Two trainers' own printed formats that the `key: value` grammar (kv.py) cannot read.

- Stable-Baselines3's `HumanOutputFormat.write` (stable_baselines3/common/logger.py) prints one
  record as a table between two borders of dashes: a row `| key | value |` per value, and a row
  `| section/ |  |` (`rollout/`, `time/`, `train/`) before the keys of that section, each key
  indented. Floats are `%.3g`, so a diverged update prints `|    loss | nan |`. `Sb3Table`
  gathers the rows and gives the record at the closing border, step = `total_timesteps`.
- BasicSR's `MessageLogger.__call__` (basicsr/utils/logger.py) prints `[<exp>..][epoch:{:3d},
  iter:{:8,d}, lr:({:.3e},)] [eta: ..., time (data): ...] ` and then `{k}: {v:.4e} ` for each
  loss (`l_pix`, `l_g_gan`, `l_d_real`): the iteration has thousands separators and the losses
  are named without the word loss. `basicsr_record` reads one such line.
"""

from __future__ import annotations

import re

from supervisor.parsing.kv import normalise_name, to_float

_SB3_ROW = re.compile(r"\|\s*(\S[^|]*?)\s*\|\s*([^|]*?)\s*\|\s*$")
_SB3_BORDER = re.compile(r"-{10,}\s*$")

_BASICSR_HEAD = re.compile(
    r"\]\[epoch:\s*(\d+),\s*iter:\s*([\d,]+),\s*lr:\(([^)]*)\)\]"
)  # fmt: skip
_BASICSR_VALUE = re.compile(r"(?:^|\s)([a-z][\w]*):\s*(\S+)(?=\s|$)")


class Sb3Table:
    """The rows of one SB3 logger table being read, or none (outside a table)."""

    __slots__ = ("open", "section", "values")

    def __init__(self) -> None:
        self.open = False
        self.section = ""
        self.values: dict[str, float] = {}

    def feed(self, text: str) -> tuple[dict[str, float], int | None] | None:
        """The table's values and step when `text` closes one; None otherwise."""
        stripped = text.strip()
        if _SB3_BORDER.match(stripped):
            if self.open and self.values:
                values, self.values, self.open = self.values, {}, False
                step = values.pop("total_timesteps", None)
                return values, int(step) if step is not None else None
            self.open, self.values, self.section = True, {}, ""
            return None
        if not self.open:
            return None
        m = _SB3_ROW.fullmatch(stripped) if stripped.startswith("|") else None
        if m is None:
            self.open, self.values = False, {}  # not a table after all
            return None
        key, value = m.group(1), m.group(2)
        if key.endswith("/") and not value:
            self.section = key
            return None
        number = to_float(value)
        if number is not None:
            # The training section's names as the rules know them (`train/loss` -> `loss`);
            # the others keep their section (`rollout/ep_rew_mean`).
            name = key if self.section in ("train/", "time/") else self.section + key
            self.values[normalise_name(name)] = number
        return None


def basicsr_record(text: str) -> tuple[dict[str, float], int] | None:
    """A BasicSR MessageLogger line's losses and lr, and its iteration; None for other lines."""
    m = _BASICSR_HEAD.search(text)
    if m is None:
        return None
    values: dict[str, float] = {}
    lr = to_float(m.group(3).split(",")[0])
    if lr is not None:
        values["lr"] = lr
    tail = text[m.end() :]
    close = tail.find("]")  # the [eta: ..., time (data): ...] part
    if close >= 0:
        tail = tail[close + 1 :]
    for key, value in _BASICSR_VALUE.findall(tail):
        number = to_float(value)
        if number is not None:
            # BasicSR names its losses `l_<what>` (l_pix, l_percep, l_g_gan): loss parts.
            name = "loss_" + key[2:] if key.startswith("l_") else key
            values[normalise_name(name)] = number
    if len(values) < 2:  # no loss after the lr
        return None
    return values, int(m.group(2).replace(",", ""))
