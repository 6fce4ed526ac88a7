"""Forms that start runs: relaunch a run with changes, and launch a recipe.

The relaunch form shows the recipe's adjustable fields (its scalar `args`) prefilled with what
the policy would change (`Supervisor.proposed_relaunch`), the diff against the run's recipe as
you type, and launches through `Supervisor.relaunch`, which always starts from the recipe's base
weights, never the failed run's checkpoints.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from supervisor.recipe.model import (
    Recipe,
    RecipeError,
    is_secret_arg,
    load_recipe,
    recipe_from_yaml,
)
from supervisor.runs.plan import recipe_yaml_redacted
from supervisor.runs.policy import ChainStop
from supervisor.runs.supervise import LaunchRefused
from supervisor.store.history import HistoryError
from tui.text import clean, plain

if TYPE_CHECKING:
    from supervisor.runs.supervise import Supervisor
    from tui.app import FtmonApp

FORM_CSS = """
    {name} {{ align: center middle; }}
    {name} > Vertical {{
        width: 100; height: 90%; padding: 0 1;
        border: thick $primary; background: $surface;
    }}
    {name} .title {{ text-style: bold; margin-bottom: 1; }}
    {name} .row {{ height: 1; }}
    {name} .row Label {{ width: 22; padding: 0 1 0 0; text-align: right; }}
    {name} .row Input {{ width: 1fr; height: 1; border: none; padding: 0 1; background: $boost; }}
    {name} .row Input:focus {{ background: $primary 30%; }}
    {name} .row Input.changed {{ color: $warning; text-style: bold; }}
    {name} #fields {{ height: 1fr; }}
    {name} #diff {{ height: auto; max-height: 12; border: round $primary-lighten-2; }}
    {name} #error {{ color: $error; height: auto; }}
    {name} .buttons {{ height: 3; align-horizontal: right; }}
    {name} Button {{ margin-left: 2; }}
