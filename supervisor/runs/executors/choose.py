"""Which executor runs a recipe, and one executor that acts on any run by its handle.

The supervisor holds one `Executor`. `ByHandle` is that one: it passes each call to the executor
that started the run (`handle.executor`: local, torchrun, slurm; anything else, e.g. the fake of
the policy tests, to the `default`), so pause, kill, wait and attach work on a mix of local
runs, torchrun ranks and Slurm jobs. Spawning needs the recipe's options (a Slurm partition,
a rank count): `executor_for(recipe, default)` gives the executor a launch uses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from supervisor.events import Exit
from supervisor.runs.executors.base import (
    Executor,
    KillResult,
    LaunchSpec,
    RunHandle,
    SampleTargets,
)
from supervisor.runs.executors.local import LocalExecutor
from supervisor.runs.executors.slurm import SlurmExecutor, SlurmOptions
from supervisor.runs.executors.slurm_cli import SlurmCli, SlurmError
from supervisor.runs.executors.torchrun import TorchrunExecutor, TorchrunOptions


def executor_for(recipe: Any, default: Executor) -> Executor:
    """The executor that starts `recipe`: Slurm when its `executor:` says so, torchrun when its
    `launcher:` does or its command is torchrun, else `default`."""
    launcher = getattr(recipe, "launcher", None)
    where = getattr(recipe, "executor", None)
    ranks = TorchrunOptions(launcher.nproc_per_node, launcher.nnodes) if launcher else None
    if where is not None and where.kind == "slurm":
        fields = where.model_dump(exclude={"kind", "extra"})
        return SlurmExecutor(SlurmOptions(**fields, extra=tuple(where.extra)), launcher=ranks)
    if ranks is not None:
        return TorchrunExecutor(ranks)
    command = list(getattr(recipe, "command", []) or [])
    if command and command[0].rsplit("/", 1)[-1] == "torchrun":
        return TorchrunExecutor(None)
    return default


class ByHandle:
    """An `Executor` that acts through the executor named in each handle; see the docstring."""

    name = "by-handle"

    def __init__(self, default: Executor | None = None) -> None:
        self.default: Executor = default if default is not None else LocalExecutor()
        self.slurm = SlurmExecutor()  # its `on_state` is the supervisor's to set
        self._kinds: dict[str, Executor] = {
            "local": LocalExecutor(),
            "torchrun": TorchrunExecutor(),
            "slurm": self.slurm,
        }
        self._kinds[self.default.name] = self.default

    def of(self, kind: str) -> Executor:
        return self._kinds.get(kind, self.default)

    def spawn(self, spec: LaunchSpec) -> RunHandle:
        return self.default.spawn(spec)

    def pause(self, handle: RunHandle) -> bool:
        return self.of(handle.executor).pause(handle)

    def resume(self, handle: RunHandle) -> bool:
        return self.of(handle.executor).resume(handle)

    def stopped(self, handle: RunHandle) -> bool:
        return self.of(handle.executor).stopped(handle)

    async def kill(self, handle: RunHandle, grace: float) -> KillResult:
        return await self.of(handle.executor).kill(handle, grace)

    def alive(self, handle: RunHandle) -> bool:
        return self.of(handle.executor).alive(handle)

    async def wait(self, handle: RunHandle) -> Exit:
        return await self.of(handle.executor).wait(handle)

    def sample_pids(self, handle: RunHandle) -> SampleTargets:
        return self.of(handle.executor).sample_pids(handle)

    def describe(self, handle: RunHandle) -> dict[str, Any]:
        return self.of(handle.executor).describe(handle)

    def handle_from(self, described: Mapping[str, Any]) -> RunHandle:
        return self.of(str(described.get("executor", ""))).handle_from(described)

    def status(self, handle: RunHandle) -> str:
        """A Slurm job's state for a status line (`Slurm job 12 PENDING (Resources)`), ""
        for a local run."""
        executor = self.of(handle.executor)
        return executor.status(handle) if isinstance(executor, SlurmExecutor) else ""


def where_it_runs(described: Mapping[str, Any] | None, ask_slurm: bool = True) -> str:
    """For `ftmon history`/`show`: "Slurm job 12 COMPLETED, nodes vm", "torchrun, 2 ranks
    per node"; "" for a local run. `ask_slurm`: read the job's state and nodes now."""
    if not described:
        return ""
    kind = described.get("executor")
    if kind == "slurm":
        job = str(described.get("job_id") or "?")
        info = None
        if ask_slurm:
            try:
                info = SlurmCli(timeout=5).job(job)
            except SlurmError:
                info = None
        if info is None:
            return f"Slurm job {job}"
        nodes = f", nodes {info.nodes}" if info.nodes else ""
        reason = f" ({info.reason})" if info.reason and info.reason != "None" else ""
        return f"Slurm job {job} {info.state}{reason}{nodes}"
    if kind == "torchrun":
        extra = described.get("extra") or {}
        ranks = extra.get("ranks") if isinstance(extra, Mapping) else None
        return f"torchrun, {ranks} ranks per node" if ranks else "torchrun"
    return ""
