"""`oom`: the run ran out of memory, on the GPU or on the host.

Text: CUDA OOM in its old form ("RuntimeError: CUDA out of memory") and new one
(`torch.OutOfMemoryError`, `torch.cuda.OutOfMemoryError`), `CUBLAS_STATUS_ALLOC_FAILED`, other
backends' "out of memory" (HIP/ROCm `hipErrorOutOfMemory` and `HIP_ERROR_OutOfMemory`, MPS,
Metal's "Insufficient Memory" / `...ErrorOutOfMemory` under MLX), XLA's and TensorFlow's
`RESOURCE_EXHAUSTED` / "Resource exhausted" about memory and `ResourceExhaustedError`, TF's
allocator map (`bfc_allocator ... ****__**`) and "Ran out of memory", the host's `MemoryError`
and `DefaultCPUAllocator: can't allocate memory`, and the messages left when something killed
the process for memory: the shell's "Killed" (also in a Chinese locale, 已杀死), the kernel's
"oom-kill" / "Out of memory: Killed process" / "invoked oom-killer", a memory watchdog or an
external guard ("exceeded memory limit ..., being killed", "memory limit exceeded, killing"),
a DataLoader worker "killed by signal: Killed", exit code 137 (SIGKILL) reported by a runner,
return code -9 or signal 9 reported by a launcher (DeepSpeed, torch elastic, torch's spawn);
any torch device allocator's "<DEVICE> out of memory. Tried to allocate", TF's "OOM when
allocating tensor", XLA's "Out of (host) memory while trying to allocate" and TPU HBM limits,
an allocator naming what it could not get (llama.cpp/ggml buffers, MLX `[metal::malloc]`,
Vulkan `ErrorOutOfDeviceMemory`, `CUDA_ERROR_OUT_OF_MEMORY`), vLLM's "No available memory for
the cache blocks", accelerate's "No executable batch size found", Slurm's `OUT_OF_MEMORY` and
cgroup handler, the kernel's `oom_reaper`. Not: TF's allocator retry that says "this is not a
failure", advice ("to avoid running out of memory") before the words, and a list of possible
causes (Ray's dead-worker message names the OOM killer as one of three).
Exit: a SIGKILL that ftmon did not send, while the host was short of memory (from the last
resource sample) is the kernel OOM killer's signature.

De-duplication: an OOM is printed by every rank and repeated in the traceback's chained
exceptions; after a report the rule is quiet for `quiet_lines` lines.
"""

from __future__ import annotations

import re
import signal

from pydantic import Field

from supervisor.events import Anomaly, Event, Exit, ResourceSample, Severity, Text
from supervisor.rules.base import LineCooldown, Rule, RuleSettings, clip

