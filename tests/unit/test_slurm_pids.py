"""Which processes stand for a Slurm job's resources: `scontrol listpids` read right, and the
executor's answer for a job waiting, running here, or running on other nodes (pure: Slurm's
answers are canned, as captured on the one-node cluster of .ci/slurm-up, Slurm 22.05)."""

from __future__ import annotations

from pathlib import Path

from supervisor.runs.executors import slurm
from supervisor.runs.executors.base import RunHandle, SampleTargets
from supervisor.runs.executors.slurm import SlurmExecutor
from supervisor.runs.executors.slurm_cli import JobInfo, SlurmCli, parse_listpids

# `scontrol listpids 102`: a batch job (`python3 -c ...` under the batch script).
BATCH = """\
PID      JOBID    STEPID   LOCALID GLOBALID
987      102      batch    0       0       
988      102      batch    -       -       
"""  # noqa: W291 - Slurm pads its columns
# `scontrol listpids 103`: the batch script running `srun python3 ...` (step 0).
WITH_STEP = """\
PID      JOBID    STEPID   LOCALID GLOBALID
1563     103      batch    0       0       
1567     103      batch    -       -       
1564     103      batch    -       -       
1579     103      0        0       0       
"""  # noqa: W291
# `scontrol listpids` (no job id): every job's processes on this node.
TWO_JOBS = BATCH + "1579     103      0        0       0       \n"


def test_listpids_gives_every_process_of_the_job_once() -> None:
    assert parse_listpids(BATCH, "102") == (987, 988)
    assert parse_listpids(WITH_STEP, "103") == (1563, 1567, 1564, 1579)
    assert parse_listpids(TWO_JOBS, "102") == (987, 988)  # another job's rows left out
    assert parse_listpids(BATCH + BATCH.splitlines()[1] + "\n", "102") == (987, 988)


def test_listpids_of_a_job_with_nothing_here_is_empty() -> None:
    # rc 1 and only the header: "There are no steps for job 99999 on node (null)" on stderr.
    assert parse_listpids("PID      JOBID    STEPID   LOCALID GLOBALID\n", "99999") == ()
    assert parse_listpids("", "7") == ()


class CannedCli(SlurmCli):
    """Slurm's answers for one job, as the real tools gave them (the seam the executor uses)."""

    def __init__(self, info: JobInfo, pids: str, hosts: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.info, self.pids, self.hosts = info, pids, hosts
        self.asked: list[str] = []

    def job(self, job_id: str) -> JobInfo | None:
        self.asked.append("job")
        return self.info

    def listpids(self, job_id: str) -> tuple[int, ...]:
        self.asked.append("listpids")
        return parse_listpids(self.pids, job_id)

    def hostnames(self, nodelist: str) -> tuple[str, ...]:
        self.asked.append("hostnames")
        return self.hosts or (nodelist,)


def targets(info: JobInfo, pids: str, hosts: tuple[str, ...] = ()) -> SampleTargets:
    handle = RunHandle("slurm", 0, 0.0, (Path("run.log"),), job_id=info.job_id)
    return SlurmExecutor(cli=CannedCli(info, pids, hosts)).sample_pids(handle)


def test_a_job_running_here_is_sampled_by_its_processes(monkeypatch) -> None:
    monkeypatch.setattr(slurm, "_this_host", lambda: "vm")
    assert targets(JobInfo("102", "RUNNING", nodes="vm"), BATCH) == SampleTargets((987, 988))


def test_a_job_in_the_queue_has_nothing_to_sample() -> None:
    info = JobInfo("7", "PENDING", reason="Resources")
    assert targets(info, BATCH.replace("102", "7")) == SampleTargets()


def test_a_job_on_another_node_is_not_sampled_and_says_so(monkeypatch) -> None:
    monkeypatch.setattr(slurm, "_this_host", lambda: "login1")
    got = targets(JobInfo("12", "RUNNING", nodes="gpu[01-02]"), "", ("gpu01", "gpu02"))
    assert got.pids == ()
    assert got.note == (
        "resources of Slurm job 12 are not sampled: it runs on gpu01, gpu02, not on this "
        "machine (login1); vram and host_mem see nothing of it"
    )


def test_a_job_on_this_and_other_nodes_samples_this_node_and_says_so(monkeypatch) -> None:
    monkeypatch.setattr(slurm, "_this_host", lambda: "gpu01")
    got = targets(JobInfo("102", "RUNNING", nodes="gpu[01-02]"), BATCH, ("gpu01", "gpu02"))
    assert got.pids == (987, 988)
    assert "only its processes on this node (gpu01)" in got.note and "1 other node" in got.note
