"""Rules about the shape of a metric over time: `spike`, `grad_norm`.

`spike` and `grad_norm` compare each new value with a moving baseline: the median of the last
`window` values of the same metric (a median, because one spike must not drag the baseline up
the way a mean or EMA would). A value is a spike when it exceeds

    median + max(min_jump, (factor - 1) * |median|)

i.e. `factor` times the baseline, and by at least `min_jump` in absolute terms so that a loss
near zero (0.01 -> 0.04) does not count; once the window holds 8 values, also by `noise` robust
standard deviations of the window (1.4826 x the median absolute deviation), so that a series as
noisy as per-batch losses of small batches is judged against its own spread. One value is a
baseline (`warmup`): a log excerpt or a resumed run starts mid-training, and a loss of 1.7
followed by 11.5 is a spike at the second value. Before that only a value above `absurd`
counts: for a language model's cross-entropy, random guessing over the vocabulary costs ln(V),
about 11-12 nats for 50k-150k tokens, but the summed losses of other models start far higher
(an object detector's total loss begins near 80 and falls), so only a loss above 100 counts
before there is a baseline (a bug or a blown-up run); a grad norm in the hundreds before
clipping is far outside what a fine-tune shows (0.1-10). Both are settings.
A metric whose baseline already lives at that scale (median at least half of `absurd`: a summed
loss, an ELBO of 150 falling to 110) is judged by its baseline alone. The first value of a
series sets its scale and counts only above `absurd_first`: a VAE's summed loss starts at 120
and a regression loss in the thousands, the first logged grad norm comes before any update
(hundreds at step 1, 12 by step 50), and until the baseline is there a value no higher than
the one before it is the series settling; a loss of 1e4 or a first grad norm of 1000 (a GKD
run's 4230 at step 5) is still a run blown up from the start, and a rise above `absurd` (55,
then 156) a blow-up.

What practitioners call a spike is also a jump against the series' own level and noise, so
the median method has two more ways to see one. A quiet series (an averaged loss that moves a
percent from print to print) that jumps by half again (`quiet_factor`) and by `quiet_sigmas`
(10) robust standard deviations of its window, from `quiet_min` (4) values on, is a spike below
`factor` x (a loss doubling on the first step of an epoch, 0.77 -> 1.53); the spread is floored
at 1% of the level, so a flat series is not infinitely quiet. After `fall_run` (3) falls in a
row the baseline is the last value, not the median that lags a steep fall (15.5 ... 1.43, then
5.82). The parts of the loss (`loss_rpn_cls`, `s0.loss_bbox`) count only far out: above
`part_factor` (Megatron's 10) times their median and above `absurd` (a line cut before its
total shows the blow-up in a part only). Grad norms keep the median alone.

A training loss printed beside a validation loss is an epoch's (or an evaluation period's)
average (Keras' `loss: 0.39 - acc: 0.87 - val_loss: 0.37`), and so is the loss on Keras'
progress bar at the end of an epoch (`10954/10954 [====] - 659s - loss: 0.0475`; the parser
marks it, source "epoch"): averages over thousands of batches do not double between summaries
in a healthy run, so a summary at `summary_factor` (2) times the median of the summaries before
it is a spike from the second summary on. Nor do they rise at every summary: a training loss
that rose at each of `summary_rises` (3, Lightning's `EarlyStopping` patience) summaries in a
row, by `summary_min_rise` (5%) in all, is a slow divergence (a learning rate too high: 1.89,
1.93, 2.00, 2.05), said at WARNING like every report here. Per-step losses never get this
check: their noise rises three times running all the time.

Two other definitions of a loss spike are settings (`method`), for runs that follow them:
`megatron`, Megatron-LM's check: a loss above `megatron_factor` (10) times the largest loss of
the first `megatron_first` (100) values; `olmo`, OLMo's: above the mean plus `olmo_sigmas` (6)
standard deviations of the last `olmo_window` (128) values (once `olmo_min` values are there).

A framework that prints every line twice (TensorFlow's two loggers) gives each value twice:
the copy changes neither the median nor the episode, so it is never a spike of its own.

`divergence` (the validation loss) is in rules/divergence.py.

De-duplication: one report per episode. A spike episode ends when a value falls back under the
threshold.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import deque
from typing import Literal

from pydantic import Field

from supervisor.events import Anomaly, Eval, Event, Metric, Severity, Text, show_step
from supervisor.rules.base import PerKeyRule, RuleSettings, fmt_ratio, fmt_value
from supervisor.rules.names import is_grad_norm, is_loss_part, is_train_loss, is_val_loss

_NOISE_MIN = 8  # values before a series' own noise is judged
# A trainer's own spike guard: SRFBN's SRSolver (copied by many super-resolution trainers) skips
# the optimizer step when `loss_batch >= skip_threshold * last_epoch_loss` and prints
# `[Warning] Skip this batch! (Loss: {})`. The trainer has judged the loss a spike.
_SKIP_WHY = "above its skip threshold times its last loss"
_SKIP_BATCH = re.compile(r"Skip this batch!?\s*\(Loss:\s*([-+]?[\d.]+(?:e[-+]?\d+)?)", re.I)


class _Baseline:
    """Recent values of one metric and a cached median, refreshed every few values.

    Sorting on every value would cost more than everything else the rule does; a median that
    lags by up to `_REFRESH` values is as good a baseline, and it is recomputed exactly before
    anything is reported.
    """

    _REFRESH = 4

    def __init__(
        self,
        window: int,
        min_jump: float = 0.0,
        factor: float = 1.0,
        noise: float = 0.0,
        quiet: tuple[int, float, float] = (0, 0.0, 0.0),
    ) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self._noise = noise
        # (values needed, factor, robust std devs): a jump in a quiet series (off when 0).
        self._quiet = quiet
        self.median = 0.0
        self._stale = 0
        self._min_jump = min_jump
        self._factor = factor
        # What a value must exceed to be a spike, for this median (computed when it changes).
        self.limit = min_jump
        self.noise_jump = 0.0  # what `noise` asks of a jump, for this window
        self.in_spike = False  # the last value was one

    def refresh(self) -> float:
        ordered = sorted(self.values)
        n = len(ordered)
        self.median = ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2
        jump = max(self._min_jump, (self._factor - 1) * abs(self.median))
        mad = sorted(abs(v - self.median) for v in ordered)[n // 2]
        if self._noise > 0 and n >= _NOISE_MIN:
            # A series as noisy as per-batch losses of small batches (0.1 .. 2.6 around 0.7)
            # swings past `factor` x its median without anything breaking: the jump must also
            # clear `noise` robust standard deviations (1.4826 x the median absolute deviation).
            jump = max(jump, self._noise * 1.4826 * mad)
        quiet_min, quiet_factor, quiet_sigmas = self._quiet
        if quiet_min and n >= quiet_min:
            # A z-score over the window: a quiet series (an averaged loss that moves by a
            # percent from print to print) that jumps by half again and by `quiet_sigmas` of
            # its own robust deviations has broken, even below `factor` x (0.77 -> 1.53).
            # The spread is floored at 1% of the level: four equal values have no spread.
            spread = 1.4826 * max(mad, 0.01 * abs(self.median))
            quiet_jump = max(
                self._min_jump, (quiet_factor - 1) * abs(self.median), quiet_sigmas * spread
            )
            jump = min(jump, quiet_jump)
        self.limit = self.median + jump
        self.noise_jump = self._noise * 1.4826 * mad if self._noise > 0 and n >= _NOISE_MIN else 0.0
        self._stale = 0
        return self.median

    def add(self, value: float) -> None:
        self.values.append(value)
        self._stale += 1
        if self._stale >= self._REFRESH:
            self.refresh()


class JumpSettings(RuleSettings):
    method: Literal["median", "megatron", "olmo"] = Field(
        "median",
        description="What a spike is: `median` (factor x the moving median), `megatron` "
        "(megatron_factor x the largest of the first values), `olmo` (mean + sigmas x std).",
    )
    factor: float = Field(3.0, gt=1, description="A value above this many times the baseline.")
    min_jump: float = Field(0.5, ge=0, description="...and above the baseline by at least this.")
    window: int = Field(20, ge=2, description="Recent values whose median is the baseline.")
    noise: float = Field(
        6.0, ge=0, description="...and by this many robust std devs of the window (0: off)."
    )
    warmup: int = Field(1, ge=1, description="Values needed before there is a baseline.")
    absurd: float = Field(
        100.0, ge=0, description="A value above this counts at any time, baseline or not (0: off)."
    )
    absurd_first: float = Field(
        10000.0, ge=0, description="...except the series' first value, which counts above this."
    )
    megatron_first: int = Field(100, ge=1, description="`megatron`: values whose largest counts.")
    megatron_factor: float = Field(
        10.0, gt=1, description="`megatron`: a loss above this many times that largest value."
    )
    olmo_window: int = Field(128, ge=2, description="`olmo`: recent values for mean and std.")
    olmo_sigmas: float = Field(6.0, gt=0, description="`olmo`: standard deviations above the mean.")
    olmo_min: int = Field(16, ge=2, description="`olmo`: values needed before judging.")
    quiet_min: int = Field(
        4, ge=0, description="`median`: values before a quiet series' own spread counts (0: off)."
    )
    quiet_factor: float = Field(
        1.5, gt=1, description="...then a value this many times the median is a spike..."
    )
    quiet_sigmas: float = Field(
        10.0, gt=0, description="...when it is also this many robust std devs above it."
    )
    fall_run: int = Field(
        3,
        ge=0,
        description="`median`: after this many falls in a row the last value is the "
        "baseline (the median lags a falling series; 0: off).",
    )
    part_factor: float = Field(
        10.0,
        ge=0,
        description="A part of the loss (`loss_rpn_cls`) above this many times its "
        "median and above `absurd` is a spike (0: parts are not watched).",
    )
    summary_factor: float = Field(
        2.0,
        ge=0,
        description="`spike`: a training loss printed beside a validation loss (an epoch's "
        "summary) above this many times the median of the summaries before it (0: off).",
    )
    summary_min_jump: float = Field(
        0.01, ge=0, description="...and above that median by at least this."
    )
    summary_rises: int = Field(
        3,
        ge=0,
        description="`spike`: a training loss that rose at each of this many epoch summaries in "
        "a row (Lightning's EarlyStopping patience, 3) is diverging, said at warning (0: off)...",
    )
    summary_min_rise: float = Field(
        0.05, ge=0, description="...when it rose by this fraction of where the rise began."
    )
    skip_lines: int = Field(
        200,
        ge=0,
        description="A trainer's own skip guard (`Skip this batch!`) firing once is it doing "
        "its job (INFO); a second skip within this many lines is a spike (0: every skip is).",
    )


class GradNormSettings(JumpSettings):
    factor: float = Field(5.0, gt=1, description="A grad norm above this many times the baseline.")
    min_jump: float = Field(5.0, ge=0, description="...and above the baseline by at least this.")
    warmup: int = Field(3, ge=1, description="Values needed before there is a baseline.")
    absurd: float = Field(
        100.0, ge=0, description="A grad norm above this counts at any time (0: off)."
    )
    absurd_first: float = Field(
        1000.0, ge=0, description="...except the first one, before any update: above this."
    )
    # Grad norms are judged against the median alone: they swing by half from step to step
    # in healthy runs and fall steeply in the first steps.
    quiet_min: int = Field(0, ge=0, description="`median`: quiet-series check (0: off).")
    fall_run: int = Field(0, ge=0, description="`median`: falling-series baseline (0: off).")
    part_factor: float = Field(0.0, ge=0, description="Grad norms have no parts (0: off).")
    skip_lines: int = Field(0, ge=0, description="Grad norms have no skip guard (0: off).")
    summary_factor: float = Field(0.0, ge=0, description="Grad norms have no summaries (0: off).")
    summary_rises: int = Field(0, ge=0, description="Grad norms have no summaries (0: off).")


class _JumpRule(PerKeyRule):
    """A spike of one family of metrics against its own moving median."""

    what = "value"

    def __init__(self, settings: JumpSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: JumpSettings
        self._series: dict[str, _Baseline] = {}
        self._first: dict[str, list[float]] = {}  # `megatron`: the first values of each metric
        self._recent_values: dict[str, deque[float]] = {}  # `olmo`: the last values

    def _check(self, key: str, value: float, event: Metric) -> Anomaly | None:
        s = self.settings
        base = self._series.get(key)
        if base is None:
            quiet = (s.quiet_min, s.quiet_factor, s.quiet_sigmas)
            base = self._series[key] = _Baseline(s.window, s.min_jump, s.factor, s.noise, quiet)
        if s.method != "median":
            return self._check_other(key, value, event, base)
        message = ""
        # The cached limit lags by up to `_REFRESH` values; a quiet series' limit may sit just
        # above its median, so anything `min_jump` above the median is judged exactly.
        near = s.quiet_min and len(base.values) >= s.quiet_min and value > base.median + s.min_jump
        if len(base.values) >= s.warmup and (
            near or value > base.limit or value > self._fall(base)
        ):
            median = base.refresh()  # exact before judging
            if value > base.limit:
                message = (
                    f"{key} spiked to {fmt_value(value)} (baseline {fmt_value(median)}, "
                    f"{fmt_ratio(value / median)}x)" if median > 0 else
                    f"{key} spiked to {fmt_value(value)} (baseline {fmt_value(median)})"
                )  # fmt: skip
            elif value > self._fall(base):
                level = base.values[-1]
                ratio = f" ({fmt_ratio(value / level)}x)" if level > 0 else ""  # from 0: no x
                message = (
                    f"{key} spiked to {fmt_value(value)} from {fmt_value(level)} after "
                    f"{s.fall_run} falls in a row{ratio}"
                )
        # A metric that lives at that scale (a summed or per-sequence loss, an ELBO) is judged
        # by its baseline alone: once its median is half of `absurd`, absurd says nothing.
        at_scale = len(base.values) >= s.warmup and base.median * 2 >= s.absurd
        # The first value sets the series' scale: only a far larger one says the run is broken;
        # until there is a baseline, a value that falls from that scale (grad norms logged every
        # step from step 1: 249, 180, 120) is the series settling, not a blow-up.
        absurd = s.absurd_first if not base.values else s.absurd
        settling = 0 < len(base.values) < s.warmup and value <= base.values[-1]
        if not message and s.absurd > 0 and value > absurd and not at_scale and not settling:
            message = f"{key} is {fmt_value(value)}, above {fmt_value(absurd)} for any baseline"
        base.add(value)
        if len(base.values) == s.warmup:
            base.refresh()
        was = base.in_spike
        base.in_spike = bool(message)
        if not message or was:
            return None
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        return self.anomaly(Severity.WARNING, message + where, event.ts, event.lineno)

    def _fall(self, base: _Baseline) -> float:
        """What a value must exceed when the series just fell `fall_run` times in a row.

        A loss falling steeply (15.5, 13, 3.8, 2.4, 1.4) leaves its window's median far above
        where it stands, so a jump back to 5.8 (4x) is under `factor` x the median; its level
        is the last value. The jump must still clear `min_jump` and the window's noise.
        """
        s = self.settings
        values = base.values
        k = s.fall_run
        if not k or len(values) <= k:
            return math.inf
        if any(values[-i - 1] <= values[-i] for i in range(1, k + 1)):
            return math.inf
        level = values[-1]
        return level + max(s.min_jump, (s.factor - 1) * abs(level), base.noise_jump)

    def _check_other(
        self, key: str, value: float, event: Metric, base: _Baseline
    ) -> Anomaly | None:
        """Megatron's and OLMo's definitions: the same episodes, another threshold."""
        s = self.settings
        message = ""
        if s.method == "megatron":
            first = self._first.setdefault(key, [])
            if first and value > s.megatron_factor * max(first):
                message = (
                    f"{key} spiked to {fmt_value(value)}, above {s.megatron_factor:g}x the "
                    f"largest of the first {len(first)} values ({fmt_value(max(first))})"
                )
            elif len(first) < s.megatron_first:
                first.append(value)
        else:  # olmo
            recent = self._recent_values.setdefault(key, deque(maxlen=s.olmo_window))
            if len(recent) >= s.olmo_min:
                mean = statistics.fmean(recent)
                std = statistics.pstdev(recent, mean)
                if value > mean + s.olmo_sigmas * std and value - mean > s.min_jump:
                    message = (
                        f"{key} spiked to {fmt_value(value)}, above the mean {fmt_value(mean)} "
                        f"+ {s.olmo_sigmas:g} sigma ({fmt_value(std)}) of the last {len(recent)}"
                    )
            if not message:
                recent.append(value)
        was = base.in_spike
        base.in_spike = bool(message)
        if not message or was:
            return None
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        return self.anomaly(Severity.WARNING, message + where, event.ts, event.lineno)


class SpikeRule(_JumpRule):
    """The training loss against its moving median; the loss's parts only when they blow up.

    A detector logs its loss's terms (`loss_rpn_cls`, `loss_bbox`) beside the total, and a
    line cut before the total (or a log of the terms alone) shows the blow-up only in a term:
    `loss_rpn_cls` 0.3 -> 156. Terms are noisier than their sum and some switch on late (0 ->
    0.5), so a term counts only far out: above `part_factor` (Megatron's 10) times its median
    and above `absurd` (or above the factor alone for a term whose median is at that scale, and
    for every term of a log that prints no training loss: CAP-VSTNet's `lap_loss`), or a first
    value above `absurd_first`.
    """

    name = "spike"
    Settings = JumpSettings
    handles = (Metric, Eval, Text)
    text_gate = ("skip this batch",)

    def __init__(self, settings: JumpSettings | None = None) -> None:
        super().__init__(settings)
        self._parts: dict[str, deque[float]] = {}
        # Epoch summaries: the line of the last evaluation, and the training losses printed on
        # such lines (`loss: 0.39 - acc: 0.87 - val_loss: 0.37`), with their own episode.
        self._eval_line = -1
        self._summaries: deque[float] = deque(maxlen=self.settings.window)
        self._summary_spiking = False
        # A rise at every summary: where it began, how many rises, whether it was said.
        self._rise_from = math.nan
        self._rises = 0
        self._rise_said = False
        # One episode for all parts: a blow-up shows in several terms at once (`d0.loss_cls`,
        # `d1.loss_cls`, ...) or on consecutive lines (Caffe prints one term a line).
        self._parts_spiking = False
        self._parts_were = False
        self._parts_line = -1
        self._skip_line = -(10**9)  # the last line where the trainer skipped a batch for its loss
        self._skips = 0  # skips in the current run of them
        self._total_seen = False  # whether the log printed a training loss (not only its parts)

    def wants(self, key: str) -> bool:
        return is_train_loss(key) or (self.settings.part_factor > 0 and is_loss_part(key))

    def on_event(self, event: Event) -> list[Anomaly]:
        if isinstance(event, Eval):
            # The parser sends a line's evaluation before its training metrics.
            if any(is_val_loss(k) for k in event.values):
                self._eval_line = event.lineno
            return []
        if isinstance(event, Text):
            return self._skipped_batch(event)
        return super().on_event(event)

    def _skipped_batch(self, event: Text) -> list[Anomaly]:
        """The trainer's own guard skipped a batch for its loss. A lone skip in a long run is
        the guard doing its job (INFO); skips in a row (`skip_lines`) are a spike the trainer
        keeps meeting, said once per run of them."""
        if "skip this batch" not in event.text.lower():
            return []
        m = _SKIP_BATCH.search(event.text)
        if m is None:
            return []
        window = self.settings.skip_lines
        gap = event.lineno - self._skip_line
        self._skip_line = event.lineno
        loss = m.group(1)
        if not window:  # every skip is a spike, said once per run of skips on adjacent lines
            if gap <= 1:
                return []
            message = f"the trainer skipped a batch for its loss ({loss}): {_SKIP_WHY}"
            return [self.anomaly(Severity.WARNING, message, event.ts, event.lineno)]
        if gap > window:  # a new run of skips: its first is the guard doing its job
            self._skips = 1
            message = f"the trainer skipped a batch for its loss ({loss}): its guard held"
            return [self.anomaly(Severity.INFO, message, event.ts, event.lineno)]
        self._skips += 1
        if self._skips != 2:
            return []
        message = f"the trainer skipped another batch for its loss ({loss}): {_SKIP_WHY}"
        return [self.anomaly(Severity.WARNING, message, event.ts, event.lineno)]

    def _check(self, key: str, value: float, event: Metric) -> Anomaly | None:
        if is_train_loss(key):
            self._total_seen = True
            found = super()._check(key, value, event)
            if event.lineno == self._eval_line or event.source == "epoch":
                summary = self._check_summary(key, value, event)
                found = found or summary
            return found
        s = self.settings
        recent = self._parts.get(key)
        if recent is None:
            recent = self._parts[key] = deque(maxlen=s.window)
        message = ""
        if not recent:
            if s.absurd_first > 0 and value > s.absurd_first:
                message = f"{key} is {fmt_value(value)}, above {fmt_value(s.absurd_first)}"
        elif len(recent) >= s.warmup and s.absurd > 0:
            median = statistics.median(recent)
            # A part whose median lives at the absurd scale (HiFi-GAN's `Gen Loss Total` ~130, a
            # sum of weighted terms) is judged by its median alone, as the loss is (above); so
            # is every part of a log that prints no total (the terms are all there is).
            alone = median * 2 >= s.absurd or not self._total_seen
            if median > 0 and value > s.part_factor * median and (alone or value > s.absurd):
                message = (
                    f"{key} spiked to {fmt_value(value)} (baseline {fmt_value(median)}, "
                    f"{fmt_ratio(value / median, 0)}x)"
                )
        recent.append(value)
        if event.lineno != self._parts_line:  # a new line: was any part spiking on the last?
            self._parts_line = event.lineno
            was, self._parts_spiking = self._parts_spiking, False
            self._parts_were = was
        if not message:
            return None
        spiking_before = self._parts_were or self._parts_spiking
        self._parts_spiking = True
        if spiking_before:
            return None
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        return self.anomaly(Severity.WARNING, message + where, event.ts, event.lineno)

    def _check_summary(self, key: str, value: float, event: Metric) -> Anomaly | None:
        """A training loss printed beside a validation loss is an epoch's (or an evaluation
        period's) average: Keras' `loss: 0.39 - acc: 0.87 - val_loss: 0.37`, `train loss 4.03,
        val loss 4.04`. Averages over thousands of batches do not double from one summary to
        the next in a healthy run, so `summary_factor` x the median of the summaries before
        is a spike from one summary on, far below what a per-step loss needs (a loss at 0.39,
        then 0.88 with the accuracy falling)."""
        s = self.settings
        before = self._summaries
        rising = self._rising(key, value, event)
        if not s.summary_factor:
            before.append(value)
            return rising
        message = ""
        if before:
            median = statistics.median(before)
            if (
                median > 0
                and value >= s.summary_factor * median
                and value - median >= s.summary_min_jump
            ):
                message = (
                    f"{key} at an epoch's summary rose to {fmt_value(value)}, "
                    f"{fmt_ratio(value / median)}x the summaries before "
                    f"(median {fmt_value(median)})"
                )
        before.append(value)
        was, self._summary_spiking = self._summary_spiking, bool(message)
        if not message or was:
            return rising
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        return self.anomaly(Severity.WARNING, message + where, event.ts, event.lineno)

    def _rising(self, key: str, value: float, event: Metric) -> Anomaly | None:
        """A training loss that rises at each of `summary_rises` epoch summaries in a row, by
        `summary_min_rise` of where it began in all: the run diverges slowly (a Keras run at a
        too-high learning rate: 1.89, 1.93, 2.00, 2.05 with the accuracy falling). An epoch's
        average does not rise three times running in a healthy run the way one batch's loss
        does; this is Lightning's `EarlyStopping` (patience 3: checks without improvement)
        applied to the training loss, with a margin, and only to summaries (never to per-step
        losses, whose noise rises three times in a row all the time)."""
        s = self.settings
        before = self._summaries
        if not before or value <= before[-1]:
            self._rise_from, self._rises, self._rise_said = value, 0, False
            return None
        self._rises += 1
        start = self._rise_from
        if (
            not s.summary_rises
            or self._rises < s.summary_rises
            or self._rise_said
            or not start > 0
            or value - start < s.summary_min_rise * start
        ):
            return None
        self._rise_said = True
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        message = (
            f"{key} rose at each of the last {self._rises} epoch summaries: "
            f"{fmt_value(start)} -> {fmt_value(value)} (+{(value - start) / start:.0%}){where}"
        )
        return self.anomaly(Severity.WARNING, message, event.ts, event.lineno)


class GradNormRule(_JumpRule):
    name = "grad_norm"
    Settings = GradNormSettings

    def wants(self, key: str) -> bool:
        return is_grad_norm(key)
