"""The headless progress line: what it shows and when a non-terminal gets a new one."""

from __future__ import annotations

import io

from supervisor.events import Eval, Metric
from supervisor.report.metrics import sparkline
from supervisor.report.progress import Progress, total_steps


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_total_comes_from_the_commands_steps_flag() -> None:
    assert total_steps(["python", "-m", "trainer", "--steps", "300"]) == 300
    assert total_steps(["train.py", "--max_steps=50"]) == 50
    assert total_steps(["train.py", "--lr", "1"]) is None


def test_line_has_step_of_total_loss_val_loss_tokens_and_eta() -> None:
    clock = Clock()
    p = Progress(tty=True, clock=clock)
    p.started("r1", ["t", "--steps", "100"])
    p.update("r1", [Metric(1, 0.0, {"loss": 3.0, "tok_s": 12_345.0}, step=10)])
    clock.now += 10.0  # 10 more steps in 10 s: 1 step/s, 80 steps left
    line = p.update(
        "r1", [Metric(2, 0.0, {"loss": 2.5}, step=20), Eval(3, 0.0, {"val_loss": 2.7}, step=20)]
    )
    assert line == "r1  step 20/100  loss 2.5  val 2.7  tok/s 12.3k  ETA 1m20s"


def test_a_file_gets_a_line_per_period_and_per_evaluation_only() -> None:
    clock = Clock()
    p = Progress(tty=False, every_secs=30.0, clock=clock)
    p.started("r1", [])
    assert p.update("r1", [Metric(1, 0.0, {"loss": 3.0}, step=1)]) == "r1  step 1  loss 3"
    clock.now += 5
    assert p.update("r1", [Metric(2, 0.0, {"loss": 2.9}, step=2)]) is None
    assert p.update("r1", [Eval(3, 0.0, {"val_loss": 2.8}, step=2)]) is not None
    clock.now += 31
    assert p.update("r1", [Metric(4, 0.0, {"loss": 2.0}, step=9)]) == "r1  step 9  loss 2  val 2.8"


def test_sparkline_scales_between_min_and_max_and_marks_non_finite() -> None:
    assert sparkline([1.0, 2.0, 3.0, 4.0]) == "▁▃▆█"
    assert sparkline([5.0, float("nan"), 1.0]) == "█!▁"
    assert len(sparkline([float(i) for i in range(100)], width=24)) == 24


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_printer_redraws_one_line_on_a_terminal_and_clears_it_for_other_lines() -> None:
    """`ftmon run` on a terminal: the progress line is rewritten in place (no newline), and a
    line about the run (an anomaly) first clears it, so nothing is printed over."""
    from supervisor.cli.run import Printer
    from supervisor.events import Anomaly, Severity
    from supervisor.runs.events import AnomalyFound, MetricsObserved, RunStarted

    out = Terminal()
    printer = Printer(out)
    printer(RunStarted("r1", 0.0, "demo", 1, None, ("t", "--steps", "50"), "log", 42))
    start = len(out.getvalue())
    printer(MetricsObserved("r1", 1.0, (Metric(1, 1.0, {"loss": 2.0}, step=5),)))
    printer(MetricsObserved("r1", 2.0, (Metric(2, 2.0, {"loss": 1.5}, step=10),)))
    drawn = out.getvalue()[start:]
    assert drawn == "\r\x1b[Kr1  step 5/50  loss 2\r\x1b[Kr1  step 10/50  loss 1.5"
    nan = Anomaly("nan", Severity.ERROR, "loss is nan", 3.0, 7, run_id="r1")
    printer(AnomalyFound("r1", 3.0, nan))
    assert out.getvalue()[start + len(drawn) :].startswith("\r\x1b[Kr1: anomaly ")
