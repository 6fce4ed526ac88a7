"""Metrics where people look: `ftmon show` ends with them, `history --json` carries them, and a
headless `ftmon run` whose output is not a terminal prints plain progress lines."""

from __future__ import annotations

import json
import re
from pathlib import Path

from supervisor.events import Eval, Metric
from supervisor.store.history import History
from tests.conftest import ftmon
from tests.programs.recipes import write_recipe


def _recorded_run(logs: Path) -> None:
    h = History.in_logs_dir(logs)
    h.add_run(run_id="r-metrics", name="m", started_at=1.0, argv=["train"])
    events = [Metric(i, 1.0 + i, {"loss": 4.0 / i, "lr": 0.001}, step=i * 10) for i in range(1, 31)]
    events.append(Eval(31, 40.0, {"val_loss": 0.25, "accuracy": 0.5}, step=300))
    h.record_batch("r-metrics", events=events, offset=100, lineno=31)
    h.finish_run("r-metrics", status="finished", ended_at=50.0, returncode=0)
    h.close()


def test_show_ends_with_last_step_latest_values_and_sparklines(tmp_path: Path) -> None:
    _recorded_run(tmp_path)
    out = ftmon("show", "r-metrics", "--logs-dir", str(tmp_path)).stdout.splitlines()
    tail = out[out.index("metrics   last step 300") :]
    assert re.match(r"^\s+loss\s+0\.1333\s+█[▇▆▅▄▃▂▁]+▁$", tail[1]), tail
    assert any(re.match(r"^\s+accuracy\s+0\.5\s+\S$", line) for line in tail), tail
    shown = json.loads(ftmon("show", "r-metrics", "--json", "--logs-dir", str(tmp_path)).stdout)
    assert shown["metrics"]["last_step"] == 300
    loss = next(m for m in shown["metrics"]["metrics"] if m["name"] == "loss")
    assert (loss["points"], loss["kind"]) == (30, "metric")


def test_history_json_has_each_runs_latest_metrics(tmp_path: Path) -> None:
    _recorded_run(tmp_path)
    (run,) = json.loads(ftmon("history", "--json", "--logs-dir", str(tmp_path)).stdout)
    assert run["metrics"]["last_step"] == 300
    assert run["metrics"]["latest"]["val_loss"] == 0.25
    assert abs(run["metrics"]["latest"]["loss"] - 4.0 / 30) < 1e-9


def test_headless_run_into_a_pipe_prints_progress_lines(tmp_path: Path) -> None:
    recipe = write_recipe(tmp_path, "count_steps.py", args={"steps": 20, "interval": 0.01})
    done = ftmon("run", str(recipe), "--headless", "--logs-dir", str(tmp_path / "logs"))
    assert done.returncode == 0, done.stderr
    progress = [line for line in done.stdout.splitlines() if "  step " in line]
    assert progress, done.stdout
    assert re.search(r"  step \d+/20  loss [\d.]+", progress[0])
    assert "\r" not in done.stdout and "\x1b[" not in done.stdout  # plain lines in a file


def test_a_nan_metric_shows_as_nan_in_show_and_history_json(tmp_path: Path) -> None:
    """SQLite keeps NaN as NULL: read back it is shown as nan (text, sparkline mark, JSON)."""
    h = History.in_logs_dir(tmp_path)
    h.add_run(run_id="r-nan", name="m", started_at=1.0, argv=["train"])
    events = [Metric(1, 1.0, {"loss": 2.0}, step=1), Metric(2, 2.0, {"loss": float("nan")}, step=2)]
    h.record_batch("r-nan", events=events, offset=10, lineno=2)
    h.close()
    shown = ftmon("show", "r-nan", "--logs-dir", str(tmp_path))
    assert shown.returncode == 0, shown.stderr
    assert re.search(r"^\s+loss\s+nan\s+▅!$", shown.stdout, re.M), shown.stdout
    (run,) = json.loads(ftmon("history", "--json", "--logs-dir", str(tmp_path)).stdout)
    assert run["metrics"]["latest"]["loss"] == "nan"
