"""The local executor: runs as process groups on this machine (the `Executor` of base.py over
process.py, which starts and waits, and signals.py, which pauses and kills).

A run launched here starts in its own session, so its group id is its pid and every signal goes
to the group (then the kill sweeps the descendants that left it). A process ftmon did not start
(`ftmon --watch LOG --pid P`) gets a handle without a group: its tree is signalled instead, so
that ftmon never stops the shell's group it may share.
"""

from __future__ import annotations

import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from supervisor.events import Exit
from supervisor.runs.executors import process
from supervisor.runs.executors.base import (
    KillResult,
    LaunchSpec,
    RunHandle,
    SampleTargets,
    SpawnError,
    describe_handle,
    handle_from_description,
)

_SIGSTOP_MASK = 1 << (signal.SIGSTOP - 1)


def stop_pending(proc_status: str) -> bool:
    """Whether /proc/PID/status's text shows a SIGSTOP sent but not yet taken (`ShdPnd` for
    one sent to the process or its group, `SigPnd` for its thread). A process stops only once it
    is scheduled again: on a busy machine that is many milliseconds after ftmon's own pause, and
    meanwhile it must not read as "resumed from outside ftmon"."""
    for line in proc_status.splitlines():
        if line.startswith(("ShdPnd:", "SigPnd:")) and int(line.split()[1], 16) & _SIGSTOP_MASK:
            return True
    return False


def pid_stopped(pid: int) -> bool:
    """The process is stopped (state T in /proc/PID/stat), or a SIGSTOP sent to it is still
    pending (see `stop_pending`)."""
    # Pending first, then the state: the kernel takes the signal off the pending set and marks
    # the task stopped under one lock, so one of the two reads sees the stop.
    try:
        if stop_pending(Path(f"/proc/{pid}/status").read_text()):
            return True
    except OSError:  # gone, or no /proc: the state alone says
        pass
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return False


class LocalExecutor:
    """Process groups on this machine; see the module docstring."""

    name = "local"

    def spawn(self, spec: LaunchSpec) -> RunHandle:
        try:
            spawned = process.spawn(list(spec.argv), dict(spec.env), spec.cwd, spec.log_path)
        except process.SpawnError as exc:
            raise SpawnError(str(exc)) from exc
        return RunHandle(
            "local", spawned.pid, spawned.start_time, (spawned.log_path,),
            extra={"pgid": spawned.pgid},
        )  # fmt: skip

    def foreign(self, pid: int, start_time: float, log_path: Path) -> RunHandle:
        """A handle on a process ftmon did not start: signals go to its tree, not a group."""
        return RunHandle("local", pid, start_time, (Path(log_path),), extra={"pgid": None})

    def pause(self, handle: RunHandle) -> bool:
        pgid = _pgid(handle)
        return process.pause(pgid) if pgid else bool(process.pause_tree(handle.pid))

    def resume(self, handle: RunHandle) -> bool:
        pgid = _pgid(handle)
        return process.resume(pgid) if pgid else bool(process.resume_tree(handle.pid))

    def stopped(self, handle: RunHandle) -> bool:
        """The leader is stopped, by ftmon or by anyone (see `pid_stopped`)."""
        return pid_stopped(handle.pid)

    async def kill(self, handle: RunHandle, grace: float) -> KillResult:
        return await process.kill_tree_async(handle.pid, _pgid(handle), grace)

    def alive(self, handle: RunHandle) -> bool:
        """Running (not a zombie) and the same process (its start time). Never reaps: the exit
        status of a child of ours is collected by `wait` (a rule may fire on the last lines
        before the exit is fed)."""
        if handle.pid <= 0:
            return False
        try:
            proc = psutil.Process(handle.pid)
            if abs(proc.create_time() - handle.start_time) > process.START_TIME_TOLERANCE:
                return False
            return proc.status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    async def wait(self, handle: RunHandle) -> Exit:
        return await process.wait_pid_exit(handle.pid, handle.start_time)

    def sample_pids(self, handle: RunHandle) -> SampleTargets:
        """The leader's tree (torchrun: the launcher's, its ranks included)."""
        return SampleTargets((handle.pid,) if handle.pid > 0 else ())

    def describe(self, handle: RunHandle) -> dict[str, Any]:
        return describe_handle(handle)

    def handle_from(self, described: Mapping[str, Any]) -> RunHandle:
        return handle_from_description(described)


def _pgid(handle: RunHandle) -> int | None:
    pgid = handle.extra.get("pgid")
    return int(pgid) if pgid else None
