"""Slurm's answers read right, the batch script says what the recipe says, and a job Slurm
ended becomes an anomaly named for the reason (pure: no Slurm needed)."""

from __future__ import annotations

from pathlib import Path

from supervisor.events import Exit, Severity
from supervisor.monitoring.monitor import Monitor
from supervisor.runs.executors.base import LaunchSpec
from supervisor.runs.executors.slurm import SlurmOptions, batch_script
from supervisor.runs.executors.slurm_cli import parse_sacct, parse_show_job

# Captured from `scontrol show job -o 1` on the one-node cluster of .ci/slurm-up (Slurm 22.05).
TIMEOUT_LINE = (
    "JobId=1 JobName=j.sh UserId=root(0) GroupId=root(0) MCS_label=N/A Priority=4294901759 "
    "Nice=0 Account=(null) QOS=(null) JobState=TIMEOUT Reason=TimeLimit Dependency=(null) "
    "Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 RunTime=00:01:26 "
    "TimeLimit=00:01:00 TimeMin=N/A SubmitTime=2026-12-07T18:00:26 Partition=debug "
    "NodeList=vm BatchHost=vm NumNodes=1 NumCPUs=1 Command=/tmp/hs/j.sh WorkDir=/tmp/hs "
    "StdErr=/tmp/hs/out-1.log StdIn=/dev/null StdOut=/tmp/hs/out-1.log Power= "
)


def test_a_timed_out_job_reads_as_a_time_limit_end() -> None:
    """TIMEOUT with `ExitCode=0:15` is a time-limit end by SIGTERM on node vm."""
    info = parse_show_job(TIMEOUT_LINE)
    assert info is not None
    assert (info.job_id, info.state, info.reason, info.nodes) == ("1", "TIMEOUT", "TimeLimit", "vm")
    assert (info.exit_code, info.signal) == (0, 15)
    assert not info.live and info.ended_by == "time_limit"
    assert info.summary() == "TIMEOUT (TimeLimit)"


def test_a_pending_job_shows_its_reason() -> None:
    line = "JobId=7 JobState=PENDING Reason=Resources NodeList=(null) ExitCode=0:0"
    info = parse_show_job(line)
    assert info is not None and info.pending and info.live and info.nodes == ""
    assert info.summary() == "PENDING (Resources)"


def test_sacct_answers_after_scontrol_forgot_the_job() -> None:
    text = "12|PREEMPTED|0:0|node03|01:00:00|00:12:31|None\n12.batch|CANCELLED|0:15|node03||"
    info = parse_sacct(text, "12")
    assert info is not None and info.state == "PREEMPTED" and info.ended_by == "preempted"


def test_the_batch_script_carries_the_options_and_the_exact_argv(tmp_path: Path) -> None:
    """Options become `#SBATCH` lines; the argv is quoted; the env (secrets) is not written."""
    spec = LaunchSpec(
        "r1", ("python", "-m", "trainer", "--data", "a b.jsonl"), {"HF_TOKEN": "hf_secret"},
        tmp_path, tmp_path, tmp_path / "run.log",
    )  # fmt: skip
    options = SlurmOptions(partition="gpu", time="1:00:00", gpus_per_node=8, extra=("--exclusive",))
    script = batch_script(spec, options)
    assert f"#SBATCH --output={tmp_path / 'run.log'}" in script
    for line in ("--partition=gpu", "--time=1:00:00", "--gpus-per-node=8", "--exclusive"):
        assert f"#SBATCH {line}" in script
    assert script.rstrip().endswith("exec python -m trainer --data 'a b.jsonl'")
    assert "hf_secret" not in script


def test_multi_node_torchrun_meets_at_the_first_node(tmp_path: Path) -> None:
    spec = LaunchSpec(
        "r2", ("torchrun", "--nproc_per_node", "8", "-m", "trainer"), {}, tmp_path, tmp_path,
        tmp_path / "run.log",
    )  # fmt: skip
    script = batch_script(spec, SlurmOptions(nodes=4))
    assert "#SBATCH --nodes=4" in script
    last = script.rstrip().splitlines()[-1]
    assert last.startswith('exec srun --ntasks-per-node=1 torchrun --nnodes "$SLURM_NNODES"')
    assert '--rdzv_endpoint "$head:29500"' in last and "--nproc_per_node 8 -m trainer" in last


def test_a_preempted_exit_is_an_error_named_preempted() -> None:
    """The exit's `ended_by` is reported by the rule of that name, so `on: preempted` acts."""
    found = Monitor().feed_exit(Exit(10.0, 0, None, ended_by="preempted"))
    named = [a for a in found if a.rule == "preempted"]
    assert len(named) == 1 and named[0].severity == Severity.ERROR
    assert "preempted" in named[0].message
    assert not [a for a in Monitor().feed_exit(Exit(10.0, 0)) if a.rule == "preempted"]
