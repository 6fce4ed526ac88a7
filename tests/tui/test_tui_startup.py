"""The TUI at start-up finishes what an ftmon that died left half done; its supervisor and
history are injected (a fake executor: no process is needed to show the path)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from textual.message import Message

from supervisor.recipe.model import recipe_from_yaml
from supervisor.runs.events import StateChanged
from supervisor.runs.executors.fake import FakeExecutor
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from supervisor.store.schema import Decision
from tui.app import FtmonApp
from tui.bridge import RunStateChanged, RunWasRelaunched


def _killing_run(tmp_path: Path, history: History) -> str:
    """A run as a SIGKILLed ftmon leaves it: `killing`, its relaunch journaled, not done."""
    data = {
        "name": "fake", "command": [sys.executable, "train.py"], "args": {"lr": 0.01},
        "preflight": {"enabled": False}, "cwd": str(tmp_path),
        "on": {"nan": {"do": "relaunch", "adjust": {"lr": "*0.5"}}},
    }  # fmt: skip
    recipe = recipe_from_yaml(yaml.safe_dump(data), "test")
    child = recipe.with_overrides(["args.lr=0.005"])
    log = tmp_path / "logs" / "r1" / "output.log"
    log.parent.mkdir(parents=True)
    log.write_text("{'loss': nan, 'step': 3}\n")
    history.add_run(
        run_id="r1", name="fake", started_at=1.0, recipe_yaml=recipe.to_yaml(),
        argv=[sys.executable, "train.py"], cwd=str(tmp_path), run_dir=str(log.parent),
        log_path=str(log), pid=900_000, proc_start_time=1.0, status="starting",
    )  # fmt: skip
    history.set_handle("r1", {"executor": "fake", "pid": 900_000, "logs": [str(log)]})
    for ts, old, new in ((1.0, "", "starting"), (1.1, "starting", "running")):
        history.change_state(StateChanged("r1", ts, old, new, "launched"))
    decision = Decision(
        "relaunch", "nan", "relaunch after nan: lr 0.01 -> 0.005", child.to_yaml(),
        ("lr 0.01 -> 0.005",),
    )  # fmt: skip
    killing = StateChanged("r1", 2.0, "running", "killing", "killed by ftmon: rule nan", "nan")
    history.change_state(killing, decide=decision)
    return "r1"


async def test_startup_finishes_a_relaunch_left_half_done(tmp_path: Path) -> None:
    """A run left `killing` with its relaunch journaled: the TUI, starting, closes it as killed
    and launches the child its decision names, and shows both."""
    logs = tmp_path / "logs"
    history = History(logs / "ftmon.db")
    run_id = _killing_run(tmp_path, history)
    fake = FakeExecutor()
    sup = Supervisor(history, logs, print, executor=fake)
    messages: list[Message] = []
    app = FtmonApp(logs, None, recipes_dir=tmp_path, history=history, supervisor=sup)
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        for _ in range(400):
            if any(isinstance(m, RunWasRelaunched) for m in messages):
                break
            await pilot.pause(0.05)
        assert history.get(run_id).status == "killed"
        (child,) = history.children(run_id)
        assert child.changes == ("lr 0.01 -> 0.005",) and ("spawn", child.id) in fake.calls
        assert [d.outcome for d in history.decisions(run_id)] == [f"relaunched as {child.id}"]
        assert app.book.runs[run_id].status == "killed"
        said = [i.text for i in app.book.feed if i.run_id == run_id and i.kind == "started"]
        assert said == ["pid 900000; finishing its relaunch for rule nan"]
        assert any(isinstance(m, RunStateChanged) for m in messages), "states reach the app"
        await sup.close(kill=True)
