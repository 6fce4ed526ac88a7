"""A job the scheduler ended is an anomaly policies act on, as `exit` is: `on: {preempted:
{do: relaunch}}` relaunches, a time limit without a policy is only reported (fake executor)."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from supervisor.events import Anomaly, Severity
from supervisor.recipe.model import recipe_from_yaml
from supervisor.runs import events as ev
from supervisor.runs.engine import PolicyEngine
from supervisor.runs.executors.fake import FakeExecutor
from supervisor.runs.state import RunState
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from tests.conftest import async_wait_for


def _recipe(tmp_path: Path, on: dict[str, object]):  # type: ignore[no-untyped-def]
    data = {
        "name": "job", "command": [sys.executable, "train.py"], "args": {"lr": 0.01},
        "preflight": {"enabled": False}, "on": on, "cwd": str(tmp_path),
    }  # fmt: skip
    return recipe_from_yaml(yaml.safe_dump(data), "test")


def test_the_engine_acts_on_a_job_end_after_the_run_ended() -> None:
    engine = PolicyEngine(lambda rule: "relaunch" if rule == "preempted" else "")
    ended = Anomaly("preempted", Severity.ERROR, "the scheduler preempted the job", 1.0)
    assert engine.decide(RunState.EXITED, ended) == "relaunch"
    assert engine.decide(RunState.EXITED, ended, followed=True) == ""


async def test_a_preempted_job_is_relaunched_by_its_policy(tmp_path: Path) -> None:
    events: list[object] = []
    fake = FakeExecutor()
    logs = tmp_path / "logs"
    sup = Supervisor(History(logs / "ftmon.db"), logs, events.append, executor=fake)
    run_id = await sup.launch(_recipe(tmp_path, {"preempted": {"do": "relaunch", "max": 2}}))
    fake.exit(sup._runs[run_id].handle, 0, 15, ended_by="preempted")
    await async_wait_for(lambda: len(sup.history.children(run_id)) == 1)
    (child,) = sup.history.children(run_id)
    assert child.reason_started and "preempted" in child.reason_started
    found = [e.anomaly for e in events if isinstance(e, ev.AnomalyFound)]
    assert any(a.rule == "preempted" and a.severity == Severity.ERROR for a in found)
    fake.exit(sup._runs[child.id].handle, 0)
    assert (await sup.wait_lineage(run_id)).status == "finished"


async def test_a_time_limit_without_a_policy_is_reported_not_relaunched(tmp_path: Path) -> None:
    events: list[object] = []
    fake = FakeExecutor()
    logs = tmp_path / "logs"
    sup = Supervisor(History(logs / "ftmon.db"), logs, events.append, executor=fake)
    run_id = await sup.launch(_recipe(tmp_path, {}))
    fake.exit(sup._runs[run_id].handle, 0, 15, ended_by="time_limit")
    ended = await sup.wait_lineage(run_id)
    assert ended.run_id == run_id and sup.history.children(run_id) == []
    messages = [e.anomaly.message for e in events if isinstance(e, ev.AnomalyFound)]
    assert "the scheduler ended the job at its time limit" in messages
