"""The TUI catching up with a log that is already long: every metric reaches the history and the
plots, which are complete once the backlog is read (issue 14: the catch-up path)."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import yaml
from textual.app import App, ComposeResult

from supervisor.events import Action, Anomaly, Metric, Severity
from supervisor.recipe.model import load_recipe
from supervisor.runs.events import ActionTaken, AnomalyFound, MetricsObserved, RunStarted
from tui.app import FtmonApp
from tui.screens.main import CATCH_UP_LINES
from tui.state import RunBook
from tui.widgets.plots import MetricPlot
from tui.widgets.runs import RunsTree

STEPS = 3000  # lines of metrics: several batches of the Monitor's batch path


def backlog_log(path: Path) -> list[tuple[float, float]]:
    """A finished trainer's log (JSON metric lines, a word line now and then); its loss points."""
    points = []
    with path.open("w") as f:
        for step in range(1, STEPS + 1):
            loss = 3.0 / (1 + step / 300)
            f.write(json.dumps({"step": step, "loss": loss, "lr": 1e-4, "grad_norm": 0.5}) + "\n")
            if step % 100 == 0:
                f.write(f"saving checkpoint at step {step}\n")
            points.append((float(step), loss))
    return points


async def test_a_log_printed_at_once_ends_with_every_point_stored_and_plotted(
    tmp_path: Path,
) -> None:
    log = tmp_path / "train.log"
    expect = backlog_log(log)
    recipe = tmp_path / "replay.yaml"
    recipe.write_text(yaml.safe_dump({"name": "replay", "command": ["cat", str(log)]}))
    app = FtmonApp(tmp_path / "logs", load_recipe(recipe), reattach=False, force=True)
    async with app.run_test(size=(160, 48)) as pilot:
        plot = app.main_screen.query_one("#plot-loss", MetricPlot)
        for _ in range(400):
            view = next(iter(app.book.runs.values()), None)
            if view is not None and not view.live:
                break
            await pilot.pause(0.05)
        assert view is not None and view.status == "finished"
        # The catch-up was read in batches, and once the run is over its plot holds the log's
        # last point at once, not a catch-up's redraw gap later.
        assert view.batch_lines >= CATCH_UP_LINES
        assert plot.points == view.series["loss"] and plot.points[-1] == expect[-1]
        assert [
            (float(m.step or 0), m.value) for m in app.history.metrics(view.run_id, "loss")
        ] == (expect)
    assert gc.get_freeze_count() == 0  # what the app froze while it ran is collectable again
    assert gc.isenabled()  # (paused only while a batch's rows and points were made)


def test_the_book_says_how_many_lines_the_last_batch_of_metrics_spanned() -> None:
    book = RunBook()
    book.apply(RunStarted("a", 1.0, "demo", 1, None, ("x",), "/tmp/x.log", 7))
    many = tuple(Metric(lineno=n, ts=1.0, values={"loss": 1.0}, step=n) for n in range(10, 610))
    book.apply(MetricsObserved("a", 1.0, many))
    assert book.runs["a"].batch_lines == 600
    book.apply(MetricsObserved("a", 2.0, (Metric(lineno=611, ts=2.0, values={"loss": 0.9}),)))
    assert book.runs["a"].batch_lines == 1  # a followed log's few lines
    assert book.runs["a"].series["loss"][-1] == (611.0, 0.9)


async def test_an_alert_leaves_the_runs_tree_where_the_person_moved_its_cursor(
    tmp_path: Path,
) -> None:
    """A catch-up can find hundreds of anomalies, each with its alert: the runs tree is not
    rebuilt for them (which cost time and put the cursor back on the selected run)."""
    app = FtmonApp(tmp_path / "logs", reattach=False)
    async with app.run_test(size=(160, 48)) as pilot:
        for run_id in ("a", "b"):
            app.bridge(RunStarted(run_id, 1.0, run_id, 1, None, ("x",), str(tmp_path / "x"), 7))
        await pilot.pause()
        tree = app.main_screen.query_one(RunsTree)
        assert app.main_screen.selected == "a" and tree.run_ids == ["a", "b"]
        other = next(n for n in tree.root.children if n.data == "b")
        tree.move_cursor(other)  # the person looks at the other run, without choosing it
        await pilot.pause()
        for line in range(1, 6):
            anomaly = Anomaly("spike", Severity.WARNING, "loss jumped", 2.0, lineno=line)
            app.bridge(AnomalyFound("a", 2.0, anomaly))
            app.bridge(ActionTaken("a", 2.0, Action("alert", "spike", 2.0, run_id="a")))
        await pilot.pause()
        assert [i.tag for i in app.book.feed[-5:]] == ["spike"] * 5  # each anomaly is said
        assert tree.cursor_node is not None and tree.cursor_node.data == "b"


class PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield MetricPlot("loss")


async def test_a_plot_keeps_its_drawing_until_its_points_or_size_change() -> None:
    app = PlotApp()
    async with app.run_test(size=(100, 30)) as pilot:
        plot = app.query_one(MetricPlot)
        plot.show([(float(i), 2.0 - i / 100) for i in range(100)])
        await pilot.pause()
        first = plot.render()
        assert plot.render() is first  # drawn again for a layout change: the same drawing
        plot.show([(float(i), 2.0 - i / 100 + (5.0 if i == 60 else 0.0)) for i in range(100)])
        await pilot.pause()
        spiked = plot.render()
        assert str(spiked) != str(first)  # new points: drawn anew
        await pilot.resize_terminal(60, 20)
        await pilot.pause()
        narrow = plot.render()
        assert max(len(row) for row in str(narrow).splitlines()) == plot.size.width < 100
