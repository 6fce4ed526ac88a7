"""Relaunch adjustments: what a relaunch changes, and when a chain has nothing left to change."""

from __future__ import annotations

import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.recipe.model import Recipe, RecipeError, recipe_from_yaml
from supervisor.runs.adjust import (
    AdjustmentExhausted,
    Change,
    apply_adjustments,
    relaunch_recipe,
)

BASE = Recipe(
    name="r",
    command=["python3", "-m", "trainer"],
    args={"lr": 2e-4, "micro_batch": 8, "grad_accum": 2, "seq_len": 48, "optim": "adamw"},
)


@pytest.mark.parametrize(
    ("key", "how", "new"),
    [
        ("lr", "*0.5", 1e-4),
        ("lr", "/2", 1e-4),
        ("lr", "+1e-4", 3e-4),
        ("lr", "-1e-4", 1e-4),
        ("lr", 5e-5, 5e-5),
        ("micro_batch", "/2", 4),
        ("micro_batch", "/3", 2),  # floor for /
        ("micro_batch", "*0.3", 2),  # round for *
        ("micro_batch", "*1.5", 12),
        ("micro_batch", "+1", 9),
        ("micro_batch", "-7", 1),
        ("micro_batch", "-20", 1),  # never below 1
        ("seq_len", "/2", 24),
        ("optim", "sgd", "sgd"),
        ("kill_grace_secs", 3, 3),  # a top-level field
        ("watch.stall.secs", 60, 60),  # a dotted path
    ],
)
def test_operations(key: str, how: object, new: object) -> None:
    """Each operation gives the expected value; integers stay integers."""
    recipe, changes = apply_adjustments(BASE, {key: how})
    (change,) = changes
    assert change.key == key and change.new == new
    assert type(change.new) is type(new)
    got = recipe.args.get(key) if key in BASE.args else change.new
    assert got == new


@pytest.mark.parametrize(
    ("args", "adjust", "reason"),
    [
        ({"micro_batch": 1}, {"micro_batch": "/2"}, "micro_batch is already 1"),
        ({"micro_batch": 1}, {"micro_batch": "-1"}, "micro_batch is already 1"),
        ({"micro_batch": 3}, {"micro_batch": "*1.1"}, "micro_batch *1.1 leaves it at 3"),
        ({"optim": "sgd"}, {"optim": "sgd"}, "optim is already sgd"),
        ({"lr": 1e-4}, {"lr": "-1e-3"}, "lr -1e-3 would take it from 0.0001 to -0.0009"),
        ({"optim": "sgd"}, {"optim": "*2"}, "optim is 'sgd', not a number: cannot apply *2"),
        ({"lr": 1e-4}, {"missing_is_top": 1}, None),
    ],
)
def test_exhausted_adjustments_say_why(args: dict, adjust: dict, reason: str | None) -> None:
    """An adjustment that can change nothing more raises AdjustmentExhausted with the reason."""
    recipe = Recipe(name="r", command=["x"], args=args)
    if reason is None:  # an unknown key is a recipe error, not an exhausted chain
        with pytest.raises(RecipeError, match="unknown key 'missing_is_top'"):
            apply_adjustments(recipe, adjust)
        return
    with pytest.raises(AdjustmentExhausted) as info:
        apply_adjustments(recipe, adjust)
    assert info.value.reason == reason


def test_one_key_exhausted_others_still_change() -> None:
    """With several keys, the relaunch goes on while any still changes."""
    recipe = Recipe(name="r", command=["x"], args={"micro_batch": 1, "seq_len": 64})
    new, changes = apply_adjustments(recipe, {"micro_batch": "/2", "seq_len": "/2"})
    assert [str(c) for c in changes] == ["seq_len 64 -> 32"]
    assert new.args == {"micro_batch": 1, "seq_len": 32}


def test_keep_effective_batch_chain() -> None:
    """Halving micro_batch with keep doubles grad_accum until micro_batch is 1, then stops."""
    recipe = BASE
    seen = []
    for _ in range(5):
        try:
            recipe, changes = apply_adjustments(
                recipe, {"micro_batch": "/2"}, keep=["effective_batch"]
            )
        except AdjustmentExhausted as exc:
            seen.append(exc.reason)
            break
        seen.append(", ".join(map(str, changes)))
        assert recipe.args["micro_batch"] * recipe.args["grad_accum"] == 16
    assert seen == [
        "micro_batch 8 -> 4, grad_accum 2 -> 4 (keeps the effective batch at 16)",
        "micro_batch 4 -> 2, grad_accum 4 -> 8 (keeps the effective batch at 16)",
        "micro_batch 2 -> 1, grad_accum 8 -> 16 (keeps the effective batch at 16)",
        "micro_batch is already 1",
    ]


