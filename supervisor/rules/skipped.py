"""`skipped_steps`: the optimizer keeps skipping steps because gradients are not finite.

fp16 training uses a dynamic loss scale: it starts high (2^16, DeepSpeed sometimes 2^32) and
halves on every overflow until gradients fit, skipping those steps. A run of halvings at the
start of training is that search and is healthy (DeepSpeed `OVERFLOW! ... reducing to 32768`,
Megatron "number of skipped iterations: 10" in the first iterations). What is not healthy:

- the scale falls below 1 (`floor_scale`): even unscaled gradients overflow fp16, i.e. the
  gradients are inf/nan; no warm-up search ever goes that low, so this fires at any time;
- past warm-up (`warmup_steps` training steps, from metric lines or the latest progress bar),
  the scale is cut to `min_scale` or below (the search settles in the thousands; 64 -> 32 ->
  16 in the middle of a run means every step overflows);
- past warm-up, `cascade` reductions in a row with no scale increase in between;
- past warm-up, Megatron's "number of skipped iterations" at `cascade` or more in one line;
- a metric record whose grad norm is nan beside a finite loss (an fp16 overflow step, which
  the `nan` rule lets be, or gradients that broke: WARNING; an inf one is the scaler's and
  said nothing), and `overflow_records` such records in a row (ERROR);
- "skip non-finite loss" style messages `run` times in a row (a metric line whose values are
  all finite breaks the run; the reference trainer prints one with a nan grad norm for the
  skipped step itself, which does not).

A loss-scale cascade is the same failure as a nan loss seen from the optimizer's side: the
corpus scorer counts `skipped_steps` as the `nan` label (tests/test_corpus.py says so).

De-duplication: one report per episode; a scale increase (the scaler recovered) or a
successful-looking gap of `window_lines` lines without a skip ends the episode.
"""

from __future__ import annotations

import math
import re

from pydantic import Field

from supervisor.events import Anomaly, Event, Metric, Progress, Severity, Text, show_step
from supervisor.rules.base import Rule, RuleSettings, clip, fmt_value
from supervisor.rules.names import is_grad_norm

_NUM = r"([0-9][0-9.eE+-]*)"
# "Attempted loss scale: 64, reducing to 32" (DeepSpeed), "setting loss scale to: 0.25"
# (fairseq), "reducing loss scale to 32768.0" (apex / Megatron), "Reducing dynamic loss scale
# from 64 to 32" (DeepSpeed ZeRO-3 variant).
_REDUCE = re.compile(
    r"reducing\s+to\s+" + _NUM
    + r"|setting\s+loss\s+scale\s+to:?\s*" + _NUM
    + r"|reducing\s+(?:dynamic\s+)?loss\s+scale\s+(?:from\s+[0-9.eE+-]+\s+)?to\s+" + _NUM,
    re.I,
)  # fmt: skip
_INCREASE = re.compile(r"increasing\s+(?:dynamic\s+)?loss\s+scale|grad(?:ient)?\s+scale\s+up", re.I)
_SKIP_NONFINITE = re.compile(
    r"skip(?:ping)?\s+(?:this\s+)?(?:step|batch|update)?\s*(?:due\s+to\s+|because\s+of\s+|with\s+)?"
    r"(?:a\s+)?non[- ]?finite|non[- ]?finite\s+loss.{0,40}skip",
    re.I,
)


class SkippedStepsSettings(RuleSettings):
    floor_scale: float = Field(
        1.0, ge=0, description="A loss scale below this is never a warm-up search: report at once."
    )
    min_scale: float = Field(
        32.0, ge=0, description="Past warm-up, a loss scale cut to this or lower is reported."
    )
    cascade: int = Field(
        5, ge=2, description="Past warm-up, this many scale reductions in a row are reported."
    )
    warmup_steps: int = Field(
        50, ge=0, description="Training steps (metrics or progress bars) that count as warm-up."
    )
    run: int = Field(3, ge=1, description="'skip non-finite loss' messages in a row to report.")
    window_lines: int = Field(
        2000, ge=1, description="Lines without a skip that end a run of skips."
    )
    overflow_records: int = Field(
        5,
        ge=1,
        description="Metric records in a row with a nan/inf grad norm beside a finite loss "
        "(fp16 overflow steps) to report.",
    )


