"""`nan`: the loss, the grad norm or a validation loss stopped being a finite number.

Two ways in. Parsed metrics (JSON, HF dicts, `key: value` lines) whose loss / norm / perplexity
value is nan or inf, or Megatron's "number of nan iterations" above 0; and text the parser
cannot turn into metrics: a printed `tensor(nan, ...)`, "found NaN in local grad norm"
(Megatron), fairseq's `FloatingPointError: Minimum loss scale reached` and DeepSpeed's "Current
loss scale already at minimum" (both mean every step overflowed until the scaler gave up), and
checkers that raise on a non-finite value (JAX debug_nans, a FloatingPointError, TF
CheckNumerics and summaries, NanTensorHook, torch.multinomial, clip_grad_norm_, fairseq, mmdet)
or a run saying it met one ("Encountered NaN loss", "gradients are NaN/Inf"), unless advice or a
check comes first ("to avoid NaN loss"). fp16 loss-scale halving on its own (apex "Gradient
overflow. Skipping step", DeepSpeed "OVERFLOW!") is *not* here: that is normal during warm-up,
and `skipped_steps` judges when it stops being normal; for the same reason a nan or inf grad
norm beside a finite loss on the same record (a GradScaler overflow step, at any step) is let
be here, and `skipped_steps` judges it (a nan one WARNING, a run of them ERROR). A non-finite
loss is always an ERROR, and so is a loss of 0.0 beside a non-finite grad norm (HF Trainer's
logging_nan_inf_filter prints 0.0 when every loss of the interval was nan).

De-duplication: a broken run prints nan on every step. The rule reports the first non-finite
value, then stays quiet while values stay non-finite, except for a reminder every
`repeat_lines` lines; a finite value in between ends the episode, so the next nan is news again.
"""

from __future__ import annotations

import math
import re

from pydantic import Field

from supervisor.events import Anomaly, Eval, Event, Metric, Severity, Text, show_step
from supervisor.rules.base import Rule, RuleSettings, clip, fmt_value
from supervisor.rules.names import is_grad_norm, watched_for_nan

