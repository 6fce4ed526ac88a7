"""A recipe's `sweep:` expands into member recipes as a user would count them."""

from __future__ import annotations

import math

import pytest

from supervisor.recipe.model import RecipeError, recipe_from_yaml
from supervisor.sweep.expand import expand

BASE = """\
name: study
command: [python, -m, trainer]
args: {lr: 0.001, micro_batch: 8, grad_accum: 2, steps: 10, warmup: 0, train_size: 100}
on:
  nan: {do: relaunch, adjust: {lr: "*0.5"}}
"""


def members(sweep: str):
    return expand(recipe_from_yaml(BASE + sweep, "study.yaml"))


def test_grid_is_every_combination_and_zip_walks_together() -> None:
    """2 x 3 grid times a 2-row zip gives 12 members, each with its own name and values."""
    ms = members(
        "sweep:\n  grid: {lr: [0.1, 0.2], micro_batch: [2, 4, 8]}\n"
        "  zip: {steps: [10, 20], train_size: [100, 200]}\n"
    )
    assert len(ms) == 12
    assert [m.recipe.name for m in ms[:2]] == ["study-1", "study-2"]
    pairs = {(m.recipe.args["steps"], m.recipe.args["train_size"]) for m in ms}
    assert pairs == {(10, 100), (20, 200)}  # zip never crosses its own lists
    combos = {(m.recipe.args["lr"], m.recipe.args["micro_batch"]) for m in ms}
    assert len(combos) == 6
    assert all(m.recipe.sweep is None for m in ms)  # a member is an ordinary recipe
    assert all("nan" in m.recipe.on for m in ms)  # and keeps the recipe's own policies


def test_random_log_uniform_stays_in_range_and_is_reproducible() -> None:
    """n draws, log-uniform within [lo, hi], the same values for the same seed."""
    sweep = (
        "sweep:\n  random:\n    n: 20\n    seed: 7\n    space:\n"
        "      lr: {log_uniform: [1.0e-5, 1.0e-2]}\n      warmup: {choice: [0, 5]}\n"
    )
    first, again = members(sweep), members(sweep)
    lrs = [m.values["lr"] for m in first]
    assert len(first) == 20
    assert all(1e-5 <= lr <= 1e-2 for lr in lrs)
    assert lrs == [m.values["lr"] for m in again]
    logs = [math.log10(lr) for lr in lrs]
    assert min(logs) < -4 and max(logs) > -3  # spread over decades, not bunched near the top
    assert {m.recipe.args["warmup"] for m in first} <= {0, 5}


def test_keep_effective_batch_scales_accumulation_per_member() -> None:
    """micro_batch 4 of a recipe at 8 x 2 gets grad_accum 4, and the member says so."""
    ms = members("sweep:\n  grid: {micro_batch: [4, 8]}\n  keep: [effective_batch]\n")
    small, same = ms
    assert (small.recipe.args["micro_batch"], small.recipe.args["grad_accum"]) == (4, 4)
    assert small.changes == ("grad_accum 2 -> 4 (keeps the effective batch at 16)",)
    assert (same.recipe.args["micro_batch"], same.recipe.args["grad_accum"]) == (8, 2)


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        ("sweep:\n  grid: {lrr: [1, 2]}\n", "study.yaml:7: sweep.grid.lrr: unknown key 'lrr'"),
        (
            "sweep:\n  zip: {lr: [1, 2], steps: [1]}\n",
            "study.yaml:6: sweep: zip lists are walked together and need one length",
        ),
        ("sweep:\n  keep: [effective_batch]\n", "a sweep needs grid, zip or random"),
        (
            "sweep:\n  random: {n: 2, space: {lr: {log_uniform: [0, 1]}}}\n",
            "needs 0 < low < high",
        ),
    ],
)
def test_bad_sweeps_name_file_line_and_field(sweep: str, expected: str) -> None:
    with pytest.raises(RecipeError) as err:
        members(sweep)
    assert expected in str(err.value)
