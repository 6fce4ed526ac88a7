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

from supervisor.events import Anomaly, Event, Metric
from supervisor.monitoring.monitor import Monitor
from supervisor.monitoring.watch import watch_log
from supervisor.recipe.model import load_recipe
from supervisor.rules import WatchSettings
from supervisor.runs import events as ev
from supervisor.runs.executors.base import LaunchSpec, RunHandle
from supervisor.runs.executors.torchrun import (
    TorchrunExecutor,
    TorchrunOptions,
    pause_warning,
    rank_logs,
)
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from tests.conftest import PROGRAMS, ROOT, async_wait_for
from tests.programs.recipes import write_recipe

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


async def test_a_recipe_with_a_torchrun_launcher_runs_ranks_under_the_supervisor(
    tmp_path: Path,
) -> None:
    """`launcher: {kind: torchrun, nproc_per_node: 2}`: metrics arrive from both ranks, a pause
    says how long the process group tolerates it, and the kill ends the agent and both ranks."""
    recipe = load_recipe(
        write_recipe(
            tmp_path, "count_steps.py", args={"steps": 3000, "interval": 0.05},
            launcher={"kind": "torchrun", "nproc_per_node": 2},
        )
    )  # fmt: skip
    events: list[object] = []
    logs = tmp_path / "logs"
    sup = Supervisor(History(logs / "ftmon.db"), logs, events.append)
    try:
        run_id = await sup.launch(recipe)
        ranks: set[int | None] = set()

        def both_ranks() -> bool:
            for e in events:
                if isinstance(e, ev.MetricsObserved):
                    ranks.update(m.rank for m in e.events if isinstance(m, Metric))
            return {0, 1} <= ranks

        await async_wait_for(both_ranks, 60, "for metrics of both ranks")
        rec = sup.history.get(run_id)
        assert rec is not None and rec.executor and rec.executor["executor"] == "torchrun"
        ran = rec.executor["extra"]["argv"]  # type: ignore[index]
        assert "torch.distributed.run" in ran and ran[ran.index("--nproc_per_node") + 1] == "2"
        workers = TorchrunExecutor().workers(sup.executor.handle_from({**rec.executor}))
        assert len(workers) == 2

        await sup.pause(run_id)
        (paused,) = [e for e in events if isinstance(e, ev.RunPaused)]
        assert "resume within 480 s (TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC)" in paused.reason

        ended = await sup.kill(run_id)
        assert ended.status == "killed"
        assert_all_gone(sup.executor.handle_from({**rec.executor}), workers)
    finally:
        await sup.close(kill=True)
