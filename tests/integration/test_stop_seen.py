"""ftmon's own pause is seen at once: right after a SIGSTOP to the run's group, the executor says
stopped, even when the process has not been scheduled to take the signal yet (a busy CPU), and
right after a SIGCONT it says running. Before, `stopped()` read only the state (T), which under
load lagged the signal: the policy engine then recorded ftmon's pause as "resumed from outside
ftmon" (test_supervise.py::test_pause_stops_the_group_and_resume_continues_it failed so)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.runs.executors.base import RunHandle
from supervisor.runs.executors.local import LocalExecutor

BUSY = [sys.executable, "-c", "while True: pass"]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="needs sched_setaffinity")
def test_a_stop_is_seen_before_the_process_takes_it() -> None:
    run = subprocess.Popen(BUSY, start_new_session=True)
    rival = subprocess.Popen(BUSY)  # shares the run's CPU, so the run often waits for it
    try:
        cpu = min(os.sched_getaffinity(0))
        os.sched_setaffinity(run.pid, {cpu})
        os.sched_setaffinity(rival.pid, {cpu})
        handle = RunHandle("local", run.pid, 0.0, (Path(os.devnull),), extra={"pgid": run.pid})
        executor = LocalExecutor()
        missed = still = 0
        for _ in range(300):
            os.killpg(run.pid, signal.SIGSTOP)
            missed += not executor.stopped(handle)
            os.killpg(run.pid, signal.SIGCONT)
            still += executor.stopped(handle)
        assert (missed, still) == (0, 0)
    finally:
        for proc in (run, rival):
            proc.kill()
            proc.wait()
