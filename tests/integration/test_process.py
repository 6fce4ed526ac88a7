"""process.py on real processes: spawn, pause/resume, kill a stubborn tree, liveness, exits."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supervisor.runs.executors import process, signals
from tests.conftest import PROGRAMS, wait_for


def child_env() -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1"}


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_spawn_writes_stdout_and_stderr_to_the_log_in_a_new_session(tmp_path: Path) -> None:
    """A spawned run's stdout and stderr both land in its log, and it leads its own session."""
    log = tmp_path / "run" / "output.log"
    log.parent.mkdir()
    log.write_text("earlier line\n")
    code = "import os,sys; print('out', os.getsid(0)); print('err', file=sys.stderr); input()"
    spawned = process.spawn([sys.executable, "-c", code], child_env(), tmp_path, log)
    assert spawned.pgid == spawned.pid
    assert process.is_alive(spawned.pid, spawned.start_time)
    exit_ = asyncio.run(process.wait_exit(spawned))
    text = log.read_text()
    assert text.startswith("earlier line\n"), "the log was appended to, not overwritten"
    assert f"out {spawned.pid}" in text
    assert "err" in text
    assert "EOFError" in text, "stdin is /dev/null, so input() fails at once"
    assert exit_.returncode == 1 and exit_.signal is None
    assert gone(spawned.pid)


def test_spawn_of_a_missing_program_is_a_clear_error(tmp_path: Path) -> None:
    """Starting a program that does not exist raises SpawnError naming it."""
    with pytest.raises(process.SpawnError, match="'no-such-program-xyz': no such program"):
        process.spawn(["no-such-program-xyz"], child_env(), tmp_path, tmp_path / "o.log")


def test_spawn_in_a_missing_folder_blames_the_folder(tmp_path: Path) -> None:
    """A recipe cwd that does not exist is named as the problem, not the (existing) program."""
    missing = tmp_path / "no-such-dir"
    with pytest.raises(process.SpawnError, match=f"working folder {missing} does not exist"):
        process.spawn([sys.executable, "-V"], child_env(), missing, tmp_path / "o.log")


def test_wait_exit_reports_the_signal_that_killed_the_run(tmp_path: Path) -> None:
    """A run killed by SIGKILL ends with signal 9 and no return code."""
    spawned = process.spawn(
        [sys.executable, "-c", "import time; time.sleep(60)"], child_env(), tmp_path, tmp_path / "l"
    )

    async def scenario() -> process.Exit:
        waiter = asyncio.create_task(process.wait_exit(spawned))
        await asyncio.sleep(0.2)
        assert not waiter.done()
        os.kill(spawned.pid, signal.SIGKILL)
        return await asyncio.wait_for(waiter, 10)

    exit_ = asyncio.run(scenario())
    assert exit_.signal == signal.SIGKILL and exit_.returncode is None


def test_pause_stops_output_and_resume_restarts_it(tmp_path: Path) -> None:
    """While a run is paused its log does not grow; after resume it grows again."""
    log = tmp_path / "out.log"
    spawned = process.spawn(
        [sys.executable, str(PROGRAMS / "chatty.py"), "--interval", "0.02"],
        child_env(),
        tmp_path,
        log,
    )
    try:
        wait_for(lambda: log.exists() and log.stat().st_size > 200)
        assert process.pause(spawned.pgid)
        wait_for(lambda: psutil.Process(spawned.pid).status() == psutil.STATUS_STOPPED)
        size = log.stat().st_size
        time.sleep(0.5)
        assert log.stat().st_size == size, "a paused run wrote to its log"
        assert process.resume(spawned.pgid)
        wait_for(lambda: log.stat().st_size > size + 200)
    finally:
        report = process.kill_tree(spawned.pid, spawned.pgid, grace=2)
    assert report.all_gone


def test_kill_tree_leaves_nothing_of_a_stubborn_tree(tmp_path: Path) -> None:
    """A run that ignores SIGTERM, with a grandchild in its own session, is gone after a kill."""
    pidfile = tmp_path / "pids"
    spawned = process.spawn(
        [sys.executable, str(PROGRAMS / "stubborn_pidfile.py"), str(pidfile)],
        child_env(),
        tmp_path,
        tmp_path / "out.log",
    )
    wait_for(pidfile.exists)
    pids = dict(line.split() for line in pidfile.read_text().splitlines())
    grandchild = int(pids["grandchild"])
    assert os.getsid(grandchild) != os.getsid(spawned.pid), "grandchild left the session"

    report = process.kill_tree(spawned.pid, spawned.pgid, grace=0.3)

    assert report.all_gone, report.detail()
    assert set(report.tree) >= {spawned.pid, grandchild}
    assert spawned.pid in report.killed, "SIGTERM was ignored, so SIGKILL was needed"
    assert gone(spawned.pid) and gone(grandchild)
    assert spawned.popen.returncode == -signal.SIGKILL, "our child was reaped through its Popen"


def test_kill_tree_without_a_group_kills_a_foreign_pids_tree(tmp_path: Path) -> None:
    """With pgid=None (a `--pid` we did not start) the pid and its descendants are killed."""
    pidfile = tmp_path / "pids"
    # Not spawned here: a plain Popen, as if another tool had started it.
    proc = subprocess.Popen([sys.executable, str(PROGRAMS / "stubborn_pidfile.py"), str(pidfile)])
    try:
        wait_for(pidfile.exists)
        grandchild = int(dict(x.split() for x in pidfile.read_text().splitlines())["grandchild"])
        report = asyncio.run(process.kill_tree_async(proc.pid, None, grace=0.3))
        assert report.all_gone, report.detail()
        assert proc.wait(5) == -signal.SIGKILL
        assert gone(grandchild)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_kill_tree_of_a_polite_run_needs_no_sigkill(tmp_path: Path) -> None:
    """A run that exits on SIGTERM is stopped within the grace period, without SIGKILL."""
    spawned = process.spawn(
        [sys.executable, str(PROGRAMS / "chatty.py")], child_env(), tmp_path, tmp_path / "o"
    )
    wait_for(lambda: (tmp_path / "o").stat().st_size > 0)
    report = process.kill_tree(spawned.pid, spawned.pgid, grace=5)
    assert report.all_gone and not report.killed
    assert spawned.pid in report.termed
    assert spawned.popen.returncode == 143  # chatty.py's SIGTERM handler


