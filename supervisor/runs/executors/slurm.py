"""The Slurm executor: a run is a batch job on the user's cluster, not a process of ftmon's.

`spawn` writes `job.sbatch` into the run folder (the run's exact argv, quoted; `srun` in front
for several nodes, and torchrun's rendezvous from `SLURM_*`), submits it with `sbatch
--parsable`, and returns a handle whose `job_id` is what history keeps: an ftmon started again
finds the job by that id (a job keeps running when ftmon or the SSH session dies). The job's
output goes to the run's log in the run folder (a shared filesystem, as on every cluster), which
ftmon tails like any other.

The environment (secrets included) reaches the job through sbatch's own environment
(`--export=ALL`, Slurm's default), never through the script, which stays free of secrets.

Pause / resume are `scancel --signal=STOP|CONT --full` (what a job's owner may do; `scontrol
suspend` needs an operator); kill is TERM to every process, `grace` seconds, then `scancel`
(which KILLs after the cluster's KillWait). `wait` polls the job's state and returns an `Exit`
whose `ended_by` names an end Slurm caused (time limit, preemption, node failure, OOM kill by
cgroup): rules/job_end.py turns it into an anomaly that policies act on.

Resources: the job's processes on this node (`scontrol listpids`: a one-node cluster, an
salloc'd node) are what the vram and host_mem rules read; a job running only on other nodes is
not sampled, and `sample_pids` says so.
"""

from __future__ import annotations

import asyncio
import shlex
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from supervisor.events import Exit
from supervisor.runs.executors.base import (
    LaunchSpec,
    RunHandle,
    SampleTargets,
    SpawnError,
    describe_handle,
    handle_from_description,
)
from supervisor.runs.executors.slurm_cli import RUNNING, STOPPED, JobInfo, SlurmCli, SlurmError
from supervisor.runs.executors.torchrun import (
    RANKS_DIR,
    TorchrunOptions,
    is_torchrun,
    torchrun_argv,
)

SCRIPT_NAME = "job.sbatch"


@dataclass(frozen=True, slots=True)
class SlurmOptions:
    """A recipe's `executor: {kind: slurm, ...}` (validated by recipe/scaleout.py)."""

    partition: str | None = None
    nodes: int = 1
    ntasks_per_node: int = 1
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None  # "64G"
    time: str | None = None  # "1:00:00"
    account: str | None = None
    qos: str | None = None
    extra: tuple[str, ...] = ()  # more `#SBATCH` options, verbatim: ("--exclusive",)
    rdzv_port: int = 29500

    def sbatch_options(self) -> list[str]:
        pairs = (
            ("partition", self.partition),
            ("nodes", self.nodes),
            ("ntasks-per-node", self.ntasks_per_node),
            ("gpus-per-node", self.gpus_per_node),
            ("cpus-per-task", self.cpus_per_task),
            ("mem", self.mem),
            ("time", self.time),
            ("account", self.account),
            ("qos", self.qos),
        )
        return [f"--{key}={value}" for key, value in pairs if value is not None]


@dataclass(frozen=True, slots=True)
class SlurmKill:
    """What a kill did (a `KillResult`)."""

    job_id: str
    all_gone: bool
    state: str
    steps: tuple[str, ...] = field(default_factory=tuple)

    def detail(self) -> str:
        how = ", then ".join(self.steps) if self.steps else "nothing to do"
        left = "nothing left" if self.all_gone else "the job is still live"
        return f"Slurm job {self.job_id}: {how}; {self.state}; {left}"


# torchrun's options that the allocation decides on a multi-node job (with their values).
_RDZV_FLAGS = ("--nnodes", "--node_rank", "--node-rank", "--rdzv_backend", "--rdzv-backend",
               "--rdzv_endpoint", "--rdzv-endpoint", "--rdzv_id", "--rdzv-id", "--master_addr",
               "--master-addr", "--master_port", "--master-port")  # fmt: skip


def _without_rdzv(args: list[str]) -> list[str]:
    out, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg in _RDZV_FLAGS:
            skip = True
        elif not arg.startswith(tuple(f + "=" for f in _RDZV_FLAGS)):
            out.append(arg)
    return out


