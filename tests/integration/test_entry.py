"""The `ftmon` console script sends each spelling to the right front end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT
from tui.cli import route


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], ("tui", [])),
        (["r.yaml"], ("tui", ["r.yaml"])),
        (["r.yaml", "--set", "lr=1"], ("tui", ["r.yaml", "--set", "lr=1"])),
        (["run", "r.yaml"], ("tui", ["r.yaml"])),
        (["run", "r.yaml", "--headless"], ("cli", ["run", "r.yaml", "--headless"])),
        (["run", "r.yaml", "--kill-on-exit"], ("cli", ["run", "r.yaml", "--kill-on-exit"])),
        (["r.yaml", "--headless"], ("cli", ["run", "r.yaml", "--headless"])),
        (["--watch", "x.log"], ("cli", ["--watch", "x.log"])),
        (["history"], ("cli", ["history"])),
    ],
)
def test_route(argv: list[str], expected: tuple[str, list[str]]) -> None:
    """Recipes open the TUI unless a headless-only flag asks for the headless run."""
    assert route(argv) == expected


def test_recipe_with_kill_on_exit_runs_headless(tmp_path: Path) -> None:
    """`ftmon run RECIPE --kill-on-exit` runs the recipe headless to its end (no TUI, exit 0)."""
    recipe = tmp_path / "hello.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "hello",
                "command": [sys.executable, "-c", "print('{{\"step\": 1}}')"],
                "preflight": {"enabled": False},
            }
        )
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FTMON_HOME",)}
    out = subprocess.run(
        [sys.executable, "-m", "tui.cli", "run", str(recipe), "--kill-on-exit",
         "--logs-dir", str(tmp_path / "logs")],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env=env, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "finished" in out.stdout
    assert "textual" not in out.stderr
