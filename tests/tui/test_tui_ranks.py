"""A distributed run in the TUI: its ranks under it with step and straggler score, the loss
plot overlaid per rank, a rank's node opens that rank's own log, a Slurm job shows its id."""

from __future__ import annotations

import sys
from pathlib import Path

import yaml
from textual.message import Message

from supervisor.events import Anomaly, Metric, Severity
from supervisor.recipe.model import load_recipe
from supervisor.runs.events import AnomalyFound, MetricsObserved, RunStarted
from tests.conftest import PROGRAMS
from tui.app import FtmonApp
from tui.bridge import RunFinished
from tui.screens.main import status_text
from tui.state import RunBook
from tui.widgets.logview import LogView
from tui.widgets.plots import MetricPlot
from tui.widgets.runs import RANK_MARK, RunsTree, run_label


def test_ranked_metrics_keep_each_ranks_progress_and_loss() -> None:
    """Rank 1 at half the pace scores about 0.5; the main loss series is rank 0's only."""
    book = RunBook()
    book.apply(RunStarted("a", 1.0, "ddp", 1, None, ("torchrun",), "/tmp/a/output.log", 7))
    metrics = []
    for t in range(1, 41):
        metrics.append(Metric(t, float(t), {"loss": 2.0}, step=t, rank=0))
        if t % 2 == 0:
            metrics.append(Metric(t, float(t), {"loss": 3.0}, step=t // 2, rank=1))
    book.apply(MetricsObserved("a", 40.0, tuple(metrics)))
    view = book.runs["a"]
    rows = view.rank_rows()
    assert [(r, s) for r, s, _ in rows] == [(0, 40), (1, 20)]
    assert rows[0][2] == 1.0 and 0.4 < rows[1][2] < 0.6
    assert len(view.rank_series[0]) == 40 and len(view.rank_series[1]) == 20
    assert {y for _, y in view.series["loss"]} == {2.0}


def test_a_slurm_run_is_labelled_with_its_job_id_and_queue_state() -> None:
    """The job id from history, then each state the supervisor reports, in label and status."""
    book = RunBook()
    book.apply(RunStarted("a", 1.0, "job", 1, None, ("python",), "/tmp/a/output.log", 0))
    book.set_executor("a", {"executor": "slurm", "job_id": "42"})
    assert run_label(book.runs["a"]).plain.endswith("slurm job 42")
    said = Anomaly("slurm", Severity.INFO, "job 42 PENDING (Resources)", 2.0)
    book.apply(AnomalyFound("a", 2.0, said))
    assert run_label(book.runs["a"]).plain.endswith("slurm job 42 PENDING (Resources)")
    assert "slurm job 42 PENDING (Resources)" in status_text(book.runs["a"]).plain


async def test_ranks_show_under_the_run_and_a_rank_opens_its_own_log(tmp_path: Path) -> None:
    data = {
        "name": "two-ranks",
        "command": [sys.executable, str(PROGRAMS / "two_ranks.py")],
        "args": {"run_dir": "{run_dir}", "steps": 30, "interval": 0.02},
        "preflight": {"enabled": False},
    }
    path = tmp_path / "two-ranks.yaml"
    path.write_text(yaml.safe_dump(data))
    messages: list[Message] = []
    app = FtmonApp(tmp_path / "logs", load_recipe(path), recipes_dir=tmp_path, reattach=False)
    async with app.run_test(size=(120, 40), message_hook=messages.append) as pilot:
        for _ in range(400):
            if any(isinstance(m, RunFinished) for m in messages):
                break
            await pilot.pause(0.05)
        main = app.main_screen
        main._show_plots()  # the last throttled redraw, now
        await pilot.pause()
        tree = main.query_one(RunsTree)
        run_id = main.selected
        assert run_id is not None
        rank_nodes = [n for n in tree.root.children[0].children if RANK_MARK in (n.data or "")]
        assert [str(n.label).split("  ")[:2] for n in rank_nodes] == [
            ["rank 0", "step 60"], ["rank 1", "step 30"],
        ]  # fmt: skip
        loss = main.query_one("#plot-loss", MetricPlot)
        assert loss.ranks == [0, 1]

        main.select(run_id, 1)
        log = main.query_one(LogView)
        await pilot.pause()
        assert (
            log.path is not None and log.path.name == "stdout.log" and log.path.parent.name == "1"
        )
        assert log.border_title == f"log: {run_id} rank 1"
        main.select(run_id)
        assert log.path is not None and log.path.name == "output.log"