def batch_script(spec: LaunchSpec, options: SlurmOptions) -> str:
    """The batch script: options as `#SBATCH` lines, then the run's argv, quoted."""
    lines = [
        "#!/bin/bash",
        f"# ftmon run {spec.run_id}: written by ftmon's Slurm executor; `sbatch {SCRIPT_NAME}`",
        f"#SBATCH --job-name=ftmon-{spec.run_id}"[:200],
        f"#SBATCH --output={spec.log_path}",
        f"#SBATCH --error={spec.log_path}",
        "#SBATCH --open-mode=append",
        *(f"#SBATCH {opt}" for opt in options.sbatch_options()),
        *(f"#SBATCH {opt}" for opt in options.extra),
        "set -e",
    ]
    argv = list(spec.argv)
    if options.nodes > 1 and is_torchrun(argv):
        # One torchrun agent per node; they meet at the first node of the allocation.
        lines.append('head=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)')
        rdzv = (
            '--nnodes "$SLURM_NNODES" --node_rank "$SLURM_NODEID" --rdzv_backend c10d '
            f'--rdzv_id "$SLURM_JOB_ID" --rdzv_endpoint "$head:{options.rdzv_port}"'
        )
        head = 1 if Path(argv[0]).name == "torchrun" else 3  # torchrun | python -m t.d.run
        command = f"{shlex.join(argv[:head])} {rdzv} {shlex.join(_without_rdzv(argv[head:]))}"
        lines.append(f"exec srun --ntasks-per-node=1 {command}")
    elif options.nodes > 1:
        lines.append(f"exec srun {shlex.join(argv)}")
    else:
        lines.append(f"exec {shlex.join(argv)}")
    return "\n".join(lines) + "\n"


