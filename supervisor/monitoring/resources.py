"""Memory and CPU of a watched process tree: psutil always, NVML where an NVIDIA GPU is present.

All NVML calls sit behind `Nvml`, one small class, so that the code consuming GPU figures can be
tested on a machine without a GPU by handing `ResourceProbe` an object with the same three
methods. The probe is cheap enough to sample at 20 Hz: the psutil.Process objects are cached
(their CPU counters need the previous reading anyway) and the list of children, the expensive
part (a walk of /proc), is refreshed only every `children_secs`.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import psutil

from supervisor.events import ResourceSample

GB = 1024**3


class GpuSource(Protocol):
    """What ResourceProbe and kill_tree need from NVML (the seam)."""

    def memory(self) -> dict[int, tuple[int, int]]:
        """Per device index: (used bytes, total bytes)."""
        ...

    def process_memory(self) -> dict[int, int]:
        """Per pid: GPU bytes in use, summed over devices."""
        ...

    def gpu_pids(self) -> set[int]:
        """Pids that hold GPU memory on any device."""
        ...


class Nvml:
    """The only code in ftmon that calls NVML. Construct through `default_nvml()`."""

    def __init__(self) -> None:
        pynvml = _import_pynvml()
        pynvml.nvmlInit()
        self._nvml = pynvml
        self._handles = [
            pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())
        ]

    def memory(self) -> dict[int, tuple[int, int]]:
        out = {}
        for index, handle in enumerate(self._handles):
            with contextlib.suppress(self._nvml.NVMLError):
                info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
                out[index] = (int(info.used), int(info.total))
        return out

    def process_memory(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for handle in self._handles:
            with contextlib.suppress(self._nvml.NVMLError):
                for proc in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                    used = proc.usedGpuMemory or 0  # None where the driver hides it
                    out[proc.pid] = out.get(proc.pid, 0) + int(used)
        return out

    def gpu_pids(self) -> set[int]:
        return set(self.process_memory())


def _import_pynvml():
    # The `pynvml` shim warns on import that it is deprecated; the module it provides is the
    # official nvidia-ml-py one, so the warning says nothing to a user of ftmon.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pynvml
    return pynvml


_DEFAULT: list[Nvml | None] = []  # [] = not tried yet; [None] = tried, no NVML here


def default_nvml() -> Nvml | None:
    """The machine's NVML, or None where there is no driver or no device. Tried once."""
    if not _DEFAULT:
        nvml: Nvml | None = None
        try:
            nvml = Nvml()
            if not nvml._handles:
                nvml = None
        except Exception:  # no library, no driver, no permission: all mean "no GPU figures"
            nvml = None
        _DEFAULT.append(nvml)
    return _DEFAULT[0]


def nvml_available() -> bool:
    """True where NVML answers and sees at least one device."""
    return default_nvml() is not None


def descendant_pids(pid: int) -> list[int]:
    """Every descendant of `pid`, walking down through /proc/PID/task/TID/children.

    psutil's children(recursive=True) reads the parent of every process on the machine (9 ms
    with a hundred processes); this reads only the tree's own files (0.2 ms). Where the kernel
    lacks those files (CONFIG_PROC_CHILDREN off, not Linux), psutil's walk is the fallback.
    """
    out: list[int] = []
    stack = [pid]
    while stack:
        parent = stack.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            if parent == pid and not os.path.exists(f"/proc/{pid}"):
                return []  # gone (or no /proc at all)
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", "rb") as fh:
                    found = [int(x) for x in fh.read().split()]
            except FileNotFoundError:
                if _proc_children_missing():
                    return _psutil_descendants(pid)
                continue  # the thread ended
            except OSError:
                continue
            out += found
            stack += found
    return out


_PROC_CHILDREN: list[bool] = []


def _proc_children_missing() -> bool:
    if not _PROC_CHILDREN:
        _PROC_CHILDREN.append(
            not os.path.exists(f"/proc/{os.getpid()}/task/{os.getpid()}/children")
        )
    return _PROC_CHILDREN[0]


def _psutil_descendants(pid: int) -> list[int]:
    try:
        return [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


@dataclass(frozen=True, slots=True)
class ProcStat:
    """What one sample needs of one process, from one read of /proc/PID/stat."""

    zombie: bool
    cpu_ticks: int  # user + system time, in clock ticks
    start: int  # start time in clock ticks after boot: tells a reused pid from the original
    rss: int  # resident bytes


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_HAVE_PROC = os.path.exists(f"/proc/{os.getpid()}/stat")


def read_stat(pid: int) -> ProcStat | None:
    """One process's state, CPU time, start and RSS; None if it is gone.

    One read of /proc/PID/stat costs a third of psutil's status + memory_info + cpu_percent
    (which read two files); where there is no /proc, psutil gives the same figures.
    """
    if not _HAVE_PROC:
        return _psutil_stat(pid)
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096)
    except OSError:
        return None
    finally:
        os.close(fd)
    try:
        # The command name (field 2) may hold spaces and parentheses: split after the last ")".
        f = data[data.rindex(b")") + 2 :].split()
        # f[0] is field 3 (state); utime 14, stime 15, starttime 22, rss 24 (pages).
        return ProcStat(
            f[0] in (b"Z", b"X"), int(f[11]) + int(f[12]), int(f[19]), int(f[21]) * _PAGE
        )
    except (ValueError, IndexError):
        return None


