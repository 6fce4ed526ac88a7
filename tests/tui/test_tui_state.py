"""What the TUI records from the supervisor's events, and how the bridge delivers them."""

from __future__ import annotations

import math

from textual.app import App
from textual.message import Message

from supervisor.events import Action, Anomaly, Eval, Metric, ResourceSample, Severity
from supervisor.runs.events import (
    ActionTaken,
    AnomalyFound,
    ChainStopped,
    MetricsObserved,
    ResourcesObserved,
    RunEnded,
    RunPaused,
    RunRelaunched,
    RunStarted,
)
from tui.bridge import Bridge, MetricsArrived, ResourcesSampled
from tui.state import RunBook


def started(run_id: str, parent: str | None = None, attempt: int = 1) -> RunStarted:
    return RunStarted(run_id, 1.0, "demo", attempt, parent, ("python", "x.py"), "/tmp/x.log", 7)


def test_lineage_status_and_changes_are_recorded() -> None:
    """A relaunch sits under its parent with its change; statuses follow pause and end."""
    book = RunBook()
    book.apply(started("a"))
    book.apply(RunPaused("a", 2.0, "paused by ftmon: rule spike"))
    assert book.runs["a"].status == "paused" and "spike" in book.runs["a"].reason
    book.apply(RunEnded("a", 3.0, None, 15, "killed by ftmon: rule nan", "killed"))
    book.apply(started("b", parent="a", attempt=2))
    items = book.apply(
        RunRelaunched("a", "b", 4.0, "relaunch after nan: lr 1 -> 0.5", ("lr 1 -> 0.5",))
    )
    assert [r.run_id for r in book.roots()] == ["a"]
    assert [r.run_id for r in book.children("a")] == ["b"]
    assert book.runs["b"].changes == ("lr 1 -> 0.5",)
    assert book.live_ids() == ["b"]
    assert items[0].text == "as #2: lr 1 -> 0.5, from the base weights"
    assert items[0].who == "#1" and items[0].tag == "relaunch"


def test_metrics_become_plot_series_and_nan_is_not_plotted() -> None:
    """Loss, grad norm, LR, tokens/s and validation loss become series; a NaN is left out."""
    book = RunBook()
    book.apply(started("a"))
    metrics = (
        Metric(1, 1.0, {"loss": 2.0, "lr": 1e-4, "tok_s": 900.0}, step=1),
        Metric(2, 2.0, {"loss": math.nan, "grad_norm": 1.5}, step=2),
        Eval(3, 3.0, {"val_loss": 1.9}, step=2),
    )
    book.apply(MetricsObserved("a", 3.0, metrics))
    series = book.runs["a"].series
    assert series["loss"] == [(1.0, 2.0)]
    assert series["grad_norm"] == [(2.0, 1.5)]
    assert series["val_loss"] == [(2.0, 1.9)]
    assert set(series) == {"loss", "lr", "tok_s", "grad_norm", "val_loss"}


def test_anomalies_mark_lines_and_actions_are_said_once() -> None:
    """An anomaly marks its log line and is one feed line; a kill that worked is said by the
    run's end (not a second time by its action); a kill that failed is a line of its own."""
    book = RunBook()
    book.apply(started("a"))
    book.apply(AnomalyFound("a", 2.0, Anomaly("nan", Severity.ERROR, "loss is nan", 2.0, 12)))
    book.apply(ActionTaken("a", 2.0, Action("kill", "nan", 2.0, "a", "killed by ftmon")))
    book.apply(RunEnded("a", 3.0, -15, 15, "killed by ftmon: rule nan", "killed"))
    assert book.runs["a"].marks == {12: Severity.ERROR}
    assert [(i.kind, i.tag) for i in book.feed] == [
        ("started", "started"), ("anomaly", "nan"), ("ended", "")
    ]  # fmt: skip
    assert book.feed[1].text == "loss is nan (line 12)"
    assert book.feed[2].text == "killed by ftmon: rule nan (signal 15)"
    (done,) = book.apply(RunEnded("a", 5.0, 0, None, "finished", "finished"))
    assert (done.tag, done.text) == ("finished", "(exit 0)")
    failed = Action("kill", "user", 4.0, "a", "still alive: 7", ok=False)
    (item,) = book.apply(ActionTaken("a", 4.0, failed))
    assert item.tag == "kill" and "still alive: 7" in item.text and item.severity == Severity.ERROR
    stop = Action("relaunch", "nan", 5.0, "a", "chain stopped: nan max 2 reached", ok=False)
    items = book.apply(ActionTaken("a", 5.0, stop))
    items += book.apply(ChainStopped("a", 5.0, "nan max 2 reached"))
    assert [(i.tag, i.text) for i in items] == [("no relaunch", "nan max 2 reached")]


