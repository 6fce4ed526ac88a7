"""Questions that guard what cannot be undone: killing a run, quitting with runs still live."""

from __future__ import annotations

from typing import ClassVar, Literal

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from tui.text import clean

QuitChoice = Literal["keep", "kill"]

MODAL_CSS = """
    {name} {{ align: center middle; }}
    {name} > Vertical {{
        width: 72; height: auto; padding: 1 2;
        border: thick $warning; background: $surface;
    }}
    {name} .question {{ margin-bottom: 1; }}
    {name} Horizontal {{ height: auto; align-horizontal: right; }}
    {name} Button {{ margin-left: 2; }}
"""


class ConfirmKill(ModalScreen[bool]):
    """Kill this run? Answers True only on an explicit yes."""

    DEFAULT_CSS = MODAL_CSS.format(name="ConfirmKill")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Kill it"),
        Binding("n,escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, run_id: str, status: str) -> None:
        super().__init__()
        self.run_id = run_id
        self.status = status

    def compose(self) -> ComposeResult:
        question = Text("Kill run ")
        question.append(clean(self.run_id), style="bold")
        question.append(f" ({self.status})?\n")
        question.append(
            "Its whole process group gets SIGTERM, then SIGKILL after the grace period. "
            "The policy will not relaunch it."
        )
        with Vertical():
            yield Static(question, classes="question")
            with Horizontal():
                yield Button("Kill (y)", variant="error", id="yes")
                yield Button("Cancel (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


class ConfirmQuit(ModalScreen["QuitChoice | None"]):
    """Runs are still live: keep them running (reattach later), kill them, or stay."""

    DEFAULT_CSS = MODAL_CSS.format(name="ConfirmQuit")
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("k", "answer('keep')", "Keep running"),
        Binding("x", "answer('kill')", "Kill them"),
        Binding("escape", "answer('')", "Stay"),
    ]

    def __init__(self, live: list[str]) -> None:
        super().__init__()
        self.live = live

    def compose(self) -> ComposeResult:
        question = Text(f"{len(self.live)} run(s) still live: ")
        question.append(clean(", ".join(self.live)), style="bold")
        question.append(
            "\nKeep them running (ftmon reattaches to them when it starts again), "
            "or kill them before quitting?"
        )
        with Vertical():
            yield Static(question, classes="question")
            with Horizontal():
                yield Button("Keep running (k)", variant="primary", id="keep")
                yield Button("Kill them (x)", variant="error", id="kill")
                yield Button("Stay (esc)", id="stay")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_answer(event.button.id if event.button.id in ("keep", "kill") else "")

    def action_answer(self, choice: str) -> None:
        self.dismiss(choice if choice in ("keep", "kill") else None)  # type: ignore[arg-type]
