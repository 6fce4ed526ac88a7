"""A recipe with a `sweep:` -> its members: one ordinary recipe each, named `<name>-<i>`.

Each member is the base recipe with the swept keys set (through `adjust.apply_adjustments`, so a
swept key resolves as `--set` does and `keep: [effective_batch]` scales the accumulation as a
relaunch would) and no `sweep:` of its own; its policies (`on:`) are the base recipe's, so
every member is relaunched by its own rules without touching the others.

Random draws are reproducible: `random.seed` seeds one `random.Random`, draws go key by key in
the order the space lists them, and a log-uniform draw is `exp(uniform(log lo, log hi))`,
rounded to 4 significant digits so that names and tables stay readable.
"""

from __future__ import annotations

import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from supervisor.recipe.model import Problem, Recipe, RecipeError, resolve_key
from supervisor.runs.adjust import AdjustmentExhausted, apply_adjustments
from supervisor.sweep.spec import Choice, LogUniform, SweepSpec, Uniform

MAX_MEMBERS = 1000


@dataclass(frozen=True)
class Member:
    """One run of a sweep: its 1-based index, the swept values and the recipe to launch."""

    index: int
    values: dict[str, Any]
    recipe: Recipe
    changes: tuple[str, ...] = field(default=())  # what `keep` changed besides the values

    def label(self) -> str:
        """`lr=0.1 micro_batch=8`: the member in one line."""
        return " ".join(f"{k}={show_value(v)}" for k, v in self.values.items())


def show_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def sweep_problems(recipe: Recipe) -> list[tuple[tuple[str | int, ...], str]]:
    """Swept keys the recipe cannot resolve, and sweeps too large (for `cross_problems`)."""
    spec = recipe.sweep
    if spec is None:
        return []
    out: list[tuple[tuple[str | int, ...], str]] = []
    for section, keys in (
        ("grid", list(spec.grid)),
        ("zip", list(spec.zip)),
        ("random", list(spec.random.space) if spec.random else []),
    ):
        for key in keys:
            try:
                resolve_key(recipe, key)
            except KeyError as exc:
                loc: tuple[str | int, ...] = ("sweep", section, key)
                if section == "random":
                    loc = ("sweep", "random", "space", key)
                out.append((loc, str(exc.args[0])))
            if key.split(".")[0] in ("name", "sweep"):
                out.append((("sweep", section, key), f"{key!r} cannot be swept"))
    if spec.size() > MAX_MEMBERS:
        out.append((("sweep",), f"{spec.size()} members; at most {MAX_MEMBERS}"))
    return out


def combinations(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every member's swept values, in a stable order (grid fastest-last, then zip, then
    random draws)."""
    grid = [
        dict(zip(spec.grid, combo, strict=True)) for combo in itertools.product(*spec.grid.values())
    ] or [{}]
    n_zip = len(next(iter(spec.zip.values()))) if spec.zip else 0
    zipped = [{k: v[i] for k, v in spec.zip.items()} for i in range(n_zip)] or [{}]
    draws: list[dict[str, Any]] = [{}]
    if spec.random is not None:
        rng = random.Random(spec.random.seed)
        draws = [
            {k: _draw(rng, dist) for k, dist in spec.random.space.items()}
            for _ in range(spec.random.n)
        ]
    return [{**g, **z, **d} for g in grid for z in zipped for d in draws]


def _draw(rng: random.Random, dist: LogUniform | Uniform | Choice) -> Any:
    if isinstance(dist, Choice):
        return rng.choice(dist.choice)
    if isinstance(dist, LogUniform):
        lo, hi = dist.log_uniform
        return float(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.4g}")
    lo, hi = dist.uniform
    return float(f"{rng.uniform(lo, hi):.4g}")


def expand(recipe: Recipe) -> list[Member]:
    """The members of a sweep recipe. Raises RecipeError (field `sweep`) when the recipe has
    no sweep or a member's recipe is not valid."""
    spec = recipe.sweep
    if spec is None:
        raise RecipeError([Problem(recipe.name, 0, "sweep", "this recipe has no `sweep:` section")])
    base = recipe.model_copy(update={"sweep": None})
    members: list[Member] = []
    for i, values in enumerate(combinations(spec), start=1):
        name = f"{recipe.name[: 64 - len(str(i)) - 1]}-{i}"
        data = {k: v for k, v in values.items() if _current(base, k) != v}
        changes: tuple[str, ...] = ()
        member_recipe = base
        if data:
            try:
                member_recipe, done = apply_adjustments(base, data, keep=spec.keep, rule="sweep")
            except AdjustmentExhausted as exc:  # cannot happen: equal values were left out
                raise RecipeError([Problem(recipe.name, 0, "sweep", exc.reason)]) from None
            changes = tuple(str(c) for c in done if c.key not in values)
        members.append(Member(i, values, member_recipe.model_copy(update={"name": name}), changes))
    return members


def _current(recipe: Recipe, key: str) -> Any:
    node: Any = recipe.model_dump(mode="python")
    for part in resolve_key(recipe, key):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
