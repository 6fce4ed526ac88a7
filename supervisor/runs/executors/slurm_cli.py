"""Slurm's command-line tools as one seam: `sbatch`, `scancel`, `scontrol show job`, `sacct`,
`scontrol listpids` (a job's processes on this node) and `scontrol show hostnames`.

Every call is an argv list with a timeout (a slurmctld that does not answer must not hang
ftmon). `job()` reads `scontrol show job -o`, which knows a job until `MinJobAge` after its end;
after that `sacct` answers where accounting is on. Nothing here decides anything: the executor
(slurm.py) does.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

TIMEOUT_SECS = 15.0

# Slurm job states by what they mean to ftmon (`squeue --help` / `man squeue`, JOB STATE CODES).
WAITING = frozenset({"PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})
RUNNING = frozenset({"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "RESIZING"})
STOPPED = frozenset({"STOPPED", "SUSPENDED"})
LIVE = WAITING | RUNNING | STOPPED | {"RESV_DEL_HOLD", "SPECIAL_EXIT"}

# A job Slurm ended, as ftmon's rule names (rules/job_end.py) and in words.
ENDED_BY: dict[str, tuple[str, str]] = {
    "TIMEOUT": ("time_limit", "its time limit"),
    "PREEMPTED": ("preempted", "preemption"),
    "NODE_FAIL": ("node_fail", "a node failure"),
    "BOOT_FAIL": ("node_fail", "a node that failed to boot"),
    "OUT_OF_MEMORY": ("job_oom", "the out-of-memory killer (its cgroup's memory limit)"),
    "DEADLINE": ("time_limit", "its deadline"),
}

_FIELD = re.compile(r"(\w+)=(\S*)")


class SlurmError(RuntimeError):
    """A Slurm tool failed or is missing; the message says which and what it printed."""


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One job as `scontrol show job` (or `sacct`) describes it."""

    job_id: str
    state: str  # "PENDING", "RUNNING", "STOPPED", "TIMEOUT", ... (any "+" suffix removed)
    reason: str = ""  # "Priority", "Resources", "TimeLimit", "None"
    nodes: str = ""  # "vm", "node[01-04]"
    exit_code: int | None = None
    signal: int | None = None
    time_limit: str = ""
    run_time: str = ""

    @property
    def live(self) -> bool:
        return self.state in LIVE

    @property
    def pending(self) -> bool:
        return self.state in WAITING

    @property
    def stopped(self) -> bool:
        return self.state in STOPPED

    @property
    def ended_by(self) -> str:
        """The rule name of an end Slurm caused (`time_limit`, `preempted`, ...), else ""."""
        return ENDED_BY.get(self.state, ("", ""))[0]

    def summary(self) -> str:
        """For a status line: `PENDING (Resources)`, `RUNNING on vm`, `TIMEOUT (TimeLimit)`."""
        if self.state in RUNNING | STOPPED and self.nodes:
            return f"{self.state} on {self.nodes}"
        if self.reason and self.reason != "None":
            return f"{self.state} ({self.reason})"
        return self.state


def parse_show_job(text: str) -> JobInfo | None:
    """`scontrol show job -o ID` output -> JobInfo (None for an empty answer)."""
    fields = dict(_FIELD.findall(text))
    if "JobId" not in fields:
        return None
    code, sig = _exit_code(fields.get("ExitCode", ""))
    nodes = fields.get("NodeList", "")
    return JobInfo(
        job_id=fields["JobId"],
        state=fields.get("JobState", "UNKNOWN").split("+")[0],
        reason=fields.get("Reason", ""),
        nodes="" if nodes in ("(null)", "None") else nodes,
        exit_code=code,
        signal=sig,
        time_limit=fields.get("TimeLimit", ""),
        run_time=fields.get("RunTime", ""),
    )


def parse_sacct(text: str, job_id: str) -> JobInfo | None:
    """`sacct -n -P -X -o JobID,State,ExitCode,NodeList,Timelimit,Elapsed,Reason -j ID`."""
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) >= 6 and parts[0] == job_id:
            code, sig = _exit_code(parts[2])
            return JobInfo(
                job_id=job_id,
                state=parts[1].split()[0].split("+")[0],  # "CANCELLED by 0" -> "CANCELLED"
                reason=parts[6] if len(parts) > 6 else "",
                nodes=parts[3],
                exit_code=code,
                signal=sig,
                time_limit=parts[4],
                run_time=parts[5],
            )
    return None


