"""The Slurm executor against the real one-node cluster of .ci/slurm-up: submit, follow the
job's log in the run folder, pause/resume by signals, kill with nothing left, find the job again
by its id, and a job over its --time ends as a time-limit end."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import pytest

from supervisor.runs.executors.base import LaunchSpec, RunHandle, SpawnError
from supervisor.runs.executors.slurm import SCRIPT_NAME, SlurmExecutor, SlurmOptions
from supervisor.runs.executors.slurm_cli import available
from tests.conftest import PROGRAMS, wait_for

WHY_NOT = available()
pytestmark = pytest.mark.skipif(bool(WHY_NOT), reason=f"no Slurm here: {WHY_NOT}")


def spec_for(run_dir: Path, *args: str) -> LaunchSpec:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    argv = (sys.executable, str(PROGRAMS / "count_steps.py"), *args)
    return LaunchSpec(run_dir.name, argv, env, run_dir, run_dir, run_dir / "run.log")


def lines(handle: RunHandle) -> int:
    return handle.log_path.read_text().count("\n")


def _submit_timed_out() -> tuple[SlurmExecutor, RunHandle] | str:
    """A job over its one-minute --time, submitted when this module is collected: Slurm's limits
    are whole minutes, checked every 30 s, so its end comes 60-90 s later, and starting it first
    lets that wait overlap the rest of the suite. Left alone it ends by its limit anyway."""
    if WHY_NOT:
        return WHY_NOT
    executor = SlurmExecutor(SlurmOptions(time="1"), poll_secs=1.0)
    run_dir = Path(tempfile.mkdtemp(prefix="ftmon-slurm-timeout-"))
    try:
        argv = ("--steps", "100000", "--interval", "0.5")
        return executor, executor.spawn(spec_for(run_dir, *argv))
    except SpawnError as exc:  # said by the test, not as an error collecting the module
        return str(exc)


TIMED_OUT = _submit_timed_out()


def test_a_job_runs_in_the_run_folder_and_pauses_and_resumes_by_signals(tmp_path: Path) -> None:
    """sbatch writes the job's output to the run's log; STOP halts it (Slurm says STOPPED, the
    log stops growing), CONT goes on; the handle's job id is what finds it again."""
    executor = SlurmExecutor(SlurmOptions(time="5"), poll_secs=0.2)
    handle = executor.spawn(spec_for(tmp_path, "--steps", "100000", "--interval", "0.05"))
    try:
        assert handle.job_id.isdigit() and (tmp_path / SCRIPT_NAME).is_file()
        wait_for(lambda: lines(handle) >= 5, 30, "for the job's first lines")
        assert executor.alive(handle) and "RUNNING on" in executor.status(handle)

        assert executor.pause(handle)
        wait_for(lambda: executor.stopped(handle), 10, "for Slurm to say STOPPED")
        time.sleep(0.3)  # let a line in flight land
        held = lines(handle)
        time.sleep(1.0)
        assert lines(handle) == held, "the job kept writing while STOPPED"

        again = SlurmExecutor().handle_from(executor.describe(handle))  # an ftmon started anew
        assert again.job_id == handle.job_id and again.log_path == handle.log_path
        assert SlurmExecutor().resume(again)
        wait_for(lambda: lines(handle) > held + 3, 10, "for lines after CONT")
        assert not executor.stopped(handle)

        report = asyncio.run(executor.kill(again, grace=5.0))
        assert report.all_gone, report.detail()
        assert not executor.alive(handle)
        ended = asyncio.run(executor.wait(handle))
        assert ended.ended_by == ""  # ended by ftmon's TERM, not by the cluster
    finally:
        asyncio.run(executor.kill(handle, 0.0))


@pytest.mark.slow
def test_a_job_over_its_time_limit_ends_as_a_time_limit_end() -> None:
    """Slurm's TIMEOUT reaches ftmon as an Exit with `ended_by="time_limit"`."""
    assert not isinstance(TIMED_OUT, str), f"the job was not submitted: {TIMED_OUT}"
    executor, handle = TIMED_OUT
    try:
        ended = asyncio.run(asyncio.wait_for(executor.wait(handle), 150))
        assert ended.ended_by == "time_limit", executor.status(handle)
        assert "TIMEOUT" in executor.status(handle)
        assert lines(handle) > 0
    finally:
        asyncio.run(executor.kill(handle, 0.0))
