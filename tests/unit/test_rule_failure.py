"""A rule (or the parser) that raises on one odd line loses only its own finding there.

The other rules' anomalies, the chunk's metrics and the failing rule's later findings are all
still reported, on the per-line path, the batch path (batch.py) and the reference path, with
the same answers; the failure is said once per rule as an `ftmon` WARNING.
"""

from __future__ import annotations

import logging

import pytest

from supervisor.events import Anomaly, Event, LogLine, Metric, Severity
from supervisor.monitoring.monitor import BATCH_LINES, Monitor
from supervisor.parsing.parser import Parser
from tests.programs.ftmon_extra_rule import RaisesOn

TS = 1_700_000_000.0
OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 7.46 GiB. GPU 0 has 44 GiB"


def lines_of(texts: list[str]) -> list[LogLine]:
    out, at = [], 0
    for i, text in enumerate(texts, 1):
        end = at + len(text.encode()) + 1
        out.append(LogLine(i, at, end, text))
        at = end
    return out


def chunk(n: int) -> list[LogLine]:
    """`n` lines: a metric on each line but a few; line 5 probes, line 7 is an OOM."""
    texts = [
        f"{{'loss': {1 + i / 1000:.4f}, 'learning_rate': 2e-05, 'epoch': {i}}}" for i in range(n)
    ]
    texts[4] = "probe the rule"
    texts[6] = OOM
    texts[n - 2] = "probe again"
    return lines_of(texts)


def feed(monitor: Monitor, lines: list[LogLine], per: int) -> list[Event]:
    out: list[Event] = []
    for start in range(0, len(lines), per):
        out += monitor.feed_lines(lines[start : start + per], TS)
    return out


@pytest.mark.parametrize(("reference", "per"), [(False, 10), (False, BATCH_LINES + 50), (True, 10)])
def test_a_rule_that_raises_loses_only_its_finding_on_that_event(
    reference: bool, per: int, caplog: pytest.LogCaptureFixture
) -> None:
    """Metrics, the OOM of the same chunk and the failing rule's later findings are reported;
    the failure is one `ftmon` WARNING naming the rule, the line and the exception type."""
    lines = chunk(300)
    monitor = Monitor(reference=reference, extra_rules=[RaisesOn(frozenset({3, 6, 200}))])
    with caplog.at_level(logging.ERROR, logger="ftmon.monitor"):
        events = feed(monitor, lines, per)
    metrics = [e for e in events if isinstance(e, Metric)]
    assert len(metrics) == 297  # every metric line, the ones the rule raised on included
    anomalies = [e for e in events if isinstance(e, Anomaly)]
    assert [(a.rule, a.lineno) for a in anomalies if a.rule == "oom"] == [("oom", 7)]
    said = [a for a in anomalies if a.rule == "ftmon"]
    assert len(said) == 1
    assert said[0].severity is Severity.WARNING and said[0].lineno == 3
    assert "raises_on" in said[0].message and "line 3" in said[0].message
    assert "ZeroDivisionError" in said[0].message
    # The rule goes on after failing (twice more, said once).
    assert [a.lineno for a in anomalies if a.rule == "raises_on"] == [5, 299]
    assert monitor.failed["raises_on"] >= 3  # each event of those lines
    assert caplog.text.count("ZeroDivisionError") == 1  # one traceback, not one per failure


def test_both_paths_give_the_same_answers_with_a_failing_rule() -> None:
    """Per line, batch and reference: the same events in the same order, the same counters."""

    def answers(reference: bool, per: int) -> list[str]:
        monitor = Monitor(reference=reference, extra_rules=[RaisesOn(frozenset({3, 6, 290}))])
        out = [repr(e) for e in feed(monitor, chunk(600), per)]
        return [*out, repr(dict(monitor.anomalies)), repr(dict(monitor.failed))]

    reference = answers(True, 600)
    assert answers(False, 7) == reference
    assert answers(False, 600) == reference  # one batch (batch.py)
    assert answers(False, BATCH_LINES + 1) == reference  # batches and a short tail


class FailsOnBoom(Parser):
    """A parser with a bug on lines holding `boom`."""

    def parse(self, line: LogLine, ts: float) -> list[Event]:
        if "boom" in line.text:
            raise KeyError("boom")
        return super().parse(line, ts)


@pytest.mark.parametrize("per", [5, BATCH_LINES + 1])
def test_a_line_the_parser_fails_on_is_read_as_text(per: int) -> None:
    """The chunk's other lines are parsed; the failing line still reaches the text rules."""
    texts = [f"{{'loss': {1 + i / 100:.3f}, 'epoch': {i}}}" for i in range(BATCH_LINES + 1)]
    texts[3] = f"boom {OOM}"
    monitor = Monitor(parser=FailsOnBoom())
    events = feed(monitor, lines_of(texts), per)
    assert sum(isinstance(e, Metric) for e in events) == len(texts) - 1
    assert [(a.rule, a.lineno) for a in events if isinstance(a, Anomaly)] == [("oom", 4)]
    assert monitor.failed["parser"] == 1


def test_a_rule_that_raises_on_a_tick_or_the_exit_leaves_the_others() -> None:
    """The stall rule still speaks on a tick where another rule raised."""
    from supervisor.events import Exit
    from supervisor.rules import WatchSettings

    class RaisesOnTime(RaisesOn):
        def on_tick(self, ts: float) -> list[Anomaly]:
            raise RuntimeError("tick")

        def on_exit(self, exit: Exit) -> list[Anomaly]:
            raise RuntimeError("exit")

    watch = WatchSettings.model_validate({"stall": {"secs": 60}})
    monitor = Monitor(watch, extra_rules=[RaisesOnTime(frozenset())])
    monitor.feed_lines(chunk(20), TS)
    found = monitor.tick(TS + 3600)
    assert "stall" in [a.rule for a in found]
    assert [a.rule for a in found].count("ftmon") == 1
    assert "a tick" in next(a.message for a in found if a.rule == "ftmon")
    ended = monitor.feed_exit(Exit(TS + 3601, returncode=1))
    assert "exit" in [a.rule for a in ended]
