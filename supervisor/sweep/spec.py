"""The `sweep:` section of a recipe, as a pydantic model (the expansion is expand.py).

    sweep:
      grid: {lr: [1.0e-5, 3.0e-5], micro_batch: [4, 8]}      # every combination
      zip: {train_size: [1000, 4000], steps: [100, 400]}       # lists walked together
      random:                                                   # n draws from a space
        n: 4
        seed: 0
        space:
          lr: {log_uniform: [1.0e-5, 1.0e-3]}
          warmup: {choice: [0, 10, 50]}
          dropout: {uniform: [0.0, 0.1]}
      keep: [effective_batch]      # a member's micro-batch scales its gradient accumulation

The axes multiply: grid combinations x zip rows x random draws (an absent axis counts once).
Keys follow the `--set` rule (a bare key is `args.<key>` when args has it, else a top-level
field; dotted keys go anywhere). This module imports nothing of the recipe, so that
recipe/model.py can hold a `sweep` field without an import cycle.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Uniform(_Model):
    uniform: tuple[float, float]

    @field_validator("uniform")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not v[0] < v[1]:
            raise ValueError(f"[low, high] needs low < high, got {list(v)}")
        return v


class LogUniform(_Model):
    log_uniform: tuple[float, float]

    @field_validator("log_uniform")
    @classmethod
    def _positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 < v[0] < v[1]:
            raise ValueError(f"[low, high] needs 0 < low < high, got {list(v)}")
        return v


class Choice(_Model):
    choice: list[Any] = Field(min_length=1)


Distribution = LogUniform | Uniform | Choice


class RandomSearch(_Model):
    n: int = Field(ge=1, le=10_000)
    seed: int = 0
    space: dict[str, Distribution] = Field(min_length=1)


class Prune(_Model):
    """Successive halving: at each rung (a step), members outside the best `keep` fraction by
    `metric` are stopped."""

    metric: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    rungs: list[int] = Field(min_length=1)
    keep: float = Field(0.5, gt=0, lt=1)


class SweepSpec(_Model):
    grid: dict[str, list[Any]] = {}
    zip: dict[str, list[Any]] = {}
    random: RandomSearch | None = None
    keep: list[Literal["effective_batch"]] = []
    max_parallel: int | None = Field(None, ge=1)
    prune: Prune | None = None

    @field_validator("grid", "zip")
    @classmethod
    def _non_empty_lists(cls, v: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in v.items():
            if not values:
                raise ValueError(f"{key}: needs at least one value")
        return v

    @model_validator(mode="after")
    def _shape(self) -> SweepSpec:
        if not self.grid and not self.zip and self.random is None:
            raise ValueError("a sweep needs grid, zip or random")
        lengths = {len(v) for v in self.zip.values()}
        if len(lengths) > 1:
            sizes = ", ".join(f"{k}: {len(v)}" for k, v in self.zip.items())
            raise ValueError(f"zip lists are walked together and need one length ({sizes})")
        axes = [list(self.grid), list(self.zip), list(self.random.space) if self.random else []]
        seen: set[str] = set()
        for keys in axes:
            for key in keys:
                if key in seen:
                    raise ValueError(f"{key!r} is swept twice (grid, zip and random must differ)")
                seen.add(key)
        return self

    def keys(self) -> list[str]:
        """The swept keys, in the order members show them."""
        space = list(self.random.space) if self.random else []
        return [*self.grid, *self.zip, *space]

    def size(self) -> int:
        n = math.prod(len(v) for v in self.grid.values()) if self.grid else 1
        n *= len(next(iter(self.zip.values()))) if self.zip else 1
        return n * (self.random.n if self.random else 1)
