"""One value plotext cannot draw (past about 1e307) is left out of the drawing, and the title
says so: the plot goes on being drawn as points come, instead of a note for the rest of the run."""

from __future__ import annotations

from textual.app import App, ComposeResult

from tui.widgets.plots import MetricPlot

BRAILLE = range(0x2801, 0x2900)  # the dots of a drawn line (U+2800 is the blank cell)


class PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield MetricPlot("loss")


def drawn(plot: MetricPlot) -> str:
    return str(plot.render())


def has_a_line(text: str) -> bool:
    return any(ord(c) in BRAILLE for c in text)


async def test_one_undrawable_value_is_left_out_and_the_plot_still_drawn() -> None:
    app = PlotApp()
    async with app.run_test(size=(100, 30)) as pilot:
        plot = app.query_one(MetricPlot)
        points = [(float(i), 2.0 - i / 100) for i in range(50)]
        points.append((50.0, 1.7976931348623157e308))  # a best-so-far printed as float max
        plot.show(points)
        await pilot.pause()
        text = drawn(plot)
        assert "cannot draw these values" not in text and has_a_line(text)
        assert "cannot draw 1 point past ±1e+300: left out" in text
        # The run goes on: the point stays in the series, the plot keeps being drawn.
        points += [(float(i), 2.0 - i / 100) for i in range(51, 120)]
        plot.show(points)
        await pilot.pause()
        text = drawn(plot)
        assert has_a_line(text) and "1 point" in text
        # Once the point is gone from the series (thinned away), the title is plain again.
        plot.show(points[:50] + points[51:])
        await pilot.pause()
        assert "cannot draw" not in drawn(plot) and has_a_line(drawn(plot))


async def test_an_absurd_step_on_one_rank_leaves_the_other_ranks_drawn() -> None:
    app = PlotApp()
    async with app.run_test(size=(100, 30)) as pilot:
        plot = app.query_one(MetricPlot)
        rank0 = [(float(i), 2.0 - i / 100) for i in range(50)]
        rank1 = [*rank0[:-1], (1e308, 1.0)]  # a seed read as the step
        plot.show(rank0, {0: rank0, 1: rank1})
        await pilot.pause()
        text = drawn(plot)
        assert has_a_line(text) and "cannot draw 1 point" in text
