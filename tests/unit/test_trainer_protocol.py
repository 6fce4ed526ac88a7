"""The trainer's JSON lines: valid JSON (NaN included) that ftmon's own parser reads as events."""

from __future__ import annotations

import io
import json
import math

from supervisor.events import Eval, LogLine, Metric, Sample
from supervisor.parsing.parser import Parser
from trainer import protocol


def _parse(line: str) -> list[object]:
    return Parser().parse(LogLine(1, 0, len(line) + 1, line), ts=0.0)


def test_metric_line_with_nan_is_json_and_a_metric_for_ftmon() -> None:
    """A non-finite loss is printed as NaN, loads with json.loads and reaches ftmon as a Metric."""
    out = io.StringIO()
    line = protocol.emit(
        "metric", out=out, step=7, loss=math.nan, grad_norm=math.inf, lr=1e-3, skipped=1
    )
    assert out.getvalue() == line + "\n"
    record = json.loads(line)
    assert record["type"] == "metric" and math.isnan(record["loss"]) and record["skipped"] == 1
    (event,) = [e for e in _parse(line) if isinstance(e, Metric)]
    assert event.step == 7
    assert math.isnan(event.values["loss"])
    assert math.isinf(event.values["grad_norm"])


def test_sample_and_eval_lines_reach_ftmon_as_sample_and_eval() -> None:
    """Sample lines carry their prompt; eval lines their scores, both with the step."""
    out = io.StringIO()
    sample = protocol.emit("sample", out=out, step=50, prompt="Who are you?", text="F F F F F 神神")
    (s,) = [e for e in _parse(sample) if isinstance(e, Sample)]
    assert (s.prompt, s.text, s.step) == ("Who are you?", "F F F F F 神神", 50)
    ev = protocol.emit(
        "eval",
        out=out,
        step=100,
        val_loss=0.5,
        ppl=1.65,
        accuracy=0.25,
        format_accuracy=1.0,
        trunc_rate=0.0,
        avg_gen_len=18.5,
    )
    (e,) = [x for x in _parse(ev) if isinstance(x, Eval)]
    assert e.step == 100 and e.values["accuracy"] == 0.25


def test_none_fields_are_left_out_and_floats_rounded() -> None:
    """An unknown value (None) is omitted, not printed as null; floats keep 6 significant digits."""
    line = protocol.emit("metric", out=io.StringIO(), step=1, loss=1.23456789, grad_norm=None)
    assert json.loads(line) == {"type": "metric", "step": 1, "loss": 1.23457}
