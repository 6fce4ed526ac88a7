"""The policy: which action a recipe asks for when a rule fires, and whether a relaunch may go on.

Pure functions over a recipe and counts; the supervisor does the I/O. A rule with no entry in
the recipe's `on:` is alerted on and nothing more. A relaunch is allowed at most `max` times per
rule within one lineage (first launch and all its relaunches), and never more than
`MAX_ATTEMPTS` attempts in all, whatever the recipe says: a loop of relaunches that each fail at
once would otherwise run forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from supervisor.recipe.model import is_secret, is_secret_arg
from supervisor.redaction import redact_text

ACTIONS = ("alert", "pause", "kill", "relaunch")
DEFAULT_MAX = 3
MAX_ATTEMPTS = 20


class ChainStop(Exception):
    """A relaunch the policy wanted cannot happen; the message says why, for a person."""


@dataclass(frozen=True, slots=True)
class Decision:
    kind: str  # one of ACTIONS
    rule: str


def policy_for(recipe: Any, rule: str) -> Any | None:
    """The recipe's policy entry for `rule`, or None."""
    on = getattr(recipe, "on", None) or {}
    if isinstance(on, Mapping):
        return on.get(rule)
    return getattr(on, rule, None)


def _field(policy: Any, name: str, default: Any) -> Any:
    if policy is None:
        return default
    if isinstance(policy, Mapping):
        return policy.get(name, default)
    value = getattr(policy, name, default)
    return default if value is None else value


def decide(recipe: Any, rule: str) -> Decision:
    """What to do when `rule` fires on a run of `recipe`: "alert" unless the recipe says more."""
    kind = str(_field(policy_for(recipe, rule), "do", "alert"))
    return Decision(kind if kind in ACTIONS else "alert", rule)


def action_for(recipe: Any, rule: str) -> str:
    """The engine's view of a recipe's policy (runs/engine.py): the action for `rule`, where a
    rule without an entry is alerted on; `exit` acts only when the recipe names it."""
    if rule == "exit" and policy_for(recipe, "exit") is None:
        return ""
    return decide(recipe, rule).kind


def relaunch_limit(recipe: Any, rule: str) -> int:
    return int(_field(policy_for(recipe, rule), "max", DEFAULT_MAX))


def check_relaunch_allowed(
    recipe: Any, rule: str, by_rule: Mapping[str, int], attempt: int
) -> None:
    """Raise ChainStop if the lineage has used up its relaunches for `rule` (or in all).

    `by_rule` counts the relaunches already made in this lineage for each rule; `attempt` is the
    attempt number of the run that failed.
    """
    limit = relaunch_limit(recipe, rule)
    done = by_rule.get(rule, 0)
    if done >= limit:
        raise ChainStop(f"{rule}: relaunched {done} time(s) already, the recipe allows {limit}")
    if attempt >= MAX_ATTEMPTS:
        raise ChainStop(f"{attempt} attempts in this lineage, ftmon stops at {MAX_ATTEMPTS}")


def relaunch_reason(rule: str, changes: list[str] | tuple[str, ...]) -> str:
    """Why a child run exists, as `ftmon history` shows it."""
    what = "; ".join(changes) if changes else "no changes"
    return f"relaunch after {rule}: {what}"


def pause_reason(rule: str, message: str, pgid: int) -> str:
    """What a person sees when a run is paused, including what they can do about it."""
    return (
        f"paused by ftmon: rule {rule}: {message}. Resume it (TUI: resume, or "
        f"`kill -CONT -{pgid}`), relaunch it with changes, or kill it"
    )


def first_relaunch_rule(recipe: Any) -> str:
    """The first rule whose policy is a relaunch (what the TUI's relaunch form proposes)."""
    for rule, entry in recipe.on.items():
        if entry.do == "relaunch":
            return rule
    return ""


def recipe_changes(old: Any, new: Any) -> list[str]:
    """What a user's edit changed, as the adjustments print it: `args.lr 0.0001 -> 5e-05`."""
    before, after = flatten(old.model_dump(mode="json")), flatten(new.model_dump(mode="json"))
    out = []
    for key in sorted(set(before) | set(after)):
        if before.get(key) == after.get(key):
            continue
        secret_arg = key.startswith("args.") and any(
            is_secret_arg(key[5:], v) for v in (before.get(key), after.get(key))
        )
        if (key.startswith("env.") and is_secret(key[4:])) or secret_arg:
            out.append(f"{key} changed")  # never a secret's value, not even in a change list
        else:
            change = f"{key} {_shown(before.get(key))} -> {_shown(after.get(key))}"
            out.append(redact_text(change))  # a credential by its shape, under any name
    return out


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"args": {"lr": 1}} -> {"args.lr": 1}; lists stay whole values."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out
    return {prefix: value}


def _shown(value: Any) -> str:
    if value is None:
        return "(unset)"
    return f"{value:g}" if isinstance(value, float) else str(value)
