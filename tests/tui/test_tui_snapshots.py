"""How the main and history screens look, fixed as SVG snapshots (fixed data, fixed clock).

The events are the supervisor's own dataclasses, handed to the app's bridge exactly as the
`Supervisor` hands them, with fixed times so that nothing on screen depends on when it ran.
Update after a deliberate change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and review the SVG diff.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.events import Action, Anomaly, Metric, ResourceSample, Severity
from supervisor.runs.events import (
    ActionTaken,
    AnomalyFound,
    MetricsObserved,
    ResourcesObserved,
    RunEnded,
    RunRelaunched,
    RunStarted,
)
from tui.app import FtmonApp
from tui.widgets.logview import LogView

SIZE = (120, 40)
T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
FIRST, CHILD = "20260101-0000-demo-unstable", "20260101-0001-demo-unstable-a2"
ARGV = ("python", "-m", "trainer", "--model", "tiny", "--lr", "0.02", "--steps", "60")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def loss(step: int, lr: float) -> float:
    return round(3.0 * (1 - lr) ** step + 0.05 * (step % 3), 4)


def write_log(path: Path, lr: float, steps: int, nan_at: int | None) -> list[Metric]:
    metrics, lines = [], []
    for step in range(1, steps + 1):
        value = float("nan") if step == nan_at else loss(step, lr * 5)
        lines.append(json.dumps({"step": step, "loss": value, "lr": lr, "grad_norm": 0.5}))
        metrics.append(
            Metric(
                step, T0 + step, {"loss": value, "lr": lr, "grad_norm": 0.5 + step % 4 / 10}, step
            )
        )
    lines.append("[bold red]markup in a log stays text[/] [@click=app.quit]click[/]")
    path.write_text("\n".join(lines) + "\n")
    return metrics


def demo_app(tmp_path: Path) -> FtmonApp:
    return FtmonApp(tmp_path / "logs", None, recipes_dir=tmp_path / "recipes", reattach=False)


def feed_lineage(app: FtmonApp, tmp_path: Path) -> None:
    """A first run that hit nan at step 12, killed and relaunched with half the LR."""
    first_log, child_log = tmp_path / "first.log", tmp_path / "child.log"
    first_metrics = write_log(first_log, 0.02, 12, nan_at=12)
    child_metrics = write_log(child_log, 0.01, 30, nan_at=None)
    send = app.bridge
    send(RunStarted(FIRST, T0, "demo-unstable", 1, None, ARGV, str(first_log), 4101))
    send(MetricsObserved(FIRST, T0 + 12, tuple(first_metrics)))
    nan = Anomaly("nan", Severity.ERROR, "loss is nan at step 12", T0 + 12, 12, run_id=FIRST)
    send(AnomalyFound(FIRST, T0 + 12, nan))
    kill = Action("kill", "nan", T0 + 12, FIRST, "killed by ftmon: rule nan: all gone (0.02s)")
    send(ActionTaken(FIRST, T0 + 12, kill))
    send(RunEnded(FIRST, T0 + 13, None, 15, "killed by ftmon: rule nan", "killed"))
    child_argv = (*ARGV[:5], "--lr", "0.01", *ARGV[7:])
    send(RunStarted(CHILD, T0 + 14, "demo-unstable", 2, FIRST, child_argv, str(child_log), 4133))
    reason = "relaunch after nan: args.lr 0.02 -> 0.01"
    send(RunRelaunched(FIRST, CHILD, T0 + 14, reason, ("args.lr 0.02 -> 0.01",)))
    send(MetricsObserved(CHILD, T0 + 44, tuple(child_metrics)))
    sample = ResourceSample(T0 + 44, 4133, 1.4, 20.6, 97.0, nprocs=1)
    send(ResourcesObserved(CHILD, T0 + 44, sample))


def fill_history(app: FtmonApp) -> None:
    history = app.history
    yaml_1 = "name: demo-unstable\ncommand: [python, -m, trainer]\nargs:\n  lr: 0.02\n"
    history.add_run(
        run_id=FIRST, name="demo-unstable", started_at=T0, recipe_yaml=yaml_1, argv=ARGV,
        cwd="/home/me/ftmon", env={"PYTHONUNBUFFERED": "1", "HF_TOKEN": "<redacted>"},
        log_path="logs/first/output.log", status="running",
    )  # fmt: skip
    history.finish_run(FIRST, status="killed", ended_at=T0 + 13, signal=15,
                       reason="killed by ftmon: rule nan")  # fmt: skip
    history.add_run(
        run_id=CHILD, name="demo-unstable", started_at=T0 + 14, parent_id=FIRST, attempt=2,
        reason_started="relaunch after nan: args.lr 0.02 -> 0.01",
        recipe_yaml=yaml_1.replace("0.02", "0.01"), argv=(*ARGV[:5], "--lr", "0.01", *ARGV[7:]),
        cwd="/home/me/ftmon", env={"PYTHONUNBUFFERED": "1", "HF_TOKEN": "<redacted>"},
        log_path="logs/child/output.log", changes=("args.lr 0.02 -> 0.01",), status="running",
    )  # fmt: skip
    history.finish_run(CHILD, status="finished", ended_at=T0 + 80, returncode=0, reason="finished")


def test_main_screen_shows_lineage_log_plots_gauges_feed(tmp_path: Path, snap_compare) -> None:
    """The main screen after a nan: both runs in a lineage, the relaunch's log, plots, gauges and
    the feed of what happened; markup in the log shows as text."""
    app = demo_app(tmp_path)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        feed_lineage(app, tmp_path)
        log = app.main_screen.query_one(LogView)
        for _ in range(100):
            await pilot.pause(0.02)
            plots = app.main_screen.query_one("#plots").shown
            if app.main_screen.selected == CHILD and log.line_count == 31 and len(plots) == 3:
                break
        assert app.book.runs[CHILD].parent_id == FIRST
        assert app.main_screen.query_one("#plots").shown == ["loss", "grad_norm", "lr"]
        assert "[bold red]markup" in log.visible_text()[-1]
        await pilot.pause()

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_history_screen_shows_commands_outcomes_and_parents(tmp_path: Path, snap_compare) -> None:
    """The history screen: each run with parent, attempt, outcome and reason, and the selected
    run's exact command with its secret read from the shell, not stored."""
    app = demo_app(tmp_path)
    fill_history(app)

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("h")
        await pilot.pause()
        screen = app.screen
        assert [r.id for r in screen.records] == [CHILD, FIRST]
        detail = str(screen.query_one("#detail").render())
        assert 'HF_TOKEN="$HF_TOKEN"' in detail and "--lr 0.01" in detail

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
