"""The pure pipeline: log lines -> parsed events -> rules -> anomalies. No I/O, no clock.

One `Monitor` serves a launched run, `ftmon --watch` on a foreign log and `ftmon scan` of an
old one. Time comes in as arguments (`ts`), so the same input always gives the same output.

    m = Monitor(WatchSettings(), patterns=[])
    events = m.feed_lines(tail.read(), ts=time.time())   # Metric / Eval / Sample / Anomaly
    anomalies = m.feed_resource(sample) + m.tick(now) + m.feed_exit(exit)

`feed_lines` returns the parsed metrics, evaluations and samples and every anomaly, in line
order; `Text` and `Progress` events go to the rules but are not returned (there are too many).
"""

from __future__ import annotations

import dataclasses
import re
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence

from supervisor.events import (
    Anomaly,
    Eval,
    Event,
    Exit,
    LogLine,
    Metric,
    Progress,
    ResourceSample,
    Sample,
    Text,
)
from supervisor.monitoring.batch import BatchFeeder
from supervisor.parsing.parser import Parser
from supervisor.reading.tail import gc_paused
from supervisor.rules import Rule, WatchSettings, build_rules
from supervisor.rules.base import clip

EVIDENCE_LINES = 3  # lines up to the anomaly's own, for rules that give no evidence
# Batches at least this long (a scan, a catch-up, a backlog) go through batch.py: the same
# answers with less overhead per event; a live log's few new lines take the per-line loop.
BATCH_LINES = 256
_RETURNED = frozenset((Metric, Eval, Sample))


