"""The Supervisor with real processes: policies, the relaunch chain, kill, pause, user actions."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest

from supervisor.recipe.model import load_recipe
from supervisor.runs import events as ev
from supervisor.runs import policy
from supervisor.runs.policy import recipe_changes
from supervisor.runs.supervise import LaunchRefused, Supervisor
from supervisor.store.history import History
from tests.programs.recipes import base_weights, write_recipe


def supervisor(tmp_path: Path) -> tuple[Supervisor, list[object]]:
    events: list[object] = []
    logs = tmp_path / "logs"
    return Supervisor(History(logs / "ftmon.db"), logs, events.append), events


def of(events: list[object], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


async def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    """Poll until `predicate()` is true (a test guard against hanging, not a timing claim)."""
    for _ in range(int(timeout / 0.02)):
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached")


async def test_host_mem_chain_halves_micro_batch_until_one(tmp_path: Path) -> None:
    """A run over its host-memory limit is relaunched with micro_batch halved; at 1 it stops."""
    recipe = load_recipe(
        write_recipe(
            tmp_path, "grow_memory.py",
            args={"micro_batch": 4, "mb_per_sample": 30},
            watch={"host_mem": {"limit_gb": 0.12, "over_secs": 0, "min_available_gb": 0},
                   "vram": {"poll_secs": 0.05}},
            on={"host_mem": {"do": "relaunch", "adjust": {"micro_batch": "/2"}, "max": 5}},
        )
    )  # fmt: skip
    sup, events = supervisor(tmp_path)
    first = await sup.launch(recipe)
    final = await sup.wait_lineage(first)

    runs = [sup.history.get(e.run_id) for e in of(events, ev.RunStarted)]
    micro = [r.argv[r.argv.index("--micro_batch") + 1] for r in runs]
    assert micro == ["4", "2", "1"]
    assert [r.status for r in sup.history.runs()] == ["killed"] * 3
    assert all(r.end_reason == "killed by ftmon: rule host_mem" for r in runs)
    assert [r.attempt for r in runs] == [1, 2, 3]
    assert runs[1].parent_id == runs[0].id and runs[2].parent_id == runs[1].id
    (stopped,) = of(events, ev.ChainStopped)
    assert "micro_batch is already 1" in stopped.reason
    assert final.run_id == runs[2].id and final.status == "killed"
    assert [c for r in runs for c in r.changes] == ["micro_batch 4 -> 2", "micro_batch 2 -> 1"]


async def test_kill_leaves_no_process_behind(tmp_path: Path) -> None:
    """A child ignoring SIGTERM with a grandchild in its own session is gone after a kill."""
    recipe = load_recipe(write_recipe(tmp_path, "stubborn.py", args={"output_dir": "{run_dir}"}))
    sup, events = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    pids_file = Path(sup.history.get(run_id).run_dir) / "pids"
    await wait_for(pids_file.exists)
    pids = {k: int(v) for k, v in (ln.split() for ln in pids_file.read_text().splitlines())}
    procs = [psutil.Process(p) for p in pids.values()]
    assert os.getsid(pids["grandchild"]) != os.getsid(pids["child"])  # really left the session

    ended = await sup.kill(run_id)

    assert ended.status == "killed" and ended.reason == "killed by the user"
    assert not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in procs)
    (kill,) = [a.action for a in of(events, ev.ActionTaken) if a.action.kind == "kill"]
    assert kill.ok and "all gone" in kill.detail
    assert sup.live_runs() == []


async def test_pause_stops_the_group_and_resume_continues_it(tmp_path: Path) -> None:
    """Pause stops the run's processes (history says paused); resume, from ftmon or from a
    shell (`kill -CONT`), lets them run again and the history follows."""
    recipe = load_recipe(
        write_recipe(tmp_path, "count_steps.py", args={"steps": 500, "interval": 0.02})
    )
    sup, events = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    proc = psutil.Process(sup.history.get(run_id).pid)
    await wait_for(lambda: of(events, ev.MetricsObserved))

    await sup.pause(run_id)
    await wait_for(lambda: proc.status() == psutil.STATUS_STOPPED)
    assert sup.history.get(run_id).status == "paused"
    await sup.resume(run_id)
    await wait_for(lambda: proc.status() != psutil.STATUS_STOPPED)
    assert sup.history.get(run_id).status == "running"
    await sup.pause(run_id)
    os.killpg(proc.pid, signal.SIGCONT)  # the person follows the hint in a shell
    await wait_for(lambda: len(of(events, ev.RunResumed)) == 2)
    assert sup.history.get(run_id).status == "running"
    await sup.kill(run_id)

    actions = [e.action for e in of(events, ev.ActionTaken) if e.action.rule == "user"]
    assert [a.kind for a in actions] == ["pause", "resume", "pause", "resume", "kill"]
    assert actions[3].detail == "resumed from outside ftmon"


async def test_pause_policy_says_what_the_person_can_do(tmp_path: Path) -> None:
    """A rule with `do: pause` stops the run and the reason tells how to resume or kill it."""
    weights = base_weights(tmp_path)
    recipe = load_recipe(
        write_recipe(
            tmp_path, "train_nan.py", base_weights=str(weights),
            args={"model": "{base_weights}", "output_dir": "{run_dir}", "lr": 2e-4},
            on={"nan": {"do": "pause"}},
        )
    )  # fmt: skip
    sup, events = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    await wait_for(lambda: of(events, ev.RunPaused))
    (paused,) = of(events, ev.RunPaused)
    assert (
        "rule nan" in paused.reason
        and "kill" in paused.reason
        and "resume" in paused.reason.lower()
    )
    assert psutil.Process(sup.history.get(run_id).pid).status() == psutil.STATUS_STOPPED
    ended = await sup.kill(run_id)  # a paused run is killed too (SIGCONT goes with the TERM)
    assert ended.status == "killed"


async def test_relaunch_refused_when_base_weights_changed(tmp_path: Path) -> None:
    """If the base weights change after the first launch, the policy's relaunch is refused."""
    weights = base_weights(tmp_path)
    recipe = load_recipe(
        write_recipe(
            tmp_path, "train_nan.py", base_weights=str(weights),
            args={"model": "{base_weights}", "output_dir": "{run_dir}", "lr": 2e-4},
            on={"nan": {"do": "relaunch", "adjust": {"lr": "*0.5"}}},
        )
    )  # fmt: skip
    events: list[object] = []

    def on_event(event: object) -> None:
        events.append(event)
        if isinstance(event, ev.AnomalyFound) and event.anomaly.rule == "nan":
            weights.write_bytes(b"someone overwrote the base model")

    logs = tmp_path / "logs"
    sup = Supervisor(History(logs / "ftmon.db"), logs, on_event)
    run_id = await sup.launch(recipe)
    final = await sup.wait_lineage(run_id)

    assert final.run_id == run_id and final.status == "killed"
    (stopped,) = of(events, ev.ChainStopped)
    assert "base weights changed" in stopped.reason and "model.safetensors" in stopped.reason
    assert len(sup.history.runs()) == 1


