"""Supervised Slurm jobs on the real one-node cluster of .ci/slurm-up: a job that goes NaN is
caught, scancel'ed and relaunched with the lower rate as a new job; an ftmon that went away
finds its job again by the job id in history."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from supervisor.recipe.model import load_recipe
from supervisor.runs import events as ev
from supervisor.runs.executors.slurm_cli import SlurmCli, available
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from tests.conftest import ROOT, async_wait_for, ftmon, ftmon_path
from tests.programs.recipes import write_recipe

WHY_NOT = available()
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"no Slurm here: {WHY_NOT}")

SLURM = {"kind": "slurm", "time": "5"}


def job_of(history: History, run_id: str) -> str:
    rec = history.get(run_id)
    assert rec is not None and rec.executor, f"{run_id} has no executor handle in history"
    return str(rec.executor["job_id"])


@pytest.mark.slow
async def test_the_tiny_trainer_going_nan_is_scancelled_and_relaunched_as_a_new_job(
    tmp_path: Path,
) -> None:
    """recipes/demo-unstable.yaml as a Slurm job: the reference trainer at lr 50 goes NaN, the
    nan policy kills the job (TERM, then scancel) and submits the adjusted recipe (lr x 0.01)
    as a second job, which trains to its end."""
    data = yaml.safe_load((ROOT / "recipes" / "demo-unstable.yaml").read_text())
    data["on"] = data.pop(True)  # PyYAML reads the key `on` as YAML 1.1's true
    data["command"] = [sys.executable, "-m", "trainer"]  # this environment's torch
    data["cwd"] = str(ROOT)
    data["executor"] = SLURM
    data["args"].update(steps=25, sample_every=0, eval_every=0, eval_size=4, threads=1)
    data["env"] = {"OMP_NUM_THREADS": "1"}
    data["preflight"] = {"enabled": False}
    path = tmp_path / "demo-unstable.yaml"
    path.write_text(yaml.safe_dump(data))
    recipe = load_recipe(path)
    events: list[object] = []
    logs = tmp_path / "logs"
    sup = Supervisor(History(logs / "ftmon.db"), logs, events.append)
    try:
        first = await sup.launch(recipe)
        final = await asyncio.wait_for(sup.wait_lineage(first), 150)
    finally:
        await sup.close(kill=True)
    runs = {r.id: r for r in sup.history.runs()}
    assert len(runs) == 2 and final.run_id != first and final.status == "finished"
    parent, child = runs[first], runs[final.run_id]
    assert parent.status == "killed" and "nan" in parent.end_reason
    assert child.parent_id == first and child.argv[child.argv.index("--lr") + 1] == "0.5"
    jobs = job_of(sup.history, first), job_of(sup.history, final.run_id)
    assert jobs[0] != jobs[1] and all(j.isdigit() for j in jobs)
    cli = SlurmCli()
    ended = cli.job(jobs[0])
    assert ended is not None and not ended.live, ended
    assert (Path(child.run_dir) / "job.sbatch").is_file()
    assert '"type": "summary", "steps": 25' in Path(child.log_path).read_text()
    assert any(isinstance(e, ev.RunRelaunched) for e in events)
    listed = ftmon("history", "--logs-dir", str(logs))
    assert f"slurm job: {jobs[0]}" in listed.stdout and f"slurm job: {jobs[1]}" in listed.stdout
    shown = ftmon("show", first, "--logs-dir", str(logs))
    assert f"runs on   Slurm job {jobs[0]} " in shown.stdout and ", nodes " in shown.stdout


async def test_an_ftmon_killed_and_started_again_reattaches_to_its_job_by_id(
    tmp_path: Path,
) -> None:
    """`ftmon run --headless` is SIGKILLed (the job runs on in Slurm); a new ftmon attaches by
    the run id, finds the job by the job id in history, reads on, and its kill ends the job."""
    recipe = write_recipe(
        tmp_path, "count_steps.py", executor=SLURM, args={"steps": 3000, "interval": 0.05}
    )
    logs = tmp_path / "logs"
    first = subprocess.Popen(
        [ftmon_path(), "run", str(recipe), "--headless", "--logs-dir", str(logs)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    cli = SlurmCli()
    job = ""
    try:

        def job_running() -> bool:
            nonlocal job
            if not (logs / "ftmon.db").exists():
                return False
            history = History(logs / "ftmon.db")
            try:
                runs = history.runs()
            finally:
                history.close()
            if not runs or not runs[0].executor or runs[0].lineno < 3:
                return False
            job = str(runs[0].executor["job_id"])
            info = cli.job(job)
            return info is not None and info.state == "RUNNING"

        await async_wait_for(job_running, 30, "for the job to run and be read")
    finally:
        first.kill()  # SIGKILL: no goodbye, the claim in history is left behind
        first.wait()
    info = cli.job(job)
    assert info is not None and info.state == "RUNNING"

    later: list[object] = []
    again = Supervisor(History(logs / "ftmon.db"), logs, later.append)
    run_id = again.history.runs()[0].id
    try:
        assert await again.attach(run_id) == run_id
        await async_wait_for(lambda: any(isinstance(e, ev.MetricsObserved) for e in later), 30)
        ended = await again.kill(run_id)
        assert ended.status == "killed"
        info = cli.job(job)
        assert info is not None and not info.live
    finally:
        await again.close(kill=True)
        cli.cancel(job)


async def test_a_pending_job_says_why_and_a_kill_cancels_it(tmp_path: Path) -> None:
    """A job held in the queue (`--begin` an hour on) is reported `PENDING (BeginTime)`; the
    stall clock does not run while it waits; a kill scancels it."""
    recipe = load_recipe(
        write_recipe(
            tmp_path, "count_steps.py", args={"steps": 10},
            executor={**SLURM, "extra": ["--begin=now+3600"]}, watch={"stall": {"secs": 1}},
        )
    )  # fmt: skip
    events: list[object] = []
    logs = tmp_path / "logs"
    sup = Supervisor(History(logs / "ftmon.db"), logs, events.append)
    try:
        run_id = await sup.launch(recipe)

        def said() -> list[str]:
            found = [e.anomaly for e in events if isinstance(e, ev.AnomalyFound)]
            return [a.message for a in found if a.rule == "slurm"]

        await async_wait_for(lambda: any("PENDING (BeginTime)" in m for m in said()), 30)
        await asyncio.sleep(2.0)  # longer than the stall limit: a job in the queue is not stalled
        assert not [
            e for e in events if isinstance(e, ev.AnomalyFound) and e.anomaly.rule == "stall"
        ]
        ended = await sup.kill(run_id)
        assert ended.status == "killed"
        info = SlurmCli().job(job_of(sup.history, run_id))
        assert info is not None and info.state == "CANCELLED"
    finally:
        await sup.close(kill=True)
