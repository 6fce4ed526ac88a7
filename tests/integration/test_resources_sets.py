"""ResourceProbe over a set of pids (a Slurm job's processes, none of them ftmon's children):
real processes, each counted once; NVML's per-pid memory through the same seam as one tree."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from supervisor.events import Anomaly, ResourceSample, Severity
from supervisor.monitoring.monitor import Monitor
from supervisor.monitoring.resources import GB, ResourceProbe
from supervisor.monitoring.watch import watch_log
from supervisor.runs.executors.base import SampleTargets
from tests.conftest import PROGRAMS
from tests.integration.test_resources import RecordedGpu, tree  # noqa: F401 - a fixture

MB = 1024**2


def hog(mb: int) -> subprocess.Popen[str]:
    """A process holding `mb` MB resident once it printed its step line."""
    proc = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "memhog.py"), "--mb-per-step", str(mb), "--steps", "1",
         "--interval", "0", "--hold", "60"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdout is not None and proc.stdout.readline().startswith("step 1")
    return proc


@pytest.fixture
def hogs() -> Iterator[tuple[subprocess.Popen[str], subprocess.Popen[str]]]:
    """Two unrelated processes holding 60 MB and 90 MB."""
    procs = (hog(60), hog(90))
    yield procs
    for proc in procs:
        proc.kill()
        proc.wait()


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / MB


def test_the_trees_of_several_pids_add_up_each_process_once(hogs) -> None:
    """Two unrelated processes: their memory summed; a pid listed twice (or a root that is
    also another root's descendant, as `scontrol listpids` gives) counts once."""
    a, b = hogs
    probe = ResourceProbe(gpu=None)
    sample = probe.sample_many([a.pid, b.pid, a.pid], 0.0)
    assert sample is not None and sample.nprocs == 2 and sample.pid == a.pid
    assert sample.host_rss_gb * GB / MB >= 150
    assert sample.host_rss_gb * GB / MB == pytest.approx(rss_mb(a.pid) + rss_mb(b.pid), rel=0.05)


def test_a_listed_child_of_a_listed_parent_counts_once(tree) -> None:  # noqa: F811
    """`scontrol listpids` lists the batch script and its children: each process once."""
    parent, child = tree
    probe = ResourceProbe(gpu=None)
    both = probe.sample_many([parent.pid, child], 0.0)
    alone = ResourceProbe(gpu=None).sample(parent.pid, 0.0)
    assert both is not None and alone is not None and both.nprocs == alone.nprocs == 2


def test_a_root_that_ended_is_left_out_and_none_left_is_no_sample(hogs) -> None:
    a, b = hogs
    probe = ResourceProbe(gpu=None)
    assert probe.sample_many([a.pid, b.pid], 0.0) is not None
    b.kill()
    b.wait()
    sample = probe.sample_many([a.pid, b.pid], 1.0)
    assert sample is not None and sample.nprocs == 1
    assert sample.host_rss_gb * GB / MB == pytest.approx(rss_mb(a.pid), rel=0.05)
    a.kill()
    a.wait()
    assert probe.sample_many([a.pid, b.pid], 3.0) is None


def test_gpu_memory_counts_the_listed_processes_only(hogs) -> None:
    """NVML's per-pid memory: the set's processes, not a third one on the same GPU."""
    a, b = hogs
    probe = ResourceProbe(gpu=RecordedGpu(ours=[a.pid, b.pid], other=1))
    sample = probe.sample_many([a.pid, b.pid], 0.0)
    assert sample is not None and sample.proc_gpu_gb == pytest.approx(18.0)


async def test_the_watcher_samples_what_the_executor_names_and_says_a_note_once(
    hogs, tmp_path
) -> None:
    """watch_log asks `targets` (an executor's `sample_pids`) which processes to sample: the
    samples are of those (no `pid` given, as for a Slurm job); a note is said once, at INFO."""
    a, b = hogs
    log = tmp_path / "run.log"
    log.write_text("")
    asked: list[float] = []
    samples: list[ResourceSample] = []
    events: list[object] = []
    stop = asyncio.Event()

    def targets() -> SampleTargets:
        asked.append(time.monotonic())
        return SampleTargets((a.pid, b.pid), "resources of job 9: only this node is sampled")

    def on_resource(sample: ResourceSample) -> None:
        samples.append(sample)
        if len(asked) >= 3:
            stop.set()

    await asyncio.wait_for(
        watch_log(log, Monitor(), events.append, targets=targets, targets_secs=0.1,
                  poll_secs=0.05, stop=stop, on_resource=on_resource),
        20,
    )  # fmt: skip
    assert len(asked) >= 3 and samples
    assert all(s.nprocs == 2 for s in samples)
    assert min(s.host_rss_gb for s in samples) * GB / MB >= 150
    notes = [e for e in events if isinstance(e, Anomaly) and e.rule == "resources"]
    assert [(n.severity, n.message) for n in notes] == [
        (Severity.INFO, "resources of job 9: only this node is sampled")
    ]
