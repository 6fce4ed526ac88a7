"""A known-good checkpoint, found by step, for `on: {RULE: {do: relaunch, from:
last_good_checkpoint}}`: the newest checkpoint the failed run wrote before the rule first
fired, never one written at or after that step.

Checkpoints are dated by the step in their names (`checkpoint-120`, HF Trainer's and the
reference trainer's shape; `checkpoints.pattern` for others). The first anomaly's step is the
newest step the run had logged up to the anomaly's line (its metrics are in the history with
their line numbers; for HF Trainer, whose loss lines carry no step, the last progress-bar
frame `N/M [` before that line). The relaunched recipe gets the trainer's resume args
(`checkpoints.resume`, by default `resume_from_checkpoint: PATH`) and, with `skip_batches`, the
trainer's skip arg. Where no checkpoint qualifies the relaunch starts from the base weights, as
every relaunch does by default, and its change list says why.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from supervisor.events import Anomaly, show_step
from supervisor.recipe.flags import render_template
from supervisor.recipe.model import Checkpoints, Recipe, checkpoints_of


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    step: int


class _History(Protocol):  # what is read from store.history.History
    def anomalies(self, run_id: str) -> list[Anomaly]: ...
    def metrics(self, run_id: str, name: str | None = None) -> list[Any]: ...
    def get(self, run_id: str) -> Any: ...


def find(folder: Path, pattern: str) -> list[Checkpoint]:
    """The checkpoints in `folder` whose names match `pattern` whole, oldest step first. The
    step is the group named `step`, else the first group."""
    regex = re.compile(pattern)
    out = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return []
    for entry in entries:
        m = regex.fullmatch(entry.name)
        if not m:
            continue
        text = m.groupdict().get("step") or m.group(1)
        if text is not None and text.isdigit():
            out.append(Checkpoint(entry, int(text)))
    return sorted(out, key=lambda c: c.step)


def newest_before(checkpoints: list[Checkpoint], step: int) -> Checkpoint | None:
    """The newest checkpoint written strictly before `step` (the one at `step` already holds
    the update that went wrong)."""
    good = [c for c in checkpoints if c.step < step]
    return max(good, key=lambda c: c.step) if good else None


def first_anomaly_step(history: _History, run_id: str, rule: str) -> int | None:
    """The step at which `rule` first fired in the run: the newest step logged at or before
    the anomaly's line (the line itself, for a NaN loss). None when no step was logged."""
    first = next((a for a in history.anomalies(run_id) if a.rule == rule), None)
    if first is None:
        return None
    steps = [
        m.step
        for m in history.metrics(run_id)
        if m.step is not None and (first.lineno == 0 or m.lineno <= first.lineno)
    ]
    if steps:
        return max(steps)
    rec = history.get(run_id)
    return progress_step(Path(rec.log_path), first.lineno) if rec is not None else None


# A progress bar frame: tqdm's `37/100 [00:03<00:07, ...]` (HF Trainer's bar on stderr; its
# `{'loss': ...}` lines carry no step).
_PROGRESS = re.compile(r"(?<![\d/])(\d+)/(\d+) \[")


def progress_step(log_path: Path, lineno: int) -> int | None:
    """The step of the last progress-bar frame at or before line `lineno` of the log (all of
    it when `lineno` is 0), for trainers whose metric lines carry no step."""
    step = None
    try:
        with log_path.open("rb") as f:
            for n, raw in enumerate(f, 1):
                if lineno and n > lineno:
                    break
                found = _PROGRESS.findall(raw.decode("utf-8", "replace"))
                if found:
                    step = int(found[-1][0])
    except OSError:
        return None
    return step


def _braces(text: str) -> str:
    return text.replace("{", "{{").replace("}", "}}")  # a path is a value, not a template


def resume_args(settings: Checkpoints, checkpoint: Checkpoint) -> dict[str, Any]:
    """The args that make the trainer resume from `checkpoint`."""
    path = _braces(str(checkpoint.path))
    return {
        k: (v.replace("{checkpoint}", path) if isinstance(v, str) else v)
        for k, v in settings.resume.items()
    }


def start_from(
    history: _History, run_id: str, recipe: Recipe, rule: str, changes: list[str]
) -> tuple[Recipe, list[str]]:
    """The relaunch of the failed run `run_id` (for `rule`), set to start from its last good
    checkpoint when the rule's policy says `from: last_good_checkpoint`; `recipe` and
    `changes` are the adjusted recipe and its change list. Any other policy: unchanged."""
    policy = recipe.on.get(rule)
    settings = checkpoints_of(recipe)
    if policy is None or policy.from_ != "last_good_checkpoint" or settings is None:
        return recipe, changes
    rec = history.get(run_id)
    step = first_anomaly_step(history, run_id, rule)
    args = {k: v for k, v in recipe.args.items() if k not in settings.resume}
    if settings.skip_arg:
        args.pop(settings.skip_arg, None)
    chosen = None
    if rec is not None and step is not None:
        values = _values_of(rec, recipe)
        folder = Path(render_template(settings.dir, values)).expanduser()
        if not folder.is_absolute():
            folder = Path(rec.cwd) / folder
        candidates = find(folder, settings.pattern)
        # The checkpoint this attempt itself started from is good too (an earlier relaunch).
        started = _started_from(recipe, settings)
        if started is not None:
            candidates.append(started)
        chosen = newest_before(candidates, step)
    if chosen is None:
        why = (
            "no step was logged before it"
            if step is None
            else f"none before step {show_step(step)}"
        )
        note = f"from the base weights: no checkpoint to go back to ({why})"
        new = recipe.model_copy(update={"args": args})
        return new, [*changes, note]
    args.update(resume_args(settings, chosen))
    note = (
        f"from checkpoint {chosen.path} (step {show_step(chosen.step)}; {rule} first at step "
        f"{show_step(step)})"
    )
    if policy.skip_batches and settings.skip_arg:
        args[settings.skip_arg] = policy.skip_batches
        note += f", skipping the next {policy.skip_batches} batches"
    return recipe.model_copy(update={"args": args}), [*changes, note]


def _values_of(rec: Any, recipe: Recipe) -> dict[str, str]:
    """The placeholder values the failed run rendered with (from its history row)."""
    return {
        "run_dir": str(rec.run_dir),
        "run_id": str(rec.id),
        "base_weights": recipe.base_weights or "",
        "attempt": str(rec.attempt),
        "name": recipe.name,
    }


def _started_from(recipe: Recipe, settings: Checkpoints) -> Checkpoint | None:
    """The checkpoint the recipe's resume args already point at (a run relaunched from one)."""
    regex = re.compile(settings.pattern)
    for key, template in settings.resume.items():
        value = recipe.args.get(key)
        if not (isinstance(template, str) and "{checkpoint}" in template and value):
            continue
        path = Path(str(value).replace("{{", "{").replace("}}", "}"))
        m = regex.fullmatch(path.name)
        if m and path.exists():
            text = m.groupdict().get("step") or m.group(1)
            if text and text.isdigit():
                return Checkpoint(path, int(text))
    return None