_TRIED = re.compile(r"Tried to allocate\s+([0-9.]+\s*[KMGT]i?B)", re.I)
# A size as allocators print it: "2.00 GiB", "7605.34 MiB", "402653184 bytes", "10.51G".
_SIZE = r"\d[\d.,]*\s*(?:[KMGT]i?B|[KMGT]\b|bytes\b)"
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"CUDA out of memory|OutOfMemoryError", re.I), "CUDA out of memory"),
    (re.compile(r"CU(?:BLAS|DNN)_STATUS_ALLOC_FAILED"), "cuBLAS/cuDNN allocation failed"),
    # Every torch device allocator says "<DEVICE> out of memory. Tried to allocate ..." (CUDA,
    # HIP, XPU, MPS "MPS backend out of memory", Ascend NPU, Cambricon MLU, MUSA, ...).
    (
        re.compile(
            r"\b(?:HIP|MPS|XPU|NPU|MLU|MUSA|HPU|GCU|DCU)\b.{0,20}\bout of memory"
            r"|out of memory\W{0,3}Tried to allocate",
            re.I,
        ),
        "GPU out of memory",
    ),
    # Error codes spelled as one word: hipErrorOutOfMemory, HIP_ERROR_OutOfMemory,
    # kIOGPUCommandBufferCallbackErrorOutOfMemory (Metal), CUDA_ERROR_OUT_OF_MEMORY (driver API),
    # cudaErrorMemoryAllocation (runtime API), Vulkan's ErrorOutOfDeviceMemory (llama.cpp),
    # Slurm's OUT_OF_MEMORY job state; Metal's "Insufficient Memory".
    (
        re.compile(
            r"(?i:error)_?OutOf(?:Device|Host)?Memory"
            r"|(?:ERROR_|NODE_|(?<!\w))OUT_OF(?:_DEVICE|_HOST)?_MEMORY\b"
            r"|ErrorMemoryAllocation\b|Insufficient Memory\b"
        ),
        "GPU out of memory",
    ),
    # XLA (TPU, JAX) and TensorFlow: RESOURCE_EXHAUSTED is also a gRPC quota code, so only when
    # the words around it are about memory ("Out of memory", "Attempting to reserve 6.48G").
    # TF's op kernels say "OOM when allocating tensor with shape[...]", XLA "Out of memory
    # while trying to allocate 16.00GiB." / "Out of host memory while trying to allocate"
    # (stream_executor/integrations/tf_allocator_adapter.cc), JAX "Out of memory allocating
    # 20029400304 bytes", the TPU compiler and runtime (openxla/xla docs/errors/error_1000.md,
    # error_1001.md, error_0101.md): "Ran out of memory in memory space hbm ... Exceeded hbm
    # capacity by 17.34G", "Allocation (size=134217728) would exceed memory (size=67108864)",
    # "Attempting to reserve 29.49G at the bottom of memory. That was not possible.".
    (
        re.compile(
            r"resource[ _]exhausted\W{0,3}(?:out\b|.{0,160}(?:memory|alloc|reserve|\boom\b))"
            r"|ResourceExhaustedError|(?<![A-Za-z])Ran out of memory\b"
            r"|\b(?:out of (?:\w+ )?memory|OOM)\W{0,3}(?:(?:while|when)\s+(?:trying\s+to\s+)?)?"
            r"allocat|Exceeded \w+ capacity by|at the bottom of memory\. That was not possible"
            r"|would exceed memory\b",
            re.I,
        ),
        "out of memory (resource exhausted)",
    ),
    (re.compile(r"bfc_allocator\.cc:\d+\]\s*[*_x]{20}"), "out of memory (TF allocator map)"),
    # c10's CPU allocator: "DefaultCPUAllocator: can't allocate memory: you tried to allocate
    # 402653184 bytes" (Linux), "DefaultCPUAllocator: not enough memory: ..." (Windows).
    (
        re.compile(r"can't allocate memory|Cannot allocate memory|DefaultCPUAllocator: \w"),
        "host out of memory",
    ),
    (re.compile(r"(?<![\w.])MemoryError\b(?!\w)"), "host out of memory (MemoryError)"),
    # An allocator that names what it could not get: llama.cpp/ggml ("unable to allocate
    # backend buffer", "ggml_gallocr_reserve_n: failed to allocate CUDA0 buffer of size ...",
    # "failed to allocate compute pp buffers"), MLX ("[metal::malloc] Attempting to allocate N
    # bytes which is greater than the maximum allowed buffer size", "[metal::malloc] Resource
    # limit (499000) exceeded.", "[malloc_or_wait] Unable to allocate N bytes."), numpy
    # ("Unable to allocate 7.5 GiB for an array"), TF/XLA ("failed to allocate 2.00G").
    (
        re.compile(
            r"\b(?:unable|failed|cannot|could not|couldn't)\s+(?:to\s+)?allocate\b.{0,60}?"
            r"(?:\bbuffers?\b|" + _SIZE + r")"
            r"|\[(?:\w+::)?malloc(?:_or_wait)?\]",
            re.I,
        ),
        "out of memory (allocation failed)",
    ),
    # Serving and batch-size search give up for memory in their own words: vLLM ("No available
    # memory for the cache blocks", "... larger than the available KV cache memory", "Free
    # memory on device ... is less than desired GPU memory utilization"), accelerate's
    # find_executable_batch_size ("No executable batch size found, reached zero.").
    (
        re.compile(
            r"No available memory for the cache blocks|larger than the available KV cache memory"
            r"|Free memory on device.{0,80}less than desired GPU memory utilization"
            r"|No executable batch size found",
            re.I,
        ),
        "out of memory (no room left)",
    ),
    (
        re.compile(
            r"\boom[-_ ]kill|Out of memory: Kill(?:ed)? process|\bmemory watchdog\b|oom_reaper:"
            r"|memory limit.{0,80}\b(?:being killed|killing|killed)\b"
            r"|exceeded.{0,40}memory limit|memory limit exceeded"
            r"|killed by the cgroup out[- ]of[- ]memory"
            # Ray's memory monitor (src/ray/raylet/node_manager.cc): "Task was killed due to the
            # node running low on memory", "... which exceeds the memory usage threshold of
            # 0.95. Ray killed this worker"; Kubernetes' container status `OOMKilled`.
            r"|\bkilled\b.{0,40}\b(?:due to|because of)\b.{0,60}"
            r"\b(?:low on memory|out of memory|oom)\b"
            r"|exceeds the memory usage threshold|\bOOMKilled\b",
            re.I,
        ),
        "killed for memory",
    ),
    # Windows' ERROR_COMMITMENT_LIMIT (1455), what torch DataLoader workers die of there.
    (re.compile(r"paging file is too small", re.I), "host out of memory (paging file)"),
    (re.compile(r"killed by signal: Killed", re.I), "a worker was killed (likely host memory)"),
    # The shell's report of a SIGKILLed child: "Killed" alone, or "line 3: 1234 Killed  python";
    # a launcher's, in Python's spelling of a child killed by signal 9: DeepSpeed's launcher
    # "... exits with return code = -9", torch elastic's "failed (exitcode: -9)" and its error
    # summary ("exitcode  : -9 (pid: 4242)", "traceback : Signal 9 (SIGKILL) received by PID
    # 4242"), torch.multiprocessing.spawn's "process 0 terminated with signal SIGKILL".
    (
        re.compile(
            r"^\s*(?:Killed|已杀死|已殺死)\s*$|\b\d+\s+Killed\s+\S"
            r"|exit code 137\b|signal 9: SIGKILL"
            r"|\b(?:return ?code|exit ?code|exit status)\s*[:=]?\s*-9\b"
            r"|Signal 9 \(SIGKILL\) received by PID|terminated with signal (?:SIGKILL|9)\b"
        ),
        "process killed (likely the OOM killer)",
    ),
    # Any other "out of memory" only as an error, not advice ("to avoid running out of memory");
    # srun says "error: node1: task 0: Out Of Memory".
    (
        re.compile(
            r"(?:Error|error|ERROR|failed|FAILED|failure|Failure|Fatal|FATAL|NCCL WARN)\b.{0,120}"
            r"\b(?i:out of memory)"
        ),
        "out of memory",
    ),
)
# Healthy lines that use the same words: TF's allocator retries a failed allocation and says so
# ("Allocator (GPU_0_bfc) ran out of memory trying to allocate 2.20GiB ... The caller indicates
# that this is not a failure, but may mean that there could be performance gains ..."), and
# advice ("to avoid running out of memory", "if you see 'CUDA out of memory'").
_NOT_A_FAILURE = re.compile(r"this is not a failure", re.I)
_ADVICE = re.compile(
    r"\b(?:avoid(?:ing)?|prevent(?:ing|s)?|to reduce|to fix|if you (?:see|get|hit)"
    r"|in case of|risk of|whether|check(?:s|ing)? if)\b",
    re.I,
)
_ADVICE_REACH = 60  # how far before a match an advice word makes the line advice
# A message that lists the OOM killer among possible causes does not say it struck (Ray: "A
# worker died or was killed ... There are some potential root causes. (1) The process is killed
# by SIGKILL by OOM killer due to high memory usage. (2) ray stop --force is called. ...").
_CAUSES = re.compile(r"\b(?:potential|possible|probable) (?:root )?causes?\b", re.I)


