"""A step is shown as itself, an absurd one (a seed or an id read as a step) in a bounded form."""

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
