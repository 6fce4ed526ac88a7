"""The run lifecycle under faults, with real processes: a decision survives an ftmon that is
SIGKILLed half way through it, and a run stopped by anyone is not judged stalled while stopped."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from supervisor.recipe.model import load_recipe
from supervisor.runs import events as ev
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from tests.conftest import async_wait_for, ftmon, ftmon_path, wait_for
from tests.programs.recipes import write_recipe


def test_a_kill_interrupted_by_ftmons_death_is_finished_by_attach(tmp_path: Path) -> None:
    """ftmon SIGKILLed during a kill's grace period: `ftmon attach` kills the run, relaunches it
    with the adjusted recipe as its policy said, and history tells what happened when."""
    logs = tmp_path / "logs"
    recipe = write_recipe(
        tmp_path, "nan_ignores_first_term.py", name="nan-grace",
        args={"lr": 0.002, "steps": 10, "interval": 0.05},
        kill_grace_secs=30,  # far longer than the test: only ftmon's death ends this kill
        on={"nan": {"do": "relaunch", "adjust": {"lr": "*0.1"}, "max": 1}},
    )  # fmt: skip
    first = subprocess.Popen(
        [ftmon_path(), "run", str(recipe), "--headless", "--logs-dir", str(logs)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: (logs / "ftmon.db").exists(), what="for the database")
        history = History(logs / "ftmon.db")

        def killing() -> bool:
            runs = history.runs()
            return (
                bool(runs)
                and runs[-1].status == "killing"
                and "ignoring SIGTERM" in Path(runs[-1].log_path).read_text()
            )

        wait_for(killing, timeout=60, what="for the kill's grace period")
        first.kill()  # ftmon dies half way through its decision
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
    (run,) = history.runs()
    assert run.status == "killing" and psutil.pid_exists(run.pid or 0), "the run outlived ftmon"
    (open_decision,) = history.decisions(run.id, open_only=True)
    assert open_decision.kind == "relaunch" and open_decision.rule == "nan"

    res = ftmon("attach", run.id, "--logs-dir", str(logs), timeout=120)

    assert res.returncode == 0, res.stdout + res.stderr
    assert "finishing the relaunch decided at" in res.stdout, "attach says what it finishes"
    assert not psutil.pid_exists(run.pid or 0) or psutil.Process(run.pid).status() == "zombie"
    after = history.get(run.id)
    assert after is not None and after.status == "killed"
    assert after.end_reason == "killed by ftmon: rule nan"
    (child,) = history.children(run.id)
    assert child.status == "finished" and child.attempt == 2
    assert child.changes == ("lr 0.002 -> 0.0002",)
    moves = [(s.old, s.new) for s in history.states(run.id)]
    assert moves == [
        ("", "starting"), ("starting", "running"), ("running", "killing"),
        ("killing", "exited"), ("exited", "relaunching"), ("relaunching", "killed"),
    ]  # fmt: skip
    (decision,) = history.decisions(run.id)
    assert decision.done_at is not None and decision.outcome == f"relaunched as {child.id}"
    kills = [a for a in history.actions(run.id) if a.kind == "kill"]
    assert kills and kills[-1].ok, "the kill after the restart reports all gone"
    times = [s.ts for s in history.states(run.id)]
    assert times == sorted(times) and decision.done_at >= times[-1] - 1e-6
    shown = json.loads(ftmon("show", run.id, "--json", "--logs-dir", str(logs)).stdout)
    assert [s["new"] for s in shown["states"]][-3:] == ["exited", "relaunching", "killed"]
    assert shown["decisions"][0]["outcome"] == f"relaunched as {child.id}"


async def test_stall_clock_stops_while_stopped_from_outside_and_restarts_at_resume(
    tmp_path: Path,
) -> None:
    """A run stopped with SIGSTOP from a shell is paused (no stall while stopped); continued
    with SIGCONT and then silent for longer than the stall limit, stall fires, counted from the
    moment of the resume, which is recorded then."""
    recipe = load_recipe(
        write_recipe(
            tmp_path, "goes_quiet.py", args={"lines": 3, "quiet": 60},
            watch={"stall": {"secs": 2.0, "pause_gap_secs": 60}},
        )
    )  # fmt: skip
    events: list[object] = []
    sup = Supervisor(History(tmp_path / "logs" / "ftmon.db"), tmp_path / "logs", events.append)
    run_id = await sup.launch(recipe)
    try:
        await async_wait_for(lambda: any(isinstance(e, ev.MetricsObserved) for e in events))
        pid = sup.history.get(run_id).pid
        os.kill(pid, signal.SIGSTOP)  # a person, from a shell
        await async_wait_for(lambda: sup.history.get(run_id).status == "paused")
        await asyncio.sleep(3.5)  # longer than the stall limit, while stopped
        assert not _stalls(events), "a stopped run is not stalled"
        os.kill(pid, signal.SIGCONT)
        await async_wait_for(lambda: any(isinstance(e, ev.RunResumed) for e in events))
        resumed_at = time.time()
        assert sup.history.get(run_id).status == "running"
        await async_wait_for(lambda: _stalls(events), timeout=15)
        (stall,) = _stalls(events)
        assert stall.ts - resumed_at >= 2.0 - 0.2, "silence counts from the resume"
        resume = [a for a in sup.history.actions(run_id) if a.kind == "resume"]
        assert resume and resume[0].detail == "resumed from outside ftmon"
        assert abs(resume[0].ts - resumed_at) < 1.5, "recorded when it happened"
        moves = [s.new for s in sup.history.states(run_id)]
        assert moves[:4] == ["starting", "running", "paused", "running"]
    finally:
        await sup.close(kill=True)


def _stalls(events: list[object]) -> list[object]:
    return [
        e.anomaly for e in events if isinstance(e, ev.AnomalyFound) and e.anomaly.rule == "stall"
    ]


def test_watch_does_not_kill_a_run_it_paused_for_stalling(tmp_path: Path) -> None:
    """`--watch LOG --pid P --on spike=pause --on stall=kill`: after the pause, the silence of
    the stopped run is not a stall, so the paused run is left paused, not killed."""
    log = tmp_path / "train.log"
    log.touch()
    run = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    watcher = subprocess.Popen(
        [ftmon_path(), "--watch", str(log), "--from-start", "--json", "--pid", str(run.pid),
         "--on", "spike=pause", "--on", "stall=kill", "--set", "stall.secs=1"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert watcher.stderr is not None
        assert watcher.stderr.readline().startswith("ftmon: watching")
        lines = [f"{{'loss': {1.0 + 0.01 * (i % 3):.2f}, 'step': {i}}}" for i in range(1, 31)]
        with log.open("a") as fh:
            fh.write("\n".join([*lines, "{'loss': 80.0, 'step': 31}"]) + "\n")
        proc = psutil.Process(run.pid)
        wait_for(lambda: proc.status() == psutil.STATUS_STOPPED, what="for the pause")
        time.sleep(3.5)  # three stall limits of silence, while paused
        assert proc.status() == psutil.STATUS_STOPPED, "still paused, not killed"
        run.kill()  # the person decides; the watch ends with the process
        run.wait()
        out, _ = watcher.communicate(timeout=30)
    finally:
        for p in (run, watcher):
            if p.poll() is None:
                p.kill()
    records = [json.loads(line) for line in out.splitlines()]
    actions = [(r["kind"], r["rule"]) for r in records if r["type"] == "action"]
    assert actions == [("pause", "spike")]
    assert not any(r["type"] == "anomaly" and r["rule"] == "stall" for r in records)
