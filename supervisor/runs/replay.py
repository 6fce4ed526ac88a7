"""The recipe a recorded run ran with, ready to run again (`ftmon replay`, the TUI, relaunches).

A recipe without a `cwd` of its own ran wherever ftmon was started; run again from another
folder, its relative paths would mean something else. So the recorded folder is pinned.
"""

from __future__ import annotations

from collections.abc import Sequence

from supervisor.recipe.model import Recipe, recipe_from_yaml
from supervisor.runs.policy import recipe_changes
from supervisor.store.history import RunRecord


def recorded_recipe(rec: RunRecord) -> Recipe:
    """The run's recipe from the history, with the folder it ran in when it named none.

    Raises RecipeError when the stored recipe no longer validates (an older ftmon wrote it).
    """
    return recorded_recipe_text(rec.recipe_yaml, rec.cwd, f"{rec.id} (history)")


def replay_recipe(rec: RunRecord, sets: Sequence[str] = ()) -> tuple[Recipe, list[str]]:
    """What a replay of `rec` runs (`ftmon replay RUN --set k=v`, the TUI's replay): the
    recorded recipe with `sets` applied, and what they changed (for the history, as a
    relaunch's changes). Raises RecipeError for a recipe or a `--set` that does not validate."""
    recorded = recorded_recipe(rec)
    recipe = recorded.with_overrides(list(sets)) if sets else recorded
    return recipe, recipe_changes(recorded, recipe)


def recorded_recipe_text(text: str, cwd: str, source: str) -> Recipe:
    """A recipe stored as YAML (a run's, a journaled relaunch's), pinned to `cwd` when it
    names no folder of its own."""
    recipe = recipe_from_yaml(text, source)
    if recipe.cwd is None and cwd:
        pinned = cwd.replace("{", "{{").replace("}", "}}")  # a folder is not a template
        recipe = recipe.model_copy(update={"cwd": pinned})
    return recipe