# A cheap gate first (plain substrings of the lower-cased text), then the precise patterns.
_TEXT_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Minimum loss scale reached", re.I), "fp16 loss scale reached its minimum"),
    (re.compile(r"loss scale already at minimum", re.I), "fp16 loss scale already at minimum"),
    (re.compile(r"\btensor\(\s*-?(?:nan|inf)\b", re.I), "non-finite tensor printed"),
    (
        re.compile(
            r"\bfound\s+(?:a\s+)?nan\b|\bdetected\s+(?:inf\s+or\s+)?nan\b|returned\s+nan\b"
            r"|(?<!no )\b(?:inf\s+or\s+)?nan\s+(?:or\s+inf\s+)?(?:values?\s+)?(?:found|detected)\b",
            re.I,
        ),
        "NaN detected",
    ),
    # A loss / norm / perplexity printed as nan in a line the parser did not read as metrics
    # ("iter 3010: loss nan, time ...", "'loss/train': 'nan'", "[Loss] nan"). `\bnan\b` keeps
    # "nanochat", "nanms", "finance" out.
    (
        re.compile(
            r"(?:loss|norm|ppl|perplexity)[\w/.@-]*['\"\]]?\s*(?:[:=]|\bis\b)?\s*['\"]?-?nan(?![\w-])",
            re.I,
        ),
        "non-finite value printed",
    ),
    # A step line whose one value is nan: the loss, printed without its name ("Step 101: nan
    # (20%)", OpenSplat; "iter 40, nan").
    (
        re.compile(r"^\W*(?:step|iter(?:ation)?|it)\s*\d+(?:\s*/\s*\d+)?\s*[:,]\s*-?nan\b", re.I),
        "non-finite value printed",
    ),
    # An error raised on an infinite gradient or loss, in the run's own words ("ValueError:
    # rgb network grad is INF"): an fp16 scaler's inf is never raised as an error.
    (
        re.compile(
            r"\w(?:Error|Exception):.{0,80}\b(?:grad(?:ient)?s?|loss(?:es)?)\b[^.;:\n]{0,10}?"
            r"\b(?:is|are|was|were|became)\s+[`'\"]?[-+]?inf(?:inite|inity)?(?![\w-])",
            re.I,
        ),
        "non-finite value",
    ),
    # The same for an infinite loss or perplexity ("Loss is Infinity.", "loss = inf"); not a
    # norm: an inf grad norm beside a finite loss is an fp16 overflow step (skipped_steps).
    (
        re.compile(
            r"(?<![\w/.])(?<!min )(?<!best )"
            r"(?:(?:train|training|lm|total|val|eval|valid|test)[_/ .-]?)?"
            r"(?:loss|ppl|perplexity)(?:[_/.-](?:train|total|avg|mean|step))?['\"\]]?"
            r"\s*(?:[:=]|\bis\b)\s*['\"]?[-+]?inf(?:inity)?(?![\w-])",
            re.I,
        ),
        "infinite value printed",
    ),
    # The frameworks' own words for a loss that stopped being finite: detectron2's "Loss
    # became infinite or NaN", mmdet/mmengine's CheckInvalidLossHook "loss become infinite or
    # NaN!", Keras' TerminateOnNaN "Invalid loss, terminating training".
    (
        re.compile(
            r"\bloss\s+(?:became|become|becomes|is|was)\s+(?:infinite|inf|infinity)\b"
            r"|\binvalid loss\b",
            re.I,
        ),
        "non-finite loss",
    ),
    # Checkers that raise on a non-finite value: JAX debug_nans ("FloatingPointError: invalid
    # value (nan) encountered in jit(train_step)", "Invalid nan value encountered in the output
    # of a jax.jit function"), TF's CheckNumerics ("ReluGrad input is not finite. : Tensor had
    # NaN values", "LossTensor is inf or nan : Tensor had Inf values"), TF summaries ("Nan in
    # summary histogram for: layer1/weights"), TF's NanTensorHook (NanLossDuringTrainingError
    # "NaN loss during training."), torch.multinomial ("probability tensor contains either
    # `inf`, `nan` or element < 0"), clip_grad_norm_(error_if_nonfinite=True) ("The total norm
    # of order 2.0 for gradients from `parameters` is non-finite"), fairseq ("gradients are
    # Nan/Inf"), torch.distributions ("found invalid values:\n tensor([[nan, ..."), Stable
    # Diffusion web UI's NansException ("A tensor with all NaNs was produced in Unet.").
    (
        re.compile(
            r"invalid (?:value \((?:nan|inf)\)|nan value) encountered"
            r"|tensor had (?:nan|inf)\b"
            r"|\b(?:nan|infinity) in summary histogram"
            r"|NanLossDuringTraining|\bnan loss during training"
            r"|\btensor\(\[+\s*-?(?:nan|inf)\b|\bwith all NaNs\b|\bNansException\b"
            r"|\b(?:loss(?:es)?|grad(?:ient)?s?|norm|logits|outputs?|weights|params|parameters"
            r"|activations|values|tensors?|predictions|rewards?|advantages|input)\b[^.;:\n]{0,40}?"
            r"\b(?:is|are|was|were|became|become|becomes|contains?|contained|had|has|have|got)\s+"
            r"(?:either\s+|all\s+|an?\s+)?[`'\"]?(?:nan(?:[`'\"]?\s*(?:/|,|or|and/or)\s*[`'\"]?inf)?"
            r"|inf[`'\"]?\s*(?:/|,|or|and/or)\s*[`'\"]?nan|non-?finite|not finite)(?![\w-])",
            re.I,
        ),
        "non-finite value",
    ),
    # Python's FloatingPointError is raised only on a non-finite result: JAX's debug_nans and
    # debug_infs, numpy under `seterr(all="raise")`, fairseq's loss-scale floor. The exception
    # line, or IPython's traceback header "FloatingPointError    Traceback (most recent call
    # last)" when the message is cut; not an `except FloatingPointError:` line of code.
    (
        re.compile(r"^\W*(?:[\w.]+\.)?FloatingPointError\b(?::|\s+Traceback\b)"),
        "non-finite value raised",
    ),
    # A run saying it met a non-finite value: "Encountered NaN loss at step 3", "Detected
    # non-finite gradients", "NaN loss detected, skipping batch", "got inf loss".
    (
        re.compile(
            r"\b(?:encountered|detected|found|got|caught|observed|hit)\s+(?:an?\s+)?"
            r"(?:nan|non-?finite|inf(?:inite)?)\b(?:\s+(?:loss|grad|value|norm)\w*)?"
            r"|\b(?:nan|non-?finite)\s+(?:loss|grad\w*|gradient norm|grad norm|values?)\s+"
            r"(?:encountered|detected|found|during|at (?:step|iter)|in (?:step|iter|batch))",
            re.I,
        ),
        "NaN detected",
    ),
)
# Advice and conditions are not events: "to avoid NaN loss use bf16", "check whether the loss
# is nan", "skip batches if grads are non-finite".
_ADVICE = re.compile(
    r"\b(?:avoid(?:ing)?|prevent(?:ing|s)?|whether|if|unless|guard against|to fix)\b",
    re.I,
)
_ADVICE_REACH = 40