async def test_user_relaunch_with_the_proposed_recipe(tmp_path: Path) -> None:
    """The proposal halves lr as the nan policy would; relaunching with it kills the run and
    starts a child from the base weights with the new lr."""
    weights = base_weights(tmp_path)
    recipe = load_recipe(
        write_recipe(
            tmp_path, "train_nan.py", base_weights=str(weights),
            args={"model": "{base_weights}", "output_dir": "{run_dir}", "lr": 1e-4,
                  "steps": 500, "interval": 0.02},
            on={"nan": {"do": "relaunch", "adjust": {"lr": "*0.5"}}},
        )
    )  # fmt: skip
    sup, _ = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    proposed, changes = sup.proposed_relaunch(run_id)
    assert changes == ["lr 0.0001 -> 5e-05"]

    child = await sup.relaunch(run_id, proposed)

    parent = sup.history.get(run_id)
    assert parent.status == "killed" and parent.end_reason == "killed by the user for a relaunch"
    rec = sup.history.get(child)
    assert rec.parent_id == run_id and rec.attempt == 2
    assert rec.changes == ("args.lr 0.0001 -> 5e-05",)
    assert rec.argv[rec.argv.index("--lr") + 1] == "5e-05"
    assert rec.argv[rec.argv.index("--model") + 1] == str(weights)
    assert sup.live_runs() == [child]
    await sup.close(kill=True)
    assert sup.history.get(child).status == "killed"


