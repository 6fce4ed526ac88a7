"""All OS effects on processes: spawn, pause, resume, kill a tree, liveness, waiting for an exit.

Modelled on supervisord: a run starts in its own session and process group, writes its stdout and
stderr straight into its log file (never into a pipe held by ftmon, so that training goes on and
the log stays whole if ftmon dies), is paused with SIGSTOP to the group, and is stopped with
SIGTERM, a grace period, then SIGKILL. Unlike supervisord, a kill then sweeps the descendants that
left the group (a `setsid` grandchild, a detached data loader) and confirms that none is alive and,
where NVML is present, that none still holds GPU memory.

This module starts processes and waits for them; the signals (pause, resume, kill and its sweep)
are in supervisor/signals.py and importable from here as before (`process.kill_tree`, ...).
Every function takes plain pids and returns plain dataclasses; nothing else in ftmon sends a
signal or starts a process.
"""

from __future__ import annotations

import asyncio
import errno
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from supervisor.events import Exit
from supervisor.runs.executors import orphans
from supervisor.runs.executors.signals import (  # noqa: F401 (the kill and pause API, as process.* for callers)
    _SPAWNED,
    GPU_CONFIRM_SECS,
    KILL_CONFIRM_SECS,
    START_TIME_TOLERANCE,
    KillReport,
    _reap,
    kill_tree,
    kill_tree_async,
    pause,
    pause_tree,
    resume,
    resume_tree,
)


class SpawnError(OSError):
    """The command could not be started (missing program, bad cwd, unwritable log)."""


@dataclass(frozen=True)
class Spawned:
    """A process started by `spawn`: its own session, so its group id is its pid."""

    pid: int
    pgid: int
    start_time: float  # psutil create_time, to tell this process from a later one with its pid
    log_path: Path
    popen: subprocess.Popen[bytes] = field(repr=False, compare=False)


def _why_not_started(program: str, cwd: str | Path | None, exc: OSError) -> str:
    """Which of the two, the folder or the program, is missing: Popen's ENOENT says neither."""
    if cwd is not None and not Path(cwd).is_dir():
        what = "does not exist" if not Path(cwd).exists() else "is not a folder"
        return f"the working folder {cwd} {what} (the recipe's cwd); {program!r} was not started"
    if exc.errno == errno.ENOENT:
        where = "" if os.sep in program else " on PATH"
        return f"cannot start {program!r}: no such program{where} (in {cwd})"
    return f"cannot start {program!r} in {cwd}: {exc.strerror or exc}"


def spawn(argv: list[str], env: dict[str, str], cwd: Path, log_path: Path) -> Spawned:
    """Start `argv` in a new session with stdout and stderr appended to `log_path`.

    `env` is passed as given (the caller adds PYTHONUNBUFFERED=1) plus `FTMON_RUN_TOKEN`, which
    every descendant inherits so that one that leaves the tree is still known as the run's
    (orphans.py); stdin is /dev/null. ftmon becomes a child subreaper first: the run's orphans
    re-parent to ftmon, which kills them with the run and reaps them.
    """
    if not argv:
        raise SpawnError("empty command")
    log_path = Path(log_path)
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        # O_APPEND: every write lands at the end even if someone else appends too.
        fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as exc:
        raise SpawnError(f"cannot open log {log_path}: {exc.strerror or exc}") from exc
    orphans.become_subreaper()
    token = orphans.new_token()
    try:
        popen = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            env={**env, orphans.TOKEN_VAR: token},
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    except OSError as exc:
        raise SpawnError(_why_not_started(argv[0], cwd, exc)) from exc
    finally:
        os.close(fd)  # the child holds its own copy
    _SPAWNED[popen.pid] = popen
    orphans.adopt_run(token, _SPAWNED)
    # Our child stays at least a zombie until we reap it, so its create time is readable.
    start_time = psutil.Process(popen.pid).create_time()
    return Spawned(popen.pid, popen.pid, start_time, log_path, popen)