def test_keep_effective_batch_with_hf_names_and_inexact_ratio() -> None:
    """HF names are recognised; a ratio that integers cannot keep says how near it came."""
    recipe = Recipe(
        name="r",
        command=["x"],
        args={"per_device_train_batch_size": 6, "gradient_accumulation_steps": 1},
    )
    new, changes = apply_adjustments(
        recipe, {"per_device_train_batch_size": "-2"}, keep=["effective_batch"]
    )
    assert new.args == {"per_device_train_batch_size": 4, "gradient_accumulation_steps": 2}
    assert changes[1].note == "effective batch 6 -> 8, as near as integers allow"


def test_change_prints_as_key_old_new() -> None:
    """A change reads `lr 0.0002 -> 0.0001`, the form the history and the TUI show."""
    assert str(Change("lr", 2e-4, 1e-4)) == "lr 0.0002 -> 0.0001"
    assert str(Change("lr", 3e-6, 1.5e-6)) == "lr 3e-06 -> 1.5e-06"
    assert str(Change("watch.stall.secs", None, 60)) == "watch.stall.secs (unset) -> 60"


def test_float_results_are_tidy() -> None:
    """3e-4 * 0.1 is 3e-05 exactly as a user would write it, not 2.9999999999999997e-05."""
    recipe = Recipe(name="r", command=["x"], args={"lr": 3e-4})
    new, _ = apply_adjustments(recipe, {"lr": "*0.1"})
    assert repr(new.args["lr"]) == "3e-05"


def test_relaunch_recipe_follows_the_recipe_policy() -> None:
    """relaunch_recipe uses the recipe's own `on.<rule>` adjust and keep; no policy, no change."""
    recipe = recipe_from_yaml(
        "name: r\ncommand: [x]\nargs: {lr: 1.0e-3, micro_batch: 4, grad_accum: 1}\n"
        "on:\n  nan: {do: relaunch, adjust: {lr: '*0.5'}}\n"
        "  oom: {do: relaunch, adjust: {micro_batch: /2}, keep: [effective_batch]}\n"
    )
    new, changes = relaunch_recipe(recipe, "oom")
    assert new.args == {"lr": 1e-3, "micro_batch": 2, "grad_accum": 2}
    assert len(changes) == 2
    assert relaunch_recipe(recipe, "stall") == (recipe, [])
    assert relaunch_recipe(recipe, "nan")[0].args["lr"] == 5e-4


def test_auto_without_an_estimate_halves_the_micro_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """`adjust: auto` with no estimate module halves the micro-batch and says so."""
    monkeypatch.setitem(sys.modules, "supervisor.estimate.preflight", None)  # import now fails
    new, changes = apply_adjustments(BASE, "auto", rule="oom")
    assert [str(c) for c in changes] == [
        "micro_batch 8 -> 4 (auto: no memory estimate available, halved the micro-batch)"
    ]
    assert new.args["micro_batch"] == 4


def test_auto_asks_the_memory_estimate() -> None:
    """`adjust: auto` after an OOM takes the memory estimate's smaller micro-batch."""
    recipe = Recipe(
        name="r",
        command=["python3", "-m", "trainer"],
        args={"model": "tiny", "method": "sft", "micro_batch": 8, "grad_accum": 1, "seq_len": 64},
    )
    new, changes = apply_adjustments(recipe, "auto", rule="oom")
    assert new.args["micro_batch"] < 8
    assert {c.note for c in changes} == {"auto: from the memory estimate"}


@settings(max_examples=200, deadline=None)
@given(
    old=st.integers(1, 10**6),
    sign=st.sampled_from("*/+-"),
    k=st.floats(0.01, 100, allow_nan=False).map(lambda x: round(x, 2)),
)
def test_integers_stay_integers_of_at_least_one(old: int, sign: str, k: float) -> None:
    """Any operation on an integer gives an integer of at least 1, or says why it cannot."""
    recipe = Recipe(name="r", command=["x"], args={"micro_batch": old})
    try:
        new, _ = apply_adjustments(recipe, {"micro_batch": f"{sign}{k}"})
    except AdjustmentExhausted as exc:
        assert exc.reason.startswith("micro_batch ")
        return
    value = new.args["micro_batch"]
    assert type(value) is int and value >= 1 and value != old