def test_a_notice_for_every_run_is_said_once_and_runs_are_named_briefly() -> None:
    """ "vram rule off: no NVIDIA GPU" comes with every launch: the feed says it once; runs are
    `#attempt` while one recipe is shown and `name #attempt` once there are two."""
    book = RunBook()
    off = Anomaly("vram", Severity.INFO, "vram rule off: no NVIDIA GPU", 1.0)
    for run_id, attempt in (("a", 1), ("b", 2)):
        book.apply(started(run_id, attempt=attempt))
        book.apply(AnomalyFound(run_id, 1.0, off))
    said = [i for i in book.feed if i.kind == "anomaly"]
    assert [(i.who, i.tag, i.text) for i in said] == [("#1", "", off.message)]  # names its rule
    # A note about a line of the log is not a notice about the setup: each one is shown.
    skipped = Anomaly("skipped_steps", Severity.INFO, "step skipped", 1.0, 5)
    book.apply(AnomalyFound("a", 1.0, skipped))
    book.apply(AnomalyFound("b", 1.0, skipped))
    assert sum(i.text.startswith("step skipped") for i in book.feed) == 2
    other = RunStarted("c", 2.0, "sweep", 1, None, ("python",), "/tmp/c.log", 8)
    (item,) = book.apply(other)
    assert item.who == "sweep #1"


async def test_bridge_batches_metrics_and_keeps_newest_resources() -> None:
    """Bursts of metrics arrive whole in fewer messages; only the newest resource sample is
    handled when several queue up."""
    received: list[MetricsObserved] = []
    samples: list[float] = []

    class Sink(App[None]):
        def on_metrics_arrived(self, message: MetricsArrived) -> None:
            received.extend(bridge.take_metrics(message))

        def on_resources_sampled(self, message: ResourcesSampled) -> None:
            samples.append(message.event.sample.ts)  # type: ignore[union-attr]

    app = Sink()
    bridge = Bridge(app)
    messages: list[Message] = []
    async with app.run_test(message_hook=messages.append) as pilot:
        for i in range(50):
            bridge(MetricsObserved("a", float(i), (Metric(i, float(i), {"loss": 1.0}, i),)))
        for i in range(20):
            bridge(ResourcesObserved("a", float(i), ResourceSample(float(i), 1, 1.0, 2.0, 3.0)))
        await pilot.pause()
    assert [m.ts for m in received] == [float(i) for i in range(50)]
    handled = {id(m) for m in messages if isinstance(m, MetricsArrived)}
    assert len(handled) < 50
    assert samples[-1] == 19.0 and len(samples) < 20


def test_text_from_runs_is_shown_literally_without_raw_escapes() -> None:
    """A reason or message holding markup and escape codes shows as text, with no raw ESC."""
    from supervisor.events import Severity as Sev
    from tui.screens.main import status_text
    from tui.state import FeedItem, RunView
    from tui.widgets.feed import feed_line

    hostile = "\x1b[2J[bold red]boom[/] [@click=app.quit]x[/]"
    line = feed_line(FeedItem(0.0, "r1", "anomaly", hostile, Sev.ERROR, who="demo #1"))
    view = RunView("r1", "demo", status="paused", reason=hostile)
    for text in (line, status_text(view)):
        assert "\x1b" not in text.plain
        assert "[bold red]boom[/] [@click=app.quit]x[/]" in text.plain
        assert all(text.plain[s.start : s.end] != "boom" for s in text.spans)  # not parsed