def test_kill_tree_of_a_paused_run_still_terminates_it(tmp_path: Path) -> None:
    """A paused run receives the SIGTERM (it is continued), so no SIGKILL is needed."""
    spawned = process.spawn(
        [sys.executable, str(PROGRAMS / "chatty.py")], child_env(), tmp_path, tmp_path / "o"
    )
    wait_for(lambda: (tmp_path / "o").stat().st_size > 0)
    process.pause(spawned.pgid)
    report = process.kill_tree(spawned.pid, spawned.pgid, grace=5)
    assert report.all_gone and not report.killed


def test_is_alive_is_false_for_a_reused_pid() -> None:
    """A live pid whose start time differs from the recorded one is not our process."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        start = psutil.Process(proc.pid).create_time()
        assert process.is_alive(proc.pid, start)
        assert not process.is_alive(proc.pid, start - 5.0)
        assert not process.is_alive(proc.pid, start + 0.5)
    finally:
        proc.kill()
        proc.wait()
    assert not process.is_alive(proc.pid, start)
    assert not process.is_alive(0, start) and not process.is_alive(-1, start)


def test_is_alive_reaps_a_dead_child(tmp_path: Path) -> None:
    """A spawned run that has ended is not alive and is not left behind as a zombie."""
    spawned = process.spawn([sys.executable, "-c", "pass"], child_env(), tmp_path, tmp_path / "l")
    wait_for(lambda: not process.is_alive(spawned.pid, spawned.start_time))
    assert spawned.popen.returncode == 0, "reaped through its Popen, status kept"
    assert gone(spawned.pid)


def test_wait_pid_exit_notices_a_foreign_process_ending() -> None:
    """Waiting on a pid we did not start returns when it ends, with its exit code when the
    kernel still holds it (its parent has not reaped it yet)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; time.sleep(0.3); sys.exit(3)"]
    )

    async def scenario() -> process.Exit:
        return await asyncio.wait_for(process.wait_pid_exit(proc.pid), 10)

    exit_ = asyncio.run(scenario())
    assert exit_.returncode == 3 and exit_.signal is None
    assert proc.wait() == 3
    assert process.zombie_returncode(proc.pid, 0.0) is None  # reaped now: unknowable


def test_group_zero_is_never_signalled() -> None:
    """pause(0) would stop ftmon's own group: it is refused."""
    with pytest.raises(ValueError):
        process.pause(0)


class GpuHolding:
    """NVML's process list as the driver reports it after a kill (the seam for the GPU we lack):
    `pid` holds memory for the first `calls` questions, then no more (or forever: calls=-1)."""

    def __init__(self, pid: int, calls: int) -> None:
        self.pid, self.calls, self.asked = pid, calls, 0

    def memory(self) -> dict[int, tuple[int, int]]:
        return {0: (0, 80 << 30)}

    def process_memory(self) -> dict[int, int]:
        self.asked += 1
        holding = self.calls < 0 or self.asked <= self.calls
        return {self.pid: 1 << 30, 1: 1 << 20} if holding else {1: 1 << 20}

    def gpu_pids(self) -> set[int]:
        return set(self.process_memory())


def test_kill_waits_for_the_driver_to_release_gpu_memory(tmp_path: Path, monkeypatch) -> None:
    """GPU memory released a moment after the kill counts as gone; memory still held is reported."""
    monkeypatch.setattr(signals, "GPU_CONFIRM_SECS", 0.5)
    for calls, expect_gone in ((2, True), (-1, False)):
        spawned = process.spawn(
            [sys.executable, "-c", "import time; time.sleep(60)"],
            child_env(),
            tmp_path,
            tmp_path / "l",
        )
        gpu = GpuHolding(spawned.pid, calls)
        report = process.kill_tree(spawned.pid, spawned.pgid, grace=2, nvml=gpu)
        assert not report.survivors, "the processes themselves are gone either way"
        assert report.all_gone is expect_gone
        if expect_gone:
            assert gpu.asked == 3 and report.gpu_holders == ()
        else:
            assert report.gpu_holders == (spawned.pid,), "pid 1's memory is not the run's"
            assert "still holding GPU memory" in report.detail()


def test_pause_tree_and_resume_tree_on_a_foreign_process(tmp_path: Path) -> None:
    """A process we did not start is stopped with its child, and continued again, by pid."""
    code = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(c.pid, flush=True); time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        child = int(proc.stdout.readline())
        assert sorted(process.pause_tree(proc.pid)) == sorted([proc.pid, child])
        for pid in (proc.pid, child):
            wait_for(lambda pid=pid: psutil.Process(pid).status() == psutil.STATUS_STOPPED)
        assert os.getpgid(proc.pid) == os.getpgid(0), "same group as ours, and we still run"
        assert sorted(process.resume_tree(proc.pid)) == sorted([proc.pid, child])
        for pid in (proc.pid, child):
            wait_for(lambda pid=pid: psutil.Process(pid).status() != psutil.STATUS_STOPPED)
    finally:
        process.kill_tree(proc.pid, None, grace=1)
        proc.wait()
    assert process.pause_tree(proc.pid) == []