async def test_close_detaches_and_leaves_the_run_running(tmp_path: Path) -> None:
    """Closing without kill leaves the process alive and its row live for `ftmon attach`."""
    recipe = load_recipe(
        write_recipe(tmp_path, "count_steps.py", args={"steps": 500, "interval": 0.02})
    )
    sup, events = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    await wait_for(lambda: of(events, ev.MetricsObserved))
    await sup.close()
    rec = sup.history.get(run_id)
    proc = psutil.Process(rec.pid)
    try:
        assert proc.is_running() and rec.live and rec.lineno > 0
        assert [e.status for e in of(events, ev.RunEnded)] == ["detached"]
    finally:
        proc.kill()
        proc.wait(5)


async def test_a_command_that_cannot_start_is_a_failed_run(tmp_path: Path) -> None:
    """A program that exists but cannot be executed (no binary, no #!) gives a failed run with
    the reason, not an exception; a missing one is refused before anything is recorded."""
    path = write_recipe(tmp_path, "count_steps.py")
    not_a_program = tmp_path / "weights.bin"
    not_a_program.write_bytes(b"\x00\x01 not a program")
    not_a_program.chmod(0o755)
    bad = load_recipe(path).model_copy(update={"command": [str(not_a_program)]})
    sup, _ = supervisor(tmp_path)
    run_id = await sup.launch(bad)
    ended = await sup.wait_lineage(run_id)
    assert ended.status == "failed" and "could not start" in ended.reason
    assert sup.history.get(run_id).status == "failed_to_start"
    missing = bad.model_copy(update={"command": ["/no/such/interpreter"]})
    with pytest.raises(LaunchRefused, match="/no/such/interpreter does not exist"):
        await sup.launch(missing)
    assert [r.id for r in sup.history.runs()] == [run_id]


async def test_user_relaunch_refused_leaves_the_run_alone(tmp_path: Path) -> None:
    """A user relaunch after the base weights changed is refused and the run keeps running."""
    weights = base_weights(tmp_path)
    recipe = load_recipe(
        write_recipe(
            tmp_path, "train_nan.py", base_weights=str(weights),
            args={"model": "{base_weights}", "output_dir": "{run_dir}", "lr": 1e-4,
                  "steps": 500, "interval": 0.02},
        )
    )  # fmt: skip
    sup, _ = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    weights.write_bytes(b"retrained in place")
    with pytest.raises(LaunchRefused, match="base weights changed"):
        await sup.relaunch(run_id)
    assert sup.live_runs() == [run_id]
    assert (await sup.kill(run_id)).status == "killed"


def test_recipe_changes_never_show_a_secret(tmp_path: Path) -> None:
    """The change list of a user's edit names a changed secret without its value."""
    recipe = load_recipe(
        write_recipe(tmp_path, "count_steps.py", args={"steps": 3}, env={"HF_TOKEN": "old"})
    )
    edited = recipe.with_overrides(["steps=5", "env.HF_TOKEN=hf_new_secret"])
    assert recipe_changes(recipe, edited) == ["args.steps 3 -> 5", "env.HF_TOKEN changed"]
    with_arg = edited.with_overrides(["+args.hub_token=hf_arg_secret"])
    assert recipe_changes(edited, with_arg) == ["args.hub_token changed"]


def test_policy_defaults_to_alert_and_counts_relaunches_per_rule(tmp_path: Path) -> None:
    """A rule without a policy alerts; a relaunch stops at the rule's max within a lineage."""
    recipe = load_recipe(
        write_recipe(tmp_path, "count_steps.py", on={"nan": {"do": "relaunch", "max": 2}})
    )
    assert policy.decide(recipe, "spike").kind == "alert"
    assert policy.decide(recipe, "nan").kind == "relaunch"
    policy.check_relaunch_allowed(recipe, "nan", {"nan": 1, "oom": 5}, attempt=6)
    with pytest.raises(policy.ChainStop, match="relaunched 2 time"):
        policy.check_relaunch_allowed(recipe, "nan", {"nan": 2}, attempt=3)
    with pytest.raises(policy.ChainStop, match="attempts"):
        policy.check_relaunch_allowed(recipe, "nan", {}, attempt=policy.MAX_ATTEMPTS)


async def test_relative_base_weights_are_fingerprinted_in_the_recipes_cwd(
    tmp_path: Path,
) -> None:
    """A relative base_weights is fingerprinted where the run starts (the recipe's cwd), so
    the history holds the weights the child read, not "does not exist" in ftmon's folder."""
    work = tmp_path / "work"
    base_weights(work)  # work/base/model.safetensors
    recipe = load_recipe(
        write_recipe(
            tmp_path, "count_steps.py", base_weights="base/model.safetensors", cwd=str(work),
            args={"steps": 1, "interval": 0.01},
        )
    )  # fmt: skip
    sup, _ = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    await sup.wait_lineage(run_id)
    fingerprint = sup.history.get(run_id).base_fingerprint
    assert fingerprint is not None and fingerprint["exists"] is True
    assert fingerprint["cwd"] == str(work)