def _label(text: str) -> str | None:
    """What kind of OOM the line reports, or None: a failure, not advice or a retry note."""
    if _NOT_A_FAILURE.search(text):
        return None
    for pattern, label in _PATTERNS:
        m = pattern.search(text)
        if m and not _ADVICE.search(text, max(0, m.start() - _ADVICE_REACH), m.start()):
            return None if _CAUSES.search(text, 0, m.start()) else label
    return None


class OomSettings(RuleSettings):
    quiet_lines: int = Field(
        200, ge=0, description="After a report, lines during which further OOM text is not news."
    )
    low_available_gb: float = Field(
        1.0,
        ge=0,
        description="A SIGKILL while the host had less than this available counts as an OOM kill.",
    )


class OomRule(Rule):
    name = "oom"
    Settings = OomSettings
    handles = (Text,)
    text_gate = (
        "memory",
        "oom",
        "killed",
        "alloc_failed",
        "exhausted",
        "杀死",
        "殺死",
        "137",
        "-9",
        "signal 9",
        "sigkill",
        "bfc_allocator",
        "allocat",
        "malloc",
        "capacity",
        "executable batch size",
        "paging file",
    )

    def __init__(self, settings: OomSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: OomSettings
        self._quiet = LineCooldown(self.settings.quiet_lines)
        self._last_sample: ResourceSample | None = None

    def on_event(self, event: Event) -> list[Anomaly]:
        assert isinstance(event, Text)
        text = event.text
        low = text.lower()
        if not any(g in low for g in self.text_gate):
            return []
        label = _label(text)
        if label is None:
            return []
        if not self._quiet.ready(event.lineno):
            return []
        self._quiet.fire(event.lineno)
        tried = _TRIED.search(text)
        message = f"{label}: tried to allocate {tried.group(1)}" if tried else label
        return [self.anomaly(Severity.ERROR, message, event.ts, event.lineno, (clip(text),))]

    def on_resource(self, sample: ResourceSample) -> list[Anomaly]:
        self._last_sample = sample
        return []

    def on_exit(self, exit: Exit) -> list[Anomaly]:
        sig = exit.signal
        if sig is None and exit.returncode is not None and exit.returncode < 0:
            sig = -exit.returncode
        if sig != signal.SIGKILL or exit.killed_by_ftmon:
            return []
        sample = self._last_sample
        if sample is None or sample.host_available_gb >= self.settings.low_available_gb:
            return []
        return [
            self.anomaly(
                Severity.ERROR,
                f"killed by SIGKILL with {sample.host_available_gb:.1f} GB of host memory "
                f"available (tree RSS {sample.host_rss_gb:.1f} GB): likely the OOM killer",
                exit.ts,
            )
        ]
