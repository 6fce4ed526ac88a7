"""The TUI notifies: a run it launches reaches the recipe's command target, and a delivery that
fails is a warning on screen (and a row in the history)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml
from textual.message import Message
from textual.notifications import Notify

from supervisor.notify.config import NotifyTarget
from supervisor.recipe.model import load_recipe
from tests.conftest import PROGRAMS
from tui.app import FtmonApp
from tui.bridge import RunFinished


async def test_a_tui_run_notifies_and_a_failed_delivery_is_a_warning(tmp_path: Path) -> None:
    sink = tmp_path / "events.jsonl"
    recipe_path = tmp_path / "steps.yaml"
    recipe_path.write_text(yaml.safe_dump({
        "name": "steps", "command": [sys.executable, str(PROGRAMS / "count_steps.py")],
        "args": {"steps": 2, "interval": 0.01}, "preflight": {"enabled": False},
        "notify": [{"command": [sys.executable, str(PROGRAMS / "notify_sink.py"), str(sink)],
                    "events": ["run_finished"]}],
    }))  # fmt: skip
    broken = NotifyTarget(name="broken hook", command=[sys.executable, "-c", "exit(3)"],
                          retries=0, events=["run_finished"])  # fmt: skip
    app = FtmonApp(tmp_path / "logs", load_recipe(recipe_path), reattach=False,
                   recipes_dir=tmp_path, notify_targets=[broken])  # fmt: skip
    messages: list[Message] = []
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        for _ in range(400):
            warned = [m for m in messages if isinstance(m, Notify)
                      and m.notification.title == "notification not delivered"]  # fmt: skip
            if warned and sink.exists() and any(isinstance(m, RunFinished) for m in messages):
                break
            await pilot.pause(0.05)
        run_id = next(m.run_id for m in messages if isinstance(m, RunFinished))
        assert warned, "no warning for the failed delivery"
        assert warned[0].notification.message.startswith(f"{run_id}: notify  broken hook FAILED")
        assert warned[0].notification.severity == "warning"
    app.notifier.close(5)
    (event,) = [json.loads(line) for line in sink.read_text().splitlines()]
    assert event["event"] == "run_finished" and event["run_id"] == run_id
    (failure,) = app.history.notify_failures(run_id)
    assert failure.target == "broken hook" and failure.error == f"{sys.executable} exited with 3"
    app.history.close()
