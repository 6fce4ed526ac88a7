"""Finding the last good checkpoint: by the step in its name, strictly before the step at which
the rule first fired (from the run's metrics, or HF's progress bar), never one after."""

from __future__ import annotations

from pathlib import Path

from supervisor.events import Anomaly, Metric, Severity
from supervisor.recipe.model import Recipe
from supervisor.runs.checkpoints import (
    Checkpoint,
    find,
    first_anomaly_step,
    newest_before,
    progress_step,
    start_from,
)
from supervisor.store.history import History


def folders(root: Path, *names: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name in names:
        (root / name).mkdir()
    return root


def test_find_dates_checkpoints_by_the_step_in_their_names(tmp_path: Path) -> None:
    out = folders(tmp_path / "out", "checkpoint-10", "checkpoint-200", "checkpoint-30", "final")
    (out / "checkpoint-5.tmp").write_text("")  # a name that only starts like one
    assert [c.step for c in find(out, r"checkpoint-(\d+)")] == [10, 30, 200]
    named = folders(tmp_path / "ck", "step_000120.pt", "step_000080.pt")
    assert [c.step for c in find(named, r"step_(?P<step>\d+)\.pt")] == [80, 120]
    assert find(tmp_path / "missing", r"checkpoint-(\d+)") == []


def test_the_newest_before_the_step_never_the_one_at_or_after_it() -> None:
    ckpts = [Checkpoint(Path(f"checkpoint-{s}"), s) for s in (10, 20, 30, 35, 40)]
    assert newest_before(ckpts, 35) == ckpts[2]  # checkpoint-35 holds the bad update
    assert newest_before(ckpts, 36) == ckpts[3]
    assert newest_before(ckpts, 10) is None


def test_progress_step_reads_the_last_bar_frame_before_the_line(tmp_path: Path) -> None:
    log = tmp_path / "output.log"
    log.write_text(
        "loading\n"
        "\r 10%| | 4/40 [00:01<00:09]\r 12%| | 5/40 [00:01<00:09]\n"
        "{'loss': 1.0}\n"
        "\r 25%| | 10/40 [00:02<00:06]\n"
        "{'loss': nan}\n"
    )
    assert progress_step(log, 3) == 5
    assert progress_step(log, 5) == 10
    assert progress_step(log, 0) == 10
    assert progress_step(tmp_path / "nope.log", 3) is None


def _history_with_a_nan_run(tmp_path: Path, recipe: Recipe) -> tuple[History, Path]:
    history = History(tmp_path / "logs" / "ftmon.db")
    run_dir = tmp_path / "logs" / "r1"
    run_dir.mkdir(parents=True)
    history.add_run(
        run_id="r1", name="r", started_at=1.0, recipe_yaml=recipe.to_yaml(), cwd=str(tmp_path),
        run_dir=str(run_dir), log_path=str(run_dir / "output.log"),
    )  # fmt: skip
    metrics = [Metric(lineno=n, ts=1.0, values={"loss": 1.0}, step=n * 10) for n in (1, 2, 3)]
    metrics.append(Metric(lineno=4, ts=1.0, values={"loss": float("nan")}, step=35))
    history.record_batch("r1", events=metrics, offset=100, lineno=4)
    history.add_anomaly("r1", Anomaly("nan", Severity.ERROR, "loss is nan at step 35", 1.0, 4))
    folders(run_dir / "out", "checkpoint-10", "checkpoint-30", "checkpoint-35", "checkpoint-40")
    return history, run_dir


def test_a_relaunch_from_the_last_good_checkpoint(tmp_path: Path) -> None:
    """The failed run's first NaN is at step 35: the relaunch resumes from checkpoint-30 and
    skips the next K batches; its change list says so."""
    recipe = Recipe.model_validate(
        {
            "name": "r",
            "command": ["python", "train.py"],
            "args": {"output_dir": "{run_dir}/out", "lr": 0.1},
            "checkpoints": {"dir": "{run_dir}/out", "skip_arg": "skip_batches"},
            "on": {"nan": {"do": "relaunch", "from": "last_good_checkpoint", "skip_batches": 8}},
        }
    )
    history, run_dir = _history_with_a_nan_run(tmp_path, recipe)
    assert first_anomaly_step(history, "r1", "nan") == 35
    new, changes = start_from(history, "r1", recipe, "nan", ["lr 0.1 -> 0.05"])
    assert new.args["resume_from_checkpoint"] == str(run_dir / "out" / "checkpoint-30")
    assert new.args["skip_batches"] == 8 and new.args["lr"] == 0.1
    assert changes[0] == "lr 0.1 -> 0.05"
    assert changes[1].startswith(f"from checkpoint {run_dir / 'out' / 'checkpoint-30'} (step 30")
    history.close()


def test_without_a_good_checkpoint_the_relaunch_starts_from_the_base_weights(
    tmp_path: Path,
) -> None:
    """Only checkpoints at or after the NaN: none is taken, and the resume arg an earlier
    relaunch set is dropped, so the child starts from the base weights, saying why."""
    recipe = Recipe.model_validate(
        {
            "name": "r",
            "command": ["python", "train.py"],
            "args": {"output_dir": "{run_dir}/out", "resume_from_checkpoint": "/gone/checkpoint-5"},
            "on": {"nan": {"do": "relaunch", "from": "last_good_checkpoint"}},
        }
    )
    history, run_dir = _history_with_a_nan_run(tmp_path, recipe)
    for name in ("checkpoint-10", "checkpoint-30"):
        (run_dir / "out" / name).rmdir()
    new, changes = start_from(history, "r1", recipe, "nan", [])
    assert "resume_from_checkpoint" not in new.args
    assert changes == ["from the base weights: no checkpoint to go back to (none before step 35)"]
    history.close()


def test_a_policy_from_base_weights_changes_nothing(tmp_path: Path) -> None:
    recipe = Recipe.model_validate(
        {
            "name": "r",
            "command": ["python", "train.py"],
            "args": {"output_dir": "{run_dir}/out"},
            "on": {"nan": {"do": "relaunch"}},
        }
    )
    history, _ = _history_with_a_nan_run(tmp_path, recipe)
    assert start_from(history, "r1", recipe, "nan", ["x"]) == (recipe, ["x"])
    history.close()
