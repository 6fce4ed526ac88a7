"""The progress line of a headless `ftmon run`: step / total, loss, val loss, tokens/s, ETA.

On a terminal it is one line redrawn in place (the tqdm idiom); when the output is a file or a
pipe, a plain line at most every `every_secs` and at each evaluation, so a log of the
supervisor stays readable. The total is the run's `--steps` / `--max_steps` flag when its argv
has one; the ETA is the remaining steps at the rate seen since the first step here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from supervisor.events import Eval, Metric, show_step

# A rate (and so an ETA) only over this much time: a backlog read at once (a reattach) would
# otherwise give thousands of steps a second.
MIN_RATE_SECS = 2.0
TOTAL_FLAGS = ("--steps", "--max_steps", "--max-steps", "--total_steps", "--num_steps")


MAX_ETA_SECS = 1000 * 3600  # a run that would end in over 1000 h shows no ETA


def total_steps(argv: Sequence[str]) -> int | None:
    """The step count the command asks for, if it says (`--steps 300`, `--max_steps=300`)."""
    for i, arg in enumerate(argv):
        flag, eq, value = arg.partition("=")
        if flag in TOTAL_FLAGS:
            text = value if eq else (argv[i + 1] if i + 1 < len(argv) else "")
            try:
                n = int(text)
            except ValueError:
                continue
            return n if n > 0 else None
    return None


def duration(secs: float) -> str:
    secs = max(0, round(secs))
    h, rest = divmod(secs, 3600)
    m, s = divmod(rest, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s" if m else f"{s}s"


def _num(v: float) -> str:
    if not math.isfinite(v):
        return str(v)
    return f"{v / 1000:.1f}k" if abs(v) >= 10_000 else f"{v:.4g}"


@dataclass
class RunProgress:
    run_id: str
    total: int | None
    step: int | None = None
    values: dict[str, float] = field(default_factory=dict)
    first: tuple[int, float] | None = None  # (step, time) of the first step seen
    rate: float | None = None  # steps per second

    def line(self) -> str:
        parts = [self.run_id]
        if self.step is not None:
            step = show_step(self.step)
            parts.append(f"step {step}/{show_step(self.total)}" if self.total else f"step {step}")
        for key, label in (("loss", "loss"), ("val_loss", "val"), ("tok_s", "tok/s")):
            if key in self.values:
                parts.append(f"{label} {_num(self.values[key])}")
        if self.total and self.step is not None and self.rate:
            try:
                left = (self.total - self.step) / self.rate
            except OverflowError:  # a total past float's range (`--max_steps 9e399`)
                left = math.inf
            if left < MAX_ETA_SECS:  # beyond, an ETA says nothing (and would not format)
                parts.append(f"ETA {duration(left)}")
        return "  ".join(parts)


class Progress:
    """Folds metric events into one progress line per run; `update` returns the line to show
    now (None: nothing new worth a line)."""

    def __init__(
        self, *, tty: bool, every_secs: float = 30.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tty = tty
        self.every_secs = every_secs
        self.clock = clock
        self.runs: dict[str, RunProgress] = {}
        self._last_shown: dict[str, float] = {}

    def started(self, run_id: str, argv: Sequence[str]) -> None:
        self.runs[run_id] = RunProgress(run_id, total_steps(argv))

    def update(self, run_id: str, events: Sequence[object]) -> str | None:
        run = self.runs.setdefault(run_id, RunProgress(run_id, None))
        now = self.clock()
        evaluated = False
        for ev in events:
            if not isinstance(ev, Metric | Eval):
                continue
            evaluated |= isinstance(ev, Eval)
            run.values.update({k: float(v) for k, v in ev.values.items()})
            if ev.step is not None and (run.step is None or ev.step >= run.step):
                run.step = ev.step
        if run.step is not None:
            if run.first is None:
                run.first = (run.step, now)
            elif run.step > run.first[0] and now - run.first[1] >= MIN_RATE_SECS:
                run.rate = (run.step - run.first[0]) / (now - run.first[1])
        if self.tty:
            return run.line()
        last = self._last_shown.get(run_id)
        if last is None or evaluated or now - last >= self.every_secs:
            self._last_shown[run_id] = now
            return run.line()
        return None
