"""Numbers ftmon shows stay readable and true: a step (an absurd one bounded), a ratio (bounded,
none from a zero level)."""

from __future__ import annotations

from supervisor.events import Metric, show_step
from supervisor.report.progress import Progress
from supervisor.rules.nan import NanRule


def test_ordinary_steps_are_shown_whole_and_absurd_ones_bounded() -> None:
    assert show_step(None) == "-" and show_step(0) == "0" and show_step(123456) == "123456"
    assert show_step(999_999_999_999) == "999999999999"
    assert show_step(10**300) == "1e+300" and show_step(1e300) == "1e+300"
    assert show_step(-(10**13)) == "-1e+13"
    assert show_step(10**400) == "1.00e+400"  # past float's range, still short


def test_a_rule_message_and_the_progress_line_show_an_absurd_step_bounded() -> None:
    [found] = NanRule().on_event(Metric(3, 0.0, {"loss": float("nan")}, step=10**300))
    assert found.message == "loss is nan at step 1e+300"
    progress = Progress(tty=False, every_secs=0.0, clock=lambda: 0.0)
    progress.started("r1", ["train.py"])
    line = progress.update("r1", [Metric(1, 0.0, {"loss": 1.0}, step=10**300)])
    assert line is not None and "step 1e+300" in line and "0000000" not in line


def test_a_spike_to_float_max_has_a_bounded_ratio() -> None:
    """`grad_norm spiked to 1.798e+308 (baseline 1, 1.8e+308x)`, not a 309-digit ratio."""
    from supervisor.events import Anomaly, LogLine
    from supervisor.monitoring.monitor import Monitor

    texts = [f'{{"step": {s}, "loss": {2 - s / 100}, "grad_norm": 1.0}}' for s in range(1, 30)]
    texts.append('{"step": 30, "loss": 1.5, "grad_norm": 1.7976931348623157e308}')
    lines = [LogLine(i, 0, 0, t) for i, t in enumerate(texts, 1)]
    found = [e for e in Monitor().feed_lines(lines, 0.0) if isinstance(e, Anomaly)]
    [spike] = [a for a in found if "grad_norm spiked" in a.message]
    assert "1.8e+308x" in spike.message and len(spike.message) < 120


def test_a_rise_after_falls_to_zero_is_reported_without_a_ratio() -> None:
    """A loss that fell to 0.0 and rose again: the spike rule divided by the 0 (ZeroDivisionError:
    the rule's finding lost); now it is reported, without an `Nx`."""
    from supervisor.rules.trend import SpikeRule

    rule = SpikeRule()
    said = []
    for i, loss in enumerate([15.5, 13.0, 3.8, 2.4, 0.0, 5.8], 1):
        said += rule.on_event(Metric(i, 0.0, {"loss": loss}, step=i))
    assert [a.message for a in said] == [
        "loss spiked to 5.8 from 0 after 3 falls in a row at step 6"
    ]


def test_a_repeat_count_of_a_cut_line_says_what_part_was_counted() -> None:
    """A 200,000-character loop is searched in its first 4096 characters: the message said
    "repeats 'x' 4096 times", as if that were the whole line."""
    from supervisor.events import Text
    from supervisor.rules.repetition.rule import RepetitionRule

    [found] = RepetitionRule().on_event(Text(1, 0.0, "x" * 200_000))
    assert found.message == (
        "a log line repeats 'x' 4096 times in its first 4096 of 200,000 characters"
    )


def test_the_progress_line_of_an_absurd_total_has_no_eta_and_no_error() -> None:
    """`--max_steps` of 400 digits: the ETA's float division overflowed on every metric (the
    headless progress line failed from the second step on); now the line has no ETA."""
    now = [0.0]
    progress = Progress(tty=True, every_secs=0.0, clock=lambda: now[0])
    progress.started("r1", ["train.py", "--max_steps", "9" * 400])
    lines = []
    for step in range(1, 6):
        now[0] += 100.0
        lines.append(progress.update("r1", [Metric(step, now[0], {"loss": 1.0}, step=step)]))
    assert lines[-1] == "r1  step 5/1.00e+400  loss 1"
    progress.started("r2", ["train.py", "--max_steps", "10"])
    for step in range(1, 4):
        now[0] += 100.0
        line = progress.update("r2", [Metric(step, now[0], {"loss": 1.0}, step=step)])
    assert line is not None and line.endswith("ETA 11m40s")  # an ordinary ETA is still said
