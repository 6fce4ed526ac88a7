"""Signals to a run: pause and resume (SIGSTOP/SIGCONT to a group, or to a foreign tree), and the
kill: SIGTERM, a grace period, SIGKILL, a sweep of the descendants that left the group, and the
confirmation that none is alive and, where NVML is present, none still holds GPU memory.

What a kill signals is collected before the first signal and again after the grace period: the
run, its descendants, its group and session (a foreign run's only where it leads them), and the
strays that left its tree (orphans.py: a double-forked daemon). A survivor is named in the
report with its pid and command; "all gone" is said only when none is left.

Split from supervisor/process.py (which spawns and waits, and re-exports all of this): both reap
ftmon's own children through the registry below, whoever sees one end first.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import psutil

from supervisor.monitoring.resources import GpuSource, default_nvml, descendant_pids
from supervisor.redaction import redact_command
from supervisor.runs.executors import orphans

# Two create times closer than this are the same process (psutil rounds to clock ticks).
START_TIME_TOLERANCE = 0.01
# How long SIGKILLed processes get to disappear before a kill is reported as incomplete.
KILL_CONFIRM_SECS = 5.0
# How long the GPU driver gets to release a killed tree's memory before it is reported as held.
GPU_CONFIRM_SECS = 3.0

# Popen objects of the runs spawned here (process.spawn fills it), by pid, so that whoever
# notices first that one ended (wait_exit, kill_tree, is_alive) reaps it through its Popen and
# the exit status is kept.
_SPAWNED: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class KillReport:
    """What `kill_tree` did and whether it worked."""

    pid: int
    pgid: int | None  # the group signalled: the run's, or a foreign pid's that it leads
    tree: tuple[int, ...]  # every process found in the tree before the first signal
    termed: tuple[int, ...]  # pids that got SIGTERM (the group's members, or the tree)
    killed: tuple[int, ...]  # pids still alive after the grace period, sent SIGKILL
    survivors: tuple[int, ...]  # pids still alive at the end (should be empty)
    gpu_holders: tuple[int, ...] = ()  # pids NVML still lists as holding GPU memory
    seconds: float = 0.0
    survivor_commands: tuple[str, ...] = ()  # the command of each survivor, secrets redacted

    @property
    def all_gone(self) -> bool:
        return not self.survivors and not self.gpu_holders

    def detail(self) -> str:
        """One line for a log or an Action: what was signalled and what is left."""
        parts = [f"SIGTERM to {'group ' + str(self.pgid) if self.pgid else 'tree'}"]
        parts.append(f"{len(self.tree)} process(es)")
        if self.killed:
            parts.append(f"SIGKILL to {len(self.killed)} after grace")
        if self.survivors:
            named = [
                f"{pid} ({cmd})" if cmd else str(pid)
                for pid, cmd in zip(self.survivors, self._commands(), strict=True)
            ]
            parts.append(f"{len(named)} still alive: {', '.join(named)}")
        if self.gpu_holders:
            parts.append(f"still holding GPU memory: {', '.join(map(str, self.gpu_holders))}")
        if self.all_gone:
            parts.append("all gone")
        return f"{'; '.join(parts)} ({self.seconds:.2f}s)"

    def _commands(self) -> tuple[str, ...]:
        cmds = self.survivor_commands
        return cmds if len(cmds) == len(self.survivors) else ("",) * len(self.survivors)


def _reap(pid: int) -> None:
    """Collect the exit status of one of our own children, if it is one (through its Popen), or
    reap a run's orphan that was re-parented to ftmon (the subreaper)."""
    popen = _SPAWNED.get(pid)
    if popen is None:
        orphans.reap_adopted(_SPAWNED, only=(pid,))
    elif popen.poll() is not None:
        _SPAWNED.pop(pid, None)


def pause(pgid: int) -> bool:
    """SIGSTOP the whole group. False if the group no longer exists."""
    return _signal_group(pgid, signal.SIGSTOP)


def resume(pgid: int) -> bool:
    """SIGCONT the whole group. False if the group no longer exists."""
    return _signal_group(pgid, signal.SIGCONT)


