"""Relaunch adjustments: the recipe a relaunch runs with, and what changed from its parent.

An `adjust:` maps keys (the `--set` rule: a bare key is `args.<key>` when args has it, else a
top-level field; dotted keys go anywhere, `watch.stall.secs`) to an operation or a value:

    "*k"  multiply     "/k"  divide      "+k"  add      "-k"  subtract    else: set the value

Integers stay integers (`*` and `+`/`-` round, `/` floors) and never go below 1; a float that
would reach 0 or below is refused. An adjustment that can change nothing more (micro_batch
already 1, a value already set) is exhausted. With several keys the relaunch goes on while any
of them still changes; when none can, `AdjustmentExhausted` says why, and the chain ends there.

`keep=["effective_batch"]`: when the micro-batch (`MICRO_BATCH_KEYS`: micro_batch,
per_device_train_batch_size, micro_batch_size, batch_size) shrinks by k, gradient accumulation
(`GRAD_ACCUM_KEYS`: grad_accum, gradient_accumulation_steps, grad_accum_steps, accum_steps)
grows by k, so that micro x accum (and so the learning dynamics) stays the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from supervisor.recipe.model import (
    GRAD_ACCUM_KEYS,
    MICRO_BATCH_KEYS,
    Problem,
    Recipe,
    RecipeError,
    parse_op,
    resolve_key,
)


class AdjustmentExhausted(Exception):
    """No adjustment can change anything more; `reason` says why ("micro_batch is already 1")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Change:
    """One key changed by a relaunch. `str()` is `lr 0.0002 -> 0.0001`."""

    key: str
    old: Any
    new: Any
    note: str = ""  # why, when it was not asked for directly (keep, auto)

    def __str__(self) -> str:
        text = f"{self.key} {_show(self.old)} -> {_show(self.new)}"
        return f"{text} ({self.note})" if self.note else text


def _show(value: Any) -> str:
    if value is None:
        return "(unset)"
    if isinstance(value, float):
        return f"{value:g}" if abs(value) >= 1e-4 or value == 0 else f"{value:.3g}"
    return str(value)


def apply_adjustments(
    recipe: Recipe,
    adjust: Mapping[str, Any] | str,
    keep: Iterable[str] = (),
    rule: str = "",
) -> tuple[Recipe, list[Change]]:
    """The adjusted recipe and the list of changes. `adjust="auto"` asks the memory estimate.

    Raises AdjustmentExhausted when nothing can change, RecipeError when a key is unknown or the
    result is not a valid recipe.
    """
    note = ""
    if adjust == "auto":
        adjust, note = _auto(recipe, rule)
    if not isinstance(adjust, Mapping) or not adjust:
        raise AdjustmentExhausted(f"{rule or 'the policy'} has nothing to adjust")
    data = recipe.model_dump(mode="python")
    changes: list[Change] = []
    exhausted: list[str] = []
    for key, how in adjust.items():
        try:
            path = resolve_key(recipe, key)
        except KeyError as exc:
            raise RecipeError([_problem(key, str(exc.args[0]))]) from None
        old = _get(data, path)
        try:
            new = _apply(key, old, how)
        except AdjustmentExhausted as exc:
            exhausted.append(exc.reason)
            continue
        _set(data, path, new)
        changes.append(Change(key, old, new, note))
    if not changes:
        raise AdjustmentExhausted("; ".join(exhausted))
    if "effective_batch" in keep:
        changes += _keep_effective_batch(recipe, data, adjust)
    try:
        return Recipe.model_validate(data), changes
    except ValidationError as exc:
        raise RecipeError(
            [
                _problem(".".join(map(str, e["loc"])), f"after adjusting: {e['msg']}")
                for e in exc.errors(include_url=False)
            ]
        ) from None


def relaunch_recipe(recipe: Recipe, rule: str) -> tuple[Recipe, list[Change]]:
    """The recipe a relaunch for `rule` runs with, per the recipe's own policy (`on.<rule>`):
    its `adjust` and `keep`. A rule without a policy relaunches unchanged."""
    policy = recipe.on.get(rule)
    if policy is None or not policy.adjust:
        return recipe, []
    return apply_adjustments(recipe, policy.adjust, keep=policy.keep, rule=rule)


