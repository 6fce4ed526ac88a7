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
a DataLoader worker "killed by signal: Killed", exit code 137 (SIGKILL) reported by a runner.
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
_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"CUDA out of memory|OutOfMemoryError", re.I), "CUDA out of memory"),
    (re.compile(r"CU(?:BLAS|DNN)_STATUS_ALLOC_FAILED"), "cuBLAS/cuDNN allocation failed"),
    (re.compile(r"\b(?:HIP|MPS|XPU|NPU)\b.{0,20}\bout of memory", re.I), "GPU out of memory"),
    # Error codes spelled as one word: hipErrorOutOfMemory, HIP_ERROR_OutOfMemory,
    # kIOGPUCommandBufferCallbackErrorOutOfMemory (Metal), CL_MEM_OBJECT_ALLOCATION_FAILURE.
    (re.compile(r"(?i:error)_?OutOfMemory|Insufficient Memory\b"), "GPU out of memory"),
    # XLA (TPU, JAX) and TensorFlow: RESOURCE_EXHAUSTED is also a gRPC quota code, so only when
    # the words around it are about memory ("Out of memory", "Attempting to reserve 6.48G").
    (
        re.compile(
            r"resource[ _]exhausted\W{0,3}(?:out\b|.{0,160}(?:memory|alloc|reserve|\boom\b))"
            r"|ResourceExhaustedError|(?<![A-Za-z])Ran out of memory\b",
            re.I,
        ),
        "out of memory (resource exhausted)",
    ),
    (re.compile(r"bfc_allocator\.cc:\d+\]\s*[*_x]{20}"), "out of memory (TF allocator map)"),
    (re.compile(r"can't allocate memory|Cannot allocate memory"), "host out of memory"),
    (re.compile(r"(?<![\w.])MemoryError\b(?!\w)"), "host out of memory (MemoryError)"),
    (
        re.compile(
            r"\boom[-_ ]kill|Out of memory: Kill(?:ed)? process|\bmemory watchdog\b"
            r"|memory limit.{0,80}\b(?:being killed|killing|killed)\b"
            r"|exceeded.{0,40}memory limit|memory limit exceeded",
            re.I,
        ),
        "killed for memory",
    ),
    (re.compile(r"killed by signal: Killed", re.I), "a worker was killed (likely host memory)"),
    # The shell's report of a SIGKILLed child: "Killed" alone, or "line 3: 1234 Killed  python".
    (
        re.compile(
            r"^\s*(?:Killed|已杀死|已殺死)\s*$|\b\d+\s+Killed\s+\S"
            r"|exit code 137\b|signal 9: SIGKILL"
        ),
        "process killed (likely the OOM killer)",
    ),
    # Any other "out of memory" only as an error, not advice ("to avoid running out of memory").
    (
        re.compile(r"(?:Error|error|ERROR|failed|FAILED|Fatal|FATAL)\b.{0,120}\bout of memory"),
        "out of memory",
    ),
)


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
        "sigkill",
        "bfc_allocator",
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
        label = next((lab for pattern, lab in _PATTERNS if pattern.search(text)), None)
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