def pause_tree(pid: int) -> list[int]:
    """SIGSTOP a process we did not start (`--pid`) and its descendants: the pids stopped
    (empty, so false, if it is gone)."""
    return _signal_tree(pid, signal.SIGSTOP)


def resume_tree(pid: int) -> list[int]:
    """SIGCONT a process we did not start and its descendants: the pids continued."""
    return _signal_tree(pid, signal.SIGCONT)


def _signal_tree(pid: int, sig: int) -> list[int]:
    # Its group may be ours (started from our shell without job control): signal the processes,
    # never the group, so that ftmon does not stop itself.
    sent = _send(_collect_tree(pid, None)[0], sig)
    return sent if pid in sent else []


def _signal_group(pgid: int, sig: int) -> bool:
    if pgid <= 1:  # never signal group 0 (ours) or 1 (init's): a caller's bug, not a run
        raise ValueError(f"refusing to signal process group {pgid}")
    try:
        os.killpg(pgid, sig)
        return True
    except (ProcessLookupError, PermissionError):
        return False


def kill_tree(
    pid: int, pgid: int | None, grace: float = 10.0, nvml: GpuSource | None = None
) -> KillReport:
    """Stop a run for good: SIGTERM, `grace` seconds, SIGKILL, sweep, confirm.

    With `pgid` (a run spawned here) the signals go to the group; with `pgid=None` (a foreign
    `--pid`) they go to every process of the pid's tree, and to its group and session where the
    pid's tree leads them. Either way every descendant found before the first signal, and every
    stray found before and after the grace period (orphans.py), is swept afterwards.
    `nvml` is the NVML seam of resources.py; by default the real one when NVML is present.
    """
    return _finish_kill(_begin_kill(pid, pgid), grace, nvml)


async def kill_tree_async(
    pid: int, pgid: int | None, grace: float = 10.0, nvml: GpuSource | None = None
) -> KillReport:
    """`kill_tree` for the event loop: the SIGTERM goes at once, the grace period is waited for
    in a worker thread so the loop runs on."""
    killing = _begin_kill(pid, pgid)
    return await asyncio.to_thread(_finish_kill, killing, grace, nvml)


@dataclass
class _Killing:
    """A kill under way: what was found and signalled before the grace period."""

    pid: int
    pgid: int | None
    procs: list[psutil.Process]
    termed: list[int]
    started: float
    ident: orphans.RunIdentity = field(default_factory=orphans.RunIdentity)


def _begin_kill(pid: int, pgid: int | None) -> _Killing:
    """Collect the tree, then SIGTERM (and SIGCONT, so a paused run can act on it). A few
    milliseconds: the async variant runs this on the event loop so the signal goes at once."""
    started = time.monotonic()
    if pgid is not None and pgid <= 1:
        raise ValueError(f"refusing to signal process group {pgid}")
    procs, ident = _collect_tree(pid, pgid)
    if pgid is not None:
        termed = [p.pid for p in procs if _in_group(p, pgid)]
        _signal_group(pgid, signal.SIGTERM)
        # A paused (SIGSTOPped) group would hold the TERM pending until the grace runs out.
        _signal_group(pgid, signal.SIGCONT)
        others = [p for p in procs if p.pid not in termed]
        termed += _send(others, signal.SIGTERM)
        _send(others, signal.SIGCONT)
    else:
        termed = _send(procs, signal.SIGTERM)
        _send(procs, signal.SIGCONT)
        if ident.group is not None:  # the run leads its group: forks since the walk get it too
            _signal_group(ident.group, signal.SIGTERM)
            _signal_group(ident.group, signal.SIGCONT)
    return _Killing(pid, pgid, procs, termed, started, ident)