def _psutil_stat(pid: int) -> ProcStat | None:
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            times = proc.cpu_times()
            return ProcStat(
                proc.status() == psutil.STATUS_ZOMBIE,
                round((times.user + times.system) * _TICKS),
                round(proc.create_time() * _TICKS),
                proc.memory_info().rss,
            )
    except psutil.Error:
        return None


class ResourceProbe:
    """Samples one run's processes: the tree of one pid, or the trees of a set of pids (a Slurm
    job's processes on this node). Keep one probe per run (it remembers CPU times)."""

    def __init__(self, gpu: GpuSource | None = None, *, children_secs: float = 2.0) -> None:
        self._gpu = gpu if gpu is not None else default_nvml()
        self.children_secs = children_secs
        self._roots: tuple[int, ...] | None = None
        self._children: list[int] = []
        self._children_at = float("-inf")
        self._start: dict[int, int] = {}  # pid -> start ticks when first seen
        self._cpu: dict[int, tuple[int, float]] = {}  # pid -> (cpu ticks, monotonic time)

    def sample(self, pid: int, ts: float) -> ResourceSample | None:
        """Memory and CPU of `pid` and its descendants now; None if `pid` is gone."""
        return self.sample_many((pid,), ts)

    def sample_many(self, pids: Sequence[int], ts: float) -> ResourceSample | None:
        """Memory and CPU of the trees of `pids` now, each process counted once (GPU memory
        too); None if none of them is left. The sample's `pid` is the first one."""
        roots = tuple(dict.fromkeys(pids))
        if roots != self._roots:
            # Another set (a job's processes come and go): the descendants are walked again;
            # CPU times and start ticks are per pid, so they carry over.
            self._roots = roots
            self._children_at = float("-inf")
        now = time.monotonic()
        alive: dict[int, ProcStat] = {}
        for root in roots:
            st = read_stat(root)
            # Gone, a zombie, or the pid reused by another process: not the run's any more.
            if st is None or st.zombie or self._start.setdefault(root, st.start) != st.start:
                continue
            alive[root] = st
        if not alive:
            self._reset()
            return None
        if now - self._children_at >= self.children_secs:
            seen = set(roots)
            children = []
            for root in alive:
                for child in descendant_pids(root):
                    if child not in seen:
                        seen.add(child)
                        children.append(child)
            self._children = children
            self._children_at = now
        rss = 0
        cpu = 0.0
        counted = []
        cpu_seen: dict[int, tuple[int, float]] = {}
        for one in [*alive, *self._children]:
            st = alive.get(one) or read_stat(one)
            # Gone mid-walk, a zombie, or the pid reused since the last refresh: skipped.
            if st is None or st.zombie or self._start.setdefault(one, st.start) != st.start:
                continue
            rss += st.rss
            before = self._cpu.get(one)
            if before is not None and now > before[1]:
                cpu += (st.cpu_ticks - before[0]) / _TICKS / (now - before[1]) * 100
            cpu_seen[one] = (st.cpu_ticks, now)
            counted.append(one)
        self._cpu = cpu_seen  # forget the processes that ended
        if len(self._start) > 4 * len(counted) + 64:  # a long job's short-lived processes
            self._start = {p: t for p, t in self._start.items() if p in cpu_seen}
        try:
            available = psutil.virtual_memory().available
        except (OSError, psutil.Error):
            available = 0
        sample = ResourceSample(
            ts=ts,
            pid=roots[0],
            host_rss_gb=rss / GB,
            host_available_gb=available / GB,
            cpu_percent=cpu,
            nprocs=len(counted),
        )
        if self._gpu is None:
            return sample
        return self._with_gpu(sample, set(counted))

    def _reset(self) -> None:
        self._roots = None
        self._children = []
        self._children_at = float("-inf")
        self._start = {}
        self._cpu = {}

    def _with_gpu(self, sample: ResourceSample, pids: set[int]) -> ResourceSample:
        gpu = self._gpu
        if gpu is None:
            return sample
        try:
            memory = gpu.memory()
            per_pid = gpu.process_memory()
        except Exception:  # a GPU error must never stop the watch; the sample goes without
            return sample
        ours = [b for p, b in per_pid.items() if p in pids]
        # GPU processes listed but none of them ours: NVML sees other pids than we do (a
        # container's pid namespace), so the tree's own use is unknown. None makes the vram
        # rule read device use instead; 0 GB would read as "the run uses nothing" forever.
        proc_gb = sum(ours) / GB if ours or not per_pid else None
        return ResourceSample(
            ts=sample.ts,
            pid=sample.pid,
            host_rss_gb=sample.host_rss_gb,
            host_available_gb=sample.host_available_gb,
            cpu_percent=sample.cpu_percent,
            gpu_used_gb={i: used / GB for i, (used, _total) in memory.items()},
            gpu_total_gb={i: total / GB for i, (_used, total) in memory.items()},
            proc_gpu_gb=proc_gb,
            nprocs=sample.nprocs,
        )
