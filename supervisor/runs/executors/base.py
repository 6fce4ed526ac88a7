"""Where a run executes, as one seam: the `Executor` protocol.

The supervisor decides (launch, pause, resume, kill, relaunch); an executor carries it out
where the run lives: local process groups (`local.py`), torchrun ranks, a Slurm job. It holds
no policy and no history: it starts a run from a `LaunchSpec`, returns a `RunHandle` that says
how to find the run again (pids, job id, log files), and acts on that handle. A handle is plain
data that round-trips through `describe()` / `handle_from()` so that an ftmon started again
(`ftmon attach`) rebuilds it from the history alone.

A fake executor (`fake.py`) lets the supervisor's policy tests run without processes; each
real executor keeps its own real-process tests.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from supervisor.events import Exit


class SpawnError(OSError):
    """The run could not be started (missing program, bad cwd, unwritable log, a refused job
    submission). The message is for a person and names what is missing."""


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """What to start: the exact argv (never a shell string), the environment passed as given
    (the caller adds PYTHONUNBUFFERED=1), the working folder, the run's folder and the main log
    file (stdout + stderr of the run; an executor with ranks puts the others beside it)."""

    run_id: str
    argv: tuple[str, ...]
    env: Mapping[str, str]
    cwd: Path
    run_dir: Path
    log_path: Path


@dataclass(frozen=True, slots=True)
class RunHandle:
    """A started run, as the executor that started it finds it again.

    `pid` / `start_time` name the process whose end is the run's end (local: the group leader;
    torchrun: the launcher; Slurm: 0, the job is `job_id`). `logs` are the run's log files, the
    main one first (one per rank for torchrun). `extra` is executor-specific and JSON-able.
    """

    executor: str  # "local", "torchrun", "slurm", "fake": which executor can act on it
    pid: int
    start_time: float
    logs: tuple[Path, ...]
    job_id: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        """The main log (what the supervisor tails and stores the offset of)."""
        return self.logs[0]


@dataclass(frozen=True, slots=True)
class SampleTargets:
    """Which processes' memory and CPU stand for a run now: the trees of `pids` (none while a
    job waits in the queue). `note` says why nothing of the run can be sampled (a Slurm job on
    another node); the watcher says it once, at INFO."""

    pids: tuple[int, ...] = ()
    note: str = ""


@runtime_checkable
class KillResult(Protocol):
    """What a kill did (signals.KillReport is one): whether nothing of the run is left, and one
    line that names what was signalled and every survivor."""

    @property
    def all_gone(self) -> bool: ...

    def detail(self) -> str: ...


@runtime_checkable
class Executor(Protocol):
    """Starts runs and acts on them. Methods that wait are async; the others return at once.

    Contract (what the supervisor relies on):
    - `spawn` returns once the run is started (its main log exists), or raises SpawnError;
    - `pause` / `resume` return False when the run is gone (nothing to pause), never raise;
    - `stopped` is True while the run is stopped by anyone (ftmon, `kill -STOP` from a shell,
      a Slurm suspend): the stall clock does not run then;
    - `kill` terminates, waits up to `grace` seconds, then forces, and reports what is left;
      it is safe on a paused run and on a run that has already ended;
    - `wait` returns the run's `Exit` when it ends (returncode None where nobody can know it);
    - `alive` is False once the run ended or the pid names another process;
    - `sample_pids` names the processes whose trees the resource rules read (asked every few
      seconds: a job's processes come and go), never raises.
    """

    name: str

    def spawn(self, spec: LaunchSpec) -> RunHandle: ...

    def pause(self, handle: RunHandle) -> bool: ...

    def resume(self, handle: RunHandle) -> bool: ...

    def stopped(self, handle: RunHandle) -> bool: ...

    async def kill(self, handle: RunHandle, grace: float) -> KillResult: ...

    def alive(self, handle: RunHandle) -> bool: ...

    async def wait(self, handle: RunHandle) -> Exit: ...

    def sample_pids(self, handle: RunHandle) -> SampleTargets: ...

    def describe(self, handle: RunHandle) -> dict[str, Any]:
        """The handle as JSON-able data for history (`handle_from` reads it back)."""
        ...

    def handle_from(self, described: Mapping[str, Any]) -> RunHandle:
        """A handle rebuilt from `describe()`'s output (an ftmon started again)."""
        ...


def describe_handle(handle: RunHandle) -> dict[str, Any]:
    """The common JSON form of a handle (executors may add to `extra`)."""
    return {
        "executor": handle.executor,
        "pid": handle.pid,
        "start_time": handle.start_time,
        "logs": [str(p) for p in handle.logs],
        "job_id": handle.job_id,
        "extra": dict(handle.extra),
    }


def handle_from_description(described: Mapping[str, Any]) -> RunHandle:
    """`describe_handle` read back."""
    return RunHandle(
        executor=str(described.get("executor", "local")),
        pid=int(described.get("pid") or 0),
        start_time=float(described.get("start_time") or 0.0),
        logs=tuple(Path(p) for p in described.get("logs") or ()),
        job_id=str(described.get("job_id") or ""),
        extra=dict(described.get("extra") or {}),
    )