def _finish_kill(k: _Killing, grace: float, nvml: GpuSource | None) -> KillReport:
    """Wait up to `grace`, SIGKILL the group and every survivor of the tree, confirm."""
    group = k.pgid if k.pgid is not None else k.ident.group
    alive = _wait_gone(k.procs, grace)
    alive = [p for p in _add_new_descendants(alive) if _alive(p)]
    # Strays started during the grace period (by a SIGTERM handler, a late double fork).
    late = _processes(orphans.strays(k.ident, {p.pid for p in k.procs}))
    k.procs += late
    alive += [p for p in late if _alive(p)]
    killed: list[int] = []
    if alive:
        if group is not None:
            _signal_group(group, signal.SIGKILL)
        killed = _send(alive, signal.SIGKILL)
        alive = _wait_gone(alive, KILL_CONFIRM_SECS)
    for proc in k.procs:  # reap every child of ours in the tree, so none is left a zombie
        _alive(proc)
    tree = tuple(p.pid for p in k.procs)
    gpu_holders = _gpu_holders(tree, nvml if nvml is not None else default_nvml())
    return KillReport(
        pid=k.pid,
        pgid=group,
        tree=tree,
        termed=tuple(k.termed),
        killed=tuple(killed),
        survivors=tuple(p.pid for p in alive),
        gpu_holders=gpu_holders,
        seconds=time.monotonic() - k.started,
        survivor_commands=tuple(_command(p) for p in alive),
    )


def _command(proc: psutil.Process) -> str:
    """A survivor's command for the report: secrets redacted, at most 80 characters."""
    try:
        text = " ".join(redact_command(proc.cmdline())) or proc.name()
    except psutil.Error:
        return ""
    return text if len(text) <= 80 else text[:77] + "..."


def _gpu_holders(tree: tuple[int, ...], nvml: GpuSource | None) -> tuple[int, ...]:
    """Pids of the (dead) tree that NVML still lists as holding GPU memory. The driver frees a
    dead process's memory a moment after it dies, so ask again for a few seconds first."""
    if nvml is None:
        return ()
    deadline = time.monotonic() + GPU_CONFIRM_SECS
    while True:
        try:
            holders = nvml.gpu_pids()
        except Exception:  # NVML failing now must not turn a finished kill into a crash
            return ()
        held = tuple(p for p in tree if p in holders)
        if not held or time.monotonic() >= deadline:
            return held
        time.sleep(0.1)


def _collect_tree(pid: int, pgid: int | None) -> tuple[list[psutil.Process], orphans.RunIdentity]:
    """The process, all its descendants, its group and session members and its strays
    (orphans.py), collected before any signal: once a parent dies its children are re-parented
    and can no longer be found by walking down from it. Also what identifies the run's strays
    for the second look after the grace period."""
    tree = [pid, *descendant_pids(pid)]
    ident = orphans.identify(pid, tree, pgid)
    roots = tree + orphans.strays(ident, set(tree))
    seen: set[int] = set()
    for root in roots:
        for one in [root, *descendant_pids(root)]:
            seen.add(one)
    protected = orphans.protected_pids()
    return _processes(p for p in [pid, *roots, *seen] if p not in protected), ident


def _processes(pids: Iterable[int]) -> list[psutil.Process]:
    out: dict[int, psutil.Process] = {}
    for pid in pids:
        if pid not in out:
            with contextlib.suppress(psutil.Error):
                out[pid] = psutil.Process(pid)
    return list(out.values())


def _in_group(proc: psutil.Process, pgid: int) -> bool:
    try:
        return os.getpgid(proc.pid) == pgid
    except OSError:
        return False


def _alive(proc: psutil.Process) -> bool:
    """Running and not a zombie; reaps our own zombies on the way."""
    try:
        if not proc.is_running():  # also false when the pid was reused (create time differs)
            return False
        if proc.status() == psutil.STATUS_ZOMBIE:
            _reap(proc.pid)
            return False
        return True
    except psutil.Error:
        return False


def _send(procs: Iterable[psutil.Process], sig: int) -> list[int]:
    sent = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)  # psutil checks the pid still names the same process
            sent.append(proc.pid)
    return sent


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until all of `procs` are gone or `timeout` passes; return those still alive."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    alive = [p for p in procs if _alive(p)]
    while alive and time.monotonic() < deadline:
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
        delay = min(delay * 2, 0.1)
        alive = [p for p in alive if _alive(p)]
    return alive


def _add_new_descendants(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Children started since the first walk (e.g. by a SIGTERM handler) join the list."""
    known = {p.pid for p in procs}
    out = list(procs)
    for proc in procs:
        if _alive(proc):
            for pid in descendant_pids(proc.pid):
                if pid not in known:
                    known.add(pid)
                    with contextlib.suppress(psutil.Error):
                        out.append(psutil.Process(pid))
    return out