def exit_from_returncode(returncode: int | None, ts: float, killed_by_ftmon: str = "") -> Exit:
    """Popen's convention (negative = killed by that signal) as an `Exit`."""
    if returncode is not None and returncode < 0:
        return Exit(ts, None, -returncode, killed_by_ftmon)
    return Exit(ts, returncode, None, killed_by_ftmon)


async def wait_exit(spawned: Spawned, clock: Callable[[], float] = time.time) -> Exit:
    """Wait, without blocking the event loop, until a spawned process ends; reap it."""
    popen = spawned.popen
    if popen.poll() is None:
        await _wait_pid_gone(spawned.pid, is_child=True)
        await asyncio.to_thread(popen.wait)  # returns at once: the process has ended
    _SPAWNED.pop(spawned.pid, None)
    return exit_from_returncode(popen.returncode, clock())


async def wait_pid_exit(
    pid: int, start_time: float | None = None, clock: Callable[[], float] = time.time
) -> Exit:
    """Wait until a process that is not ours (`--pid`) ends. Its exit status is known only if its
    parent has not reaped it yet when we look (see `zombie_returncode`); else `returncode` is None.
    For a process spawned here this is `wait_exit`."""
    if pid in _SPAWNED:
        popen = _SPAWNED[pid]
        await _wait_pid_gone(pid, is_child=True)
        await asyncio.to_thread(popen.wait)
        _SPAWNED.pop(pid, None)
        return exit_from_returncode(popen.returncode, clock())
    if start_time is None:
        start_time = _create_time(pid)
    if start_time is None:
        return Exit(clock(), None)
    await _wait_pid_gone(pid, start_time=start_time)
    return exit_from_returncode(zombie_returncode(pid, start_time), clock())


def zombie_returncode(pid: int, start_time: float) -> int | None:
    """The exit status of a process that is not ours, while it is a zombie (not yet reaped by its
    parent): Linux keeps it in /proc/PID/stat (field 52). None once reaped, or elsewhere."""
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - start_time) > START_TIME_TOLERANCE:
            return None
        if proc.status() != psutil.STATUS_ZOMBIE:
            return None
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        # fields[0] is field 3 (state); exit_code is field 52.
        return os.waitstatus_to_exitcode(int(fields[49]))
    except (psutil.Error, OSError, IndexError, ValueError):
        return None


async def _wait_pid_gone(
    pid: int, *, is_child: bool = False, start_time: float | None = None
) -> None:
    """Return when `pid` has ended (a zombie counts as ended).

    A pidfd becomes readable the moment the process ends, so the loop wakes at once rather than
    on the next poll; where pidfd_open is missing (old kernels, other systems) poll every 50 ms.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):
        pidfd = -1
    try:
        if pidfd >= 0 and (start_time is None or is_alive(pid, start_time)):
            # is_alive ran after pidfd_open: if the pid still names the process that started at
            # start_time, the pidfd refers to it and not to a later process given the same pid.
            loop = asyncio.get_running_loop()
            ended = loop.create_future()

            def _ended() -> None:
                if not ended.done():
                    ended.set_result(None)

            loop.add_reader(pidfd, _ended)
            try:
                await ended
            finally:
                loop.remove_reader(pidfd)
            return
        while _running(pid) if is_child else is_alive(pid, start_time or 0.0):
            await asyncio.sleep(0.05)
    finally:
        if pidfd >= 0:
            os.close(pidfd)


def _running(pid: int) -> bool:
    """Alive and not a zombie, identity not checked (for our own children)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def is_alive(pid: int, start_time: float) -> bool:
    """True if `pid` runs and is the process that started at `start_time` (not a reused pid)."""
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - start_time) > START_TIME_TOLERANCE:
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(pid)
            return False
        return True
    except psutil.Error:
        return False


def start_time_of(pid: int) -> float | None:
    """psutil create time of `pid`, or None if there is no such process (or it is a zombie)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except psutil.Error:
        return None
