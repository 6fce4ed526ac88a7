"""What every rule shares: the `Rule` base class, its settings base model, and small helpers.

A rule is a small stateful object fed by the monitor. It sees only the event types it lists in
`handles` (the monitor dispatches by type, so a rule about metrics costs nothing on text lines)
and answers with zero or more `Anomaly`s. Rules never read a clock: time comes in with events.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from supervisor.events import Anomaly, Event, Exit, Metric, ResourceSample, Severity

# Counts, windows and line numbers of rule settings stay below this: a window of 1e20 would be
# accepted by `ge=` alone and then fail deep inside a rule (a deque's maxlen), after the launch.
MAX_COUNT = 10**9


class RuleSettings(BaseModel):
    """Base of every rule's settings: unknown keys are errors, every field has a default, no
    integer setting is above `MAX_COUNT`."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Whether the rule runs at all.")

    @field_validator("*")
    @classmethod
    def _bounded(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_COUNT:
            raise ValueError(f"at most {MAX_COUNT:,}")
        return value


class Rule:
    """One rule. Subclasses set `name`, `Settings`, `handles` and override the hooks they need."""

    name: ClassVar[str] = ""
    Settings: ClassVar[type[RuleSettings]] = RuleSettings
    # The event types `on_event` wants; the monitor only passes these.
    handles: ClassVar[tuple[type, ...]] = ()
    # Lower-case substrings without which a `Text` cannot matter to this rule: the monitor lowers
    # each text once and passes it only to the rules whose gate it meets (empty: every text).
    # The rule checks again itself, so that calling `on_event` directly gives the same answers.
    text_gate: ClassVar[tuple[str, ...]] = ()

    def __init__(self, settings: RuleSettings | None = None) -> None:
        self.settings = settings if settings is not None else self.Settings()

    def on_event(self, event: Event) -> list[Anomaly]:
        return []

    def on_lines(self, lineno: int, ts: float) -> list[Anomaly]:
        """Lines arrived, the last being `lineno`, at `ts` (once per batch, not per line)."""
        return []

    def on_resource(self, sample: ResourceSample) -> list[Anomaly]:
        return []

    def on_tick(self, ts: float) -> list[Anomaly]:
        return []

    def on_resume(self, ts: float) -> None:
        """The run was stopped and goes on from `ts`: a time-based rule restarts its clocks."""

    def on_exit(self, exit: Exit) -> list[Anomaly]:
        return []

    def anomaly(
        self,
        severity: Severity,
        message: str,
        ts: float,
        lineno: int = 0,
        evidence: tuple[str, ...] = (),
    ) -> Anomaly:
        return Anomaly(self.name, severity, message, ts, lineno, evidence)


class PerKeyRule(Rule):
    """A rule that judges some values of each `Metric` one by one, each key against its own
    history (spike, grad_norm, kl). Which keys is asked once per key name (`wants`: a log has a
    handful of names and hundreds of thousands of records); non-finite values are the nan
    rule's."""

    handles: ClassVar[tuple[type, ...]] = (Metric,)

    def __init__(self, settings: RuleSettings | None = None) -> None:
        super().__init__(settings)
        self._wanted: dict[str, bool] = {}

    def wants(self, key: str) -> bool:
        raise NotImplementedError

    def _check(self, key: str, value: float, event: Metric) -> Anomaly | None:
        raise NotImplementedError

    def on_event(self, event: Event) -> list[Anomaly]:
        assert isinstance(event, Metric)
        out: list[Anomaly] = []
        wanted = self._wanted
        for key, value in event.values.items():
            want = wanted.get(key)
            if want is None:
                want = wanted[key] = self.wants(key)
            if not want or not math.isfinite(value):
                continue
            found = self._check(key, value, event)
            if found is not None:
                out.append(found)
        return out


class LineCooldown:
    """De-duplication by line distance: say something once, then stay quiet for `lines` lines.

    A log that prints the same failure on every rank, or on every step, would otherwise give
    hundreds of anomalies for one problem; the first one carries the news.
    """

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self._last = -(10**12)

    def ready(self, lineno: int) -> bool:
        return lineno - self._last > self.lines or lineno < self._last

    def fire(self, lineno: int) -> None:
        self._last = lineno


def clip(text: str, limit: int = 300) -> str:
    """Evidence lines stay readable: a 1 MiB line is cut to its start."""
    return text if len(text) <= limit else text[:limit] + " …"


def fmt_ratio(ratio: float, digits: int = 1) -> str:
    """`746.9` in `(baseline 1.205, 746.9x)`; a ratio past a million bounded (`1.8e+308`, not
    309 digits: a float-max value over a baseline of 1)."""
    return f"{ratio:.{digits}f}" if abs(ratio) < 1e6 else f"{ratio:.3g}"


def fmt_value(value: float) -> str:
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.4g}"
