"""The pure pipeline: log lines -> parsed events -> rules -> anomalies. No I/O, no clock.

One `Monitor` serves a launched run, `ftmon --watch` on a foreign log and `ftmon scan` of an
old one. Time comes in as arguments (`ts`), so the same input always gives the same output.

    m = Monitor(WatchSettings(), patterns=[])
    events = m.feed_lines(tail.read(), ts=time.time())   # Metric / Eval / Sample / Anomaly
    anomalies = m.feed_resource(sample) + m.tick(now) + m.feed_exit(exit)

`feed_lines` returns the parsed metrics, evaluations and samples and every anomaly, in line
order; `Text` and `Progress` events go to the rules but are not returned (there are too many).

A rule that raises loses only its own finding on that event: the other rules, the metrics and
the rule's later events go on, and the failure is said once per rule as an `ftmon` anomaly (its
traceback logged). A line the parser fails on becomes a plain `Text`. Both paths (per line and
batch.py) do this, with the same answers.
"""

from __future__ import annotations

import dataclasses
import logging
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
    Severity,
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
log = logging.getLogger("ftmon.monitor")


class Monitor:
    """Parser + rules, with a few counters. Feed it lines, resource samples, ticks, the exit."""

    def __init__(
        self,
        watch: WatchSettings | None = None,
        patterns: Sequence[str] = (),
        reference: bool = False,
        *,
        extra_rules: Sequence[Rule] = (),
        parser: Parser | None = None,
    ) -> None:
        self.watch = watch if watch is not None else WatchSettings()
        # `reference=True`: the straightforward path (every line through the uncached parser,
        # every event to every rule that handles its type, no gates). Slow; the tests check that
        # the fast path gives exactly its answers.
        self.reference = reference
        self.parser = parser if parser is not None else Parser(patterns, cache=not reference)
        # `extra_rules`: rules of the caller's own, after the built-in ones (tests give one that
        # raises; tests/programs/ftmon_extra_rule.py).
        self.rules: list[Rule] = build_rules(self.watch) + list(extra_rules)
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
        self.failed: Counter[str] = Counter()  # calls that raised, per rule ("parser" too)

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
                try:
                    found = hook(last.lineno, ts)
                except Exception as exc:
                    rule = hook.__self__  # type: ignore[attr-defined]
                    found = self.rule_failed(rule, f"line {last.lineno}", exc, ts)
                out.extend(self._finish(found))
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
            try:
                events = parse(line, ts)
            except Exception:
                events = self.unparsed(line, ts)
            for event in events:
                kind = type(event)
                if kind is Text:
                    out.extend(on_text(event))  # type: ignore[arg-type]
                    continue
                if kind in _RETURNED:
                    out.append(event)
                    count(event)
                for handle in handlers[kind]:
                    try:
                        found = handle(event)
                    except Exception as exc:
                        found = self.rule_failed(handle.__self__, event, exc)  # type: ignore[attr-defined]
                    if found:
                        out.extend(finish(found))
        return out

    def _feed_reference(self, lines: list[LogLine], ts: float) -> list[Event]:
        out: list[Event] = []
        for line in lines:
            self._recent.append(line)
            try:
                events = self.parser.parse(line, ts)
            except Exception:
                events = self.unparsed(line, ts)
            for event in events:
                if type(event) in _RETURNED:
                    out.append(event)
                    self._count(event)
                for rule in self.rules:
                    if type(event) in rule.handles:
                        try:
                            found = rule.on_event(event)
                        except Exception as exc:
                            found = self.rule_failed(rule, event, exc)
                        out.extend(self._finish(found))
        return out

    def _on_text(self, event: Text) -> list[Anomaly]:
        low = event.text.lower()
        out: list[Anomaly] = []
        if self._any_gate is None or self._any_gate.search(low) is None:
            for handle in self._text_always:
                try:
                    found = handle(event)
                except Exception as exc:
                    found = self.rule_failed(handle.__self__, event, exc)  # type: ignore[attr-defined]
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
            try:
                found = handle(event)
            except Exception as exc:
                found = self.rule_failed(handle.__self__, event, exc)  # type: ignore[attr-defined]
            if found:
                out.extend(self._finish(found))
        return out

    def feed_resource(self, sample: ResourceSample) -> list[Anomaly]:
        out: list[Anomaly] = []
        for rule in self.rules:
            try:
                out += rule.on_resource(sample)
            except Exception as exc:
                out += self.rule_failed(rule, "a resource sample", exc, sample.ts)
        return self._finish(out)

    def tick(self, ts: float) -> list[Anomaly]:
        """Time passed (the caller's clock): the stall rule's chance to speak."""
        out: list[Anomaly] = []
        for rule in self.rules:
            try:
                out += rule.on_tick(ts)
            except Exception as exc:
                out += self.rule_failed(rule, "a tick", exc, ts)
        return self._finish(out)

    def resumed(self, ts: float) -> None:
        """The run was paused and goes on from `ts` (resumed by ftmon or by anyone): the time
        it spent stopped is not silence, so time-based rules count from here."""
        for rule in self.rules:
            try:
                rule.on_resume(ts)
            except Exception:  # nothing is returned from here: logged only
                log.exception("ftmon: rule %s failed on a resume", rule.name)

    def feed_exit(self, exit: Exit) -> list[Anomaly]:
        out: list[Anomaly] = []
        for rule in self.rules:
            try:
                out += rule.on_exit(exit)
            except Exception as exc:
                out += self.rule_failed(rule, "the exit", exc, exit.ts)
        return self._finish(out)

    def rule_failed(
        self, rule: Rule, where: Event | str, exc: Exception, ts: float = 0.0
    ) -> list[Anomaly]:
        """`rule` raised on `where` (an event, or what it was given): its finding there is
        lost, nothing else. The first time, an `ftmon` anomaly says so (and the traceback is
        logged); later failures of the same rule are only counted (`failed`)."""
        name = rule.name or type(rule).__name__
        self.failed[name] += 1
        if self.failed[name] > 1:
            return []
        lineno = 0
        if not isinstance(where, str):
            lineno, ts = where.lineno, where.ts  # type: ignore[union-attr]
            where = f"line {lineno}"
        log.error("ftmon: rule %s failed on %s", name, where, exc_info=exc)
        message = (
            f"rule {name} failed on {where} ({type(exc).__name__}): its finding there is "
            "skipped, the other rules go on; please report this (the traceback is in ftmon's log)"
        )
        return [Anomaly("ftmon", Severity.WARNING, message, ts, lineno)]

    def unparsed(self, line: LogLine, ts: float) -> list[Event]:
        """The parser raised on `line`: it is read as plain text (said once in the log)."""
        self.failed["parser"] += 1
        if self.failed["parser"] == 1:
            log.exception("ftmon: the parser failed on line %d; read as text", line.lineno)
        return [Text(line.lineno, ts, line.text)]

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
