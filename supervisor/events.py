"""The facts that flow through ftmon, as small frozen dataclasses.

Data flows one way (see ../shared/design.md):

    bytes -> LogLine (tail.py) -> Metric | Sample | Eval | Progress | Text (parse.py)
          -> Anomaly (rules/, monitor.py) -> Action (policy) -> History

Nothing here does I/O or reads a clock: time comes in with the events (`ts`, seconds since the
epoch as the caller saw them), which is what keeps the monitor pure and testable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple


class Severity(IntEnum):
    """Ordered so that `severity >= Severity.WARNING` reads naturally."""

    INFO = 10
    WARNING = 20
    ERROR = 30
    CRITICAL = 40

    def __str__(self) -> str:
        return self.name.lower()


class LogLine(NamedTuple):
    """One physical line of a log, as the tailer found it.

    `text` is decoded (invalid UTF-8 replaced), with ANSI escapes and NUL bytes removed and the
    line terminator stripped. Carriage returns *inside* the line are kept: they separate tqdm
    frames, and the parser splits on them. `end` is the byte offset just past the terminator,
    i.e. where reading resumes after this line.

    A named tuple rather than a frozen dataclass: a log has millions of lines, and a tuple is
    built in C (the tailer builds a chunk's lines with `tuple.__new__` in one `map`), about ten
    times faster than a frozen dataclass, which sets each field through `object.__setattr__`.
    """

    lineno: int  # 1-based
    offset: int  # byte offset of the first byte of the line
    end: int  # byte offset just past the line (resume point)
    text: str
    truncated: bool = False  # the line was longer than the cap and was cut

    @property
    def shown(self) -> str:
        """What a terminal would show: the last non-empty `\\r` frame."""
        if "\r" not in self.text:
            return self.text
        for frame in reversed(self.text.split("\r")):
            if frame.strip():
                return frame
        return ""


# A step count this long is no training step (a seed or an id read as one): shown bounded.
STEP_SHOWN_BELOW = 10**12


def show_step(step: float | None, none: str = "-") -> str:
    """A step as ftmon shows it anywhere: `1234`; an absurd one bounded (`1e+300`, not 301
    digits); `none` when there is no step."""
    if step is None:
        return none
    if -STEP_SHOWN_BELOW < step < STEP_SHOWN_BELOW:
        return str(int(step))
    try:
        return f"{float(step):.3g}"
    except OverflowError:  # an int past float's range
        from decimal import Decimal

        return f"{Decimal(int(step)):.3g}"


@dataclass(frozen=True, slots=True)
class Metric:
    """Training metrics from one line; names are normalised (`learning_rate` -> `lr`)."""

    lineno: int
    ts: float
    values: dict[str, float]
    step: int | None = None
    source: str = ""  # which parser read it: "json", "hf", "kv", "pattern", ...
    rank: int | None = None  # torchrun's `[rankN]:` prefix of the line (rules/hang.py)


@dataclass(frozen=True, slots=True)
class Eval:
    """An evaluation result (validation loss, accuracy, ...); names normalised."""

    lineno: int
    ts: float
    values: dict[str, float]
    step: int | None = None


@dataclass(frozen=True, slots=True)
class Sample:
    """Text the model generated, for a known prompt when the trainer says which."""

    lineno: int
    ts: float
    text: str
    prompt: str = ""
    step: int | None = None


@dataclass(frozen=True, slots=True)
class Progress:
    """A tqdm-like frame: `n/total`."""

    lineno: int
    ts: float
    current: int
    total: int | None = None


class Text(NamedTuple):
    """Any other line (or the text part of a line), for the text rules (oom, traceback, ...).

    A named tuple, as `LogLine` is: nearly every line yields one, and a tuple is cheaper to build.
    """

    lineno: int
    ts: float
    text: str


@dataclass(frozen=True, slots=True)
class ResourceSample:
    """Memory and CPU of a watched process tree at one moment.

    `gpu_*` are None where there is no NVIDIA GPU or NVML; they are per device index.
    """

    ts: float
    pid: int
    host_rss_gb: float  # resident memory of the whole process tree
    host_available_gb: float  # the machine's available memory
    cpu_percent: float  # of one core, summed over the tree
    gpu_used_gb: dict[int, float] | None = None  # per device, all processes
    gpu_total_gb: dict[int, float] | None = None
    proc_gpu_gb: float | None = None  # this process tree's share, summed over devices
    nprocs: int = 1


@dataclass(frozen=True, slots=True)
class Exit:
    """The watched process ended. `signal` is set when it was killed by one."""

    ts: float
    returncode: int | None
    signal: int | None = None
    killed_by_ftmon: str = ""  # why ftmon killed it, "" if it did not
    # A scheduler ended it (rules/job_end.py): "time_limit", "preempted", "node_fail", "job_oom"
    ended_by: str = ""


@dataclass(frozen=True, slots=True)
class Anomaly:
    """Something a rule found. `lineno` is 0 when no line caused it (resources, stall)."""

    rule: str
    severity: Severity
    message: str
    ts: float
    lineno: int = 0
    evidence: tuple[str, ...] = ()
    run_id: str = ""

    def one_line(self) -> str:
        where = f"line {self.lineno}" if self.lineno else "-"
        return f"{self.severity!s:8} {self.rule:13} {where:>12}  {self.message}"


Event = Metric | Eval | Sample | Progress | Text | Anomaly


@dataclass(frozen=True, slots=True)
class Action:
    """What the policy decided to do about an anomaly, and what came of it."""

    kind: str  # "alert" | "pause" | "resume" | "kill" | "relaunch"
    rule: str
    ts: float
    run_id: str = ""
    detail: str = ""  # e.g. "lr 2e-4 -> 1e-4", "micro_batch is already 1"
    ok: bool = True
    extra: dict[str, object] = field(default_factory=dict)