class NanSettings(RuleSettings):
    repeat_lines: int = Field(
        1000,
        ge=1,
        description="While values stay non-finite, remind at most once per this many lines.",
    )


class NanRule(Rule):
    name = "nan"
    Settings = NanSettings
    handles = (Metric, Eval, Text)
    # Lower-cased substrings one of which a line must hold before the patterns run ("inf"
    # alone would let every INFO line through).
    text_gate = (
        "nan", "loss scale", "tensor(", "infinit", "finite", "invalid loss",
        "(inf)", ": inf", "= inf", "=inf", "is inf", "'inf", '"inf', " inf ", " inf,",
        "floatingpointerror",
    )  # fmt: skip

    def __init__(self, settings: NanSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: NanSettings
        self._in_episode = False
        self._last_report = 0
        self._watched = watched_for_nan
        self._overflow_line = 0  # the last line whose record was an fp16 overflow step

    def on_event(self, event: Event) -> list[Anomaly]:
        if isinstance(event, Text):
            return self._on_text(event)
        assert isinstance(event, (Metric, Eval))
        values = event.values
        nan_iters = values.get("nan_iterations")
        if nan_iters:  # Megatron counts the iterations whose loss or grads were nan
            where = f" up to step {show_step(event.step)}" if event.step is not None else ""
            return self._report(f"{nan_iters:g} nan iterations{where}", event.lineno, event.ts, ())
        total = sum(values.values())
        if total - total == 0.0:  # every value finite (one nan or inf makes this nan): most lines
            if self._in_episode and any(self._watched(k) for k in values):
                self._in_episode = False  # the state changed: the next nan is news again
            return []
        bad: list[tuple[str, float]] = []
        finite_seen = False
        for key, value in values.items():
            if not self._watched(key):
                continue
            if math.isfinite(value):
                finite_seen = True
            else:
                bad.append((key, value))
        loss = values.get("loss", math.nan)
        if bad and all(is_grad_norm(k) for k, _ in bad) and math.isfinite(loss) and loss != 0.0:
            # fp16 AMP: a GradScaler overflow step logs a nan or inf grad norm beside the finite
            # loss of its forward pass, and the scaler skips that step (HF Trainer with fp16;
            # mmocr's maintainer: "normal ... caused by mixed precision"). One is healthy, at
            # any step; a run of them is `skipped_steps`' to judge (its `overflow_records`).
            # Not a loss of exactly 0.0: HF's logging_nan_inf_filter leaves 0.0 when every
            # loss of the interval was nan (ModernBERT #233, LLaMA-Factory: the run is broken).
            self._overflow_line = event.lineno  # its text (sent next) is not read again
            return []
        if not bad:
            if finite_seen:
                self._in_episode = False  # the state changed: the next nan is news again
            return []
        what = ", ".join(f"{k} is {fmt_value(v)}" for k, v in bad)
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        kind = "eval: " if isinstance(event, Eval) else ""
        return self._report(f"{kind}{what}{where}", event.lineno, event.ts, ())

    def _on_text(self, event: Text) -> list[Anomaly]:
        low = event.text.lower()
        if not any(g in low for g in self.text_gate) or event.lineno == self._overflow_line:
            return []
        for pattern, label in _TEXT_PATTERNS:
            m = pattern.search(event.text)
            if m and not _ADVICE.search(event.text, max(0, m.start() - _ADVICE_REACH), m.start()):
                snippet = clip(event.text.strip(), 160)
                return self._report(f"{label}: {snippet}", event.lineno, event.ts, (event.text,))
        return []

    def _report(
        self, message: str, lineno: int, ts: float, evidence: tuple[str, ...]
    ) -> list[Anomaly]:
        if self._in_episode and lineno - self._last_report < self.settings.repeat_lines:
            return []
        repeat = self._in_episode
        self._in_episode = True
        self._last_report = lineno
        if repeat:
            message = f"still non-finite: {message}"
        return [self.anomaly(Severity.ERROR, message, ts, lineno, tuple(clip(e) for e in evidence))]
