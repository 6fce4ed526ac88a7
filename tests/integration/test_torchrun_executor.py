"""The torchrun executor with real torchrun and 2 CPU ranks (gloo): ftmon follows every rank of
the run's log, names the rank that hung, warns that a pause has a deadline, and a kill leaves
no agent and no worker behind; the reference trainer going NaN under torchrun is killed whole."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import psutil
import pytest

from supervisor.events import Anomaly, Event
from supervisor.monitoring.monitor import Monitor
from supervisor.monitoring.watch import watch_log
from supervisor.rules import WatchSettings
from supervisor.runs.executors.base import LaunchSpec, RunHandle
from supervisor.runs.executors.torchrun import (
    TorchrunExecutor,
    TorchrunOptions,
    pause_warning,
    rank_logs,
)
from tests.conftest import PROGRAMS, ROOT, async_wait_for

pytest.importorskip("torch")
pytestmark = pytest.mark.slow


def spec(tmp_path: Path, argv: list[str], **env: str) -> LaunchSpec:
    full = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **env}
    return LaunchSpec(tmp_path.name, tuple(argv), full, ROOT, tmp_path, tmp_path / "run.log")


async def watch_until(
    executor: TorchrunExecutor, handle: RunHandle, rule: str, watch: WatchSettings
) -> tuple[Anomaly, list[int]]:
    """Follow the run's log until `rule` fires; returns it and the worker pids then."""
    found: asyncio.Future[Anomaly] = asyncio.get_running_loop().create_future()

    def on_event(event: Event) -> None:
        if isinstance(event, Anomaly) and event.rule == rule and not found.done():
            found.set_result(event)

    stop = asyncio.Event()
    task = asyncio.create_task(
        watch_log(handle.log_path, Monitor(watch), on_event, from_start=True, pid=handle.pid,
                  start_time=handle.start_time, poll_secs=0.2, stop=stop, tick_secs=0.2,
                  exited=lambda: executor.wait(handle))
    )  # fmt: skip
    try:
        anomaly = await asyncio.wait_for(found, 90)
        return anomaly, executor.workers(handle)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def assert_all_gone(handle: RunHandle, workers: list[int]) -> None:
    left = [p for p in [handle.pid, *workers] if psutil.pid_exists(p) and _not_zombie(p)]
    assert left == [], f"survivors: {left}"


def _not_zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


async def test_a_hung_rank_is_named_and_the_kill_leaves_no_rank(tmp_path: Path) -> None:
    """Rank 1 stops before step 8 while rank 0 prints step 8 and waits in the all-reduce: the
    hang rule names rank 1 after its floor (2 s here); pausing warns of the process group's
    timeout from the run's env; kill ends the agent and both workers."""
    executor = TorchrunExecutor(TorchrunOptions(nproc_per_node=2))
    argv = [sys.executable, str(PROGRAMS / "ranks_hang.py"), "--hang_rank", "1", "--hang_at", "8"]
    handle = executor.spawn(spec(tmp_path, argv, TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC="300"))
    try:
        watch = WatchSettings.model_validate({"hang": {"floor_secs": 2}, "stall": {"secs": 600}})
        hang, workers = await watch_until(executor, handle, "hang", watch)
        assert hang.message.startswith("rank 1 hung") and "rank 0 at step 8" in hang.message
        assert len(workers) == 2
        assert sorted(rank_logs(handle)) == [0, 1]  # torchrun's per-rank files, for the log view

        assert executor.pause(handle)
        await async_wait_for(lambda: executor.stopped(handle), 10, "for the ranks to stop")
        assert "resume within 300 s (TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC)" in pause_warning(handle)
        assert executor.resume(handle)

        report = await executor.kill(handle, grace=3.0)
        assert report.all_gone, report.detail()
        assert_all_gone(handle, workers)
    finally:
        await executor.kill(handle, 0.5)


async def test_the_trainer_going_nan_under_torchrun_is_killed_with_every_rank(
    tmp_path: Path,
) -> None:
    """`python -m trainer` at a rate that overflows, launched as 2 ranks: the nan rule fires on
    the ranks' prefixed metric lines, and the kill leaves 0 survivors."""
    executor = TorchrunExecutor(TorchrunOptions(nproc_per_node=2))
    argv = [sys.executable, "-m", "trainer", "--threads", "1", "--steps", "300", "--micro_batch",
            "4", "--seq_len", "48", "--train_size", "400", "--eval_size", "4", "--optimizer", "sgd",
            "--lr", "50", "--log_every", "5", "--warmup", "10"]  # fmt: skip
    handle = executor.spawn(spec(tmp_path, argv))
    try:
        _nan, workers = await watch_until(executor, handle, "nan", WatchSettings())
        assert len(workers) == 2
        report = await executor.kill(handle, grace=3.0)
        assert report.all_gone, report.detail()
        assert_all_gone(handle, workers)
        log = handle.log_path.read_text()
        assert "[default0]:" in log and "[default1]:" in log and '"rank": 1' in log
    finally:
        await executor.kill(handle, 0.5)
