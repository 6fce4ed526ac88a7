"""resources.py on real processes; the NVML seam stands in only for the GPU this machine lacks."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from supervisor.monitoring.resources import GB, ResourceProbe, nvml_available
from tests.conftest import PROGRAMS


class RecordedGpu:
    """The three answers NVML gives, fixed: two devices, three processes (one is not ours)."""

    def __init__(self, ours: list[int], other: int) -> None:
        self.ours = ours
        self.other = other

    def memory(self) -> dict[int, tuple[int, int]]:
        return {0: (30 * GB, 80 * GB), 1: (10 * GB, 80 * GB)}

    def process_memory(self) -> dict[int, int]:
        return {self.ours[0]: 12 * GB, self.ours[1]: 6 * GB, self.other: 9 * GB}

    def gpu_pids(self) -> set[int]:
        return set(self.process_memory())


class BrokenGpu(RecordedGpu):
    def memory(self) -> dict[int, tuple[int, int]]:
        raise RuntimeError("NVML_ERROR_GPU_IS_LOST")


@pytest.fixture
def tree():
    """A parent with one child, both sleeping."""
    code = (
        "import subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print(c.pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    child = int(proc.stdout.readline())
    yield proc, child
    for pid in (child, proc.pid):
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait()


def test_rss_of_a_growing_process_rises() -> None:
    """A process that allocates memory step by step shows a rising resident size."""
    proc = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "memhog.py"), "--mb-per-step", "40", "--steps", "5"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        probe = ResourceProbe(gpu=None)
        proc.stdout.readline()  # step 1 allocated
        first = probe.sample(proc.pid, 1.0)
        for _ in range(4):
            proc.stdout.readline()
        last = probe.sample(proc.pid, 2.0)
        assert first is not None and last is not None
        assert last.host_rss_gb - first.host_rss_gb > 120 / 1024  # 4 more steps of 40 MB
        assert last.host_available_gb > 0
        assert last.ts == 2.0 and last.pid == proc.pid
        assert last.gpu_used_gb is None and last.proc_gpu_gb is None
    finally:
        proc.kill()
        proc.wait()


def test_tree_is_summed_and_a_gone_process_gives_none(tree) -> None:
    """The sample covers the parent and its child; once the parent is gone the probe says None."""
    proc, child = tree
    probe = ResourceProbe(gpu=None)
    sample = probe.sample(proc.pid, 0.0)
    assert sample is not None and sample.nprocs == 2
    own = psutil.Process(proc.pid).memory_info().rss + psutil.Process(child).memory_info().rss
    assert abs(sample.host_rss_gb * GB - own) < 8 * 1024 * 1024
    proc.kill()
    proc.wait()
    assert probe.sample(proc.pid, 1.0) is None
    assert probe.sample(999_999_999, 1.0) is None


def test_a_child_vanishing_between_refreshes_is_skipped(tree) -> None:
    """A child that exits between two samples is left out, not raised."""
    proc, child = tree
    probe = ResourceProbe(gpu=None, children_secs=3600)  # the cached child list stays stale
    assert probe.sample(proc.pid, 0.0).nprocs == 2
    psutil.Process(child).kill()
    time.sleep(0.2)  # dead: a zombie until its parent reaps it, which it never does
    sample = probe.sample(proc.pid, 1.0)
    assert sample is not None and sample.nprocs == 1


def test_gpu_figures_come_from_the_seam_and_count_only_the_tree(tree) -> None:
    """Per-device use and the tree's own GPU memory: another process's memory is not counted."""
    proc, child = tree
    probe = ResourceProbe(gpu=RecordedGpu(ours=[proc.pid, child], other=os.getpid()))
    sample = probe.sample(proc.pid, 0.0)
    assert sample.gpu_used_gb == {0: 30.0, 1: 10.0}
    assert sample.gpu_total_gb == {0: 80.0, 1: 80.0}
    assert sample.proc_gpu_gb == pytest.approx(18.0)


def test_a_gpu_error_leaves_the_host_figures(tree) -> None:
    """When NVML fails mid-run the sample still comes, without GPU figures."""
    proc, child = tree
    probe = ResourceProbe(gpu=BrokenGpu(ours=[proc.pid, child], other=1))
    sample = probe.sample(proc.pid, 0.0)
    assert sample is not None and sample.gpu_used_gb is None and sample.host_rss_gb > 0


def test_nvml_available_answers_without_raising() -> None:
    """nvml_available() is a plain bool on any machine (False here: no NVIDIA GPU)."""
    assert nvml_available() in (True, False)
    if not Path("/dev/nvidiactl").exists():
        assert nvml_available() is False


def test_descendant_pids_matches_psutils_walk(tree) -> None:
    """The /proc walk finds exactly the descendants psutil finds."""
    proc, child = tree
    from supervisor.monitoring.resources import descendant_pids

    assert descendant_pids(proc.pid) == [child]
    mine = sorted(descendant_pids(os.getpid()))
    assert mine == sorted(p.pid for p in psutil.Process().children(recursive=True))
    assert descendant_pids(999_999_999) == []


def test_cpu_of_a_busy_process_is_counted() -> None:
    """A process spinning on the CPU shows CPU use; a sleeping one shows almost none."""
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    idle = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        probes = {p.pid: ResourceProbe(gpu=None) for p in (busy, idle)}
        for pid, probe in probes.items():
            probe.sample(pid, 0.0)  # the first sample sets the baseline
        time.sleep(1.0)
        cpu = {pid: probe.sample(pid, 1.0).cpu_percent for pid, probe in probes.items()}
        assert cpu[busy.pid] > 5.0, cpu  # a whole core when the machine is idle
        assert cpu[idle.pid] < 5.0, cpu
    finally:
        for proc in (busy, idle):
            proc.kill()
            proc.wait()


def test_a_reused_pid_is_not_taken_for_the_watched_process() -> None:
    """When the watched pid names a different process (another start time) the probe says None."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        probe = ResourceProbe(gpu=None)
        assert probe.sample(proc.pid, 0.0) is not None
        probe._start[proc.pid] -= 1  # as if the process seen before had started a tick earlier
        assert probe.sample(proc.pid, 1.0) is None
    finally:
        proc.kill()
        proc.wait()


def test_run_pids_invisible_to_nvml_fall_back_to_device_use(tree) -> None:
    """In a container NVML lists host pids: none matches the run's, so the run's own GPU figure
    is unknown (None, and the vram rule reads device use), never a reassuring 0 GB."""
    proc, _child = tree
    probe = ResourceProbe(gpu=RecordedGpu(ours=[4_000_001, 4_000_002], other=4_000_003))
    sample = probe.sample(proc.pid, 0.0)
    assert sample.gpu_used_gb == {0: 30.0, 1: 10.0}
    assert sample.proc_gpu_gb is None