class Monitor:
    """Parser + rules, with a few counters. Feed it lines, resource samples, ticks, the exit."""

    def __init__(
        self,
        watch: WatchSettings | None = None,
        patterns: Sequence[str] = (),
        reference: bool = False,
    ) -> None:
        self.watch = watch if watch is not None else WatchSettings()
        # `reference=True`: the straightforward path (every line through the uncached parser,
        # every event to every rule that handles its type, no gates). Slow; the tests check that
        # the fast path gives exactly its answers.
        self.reference = reference
        self.parser = Parser(patterns, cache=not reference)
        self.rules: list[Rule] = build_rules(self.watch)
        # Dispatch by event type, so a rule costs nothing on the events it does not read.
        self._handlers: dict[type, list[Callable[[Event], list[Anomaly]]]] = {
            t: [r.on_event for r in self.rules if t in r.handles]
            for t in (Metric, Eval, Sample, Progress, Text)
        }
        # Text (nearly every line) goes through the rules' keyword gates, lowered once here.
        self._text_handlers = [(r.text_gate, r.on_event) for r in self.rules if Text in r.handles]
        self._text_always = [h for gate, h in self._text_handlers if not gate]
        # One C-level search for every gate word at once: most lines meet none of them.
        words = sorted({w for gate, _ in self._text_handlers for w in gate})
        self._any_gate = re.compile("|".join(map(re.escape, words))) if words else None
        self._line_hooks = [r.on_lines for r in self.rules if type(r).on_lines is not Rule.on_lines]
        self._recent: deque[LogLine] = deque(maxlen=EVIDENCE_LINES)
        self._batch: BatchFeeder | None = None
        self.last_line_ts: float | None = None
        self.last_lineno = 0
        self.last_step: int | None = None
        self.last_values: dict[str, float] = {}  # the latest value of every metric seen
        self.lines = 0
        self.metrics = 0
        self.evals = 0
        self.samples = 0
        self.anomalies: Counter[str] = Counter()  # per rule

    def feed_lines(self, lines: Iterable[LogLine], ts: float) -> list[Event]:
        """Parse and judge lines; return metrics, evals, samples and anomalies in line order."""
        if not isinstance(lines, list):
            lines = list(lines)
        if self.reference:
            out = self._feed_reference(lines, ts)
        else:
            with gc_paused():  # a batch makes many objects and no reference cycles
                if len(lines) >= BATCH_LINES:  # history: a whole chunk at once (batch.py)
                    if self._batch is None:
                        self._batch = BatchFeeder(self)
                    out = self._batch.feed(lines, ts)
                else:
                    out = self._feed_fast(lines, ts)
        if lines:
            last = lines[-1]
            self.lines += len(lines)
            self.last_lineno = last.lineno
            self.last_line_ts = ts
            for hook in self._line_hooks:
                out.extend(self._finish(hook(last.lineno, ts)))
        return out

    def _feed_fast(self, lines: list[LogLine], ts: float) -> list[Event]:
        out: list[Event] = []
        parse = self.parser.parse
        handlers = self._handlers
        on_text = self._on_text
        finish = self._finish
        count = self._count
        recent = self._recent
        for line in lines:
            recent.append(line)
            for event in parse(line, ts):
                kind = type(event)
                if kind is Text:
                    out.extend(on_text(event))  # type: ignore[arg-type]
                    continue
                if kind in _RETURNED:
                    out.append(event)
                    count(event)
                for handle in handlers[kind]:
                    found = handle(event)
                    if found:
                        out.extend(finish(found))
        return out

    def _feed_reference(self, lines: list[LogLine], ts: float) -> list[Event]:
        out: list[Event] = []
        for line in lines:
            self._recent.append(line)
            for event in self.parser.parse(line, ts):
                if type(event) in _RETURNED:
                    out.append(event)
                    self._count(event)
                for rule in self.rules:
                    if type(event) in rule.handles:
                        out.extend(self._finish(rule.on_event(event)))
        return out

    def _on_text(self, event: Text) -> list[Anomaly]:
        low = event.text.lower()
        out: list[Anomaly] = []
        if self._any_gate is None or self._any_gate.search(low) is None:
            for handle in self._text_always:
                found = handle(event)
                if found:
                    out.extend(self._finish(found))
            return out
        for gate, handle in self._text_handlers:
            if gate:
                for word in gate:
                    if word in low:
                        break
                else:
                    continue
            found = handle(event)
            if found:
                out.extend(self._finish(found))
        return out

    def feed_resource(self, sample: ResourceSample) -> list[Anomaly]:
        out: list[Anomaly] = []
        for rule in self.rules:
            out += rule.on_resource(sample)
        return self._finish(out)

    def tick(self, ts: float) -> list[Anomaly]:
        """Time passed (the caller's clock): the stall rule's chance to speak."""
        out: list[Anomaly] = []
        for rule in self.rules:
            out += rule.on_tick(ts)
        return self._finish(out)

    def resumed(self, ts: float) -> None:
        """The run was paused and goes on from `ts` (resumed by ftmon or by anyone): the time
        it spent stopped is not silence, so time-based rules count from here."""
        for rule in self.rules:
            rule.on_resume(ts)

    def feed_exit(self, exit: Exit) -> list[Anomaly]:
        out: list[Anomaly] = []
        for rule in self.rules:
            out += rule.on_exit(exit)
        return self._finish(out)

    def _count(self, event: Event) -> None:
        if type(event) is Metric:
            self.metrics += 1
            self.last_values.update(event.values)
            if event.step is not None:
                self.last_step = event.step
        elif isinstance(event, Eval):
            self.evals += 1
            self.last_values.update(event.values)
        else:
            self.samples += 1

    def _finish(self, found: list[Anomaly]) -> list[Anomaly]:
        """Count, and give evidence (the lines up to the anomaly's) to those that have none."""
        out = []
        for a in found:
            if not a.evidence and a.lineno:
                lines = tuple(clip(ln.text) for ln in self._recent if ln.lineno <= a.lineno)
                if lines:
                    a = dataclasses.replace(a, evidence=lines)
            self.anomalies[a.rule] += 1
            out.append(a)
        return out