def test_gauges_show_each_gpu_and_the_runs_share_when_nvml_reports_them() -> None:
    """With GPU figures in a sample, each device and the run's own VRAM get a line; without
    them the VRAM line says there is no GPU instead of showing zeros."""
    from tui.widgets.gauges import gauge_text

    sample = ResourceSample(
        0.0, 1, 3.0, 100.0, 180.0, gpu_used_gb={0: 70.0, 1: 10.0},
        gpu_total_gb={0: 80.0, 1: 80.0}, proc_gpu_gb=75.5, nprocs=3,
    )  # fmt: skip
    shown = gauge_text(sample).plain
    assert "GPU0" in shown and "70.0/80G" in shown and "GPU1" in shown
    assert "run VRAM   75.5 GB (3 procs)" in shown and "CPU" in shown
    no_gpu = gauge_text(ResourceSample(0.0, 1, 3.0, 100.0, 50.0)).plain
    assert "no NVIDIA GPU" in no_gpu and "GPU0" not in no_gpu
    ended = gauge_text(sample, ended=True).plain  # figures of a run that is over say so
    assert ended.startswith("run ended") and "70.0/80G" in ended


def test_a_paused_runs_status_line_says_the_keys_before_the_reason() -> None:
    """On a narrow screen the end of the status line is cut: the keys that resume, kill or
    relaunch a paused run come before its (possibly long) reason; an ended run shows no pid."""
    from tui.screens.main import status_text
    from tui.state import RunView

    reason = "paused by ftmon: rule repetition: " + "F F F " * 20
    shown = status_text(RunView("r1", "demo", pid=7, status="paused", reason=reason)).plain
    assert shown.index("p: resume") < shown.index("paused by ftmon") and "pid 7" in shown
    ended = status_text(RunView("r1", "demo", pid=7, status="killed", reason="killed by the user"))
    assert "pid" not in ended.plain and "killed by the user" in ended.plain


async def test_plots_fill_their_rows_evenly() -> None:
    """Three series are one row of three; four are two rows of two, not three and a lone one."""
    from textual.app import App, ComposeResult

    from tui.widgets.plots import Plots

    class PlotApp(App[None]):
        def compose(self) -> ComposeResult:
            yield Plots(id="plots")

    app = PlotApp()
    async with app.run_test(size=(100, 20)) as pilot:
        plots = app.query_one(Plots)
        series = {name: [(1.0, 2.0), (2.0, 1.0)] for name in ("loss", "grad_norm", "lr")}
        plots.show(series)
        await pilot.pause()
        assert (plots.styles.grid_size_columns, plots.styles.grid_size_rows) == (3, 1)
        plots.show({**series, "tok_s": [(1.0, 900.0)]})
        await pilot.pause()
        assert plots.shown == ["loss", "grad_norm", "lr", "tok_s"]
        assert (plots.styles.grid_size_columns, plots.styles.grid_size_rows) == (2, 2)


def test_a_long_series_is_thinned_but_keeps_its_newest_point() -> None:
    """Past MAX_POINTS a plot series is thinned, and the point just logged is still drawn."""
    from tui.state import MAX_POINTS, RunView

    view = RunView("r1", "r")
    for step in range(MAX_POINTS + 1):
        view.add_point("loss", float(step), 1.0 / (step + 1))
    points = view.series["loss"]
    assert len(points) <= MAX_POINTS
    assert points[0][0] == 0.0 and points[-1][0] == float(MAX_POINTS)


def test_the_plots_use_the_parsers_metric_names() -> None:
    """One metric vocabulary: every plotted series is a name the parser produces, and every
    spelling the parser reads as val_loss is plotted as val_loss."""
    from supervisor.parsing.kv import KNOWN, normalise_name, spellings_of
    from tui.state import PLOTTED, VAL_LOSS_NAMES

    assert set(PLOTTED) <= KNOWN
    assert spellings_of("val_loss") <= set(VAL_LOSS_NAMES)
    assert all(normalise_name(n) == "val_loss" for n in VAL_LOSS_NAMES if n != "loss")
