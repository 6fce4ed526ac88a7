"""End to end: the real `ftmon` command in a real terminal (tmux), as a person would use it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]

FTMON = str(Path(sys.executable).parent / "ftmon")

# One line, so the history shows the whole command: `-c SCRIPT --steps N --lr X`; the loss is
# nan at step 4 while the learning rate is 0.1 or more.
SCRIPT = (
    "import json, sys, time; n, lr = int(sys.argv[2]), float(sys.argv[4]); "
    "[(print(json.dumps(dict(step=s, loss=float('nan') if s == 4 and lr >= 0.1 else 2 * 0.9**s,"
    " lr=lr)), flush=True), time.sleep(0.1)) for s in range(1, n + 1)]; print('training done')"
)


class Terminal:
    """One tmux server of our own (its own socket), 160x48, running one command."""

    def __init__(self, socket: str) -> None:
        self.socket = socket

    def tmux(self, *args: str) -> str:
        # COLUMNS/LINES (pytest may set them) would override the pane's real size in Textual.
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "TMUX")}
        env["TERM"] = "xterm-256color"
        out = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=10, env=env
        )
        return out.stdout

    def start(self, argv: list[str], cwd: Path) -> None:
        self.tmux("new-session", "-d", "-s", "e2e", "-x", "160", "-y", "48", "-c", str(cwd), *argv)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "e2e")

    def keys(self, *keys: str) -> None:
        self.tmux("send-keys", "-t", "e2e", *keys)

    def wait_for(self, ok: Callable[[str], bool], secs: float = 40.0) -> str:
        deadline = time.monotonic() + secs
        text = ""
        while time.monotonic() < deadline:
            text = self.screen()
            if ok(text):
                return text
            time.sleep(0.2)
        raise AssertionError(f"screen never showed what was expected; last screen:\n{text}")


@pytest.fixture
def terminal() -> Iterator[Terminal]:
    term = Terminal(f"ftmon-e2e-{os.getpid()}")
    try:
        yield term
    finally:
        term.tmux("kill-server")


def test_nan_caught_relaunched_and_both_commands_in_history(
    tmp_path: Path, terminal: Terminal
) -> None:
    """`ftmon RECIPE` in a terminal shows the nan caught and the relaunch with a lower LR, and
    the history (key h) lists both exact commands."""
    recipe = tmp_path / "unstable.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "unstable",
                "command": [sys.executable, "-c", SCRIPT],
                "args": {"steps": 8, "lr": 0.1},
                "on": {"nan": {"do": "relaunch", "adjust": {"lr": "*0.5"}, "max": 2}},
            },
            sort_keys=False,
        )
    )
    terminal.start([FTMON, str(recipe), "--logs-dir", str(tmp_path / "logs")], tmp_path)
    main = terminal.wait_for(
        lambda s: "#2  finished" in s and "training done" in s  # the child, under its parent
    )
    assert "killed by ftmon: rule nan" in main  # the anomaly acted on, in the feed
    assert "unstable #1  killed" in main
    assert "lr 0.1 -> 0.05" in main  # the relaunch, under its parent, with its change
    terminal.keys("h")
    history = terminal.wait_for(lambda s: "Copy command" in s and "--lr 0.05" in s)
    rows = [line for line in history.splitlines() if "unstable" in line and "--steps 8" in line]
    assert len(rows) == 2, history  # both runs, each with its command
    assert "--lr 0.05" in rows[0] and "--lr 0.1" in rows[1]
    assert "killed by ftmon: rule nan" in history
    terminal.keys("Escape")
    terminal.wait_for(lambda s: "Pause/Resume" in s)
    terminal.keys("q")
    terminal.wait_for(lambda s: "Pause/Resume" not in s, secs=15)