def parse_listpids(text: str, job_id: str) -> tuple[int, ...]:
    """`scontrol listpids ID` -> the job's pids on this node, in the order listed.

    The output is a header (`PID JOBID STEPID LOCALID GLOBALID`) then one row per process of
    every step (batch, extern, 0, ...); rows of other jobs are left out."""
    pids: list[int] = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit() and parts[1] == job_id:
            pids.append(int(parts[0]))
    return tuple(dict.fromkeys(pids))


def _exit_code(text: str) -> tuple[int | None, int | None]:
    """Slurm's `code:signal` -> (code, signal or None)."""
    code, _, sig = text.partition(":")
    try:
        number = int(code)
    except ValueError:
        return None, None
    try:
        signal = int(sig) or None
    except ValueError:
        signal = None
    return number, signal


def available() -> str:
    """ "" when `sbatch` and a responding controller are here, else why not (for test skips)."""
    for tool in ("sbatch", "scancel", "scontrol", "sinfo"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run .ci/slurm-up)"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=TIMEOUT_SECS
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo failed: {exc}"
    states = out.stdout.split()
    if out.returncode != 0 or not any(s in ("idle", "mix", "alloc") for s in states):
        return f"no Slurm node is up (sinfo: {(out.stdout + out.stderr).strip()[:200]!r})"
    return ""


class SlurmCli:
    """Runs Slurm's tools; `timeout` bounds each call."""

    def __init__(self, timeout: float = TIMEOUT_SECS) -> None:
        self.timeout = timeout

    def _run(
        self, argv: Sequence[str], env: Mapping[str, str] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        try:
            out = subprocess.run(
                list(argv),
                capture_output=True,
                text=True,
                timeout=self.timeout,
                env=dict(env) if env is not None else None,
            )
        except FileNotFoundError as exc:
            raise SlurmError(f"{argv[0]} is not installed: {exc}") from exc
        except subprocess.TimeoutExpired as exc:
            raise SlurmError(f"{argv[0]} did not answer in {self.timeout:g} s") from exc
        if check and out.returncode != 0:
            said = (out.stderr or out.stdout).strip().splitlines()
            raise SlurmError(f"{' '.join(argv[:2])} failed: {said[-1] if said else out.returncode}")
        return out

    def sbatch(self, script: Path, env: Mapping[str, str], cwd: Path) -> str:
        """Submit; returns the job id (`--parsable` prints `ID` or `ID;cluster`)."""
        base = {k: v for k, v in os.environ.items() if k.startswith("SLURM_CONF")}
        out = self._run(["sbatch", "--parsable", f"--chdir={cwd}", str(script)], {**base, **env})
        job_id = out.stdout.strip().split(";")[0]
        if not job_id.isdigit():
            raise SlurmError(f"sbatch printed no job id: {out.stdout.strip()!r}")
        return job_id

    def signal(self, job_id: str, name: str) -> bool:
        """`scancel --signal=NAME --full`: the batch script and every step (what an owner may
        do; `scontrol suspend` needs an operator). False when the job is not running."""
        return (
            self._run(["scancel", f"--signal={name}", "--full", job_id], check=False).returncode
            == 0
        )

    def cancel(self, job_id: str) -> bool:
        """`scancel ID`: CONT and TERM to every step, KILL after the cluster's KillWait."""
        return self._run(["scancel", job_id], check=False).returncode == 0

    def job(self, job_id: str) -> JobInfo | None:
        """The job now; None when neither scontrol nor sacct knows it."""
        out = self._run(["scontrol", "show", "job", "-o", job_id], check=False)
        if out.returncode == 0:
            info = parse_show_job(out.stdout)
            if info is not None:
                return info
        if shutil.which("sacct") is None:
            return None
        fields = "JobID,State,ExitCode,NodeList,Timelimit,Elapsed,Reason"
        acct = self._run(["sacct", "-n", "-P", "-X", "-o", fields, "-j", job_id], check=False)
        return parse_sacct(acct.stdout, job_id) if acct.returncode == 0 else None

    def listpids(self, job_id: str) -> tuple[int, ...]:
        """The job's processes on this node (`scontrol listpids`, asked of the local slurmd);
        () when it has none here, or no slurmd runs here."""
        try:
            out = self._run(["scontrol", "listpids", job_id], check=False)
        except SlurmError:
            return ()
        return parse_listpids(out.stdout, job_id) if out.returncode == 0 else ()

    def hostnames(self, nodelist: str) -> tuple[str, ...]:
        """`node[01-02],gpu7` -> ("node01", "node02", "gpu7") (`scontrol show hostnames`)."""
        if not any(c in nodelist for c in "[],"):
            return (nodelist,)
        out = self._run(["scontrol", "show", "hostnames", nodelist])
        return tuple(out.stdout.split())
