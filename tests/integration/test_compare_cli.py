"""`ftmon compare RUN...` on runs that are not a sweep: the columns are the recipe args that
differ between them, a relaunch folds into its run's row, and bad input exits 2."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from supervisor.events import Anomaly, Eval, Metric, Severity
from supervisor.store.history import History
from supervisor.store.schema import replay_reason
from tests.conftest import ftmon


def _recipe(lr: float) -> str:
    return f"name: r\ncommand: [python, train.py]\nargs:\n  lr: {lr}\n  steps: 10\n"


def _run(h: History, run_id: str, lr: float, val: list[float], **extra: object) -> None:
    h.add_run(run_id=run_id, name="r", started_at=100.0, recipe_yaml=_recipe(lr), **extra)  # type: ignore[arg-type]
    events = [Metric(1, 101.0, {"loss": 2.0, "tok_s": 1000.0}, 1)]
    events += [Eval(2 + i, 102.0 + i, {"val_loss": v}, 10 * (i + 1)) for i, v in enumerate(val)]
    h.record_batch(run_id, events=events, offset=0, lineno=len(events))
    h.finish_run(run_id, status="finished", ended_at=160.0, returncode=0)


def test_runs_compare_on_the_args_that_differ_with_relaunches_folded_in(tmp_path: Path) -> None:
    h = History.in_logs_dir(tmp_path)
    _run(h, "run-a", 0.1, [2.0, 1.5, 1.7])
    _run(h, "run-b", 0.3, [9.0])
    h.add_anomaly("run-b", Anomaly("nan", Severity.ERROR, "loss is nan", 101.0, 1))
    _run(h, "run-b-a2", 0.03, [1.2, 1.1], parent_id="run-b", attempt=2)
    h.close()
    logs = str(tmp_path)
    table = json.loads(ftmon("compare", "run-a", "run-b", "--json", "--logs-dir", logs).stdout)
    assert table["keys"] == ["lr"]  # steps is the same in both: no column
    a, b = table["rows"]
    assert (a["best_val_loss"], a["final_val_loss"], a["relaunches"]) == (1.5, 1.7, 0)
    assert (b["run_id"], b["final_val_loss"], b["relaunches"], b["anomalies"]) == (
        "run-b-a2", 1.1, 1, 1,
    )  # fmt: skip
    assert table["best"] == "run-b-a2"
    text = ftmon("compare", "run-a", "run-b", "--sort", "final_val_loss", "--logs-dir", logs)
    assert [line.split()[0] for line in text.stdout.splitlines()[1:3]] == ["run-b", "run-a"]
    rows = list(csv.DictReader(io.StringIO(ftmon("compare", "run-a", "run-b", "--csv",
                                                  "--logs-dir", logs).stdout)))  # fmt: skip
    assert [r["label"] for r in rows] == ["run-a", "run-b"] and rows[0]["lr"] == "0.1"


def test_the_anomaly_count_leaves_out_what_ftmon_said_for_information(tmp_path: Path) -> None:
    """Every CPU run gets "vram rule off: no NVIDIA GPU" and an INFO line for how it ended:
    counted, they made every run of a table show an anomaly; only warnings and worse count."""
    h = History.in_logs_dir(tmp_path)
    _run(h, "run-a", 0.1, [2.0])
    _run(h, "run-b", 0.3, [2.1])
    for run in ("run-a", "run-b"):
        h.add_anomaly(run, Anomaly("vram", Severity.INFO, "vram rule off: no NVIDIA GPU", 100.0))
    h.add_anomaly("run-b", Anomaly("spike", Severity.WARNING, "loss spiked to 9", 101.0, 1))
    h.close()
    table = json.loads(
        ftmon("compare", "run-a", "run-b", "--json", "--logs-dir", str(tmp_path)).stdout
    )
    assert [r["anomalies"] for r in table["rows"]] == [0, 1]


def test_unknown_run_and_unknown_sort_exit_2_with_one_line(tmp_path: Path) -> None:
    h = History.in_logs_dir(tmp_path)
    _run(h, "run-a", 0.1, [2.0])
    h.close()
    missing = ftmon("compare", "nope", "--logs-dir", str(tmp_path))
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"ftmon: no run matches 'nope' in {tmp_path / 'ftmon.db'}"
    bad = ftmon("compare", "run-a", "--sort", "speed", "--logs-dir", str(tmp_path))
    assert bad.returncode == 2 and bad.stderr.startswith("ftmon: --sort speed: no such column")
    assert len(bad.stderr.strip().splitlines()) == 1


def test_report_of_an_unknown_run_or_bad_sort_makes_nothing(tmp_path: Path) -> None:
    """Bad input to `ftmon report`: exit 2, one line, no report folder left behind."""
    h = History.in_logs_dir(tmp_path / "logs")
    _run(h, "run-a", 0.1, [2.0])
    h.close()
    out = tmp_path / "report"
    missing = ftmon("report", "nope", "-o", str(out), "--logs-dir", str(tmp_path / "logs"))
    assert missing.returncode == 2 and "no run matches 'nope'" in missing.stderr
    assert not out.exists()
    made = ftmon("report", "run-a", "-o", str(out), "--no-plots", "--logs-dir",
                 str(tmp_path / "logs"))  # fmt: skip
    assert made.returncode == 0, made.stderr
    text = (out / "run-a.md").read_text()
    assert "| step | val_loss |" in text and "![" not in text  # tables, no images


def test_report_of_a_lineage_still_running_gives_no_end(tmp_path: Path) -> None:
    """A killed first attempt whose relaunch still runs: the report says the lineage has not
    ended (it used to give the first attempt's end and wall time)."""
    h = History.in_logs_dir(tmp_path / "logs")
    _run(h, "run-b", 0.3, [9.0])
    h.add_run(run_id="run-b-a2", name="r", started_at=170.0, recipe_yaml=_recipe(0.03),
              parent_id="run-b", attempt=2)  # fmt: skip
    h.close()
    out = tmp_path / "report"
    made = ftmon("report", "run-b-a2", "-o", str(out), "--no-plots", "--logs-dir",
                 str(tmp_path / "logs"))  # fmt: skip
    assert made.returncode == 0, made.stderr
    intro = (out / "run-b-a2.md").read_text().splitlines()[2]
    assert "the last run-b-a2 running" in intro and intro.endswith("ended -."), intro


def test_a_lineage_still_running_has_no_wall_time_yet(tmp_path: Path) -> None:
    """The first attempt ended, its relaunch runs: the row's wall time is unknown, not the
    first attempt's."""
    h = History.in_logs_dir(tmp_path)
    _run(h, "run-b", 0.3, [9.0])
    h.add_run(run_id="run-b-a2", name="r", started_at=170.0, recipe_yaml=_recipe(0.03),
              parent_id="run-b", attempt=2)  # fmt: skip
    h.close()
    (row,) = json.loads(ftmon("compare", "run-b", "--json", "--logs-dir", str(tmp_path)).stdout)[
        "rows"
    ]
    assert row["run_id"] == "run-b-a2" and row["wall_secs"] is None


def test_a_replay_is_not_folded_into_the_run_it_replays(tmp_path: Path) -> None:
    """`ftmon replay run-b --set steps=5` is a new lineage: comparing run-b shows run-b's own
    figures (a replay with other settings must not change a finished comparison), while a
    relaunch of run-b still folds in; the replay's report is about the replay."""
    h = History.in_logs_dir(tmp_path)
    _run(h, "run-a", 0.1, [2.0])
    _run(h, "run-b", 0.3, [1.0])
    _run(h, "run-b-r", 0.3, [9.0], parent_id="run-b", attempt=2,
         reason_started=replay_reason("run-b"))  # fmt: skip
    _run(h, "run-c", 0.5, [9.0])
    _run(h, "run-c-a2", 0.05, [0.5], parent_id="run-c", attempt=2,
         reason_started="relaunch after nan: lr 0.5 -> 0.05")  # fmt: skip
    h.close()
    logs = str(tmp_path)
    table = json.loads(ftmon("compare", "run-a", "run-b", "run-c", "--json", "--logs-dir",
                             logs).stdout)  # fmt: skip
    _, b, c = table["rows"]
    assert (b["run_id"], b["final_val_loss"], b["relaunches"]) == ("run-b", 1.0, 0)
    assert (c["run_id"], c["final_val_loss"], c["relaunches"]) == ("run-c-a2", 0.5, 1)
    out = tmp_path / "report"
    made = ftmon("report", "run-b-r", "-o", str(out), "--no-plots", "--logs-dir", logs)
    assert made.returncode == 0, made.stderr
    text = (out / "run-b-r.md").read_text()
    assert "1 run(s) in its lineage, the last run-b-r finished" in text, text[:400]


def test_a_relaunch_belongs_to_its_sweep_member_and_a_replay_does_not(tmp_path: Path) -> None:
    from supervisor.store.history import SweepRecord
    from supervisor.store.schema import replay_reason

    h = History.in_logs_dir(tmp_path)
    h.add_sweep(SweepRecord("sweep-x", "r", 1.0, "", "", ("lr",), None), [(1, {"lr": 0.1})])
    _run(h, "m1", 0.1, [2.0])
    h.set_sweep_member("sweep-x", 1, status="launched", run_id="m1")
    _run(h, "m1-a2", 0.01, [1.0], parent_id="m1", attempt=2, reason_started="relaunch after nan")
    _run(h, "m1-replay", 0.1, [3.0], parent_id="m1", reason_started=replay_reason("m1"))
    member = h.sweep_member_of("m1-a2")
    assert member is not None and (member.sweep_id, member.member) == ("sweep-x", 1)
    assert h.sweep_member_of("m1-replay") is None
    h.close()
