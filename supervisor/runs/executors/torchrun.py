"""The torchrun executor: a run of N ranks on this machine, started by torchrun's agent.

A recipe says `launcher: {kind: torchrun, nproc_per_node: N, nnodes: 1}` (its command stays
`python -m trainer ...`), or its command already is `torchrun ...`. Either way the agent is
started with `--log-dir <run>/ranks --tee 3`: each rank's output goes to its own file there,
and to the run's log with torchrun's `[defaultN]:` prefix, which the parser keeps as the
metric's rank (rules/hang.py follows each rank). The agent is the group leader; torchrun
starts each worker in a session of its own, so pause and resume signal the whole tree, and kill
(signals.kill_tree) collects every descendant before the first signal: the agent and all
workers end, 0 survivors.

A paused distributed job has a deadline: the other side of every collective (another node, or
the NCCL watchdog) gives up after the process group's timeout. `pause_warning` says when a
pause would outlast it, read from the run's environment (`TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC`,
default 480 s; `TORCH_NCCL_ASYNC_ERROR_HANDLING=0` turns the watchdog's kill off).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import psutil

from supervisor.runs.executors import process
from supervisor.runs.executors.base import KillResult, LaunchSpec, RunHandle
from supervisor.runs.executors.local import LocalExecutor, pid_stopped

RANKS_DIR = "ranks"
HEARTBEAT_ENV = "TORCH_NCCL_HEARTBEAT_TIMEOUT_SEC"
DEFAULT_PG_TIMEOUT_SECS = 480.0
_PYTHON = re.compile(r"^python(\d(\.\d+)?)?$")


@dataclass(frozen=True, slots=True)
class TorchrunOptions:
    """A recipe's `launcher: {kind: torchrun, ...}` (validated by recipe/scaleout.py)."""

    nproc_per_node: int = 1
    nnodes: int = 1


def is_torchrun(argv: Sequence[str]) -> bool:
    """`torchrun ...` or `python -m torch.distributed.run ...`."""
    if not argv:
        return False
    if Path(argv[0]).name == "torchrun":
        return True
    return len(argv) > 2 and argv[1] == "-m" and argv[2] == "torch.distributed.run"


def torchrun_argv(argv: Sequence[str], options: TorchrunOptions | None, log_dir: Path) -> list[str]:
    """The agent's argv: the run's command under torchrun, with per-rank logs in `log_dir`.

    `python -m mod ...` and `python script.py ...` run under the same interpreter's
    `torch.distributed.run` (so a virtual environment's torch is the one used); any other
    program under `torchrun --no-python`. A command that is already torchrun keeps its options
    (`options` is then None) and gains the log options when it has none.
    """
    argv = list(argv)
    logs = ["--log-dir", str(log_dir), "--tee", "3"]
    if is_torchrun(argv):
        head = 1 if Path(argv[0]).name == "torchrun" else 3
        if any(a.startswith(("--log-dir", "--log_dir")) for a in argv):
            return argv
        return [*argv[:head], *logs, *argv[head:]]
    opts = options or TorchrunOptions()
    agent = [
        "--nproc_per_node", str(opts.nproc_per_node), "--nnodes", str(opts.nnodes), *logs,
    ]  # fmt: skip
    if len(argv) >= 2 and _PYTHON.match(Path(argv[0]).name):
        return [argv[0], "-m", "torch.distributed.run", *agent, *argv[1:]]
    return [sys.executable, "-m", "torch.distributed.run", *agent, "--no-python", *argv]


def pg_timeout_secs(env: Mapping[str, str]) -> float | None:
    """How long the process group tolerates a silent rank; None when nothing enforces it."""
    if env.get("TORCH_NCCL_ASYNC_ERROR_HANDLING", "").strip() == "0":
        return None
    try:
        return float(env.get(HEARTBEAT_ENV, DEFAULT_PG_TIMEOUT_SECS))
    except ValueError:
        return DEFAULT_PG_TIMEOUT_SECS


def pause_warning(handle: RunHandle) -> str:
    """For the status line of a paused distributed run ("" when nothing limits the pause)."""
    limit = handle.extra.get("pg_timeout_secs")
    if limit is None:
        return ""
    ranks = handle.extra.get("ranks", "")
    return (
        f"paused {ranks} ranks: resume within {float(limit):.0f} s ({HEARTBEAT_ENV}), or the "
        "process group times out and the job fails"
    )


class TorchrunExecutor(LocalExecutor):
    """Ranks under torchrun on this machine; see the module docstring."""

    name = "torchrun"

    def __init__(self, options: TorchrunOptions | None = None) -> None:
        self.options = options

    def spawn(self, spec: LaunchSpec) -> RunHandle:
        log_dir = spec.run_dir / RANKS_DIR
        argv = torchrun_argv(spec.argv, self.options, log_dir)
        handle = super().spawn(replace(spec, argv=tuple(argv)))
        nproc = self.options.nproc_per_node if self.options else _flag(argv, "--nproc_per_node")
        extra = {
            **handle.extra,
            "argv": argv,  # what ran: the recipe's command under torchrun
            "ranks_dir": str(log_dir),
            "ranks": nproc,
            "pg_timeout_secs": pg_timeout_secs(spec.env),
        }
        return replace(handle, executor="torchrun", extra=extra)

    def pause(self, handle: RunHandle) -> bool:
        """SIGSTOP to the agent and every worker (each worker leads a session of its own)."""
        return bool(process.pause_tree(handle.pid))

    def resume(self, handle: RunHandle) -> bool:
        return bool(process.resume_tree(handle.pid))

    def stopped(self, handle: RunHandle) -> bool:
        """The agent or any worker is stopped or has a SIGSTOP pending (a person's `kill -STOP`
        of one rank counts; ftmon's own pause reads as one at once, see `pid_stopped`)."""
        try:
            pids = [handle.pid, *(p.pid for p in psutil.Process(handle.pid).children(True))]
        except psutil.Error:
            return False
        return any(pid_stopped(pid) for pid in pids)

    async def kill(self, handle: RunHandle, grace: float) -> KillResult:
        # Every descendant is collected before the first signal: the workers too.
        return await process.kill_tree_async(handle.pid, None, grace)

    def workers(self, handle: RunHandle) -> list[int]:
        """The worker pids now (the agent's children)."""
        try:
            return [p.pid for p in psutil.Process(handle.pid).children()]
        except psutil.Error:
            return []


def rank_logs(handle: RunHandle) -> dict[int, Path]:
    """Rank -> its own stdout file, for a run this executor started."""
    return rank_log_paths(Path(str(handle.extra.get("ranks_dir", ""))))


def rank_log_paths(ranks_dir: Path) -> dict[int, Path]:
    """Rank -> its own stdout file under `ranks_dir` (torchrun writes `<dir>/<id>/attempt_N/
    <rank>/stdout.log`; the newest attempt wins)."""
    found: dict[int, Path] = {}
    if not ranks_dir.is_dir():
        return found
    logs = ranks_dir.glob("*/attempt_*/*/stdout.log")
    for path in sorted(logs, key=lambda p: p.stat().st_mtime):
        if path.parent.name.isdigit():
            found[int(path.parent.name)] = path
    return found


def _flag(argv: Sequence[str], name: str) -> int | str:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return ""
