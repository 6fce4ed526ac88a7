"""`divergence`: the validation loss going the wrong way, as early-stopping callbacks define it.

Four checks on each validation loss (`val_loss`, `eval_loss`, an evaluation's `loss`), one
report per episode (an episode ends when the validation loss makes a new best):

- **rising**: the last `evals` (3) evaluations all lie above the best one by more than
  max(min_rise * |best|, min_rise_abs): a sustained rise, not one noisy evaluation. This is
  Lightning's `EarlyStopping` (`patience=3`: checks with no improvement before it stops,
  lightning/pytorch/callbacks/early_stopping.py) with a margin, since a run that merely stopped
  improving is not broken.
- **jumped**: one evaluation at `jump_factor` (3) times the best, after `jump_after` (2)
  evaluations (0.58, then 2.30 with the accuracy back at chance).
- **threshold** (off unless set): a validation loss above `threshold`, Lightning's
  `divergence_threshold` ("stop training as soon as the monitored quantity becomes worse than
  this threshold"; default None), reported at once. Lightning's `check_finite` is the nan
  rule's.
- **overfitting**: the validation loss has not improved on its best for `overfit_patience`
  evaluations, the last is `overfit_rise` (10%) above the best, and the training loss fell at
  every one of those evaluations. What HF's `EarlyStoppingCallback` (transformers/
  trainer_callback.py: `early_stopping_patience=1`, `early_stopping_threshold=0.0`) and Keras'
  `EarlyStopping` (`monitor="val_loss"`, `patience=0`, `min_delta=0`) stop a run for, at their
  first evaluation without a new best; here two (`overfit_patience`), a clear margin and the
  training loss falling meanwhile (the model fits its training set better while it gets worse
  on held-out data; a training loss still above the best validation loss is worded an
  unstable run instead, not a generalisation gap) make it a statement about the run rather
  than about one noisy evaluation. Only a training loss printed on the evaluation's own line
  counts (Keras `loss: 0.19 - val_loss: 0.28`, nanoGPT `train loss 4.03, val loss 4.04`, a
  table's row): it is an average over the same period, as the validation loss is one over its
  set. A per-step loss logged on other lines falls and rises by chance from one evaluation to
  the next, and with a noisy validation loss that chance makes false alarms (the bench log: 98
  in 200k lines); those runs keep the `rising` check. Said at WARNING: the run may go on, a
  person should look (the best checkpoint is behind it).
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import ClassVar

from pydantic import Field

from supervisor.events import Anomaly, Eval, Event, Metric, Severity, show_step
from supervisor.rules.base import Rule, RuleSettings, fmt_ratio, fmt_value
from supervisor.rules.names import is_train_loss, is_val_loss


class DivergenceSettings(RuleSettings):
    evals: int = Field(3, ge=1, description="Evaluations in a row above the best to report.")
    min_rise: float = Field(0.05, ge=0, description="Rise over the best, as a fraction of it.")
    min_rise_abs: float = Field(0.1, ge=0, description="...and at least this much in absolute.")
    jump_factor: float = Field(
        3.0, ge=0, description="One evaluation this many times the best reports at once (0: off)."
    )
    jump_after: int = Field(2, ge=1, description="...once this many evaluations came before it.")
    overfit_patience: int = Field(
        2,
        ge=0,
        description="Overfitting: evaluations without a new best (HF early_stopping_patience, "
        "Keras/Lightning patience) while the training loss falls at each (0: off).",
    )
    overfit_rise: float = Field(
        0.1, ge=0, description="...the last one this fraction above the best (min_delta)."
    )
    threshold: float | None = Field(
        None,
        description="Lightning's `divergence_threshold`: a validation loss above this is "
        "reported at once (None: off, Lightning's default).",
    )


class DivergenceRule(Rule):
    name = "divergence"
    Settings = DivergenceSettings
    handles: ClassVar[tuple[type, ...]] = (Metric, Eval)

    def __init__(self, settings: DivergenceSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: DivergenceSettings
        self._best: dict[str, float] = {}
        self._above: dict[str, int] = {}
        self._reported: dict[str, bool] = {}
        self._wanted: dict[str, int] = {}  # 1: a validation loss, 2: the training loss
        self._seen: dict[str, int] = {}
        # Overfitting: per validation loss, its evaluations from the best on, as [value,
        # training loss on the same line (None: none), line].
        self._since_best: dict[str, list[list]] = {}
        self._over: dict[str, bool] = {}  # above `threshold` at its last evaluation

    def on_event(self, event: Event) -> list[Anomaly]:
        assert isinstance(event, (Metric, Eval))
        out: list[Anomaly] = []
        wanted = self._wanted
        for key, value in event.values.items():
            want = wanted.get(key)
            if want is None:
                want = wanted[key] = 1 if is_val_loss(key) else 2 if is_train_loss(key) else 0
            if not math.isfinite(value):
                continue
            if want == 1 or (key == "loss" and isinstance(event, Eval)):
                found = self._over_threshold(key, value, event)
                found = self._check(key, value, event) or found
            elif want == 2:
                found = self._train_loss(value, event)
            else:
                continue
            if found is not None:
                out.append(found)
        return out

    def _over_threshold(self, key: str, value: float, event: Metric | Eval) -> Anomaly | None:
        """Lightning's `divergence_threshold`, once per stretch above it."""
        limit = self.settings.threshold
        if limit is None:
            return None
        was = self._over.get(key, False)
        self._over[key] = value > limit
        if value <= limit or was:
            return None
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        message = f"{key} is {fmt_value(value)}{where}, above the divergence threshold {limit:g}"
        return self.anomaly(Severity.WARNING, message, event.ts, event.lineno)

    def _train_loss(self, value: float, event: Metric | Eval) -> Anomaly | None:
        """The training loss of an evaluation on this same line (the parser sends a line's
        evaluation before its training metrics)."""
        if not self.settings.overfit_patience:
            return None
        for key, evals in self._since_best.items():
            if evals[-1][2] == event.lineno:
                evals[-1][1] = value
                found = self._overfit(key, event)
                if found is not None:
                    return found
        return None

    def _check(self, key: str, value: float, event: Metric | Eval) -> Anomaly | None:
        s = self.settings
        seen = self._seen[key] = self._seen.get(key, 0) + 1
        best = self._best.get(key)
        if best is None or value < best:
            self._best[key] = value
            self._above[key] = 0
            self._reported[key] = False
            self._since_best[key] = [[value, None, event.lineno]]
            return None
        self._since_best[key].append([value, None, event.lineno])
        rise = max(s.min_rise * abs(best), s.min_rise_abs)
        if value - best > rise:
            self._above[key] = self._above.get(key, 0) + 1
        else:
            self._above[key] = 0
        # A validation loss that jumps to several times its best at one evaluation (0.58 ->
        # 2.30, accuracy back to chance) is the evaluation's own spike: no need to wait for
        # `evals` more. A first evaluation or two are no baseline yet.
        jumped = (
            s.jump_factor > 0
            and seen > s.jump_after
            and best > 0
            and value - best > rise
            and value >= s.jump_factor * best
        )
        if self._reported.get(key):
            return None
        if self._above[key] < s.evals and not jumped:
            return self._overfit(key, event)
        self._reported[key] = True
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        if self._above[key] < s.evals:
            message = (
                f"{key} jumped to {fmt_value(value)}{where}, {fmt_ratio(value / best)}x the best "
                f"{fmt_value(best)}"
            )
        else:
            message = (
                f"{key} rising: {fmt_value(value)}{where}, {self._above[key]} evaluations "
                f"above the best {fmt_value(best)}"
            )
        return self.anomaly(Severity.WARNING, message, event.ts, event.lineno)

    def _overfit(self, key: str, event: Metric | Eval) -> Anomaly | None:
        """`overfit_patience` evaluations without a new best, the last `overfit_rise` above it,
        the training loss lower at each of them than at the one before."""
        s = self.settings
        evals = self._since_best[key]
        if not s.overfit_patience or len(evals) <= s.overfit_patience or self._reported.get(key):
            return None
        best, last = evals[0][0], evals[-1][0]
        if best <= 0 or last - best <= s.overfit_rise * best:
            return None
        trains = [e[1] for e in evals[-s.overfit_patience - 1 :]]
        if any(t is None for t in trains) or any(b >= a for a, b in pairwise(trains)):
            return None
        self._reported[key] = True
        where = f" at step {show_step(event.step)}" if event.step is not None else ""
        # A training loss still above the best validation loss has not fitted the training
        # set better than the held-out one: the run is unstable, not overfitting.
        verdict = (
            "overfitting"
            if trains[-1] < best
            else f"unstable (the training loss is still above the best {key}), not overfitting"
        )
        message = (
            f"{key} rose to {fmt_value(last)}{where}, {len(evals) - 1} evaluations without "
            f"beating the best {fmt_value(best)} (+{(last - best) / best:.0%}) while the "
            f"training loss fell {fmt_value(trains[0])} -> {fmt_value(trains[-1])}: {verdict}"
        )
        return self.anomaly(Severity.WARNING, message, event.ts, evals[-1][2])