class SlurmExecutor:
    """Runs as Slurm batch jobs; see the module docstring. `poll_secs`: how often `wait` and
    `kill` ask Slurm (each ask is one `scontrol` call)."""

    name = "slurm"

    def __init__(
        self,
        options: SlurmOptions | None = None,
        cli: SlurmCli | None = None,
        poll_secs: float = 0.5,
        launcher: TorchrunOptions | None = None,
    ) -> None:
        self.options = options or SlurmOptions()
        self.launcher = launcher  # the job's command runs under torchrun
        # Told each new state of a job `wait` follows (PENDING (Priority) -> RUNNING on node7):
        # the supervisor reports it, so a job waiting in the queue says why.
        self.on_state: Callable[[RunHandle, JobInfo], None] | None = None
        self.cli = cli or SlurmCli()
        self.poll_secs = poll_secs
        self._last: dict[str, JobInfo] = {}
        self._hosts: dict[str, tuple[str, ...]] = {}  # node list -> its host names

    def spawn(self, spec: LaunchSpec) -> RunHandle:
        script = spec.run_dir / SCRIPT_NAME
        if self.launcher is not None:
            argv = torchrun_argv(spec.argv, self.launcher, spec.run_dir / RANKS_DIR)
            spec = replace(spec, argv=tuple(argv))
        try:
            spec.run_dir.mkdir(parents=True, exist_ok=True)
            script.write_text(batch_script(spec, self.options))
            spec.log_path.touch()  # the log exists at once, though the job may wait in the queue
            job_id = self.cli.sbatch(script, spec.env, spec.cwd)
        except (OSError, SlurmError) as exc:
            raise SpawnError(f"sbatch {script}: {exc}") from exc
        return RunHandle(
            "slurm", 0, time.time(), (spec.log_path,), job_id=job_id,
            extra={"script": str(script)},
        )  # fmt: skip

    def info(self, handle: RunHandle) -> JobInfo | None:
        """The job's state now (None when Slurm no longer knows it)."""
        try:
            info = self.cli.job(handle.job_id)
        except SlurmError:
            return self._last.get(handle.job_id)  # controller busy: the last answer stands
        if info is not None:
            self._last[handle.job_id] = info
        return info

    def status(self, handle: RunHandle) -> str:
        """One phrase for a status line: `Slurm job 12 PENDING (Resources)`."""
        info = self.info(handle)
        return f"Slurm job {handle.job_id} {info.summary() if info else 'unknown to Slurm'}"

    def pause(self, handle: RunHandle) -> bool:
        info = self.info(handle)
        if info is None or not info.live or info.pending:
            return False
        return self.cli.signal(handle.job_id, "STOP")

    def resume(self, handle: RunHandle) -> bool:
        info = self.info(handle)
        if info is None or not info.live:
            return False
        return self.cli.signal(handle.job_id, "CONT")

    def stopped(self, handle: RunHandle) -> bool:
        """STOPPED or SUSPENDED, and also PENDING: a job in the queue writes nothing yet, so
        the stall clock must not run."""
        info = self.info(handle)
        return info is not None and (info.stopped or info.pending)

    async def kill(self, handle: RunHandle, grace: float) -> SlurmKill:
        job = handle.job_id
        info = await asyncio.to_thread(self.info, handle)
        if info is None or not info.live:
            state = info.state if info else "unknown to Slurm"
            return SlurmKill(job, True, state)
        steps: list[str] = []
        if info.pending:
            await asyncio.to_thread(self.cli.cancel, job)
            steps.append("scancel (pending)")
        else:
            await asyncio.to_thread(self.cli.signal, job, "TERM")
            await asyncio.to_thread(self.cli.signal, job, "CONT")  # a stopped job must see TERM
            steps.append("TERM")
            info = await self._until_ended(handle, grace)
            if info is None or info.live:
                await asyncio.to_thread(self.cli.cancel, job)
                steps.append(f"scancel after {grace:g} s")
        info = await self._until_ended(handle, max(30.0, grace))
        state = info.state if info else "unknown to Slurm"
        return SlurmKill(job, info is None or not info.live, state, tuple(steps))

    async def _until_ended(self, handle: RunHandle, secs: float) -> JobInfo | None:
        deadline = time.monotonic() + secs
        while True:
            info = await asyncio.to_thread(self.info, handle)
            if info is None or not info.live or time.monotonic() >= deadline:
                return info
            await asyncio.sleep(self.poll_secs)

    def alive(self, handle: RunHandle) -> bool:
        info = self.info(handle)
        return info is not None and info.live

    async def wait(self, handle: RunHandle) -> Exit:
        said: tuple[str, str, str] | None = None
        while True:
            info = await asyncio.to_thread(self.info, handle)
            if info is None:
                return Exit(time.time(), None)
            if self.on_state is not None and (info.state, info.reason, info.nodes) != said:
                said = (info.state, info.reason, info.nodes)
                self.on_state(handle, info)
            if not info.live:
                return Exit(time.time(), info.exit_code, info.signal, ended_by=info.ended_by)
            await asyncio.sleep(self.poll_secs)

    def sample_pids(self, handle: RunHandle) -> SampleTargets:
        """The job's processes on this node (`scontrol listpids`); none while it waits in the
        queue, and none, with a note saying why, while it runs only on other nodes."""
        info = self._last.get(handle.job_id) or self.info(handle)  # `wait` keeps it fresh
        if info is None or info.state not in RUNNING | STOPPED:
            return SampleTargets()
        pids = self.cli.listpids(handle.job_id)
        hosts = self._hosts_of(info.nodes)
        here = _this_host()
        if not pids and hosts and here not in hosts:
            where = ", ".join(hosts[:4]) + (", ..." if len(hosts) > 4 else "")
            return SampleTargets(note=(
                f"resources of Slurm job {handle.job_id} are not sampled: it runs on {where}, "
                f"not on this machine ({here}); vram and host_mem see nothing of it"
            ))  # fmt: skip
        if pids and len(hosts) > 1:
            note = (
                f"resources of Slurm job {handle.job_id}: only its processes on this node "
                f"({here}) are sampled, not those on its {len(hosts) - 1} other node(s)"
            )
            return SampleTargets(pids, note)
        return SampleTargets(pids)

    def _hosts_of(self, nodes: str) -> tuple[str, ...]:
        if not nodes:
            return ()
        if nodes not in self._hosts:
            try:
                self._hosts[nodes] = tuple(h.split(".")[0] for h in self.cli.hostnames(nodes))
            except SlurmError:
                return ()  # unknown: not worth a note
        return self._hosts[nodes]

    def describe(self, handle: RunHandle) -> dict[str, Any]:
        return describe_handle(handle)

    def handle_from(self, described: Mapping[str, Any]) -> RunHandle:
        return handle_from_description(described)


def _this_host() -> str:
    """This machine as Slurm names nodes (the short host name)."""
    return socket.gethostname().split(".")[0]