"""


def adjustable(recipe: Recipe) -> list[str]:
    """The args a person can change in the form: plain numbers, booleans and strings without
    placeholders (a path like `{run_dir}` is ftmon's business). Secrets are never shown."""
    out = []
    for key, value in recipe.args.items():
        if is_secret_arg(key, value):
            continue
        if isinstance(value, bool | int | float) or (isinstance(value, str) and "{" not in value):
            out.append(key)
    return out


def recipe_diff(old: Recipe, new: Recipe) -> Text:
    """A unified diff of the two recipes' YAML (secrets redacted), coloured, as plain Text."""
    before = recipe_yaml_redacted(old).splitlines()
    after = recipe_yaml_redacted(new).splitlines()
    lines = difflib.unified_diff(before, after, "run", "relaunch", lineterm="", n=1)
    out = Text()
    for line in lines:
        style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
        out.append(clean(line) + "\n", style=style)
    return out if out.plain else Text("no changes: the run's recipe as it was", style="dim")


class RelaunchScreen(ModalScreen["str | None"]):
    """Relaunch `run_id` with the fields as edited; dismisses with the new run's id."""

    DEFAULT_CSS = FORM_CSS.format(name="RelaunchScreen")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "launch", "Launch"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(
        self, run_id: str, base: Recipe, proposed: Recipe, changes: list[Any], live: bool = False
    ) -> None:
        super().__init__()
        self.run_id = run_id
        self.live = live
        self.base = base
        self.proposed = proposed
        self.changes = [str(c) for c in changes]
        # What the policy changes comes first: on a small screen it is the field in view.
        fields = adjustable(proposed)
        self.fields = sorted(fields, key=lambda k: base.args.get(k) == proposed.args[k])
        self.edited: Recipe | None = proposed
        self.new_run_id: str | None = None

    @classmethod
    def for_run(cls, supervisor: Supervisor, run_id: str) -> RelaunchScreen | str:
        """The form for `run_id`, or why there can be none (a one-line message)."""
        try:
            rec = supervisor.history.resolve(run_id)
            base = recipe_from_yaml(rec.recipe_yaml, source=f"history:{rec.id}")
            proposed, changes = supervisor.proposed_relaunch(run_id)
        except (HistoryError, RecipeError, KeyError) as exc:
            return str(exc)
        return cls(run_id, base, proposed, changes, live=rec.id in supervisor.live_runs())

    def compose(self) -> ComposeResult:
        with Vertical():
            title = plain(f"Relaunch {self.run_id} from the base weights ")
            title.append(clean(str(self.base.base_weights or "(none set)")), style="italic")
            yield Static(title, classes="title")
            proposal = "; ".join(self.changes) or "nothing (no policy adjustment applies)"
            yield Static(plain(f"The policy would change: {proposal}"))
            if self.live:
                yield Static(plain("The run is still running: it is killed first."), id="live")
            with VerticalScroll(id="fields"):
                for i, key in enumerate(self.fields):
                    value = self.proposed.args[key]
                    field = Input(_show(value), id=f"field-{i}")
                    field.set_class(self.base.args.get(key) != value, "changed")
                    with Horizontal(classes="row"):
                        yield Label(plain(key))
                        yield field
            yield Static(recipe_diff(self.base, self.proposed), id="diff")
            yield Static("", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Launch (ctrl+s)", variant="primary", id="launch")
                yield Button("Cancel (esc)", id="cancel")

    def edits(self) -> list[str]:
        """`args.KEY=VALUE` for each field that differs from the proposal."""
        sets = []
        for i, key in enumerate(self.fields):
            text = self.query_one(f"#field-{i}", Input).value.strip()
            if text != _show(self.proposed.args[key]):
                sets.append(f"args.{key}={text}")
        return sets

    @on(Input.Changed)
    def _changed(self, event: Input.Changed) -> None:
        error = self.query_one("#error", Static)
        try:
            self.edited = self.proposed.with_overrides(self.edits())
        except RecipeError as exc:
            self.edited = None
            error.update(plain(str(exc)))
            return
        error.update("")
        for i, key in enumerate(self.fields):
            self.query_one(f"#field-{i}", Input).set_class(
                self.base.args.get(key) != self.edited.args.get(key), "changed"
            )
        self.query_one("#diff", Static).update(recipe_diff(self.base, self.edited))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "launch":
            self.action_launch()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @work(exclusive=True, group="relaunch")
    async def action_launch(self) -> None:
        recipe = self.edited
        if recipe is None:
            self.notify("Fix the fields first.", severity="error", markup=False)
            return
        app: FtmonApp = self.app  # type: ignore[assignment]
        self.query_one("#launch", Button).disabled = True
        try:
            self.new_run_id = await app.supervisor.relaunch(self.run_id, recipe)
        except (LaunchRefused, ChainStop, RecipeError, HistoryError, KeyError, ValueError) as exc:
            self.query_one("#error", Static).update(plain(f"not relaunched: {exc}"))
            self.query_one("#launch", Button).disabled = False
            return
        self.dismiss(self.new_run_id)


class LaunchScreen(ModalScreen["str | None"]):
    """Pick a recipe from recipes/ (or type a path) and launch it; dismisses with the run id."""

    DEFAULT_CSS = FORM_CSS.format(name="LaunchScreen")
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, recipes_dir: Path) -> None:
        super().__init__()
        self.recipes_dir = recipes_dir
        self.new_run_id: str | None = None

    def recipe_paths(self) -> list[Path]:
        if not self.recipes_dir.is_dir():
            return []
        found = [*self.recipes_dir.rglob("*.yaml"), *self.recipes_dir.rglob("*.yml")]
        return sorted(found)

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(
                plain(f"Launch a recipe from {self.recipes_dir}/ or a path"), classes="title"
            )
            options = [Option(plain(str(p)), id=str(p)) for p in self.recipe_paths()]
            yield OptionList(*options, id="recipes")
            yield Input(placeholder="or a path to a recipe, then Enter", id="path")
            yield Static("", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(OptionList.OptionSelected, "#recipes")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.launch_path(Path(event.option.id))

    @on(Input.Submitted, "#path")
    def _typed(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.launch_path(Path(event.value.strip()).expanduser())

    @work(exclusive=True, group="launch")
    async def launch_path(self, path: Path) -> None:
        error = self.query_one("#error", Static)
        try:
            recipe = load_recipe(path)
        except RecipeError as exc:
            error.update(plain(str(exc)))
            return
        app: FtmonApp = self.app  # type: ignore[assignment]
        if recipe.sweep is not None:  # a sweep's members start as its queue allows
            app.run_sweep(recipe)
            self.dismiss(None)
            return
        try:
            self.new_run_id = await app.supervisor.launch(recipe)
        except LaunchRefused as exc:
            error.update(plain(f"not launched: {exc}"))
            return
        self.dismiss(self.new_run_id)


def _show(value: Any) -> str:
    """A field's value as the person types it (YAML scalar spelling for booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