class SkippedStepsRule(Rule):
    name = "skipped_steps"
    Settings = SkippedStepsSettings
    handles = (Metric, Progress, Text)
    text_gate = ("scale", "finite")

    def __init__(self, settings: SkippedStepsSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: SkippedStepsSettings
        self._metric_step = 0  # the highest step a metric line named
        self._bar_step = 0  # where the latest progress bar stands
        self._reductions = 0
        self._last_scale: float | None = None
        self._skips = 0
        self._last_skip_line: int | None = None
        self._reported = False
        self._first_evidence: list[str] = []
        self._overflows = 0  # metric records in a row that logged an fp16 overflow step
        self._overflow_said = Severity.INFO  # the loudest report of the current run of them
        self._overflow_evidence = ""

    def on_event(self, event: Event) -> list[Anomaly]:
        if isinstance(event, Progress):
            # The latest bar, not the highest count ever seen: a finished "Map: 5000/5000"
            # dataset bar before training must not make the first steps look past warm-up.
            self._bar_step = event.current
            return []
        if isinstance(event, Metric):
            if event.step is not None:
                self._metric_step = max(self._metric_step, event.step)
            values = event.values
            total = sum(values.values())
            if self._skips and "loss" in values and total - total == 0.0:
                # A step with a finite loss and grad norm (every value finite) went through: the
                # run of non-finite skips is broken. (Not so for loss-scale cuts: HF Trainer
                # logs a finite loss even for the steps it skipped.)
                self._skips = 0
                if not self._reductions:
                    self._reported = False
            overflow = self._on_overflow_record(event)
            if overflow:
                return overflow
            skipped = event.values.get("skipped_iterations")
            if (
                skipped is not None
                and skipped >= self.settings.cascade
                and self._step >= self.settings.warmup_steps
            ):
                # Megatron counts skipped iterations per log interval: one now and then is the
                # scaler probing a higher scale; a handful past warm-up is a cascade.
                return self._report(
                    f"{skipped:g} iterations skipped at step {show_step(self._step)} "
                    "(past warm-up)",
                    event.lineno, event.ts, (), Severity.WARNING,
                )  # fmt: skip
            scale = event.values.get("loss_scale")
            if scale is not None and math.isfinite(scale) and scale < self.settings.floor_scale:
                self._last_skip_line = event.lineno
                return self._report(
                    f"fp16 loss scale is {fmt_value(scale)}: gradients overflow even unscaled",
                    event.lineno, event.ts, (), Severity.ERROR,
                )  # fmt: skip
            return []
        assert isinstance(event, Text)
        low = event.text.lower()
        if not any(g in low for g in self.text_gate):
            return []
        if (
            self._last_skip_line is not None
            and event.lineno - self._last_skip_line > self.settings.window_lines
        ):
            self._end_episode()
        m = _REDUCE.search(event.text)
        if m:
            return self._on_reduce(event, float(next(g for g in m.groups() if g is not None)))
        if _INCREASE.search(event.text):
            self._end_episode()
            return []
        if _SKIP_NONFINITE.search(event.text):
            self._last_skip_line = event.lineno
            self._skips += 1
            self._note(event.text)
            if self._skips >= self.settings.run:
                return self._report(
                    f"{self._skips} steps in a row skipped for a non-finite loss",
                    event.lineno, event.ts, tuple(self._first_evidence), Severity.ERROR,
                )  # fmt: skip
        return []

    def _on_reduce(self, event: Text, scale: float) -> list[Anomaly]:
        s = self.settings
        if self._last_scale is not None and scale >= self._last_scale:
            # Not lower than the last cut: the scaler grew back in between (it does so silently
            # after enough good steps), so this is a new single overflow, not a cascade.
            self._end_episode()
        self._last_scale = scale
        self._last_skip_line = event.lineno
        self._reductions += 1
        self._note(event.text)
        past_warmup = self._step >= s.warmup_steps
        evidence = tuple(self._first_evidence)
        if scale < s.floor_scale:
            return self._report(
                f"fp16 loss scale cut to {fmt_value(scale)} after {self._reductions} overflow(s) "
                "in a row: gradients overflow even unscaled",
                event.lineno, event.ts, evidence, Severity.ERROR,
            )  # fmt: skip
        if past_warmup and scale <= s.min_scale:
            return self._report(
                f"fp16 loss scale cut to {fmt_value(scale)} at step {show_step(self._step)} "
                f"(past warm-up): steps keep overflowing",
                event.lineno, event.ts, evidence, Severity.WARNING,
            )  # fmt: skip
        if past_warmup and self._reductions >= s.cascade:
            return self._report(
                f"{self._reductions} fp16 overflows in a row at step {show_step(self._step)} "
                f"(past warm-up), loss scale now {fmt_value(scale)}",
                event.lineno, event.ts, evidence, Severity.WARNING,
            )  # fmt: skip
        return []

    def _on_overflow_record(self, event: Metric) -> list[Anomaly]:
        """A record whose grad norm is nan/inf while its loss is finite (not HF's 0.0, which is
        every loss of the interval nan) is an fp16 overflow step: the `nan` rule lets it be.
        An inf one is what GradScaler's unscaled fp16 gradients give: nothing to say. A nan
        one may be that too (mmocr: "normal ... caused by mixed precision") or the first sign
        of a run whose gradients broke while the loss still prints finite (xtuner #187,
        VG-LLM #21; in bf16 or fp32 there are no overflow steps): a WARNING, which a recipe's
        `nan` playbook does not act on. `overflow_records` in a row: the scaler never finds a
        scale, or the gradients stay broken: an ERROR."""
        norms = [v for k, v in event.values.items() if is_grad_norm(k)]
        if not norms or self._skips:  # the trainer said it skipped: its messages are judged
            return []
        loss = event.values.get("loss", math.nan)
        if all(math.isfinite(v) for v in norms) or not math.isfinite(loss) or loss == 0.0:
            self._overflows = 0
            self._overflow_said = Severity.INFO
            return []
        self._overflows += 1
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        if self._overflows == 1:
            self._overflow_evidence = f"line {event.lineno}: grad norm {fmt_value(norms[0])}"
        if self._overflows >= self.settings.overflow_records:
            severity = Severity.ERROR
            message = (
                f"{self._overflows} logged steps in a row with a non-finite grad norm and a "
                f"finite loss{where.replace(' at ', ' up to ')}: every step overflows or its "
                "gradients are broken; none is applied"
            )
        elif any(math.isnan(v) for v in norms):
            severity = Severity.WARNING
            message = (
                f"grad norm is nan with a finite loss ({fmt_value(loss)}){where}: an fp16 "
                "overflow step if it does not repeat; broken gradients if it does"
            )
        else:
            return []
        if severity <= self._overflow_said:
            return []
        self._overflow_said = severity
        return [self.anomaly(severity, message, event.ts, event.lineno, (self._overflow_evidence,))]

    @property
    def _step(self) -> int:
        return max(self._metric_step, self._bar_step)

    def _note(self, text: str) -> None:
        if len(self._first_evidence) < 3:
            self._first_evidence.append(clip(text))
        else:
            self._first_evidence[-1] = clip(text)

    def _end_episode(self) -> None:
        self._reductions = 0
        self._last_scale = None
        self._skips = 0
        self._reported = False
        self._first_evidence = []

    def _report(
        self, message: str, lineno: int, ts: float, evidence: tuple[str, ...], severity: Severity
    ) -> list[Anomaly]:
        if self._reported:
            return []
        self._reported = True
        return [self.anomaly(severity, message, ts, lineno, evidence)]