def _apply(key: str, old: Any, how: Any) -> Any:
    """One key's new value, or AdjustmentExhausted."""
    op = parse_op(how)
    if op is None:
        if old == how:
            raise AdjustmentExhausted(f"{key} is already {_show(how)}")
        return how
    sign, k = op
    if isinstance(old, bool) or not isinstance(old, (int, float)):
        got = "not set" if old is None else f"{old!r}, not a number"
        raise AdjustmentExhausted(f"{key} is {got}: cannot apply {how}")
    if isinstance(old, int):
        exact = {"*": old * k, "/": old / k, "+": old + k, "-": old - k}[sign]
        new: int | float = max(1, math.floor(exact) if sign == "/" else round(exact))
        if new == old:
            if old == 1 and sign in "/-*" and exact < old:
                raise AdjustmentExhausted(f"{key} is already 1")
            raise AdjustmentExhausted(f"{key} {how} leaves it at {old}")
        return new
    new = {"*": old * k, "/": old / k, "+": old + k, "-": old - k}[sign]
    new = float(f"{new:.12g}")  # 3e-4 * 0.1 is 3e-05, not 2.9999999999999997e-05
    if old > 0 and new <= 0:
        raise AdjustmentExhausted(f"{key} {how} would take it from {_show(old)} to {_show(new)}")
    if new == old:
        raise AdjustmentExhausted(f"{key} {how} leaves it at {_show(old)}")
    return new


def _keep_effective_batch(
    recipe: Recipe, data: dict[str, Any], adjust: Mapping[str, Any]
) -> list[Change]:
    """Scale gradient accumulation against the micro-batch change, so micro x accum holds."""
    args_new = data.get("args", {})
    micro = next((k for k in MICRO_BATCH_KEYS if k in recipe.args), None)
    accum = next((k for k in GRAD_ACCUM_KEYS if k in recipe.args), None)
    if micro is None or accum is None:
        raise RecipeError(
            [_problem("keep", "effective_batch needs a micro-batch and an accumulation in args")]
        )
    explicit = {resolve_key(recipe, k) for k in adjust}
    if ("args", accum) in explicit:
        return []  # the policy sets accumulation itself
    m_old, m_new = recipe.args[micro], args_new[micro]
    a_old = recipe.args[accum]
    if m_old == m_new or not all(isinstance(v, int) for v in (m_old, m_new, a_old)):
        return []
    a_new = max(1, round(a_old * m_old / m_new))
    if a_new == a_old:
        return []
    args_new[accum] = a_new
    note = f"keeps the effective batch at {m_old * a_old}"
    if m_new * a_new != m_old * a_old:
        note = f"effective batch {m_old * a_old} -> {m_new * a_new}, as near as integers allow"
    return [Change(accum, a_old, a_new, note)]


def _auto(recipe: Recipe, rule: str) -> tuple[Mapping[str, Any], str]:
    """`adjust: auto`: ask supervisor.estimate.preflight; without it (or when it cannot tell),
    halve the micro-batch and say so in the change's note."""
    why = "no memory estimate available"
    try:
        from supervisor.estimate.preflight import suggest_adjustment
    except ImportError:
        suggest_adjustment = None  # type: ignore[assignment]
    if suggest_adjustment is not None:
        try:
            suggested = suggest_adjustment(recipe, rule)
        except (ValueError, OSError) as exc:  # EstimateError is a ValueError
            why = f"the memory estimate failed ({exc})"
        else:
            if not suggested:
                raise AdjustmentExhausted(
                    "adjust: auto: the memory estimate finds nothing to change"
                )
            return suggested, "auto: from the memory estimate"
    micro = next((k for k in MICRO_BATCH_KEYS if k in recipe.args), None)
    if micro is None:
        raise AdjustmentExhausted(f"adjust: auto: {why}, and args has no micro-batch to halve")
    return {micro: "/2"}, f"auto: {why}, halved the micro-batch"


def _get(data: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = data
    for part in path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _set(data: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    node = data
    for part in path[:-1]:
        if not isinstance(node.get(part), dict):
            node[part] = {}
        node = node[part]
    node[path[-1]] = value


def _problem(key: str, message: str) -> Problem:
    return Problem("adjust", 0, key, message)
