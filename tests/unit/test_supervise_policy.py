"""The supervisor's policy against the fake executor: no processes, every act recorded.
(The same paths with real processes: tests/integration/test_supervise.py, test_lifecycle.py.)"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from supervisor.recipe.model import recipe_from_yaml
from supervisor.runs import events as ev
from supervisor.runs.events import StateChanged
from supervisor.runs.executors.fake import FakeExecutor
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from supervisor.store.schema import Decision
from tests.conftest import async_wait_for

NAN = "{'loss': nan, 'step': 3}\n"


def _recipe(tmp_path: Path, on: dict[str, object]):  # type: ignore[no-untyped-def]
    data = {
        "name": "fake", "command": [sys.executable, "train.py"], "args": {"lr": 0.01},
        "preflight": {"enabled": False}, "on": on, "cwd": str(tmp_path),
    }  # fmt: skip
    return recipe_from_yaml(yaml.safe_dump(data), "test")


def _supervisor(tmp_path: Path) -> tuple[Supervisor, FakeExecutor, list[object]]:
    events: list[object] = []
    fake = FakeExecutor()
    logs = tmp_path / "logs"
    return Supervisor(History(logs / "ftmon.db"), logs, events.append, executor=fake), fake, events


def _write(sup: Supervisor, run_id: str, text: str) -> None:
    with Path(sup.history.get(run_id).log_path).open("a") as fh:
        fh.write(text)


async def test_kill_policy_journals_the_decision_then_kills_once(tmp_path: Path) -> None:
    """nan -> kill: the decision is journaled with the move to killing, the executor kills once
    (two NaN lines, one kill), the run ends killed and the decision is marked done."""
    sup, fake, events = _supervisor(tmp_path)
    run_id = await sup.launch(_recipe(tmp_path, {"nan": {"do": "kill"}}))
    _write(sup, run_id, "{'loss': 1.0, 'step': 1}\n" + NAN + NAN)
    ended = await sup.wait_lineage(run_id)
    assert ended.status == "killed" and ended.reason == "killed by ftmon: rule nan"
    assert [c for c in fake.calls if c[0] == "kill"] == [("kill", run_id)]
    assert [s.new for s in sup.history.states(run_id)] == [
        "starting", "running", "killing", "exited", "killed",
    ]  # fmt: skip
    (decision,) = sup.history.decisions(run_id)
    assert decision.kind == "kill" and decision.done_at is not None
    changes = [e for e in events if isinstance(e, ev.StateChanged)]
    assert [c.new for c in changes] == [s.new for s in sup.history.states(run_id)]


async def test_relaunch_policy_starts_the_adjusted_child_through_the_executor(
    tmp_path: Path,
) -> None:
    """nan -> relaunch: the run is killed, the child spawned with the adjusted recipe, the
    parent closed as killed with its decision done; the child's clean exit ends the lineage."""
    sup, fake, _ = _supervisor(tmp_path)
    on = {"nan": {"do": "relaunch", "adjust": {"lr": "*0.5"}, "max": 1}}
    run_id = await sup.launch(_recipe(tmp_path, on))
    _write(sup, run_id, NAN)
    await async_wait_for(lambda: len(sup.history.children(run_id)) == 1)
    (child,) = sup.history.children(run_id)
    assert child.changes == ("lr 0.01 -> 0.005",)
    assert [c[0] for c in fake.calls] == ["spawn", "kill", "spawn"]
    parent = sup.history.get(run_id)
    assert parent.status == "killed"
    assert [d.outcome for d in sup.history.decisions(run_id)] == [f"relaunched as {child.id}"]
    handle = sup._runs[child.id].handle
    fake.exit(handle, 0)
    ended = await sup.wait_lineage(run_id)
    assert ended.run_id == child.id and ended.status == "finished"


async def test_pause_policy_pauses_once_and_a_stop_from_outside_is_a_pause(
    tmp_path: Path,
) -> None:
    """nan -> pause: the executor pauses once however many NaN lines follow; a run stopped
    from outside is seen as paused, and continued from outside as running again."""
    sup, fake, _ = _supervisor(tmp_path)
    run_id = await sup.launch(_recipe(tmp_path, {"nan": {"do": "pause"}}))
    _write(sup, run_id, NAN + NAN)
    await async_wait_for(lambda: sup.history.get(run_id).status == "paused")
    _write(sup, run_id, NAN)
    await sup.resume(run_id)
    assert [c[0] for c in fake.calls] == ["spawn", "pause", "resume"]
    handle = sup._runs[run_id].handle
    fake.stop_from_outside(handle)
    await async_wait_for(lambda: sup.history.get(run_id).status == "paused", timeout=5)
    fake.continue_from_outside(handle)
    await async_wait_for(lambda: sup.history.get(run_id).status == "running", timeout=5)
    assert [s.rule for s in sup.history.states(run_id)][-2:] == ["user", "user"]
    fake.exit(handle, 0)
    assert (await sup.wait_lineage(run_id)).status == "finished"


async def test_a_spawn_failure_is_a_run_that_failed_to_start(tmp_path: Path) -> None:
    """The executor refuses: the run is recorded as failed_to_start with the reason."""
    sup, fake, _ = _supervisor(tmp_path)
    fake.fail_spawn = "no such partition: gpu"
    run_id = await sup.launch(_recipe(tmp_path, {}))
    ended = await sup.wait_lineage(run_id)
    assert ended.status == "failed" and "no such partition" in ended.reason
    rec = sup.history.get(run_id)
    assert rec.status == "failed_to_start" and "no such partition" in rec.end_reason


async def test_attach_does_not_relaunch_twice_when_the_child_had_started(tmp_path: Path) -> None:
    """ftmon died after starting the child but before closing the parent: attach closes the
    parent (killed, its decision done as 'relaunched as CHILD') and starts no second child."""
    sup, fake, _ = _supervisor(tmp_path)
    recipe = _recipe(tmp_path, {"nan": {"do": "relaunch", "adjust": {"lr": "*0.5"}}})
    log = tmp_path / "logs" / "r1" / "output.log"
    log.parent.mkdir(parents=True)
    log.write_text(NAN)
    common = dict(name="fake", recipe_yaml=recipe.to_yaml(), cwd=str(tmp_path))
    sup.history.add_run(
        run_id="r1", started_at=1.0, log_path=str(log), pid=900_000, proc_start_time=1.0,
        status="starting", **common,
    )  # fmt: skip
    sup.history.set_handle("r1", {"executor": "fake", "pid": 900_000, "logs": [str(log)]})
    moves = [("", "starting"), ("starting", "running"), ("running", "killing"),
             ("killing", "exited"), ("exited", "relaunching")]  # fmt: skip
    journal = Decision("relaunch", "nan", "relaunch after nan", recipe.to_yaml())
    for i, (old, new) in enumerate(moves):
        decide = journal if new == "killing" else None
        sup.history.change_state(StateChanged("r1", 2.0 + i, old, new, "x", "nan"), decide=decide)
    sup.history.add_run(run_id="r2", started_at=9.0, parent_id="r1", attempt=2, **common)

    await sup.attach("r1")
    ended = await sup.wait_lineage("r1")

    assert ended.status == "killed" and not [c for c in fake.calls if c[0] == "spawn"]
    assert [c.id for c in sup.history.children("r1")] == ["r2"]
    assert sup.history.get("r1").status == "killed"
    assert [d.outcome for d in sup.history.decisions("r1")] == ["relaunched as r2"]