async def test_a_recorded_recipe_relaunches_in_the_folder_it_ran_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run whose recipe has no cwd, relaunched by an ftmon started in another folder,
    runs where the run ran, with no change listed for it."""
    recipe = load_recipe(write_recipe(tmp_path, "count_steps.py", args={"steps": 1}))
    sup, _ = supervisor(tmp_path)
    first = await sup.launch(recipe)
    await sup.wait_lineage(first)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    proposed, changes = sup.proposed_relaunch(first)
    assert changes == [] and proposed.cwd == sup.history.get(first).cwd
    child = await sup.relaunch(first)
    await sup.wait_lineage(child)
    assert sup.history.get(child).cwd == sup.history.get(first).cwd != str(elsewhere)
    assert sup.history.get(child).changes == ()


async def test_a_run_that_ended_before_the_kill_is_not_called_killed(tmp_path: Path) -> None:
    """A kill policy firing on a run's last line after it already exited 0 records how it really
    ended (finished, code 0), never "killed" with no signal."""
    recipe = load_recipe(write_recipe(tmp_path, "nan_then_exit.py", on={"nan": {"do": "kill"}}))
    sup, events = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    ended = await sup.wait_lineage(run_id)
    assert any(e.anomaly.rule == "nan" for e in of(events, ev.AnomalyFound))
    assert (ended.status, ended.returncode, ended.signal) == ("finished", 0, None)
    assert sup.history.get(run_id).status == "finished"


async def test_a_notice_never_triggers_a_kill_policy(tmp_path: Path) -> None:
    """On a machine without an NVIDIA GPU, `on: {vram: {do: kill}}` leaves the run alone: the
    "vram rule off" notice is news, not a fault, and the run is recorded finished."""
    recipe = load_recipe(
        write_recipe(
            tmp_path, "count_steps.py", args={"steps": 8, "interval": 0.05},
            watch={"vram": {"poll_secs": 0.05}}, on={"vram": {"do": "kill"}},
        )
    )  # fmt: skip
    sup, events = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    ended = await sup.wait_lineage(run_id)
    notices = [e.anomaly for e in of(events, ev.AnomalyFound) if e.anomaly.rule == "vram"]
    assert notices and all(a.message.startswith("vram rule off") for a in notices)
    assert (ended.status, ended.returncode) == ("finished", 0)
    assert sup.history.get(run_id).status == "finished"
    assert [a for a in of(events, ev.ActionTaken)] == []


async def test_exit_policy_relaunches_a_run_that_failed(tmp_path: Path) -> None:
    """`on: {exit: {do: relaunch, max: 1}}` relaunches a run that exited with an error once,
    then stops the chain when the relaunch fails too."""
    recipe = load_recipe(
        write_recipe(
            tmp_path, "exit_code.py", args={"code": 3}, on={"exit": {"do": "relaunch", "max": 1}}
        )
    )
    sup, events = supervisor(tmp_path)
    first = await sup.launch(recipe)
    final = await sup.wait_lineage(first)
    runs = [sup.history.get(e.run_id) for e in of(events, ev.RunStarted)]
    assert [r.status for r in runs] == ["failed", "failed"]
    assert runs[1].parent_id == runs[0].id and final.run_id == runs[1].id
    (relaunched,) = of(events, ev.RunRelaunched)
    assert (relaunched.parent_id, relaunched.run_id) == (first, runs[1].id)
    (stopped,) = of(events, ev.ChainStopped)
    assert "exit: relaunched 1 time(s) already" in stopped.reason


async def test_exit_policy_leaves_a_clean_exit_alone(tmp_path: Path) -> None:
    """A run that exits 0 under `on: {exit: {do: relaunch}}` is finished, not relaunched."""
    recipe = load_recipe(
        write_recipe(tmp_path, "exit_code.py", args={"code": 0}, on={"exit": {"do": "relaunch"}})
    )
    sup, events = supervisor(tmp_path)
    first = await sup.launch(recipe)
    final = await sup.wait_lineage(first)
    assert final.status == "finished" and of(events, ev.RunRelaunched) == []
