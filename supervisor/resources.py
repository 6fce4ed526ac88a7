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


class ResourceProbe:
    """Samples one process tree at a time; keep one probe per watched pid for cheap sampling."""

    def __init__(self, gpu: GpuSource | None = None, *, children_secs: float = 2.0) -> None:
        self._gpu = gpu if gpu is not None else default_nvml()
        self.children_secs = children_secs
        self._root: psutil.Process | None = None
        self._children: list[psutil.Process] = []
        self._children_at = float("-inf")

    def sample(self, pid: int, ts: float) -> ResourceSample | None:
        """Memory and CPU of `pid` and its descendants now; None if `pid` is gone."""
        root = self._root_for(pid)
        if root is None:
            return None
        now = time.monotonic()
        if now - self._children_at >= self.children_secs:
            self._refresh_children(root)
            self._children_at = now
        rss = 0
        cpu = 0.0
        counted = []
        for proc in [root, *self._children]:
            try:
                with proc.oneshot():
                    if proc.status() == psutil.STATUS_ZOMBIE:
                        raise psutil.ZombieProcess(proc.pid)
                    rss += proc.memory_info().rss
                    cpu += proc.cpu_percent(interval=None)
                counted.append(proc.pid)
            except psutil.Error:  # vanished mid-walk, or a zombie: skipped, not raised
                if proc is root:
                    self._root = None
                    return None
        try:
            available = psutil.virtual_memory().available
        except (OSError, psutil.Error):
            available = 0
        sample = ResourceSample(
            ts=ts,
            pid=pid,
            host_rss_gb=rss / GB,
            host_available_gb=available / GB,
            cpu_percent=cpu,
            nprocs=len(counted),
        )
        if self._gpu is None:
            return sample
        return self._with_gpu(sample, set(counted))

    def _with_gpu(self, sample: ResourceSample, pids: set[int]) -> ResourceSample:
        try:
            memory = self._gpu.memory()
            per_pid = self._gpu.process_memory()
        except Exception:  # a GPU error must never stop the watch; the sample goes without
            return sample
        return ResourceSample(
            ts=sample.ts,
            pid=sample.pid,
            host_rss_gb=sample.host_rss_gb,
            host_available_gb=sample.host_available_gb,
            cpu_percent=sample.cpu_percent,
            gpu_used_gb={i: used / GB for i, (used, _total) in memory.items()},
            gpu_total_gb={i: total / GB for i, (_used, total) in memory.items()},
            proc_gpu_gb=sum(b for p, b in per_pid.items() if p in pids) / GB,
            nprocs=sample.nprocs,
        )

    def _root_for(self, pid: int) -> psutil.Process | None:
        root = self._root
        if root is not None and root.pid == pid and root.is_running():
            return root
        try:
            root = psutil.Process(pid)
            if root.status() == psutil.STATUS_ZOMBIE:
                return None
        except psutil.Error:
            self._root = None
            return None
        self._root = root
        self._children = []
        self._children_at = float("-inf")
        root.cpu_percent(interval=None)  # the first reading only sets the baseline
        return root

    def _refresh_children(self, root: psutil.Process) -> None:
        # Keep the cached objects of known children: their CPU baseline lives in them.
        known = {p.pid: p for p in self._children if p.is_running()}
        fresh = []
        for pid in descendant_pids(root.pid):
            if pid in known:
                fresh.append(known[pid])
                continue
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                proc.cpu_percent(interval=None)
                fresh.append(proc)
        self._children = fresh
