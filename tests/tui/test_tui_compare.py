"""The comparison screen (`c`): a sweep's members side by side, as `ftmon compare` prints them,
with their curves overlaid; fixed as an SVG snapshot (fixed data, fixed clock)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from supervisor.events import Eval, Metric
from supervisor.report.compare import compare_sweep, format_table
from supervisor.store.history import History, SweepRecord
from tui.app import FtmonApp

SIZE = (120, 40)
T0 = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC
SWEEP = "sweep-20260101-000000-study"
VALUES = [{"lr": 0.1, "micro_batch": 4}, {"lr": 0.1, "micro_batch": 8},
          {"lr": 0.5, "micro_batch": 4}, {"lr": 0.5, "micro_batch": 8}]  # fmt: skip


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _run(h: History, run_id: str, start: float, scale: float, **extra: object) -> None:
    h.add_run(run_id=run_id, name="study", started_at=start, argv=["python", "-m", "trainer"],
              **extra)  # type: ignore[arg-type]  # fmt: skip
    events: list[object] = []
    for step in range(5, 61, 5):
        events.append(Metric(step, start + step, {"loss": 3.0 * scale / (1 + step / 20),
                                                   "tok_s": 4000.0 / scale}, step))  # fmt: skip
        if step % 20 == 0:
            val = 3.2 * scale / (1 + step / 25)
            evals = {"val_loss": val, "accuracy": step / 100 / scale}
            events.append(Eval(step, start + step, evals, step))
    h.record_batch(run_id, events=events, offset=0, lineno=len(events))
    h.finish_run(run_id, status="finished", ended_at=start + 62, returncode=0)


def fill_sweep(h: History) -> None:
    h.add_sweep(SweepRecord(SWEEP, "study", T0, "name: study\n", "/home/me", ("lr", "micro_batch"),
                            None), [(i + 1, v) for i, v in enumerate(VALUES)])  # fmt: skip
    scales = [1.0, 0.9, 1.3, 0.8]
    for i, scale in enumerate(scales):
        run_id = f"20260101-000{i}-study-{i + 1}"
        _run(h, run_id, T0 + i, scale)
        h.set_sweep_member(SWEEP, i + 1, status="launched", run_id=run_id)
    # Member 3 went NaN first: its relaunch is the run the row reports.
    _run(h, "20260101-0005-study-3-a2", T0 + 70, 1.1, parent_id="20260101-0002-study-3",
         attempt=2, reason_started="relaunch after nan: lr 0.5 -> 0.05")  # fmt: skip


def test_compare_screen_shows_the_sweep_table_and_overlaid_curves(
    tmp_path: Path, snap_compare
) -> None:
    """`c` opens the newest sweep: one row per member with the swept values, val loss,
    accuracy, tokens/s and relaunches (the same rows `ftmon compare` prints), best marked."""
    app = FtmonApp(tmp_path / "logs", None, recipes_dir=tmp_path / "recipes", reattach=False)
    fill_sweep(app.history)
    cli_text = format_table(compare_sweep(app.history, SWEEP))

    async def run_before(pilot) -> None:  # type: ignore[no-untyped-def]
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert type(screen).__name__ == "CompareScreen"
        assert [r.label for r in screen.table.rows] == ["#1", "#2", "#3", "#4"]
        assert [r.relaunches for r in screen.table.rows] == [0, 0, 1, 0]
        assert "best by best_val_loss: #4" in str(screen.query_one("#title").render())
        assert "best by best_val_loss: #4" in cli_text
        await pilot.press("s")  # sort: best val loss first
        await pilot.pause()
        assert screen.table.rows[0].label == "#4"

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def test_launching_a_sweep_recipe_runs_its_members_and_c_compares_them(
    tmp_path: Path,
) -> None:
    """`o` on a recipe with a `sweep:` starts its members (here two light real programs) as
    runs sharing a sweep id; once they end, `c` opens that sweep."""
    from tests.conftest import async_wait_for
    from tests.programs.recipes import write_recipe

    path = write_recipe(
        tmp_path, "count_steps.py", name="tui-sweep", args={"steps": 3, "interval": 0.01},
        sweep={"grid": {"steps": [3, 4]}, "max_parallel": 2},
    )  # fmt: skip
    app = FtmonApp(tmp_path / "logs", None, recipes_dir=tmp_path, reattach=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("o")
        await pilot.pause()
        await app.screen.launch_path(path).wait()  # what picking it in the list does
        await async_wait_for(
            lambda: app.history.sweeps()
            and all(m.run_id and app.history.get(m.run_id).status == "finished"
                    for m in app.history.sweep_members(app.history.sweeps()[0].id)),
            timeout=60, what="both members finished",
        )  # fmt: skip
        assert {r.name for r in app.history.runs()} == {"tui-sweep-1", "tui-sweep-2"}
        await async_wait_for(  # the app draws what its message queue brings, a moment later
            lambda: set(app.book.runs) == {r.id for r in app.history.runs()},
            what="both members drawn as runs",
        )  # fmt: skip
        await pilot.press("c")
        await pilot.pause()
        assert app.screen.choices[0] == app.history.sweeps()[0].id
        assert [r.values for r in app.screen.table.rows] == [{"steps": 3}, {"steps": 4}]
        second = app.screen.table.rows[1].run_id
        await pilot.press("down", "enter")  # the highlighted member, on the main screen
        await pilot.pause()
        assert app.screen is app.main_screen and app.main_screen.selected == second
