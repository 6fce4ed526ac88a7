"""The plots draw at most a few points per dot column, and nothing a person looks for is lost."""

from __future__ import annotations

import random

from textual.app import App, ComposeResult

from tui.widgets.plots import MetricPlot, thin


def series(n: int, seed: int = 3) -> list[tuple[float, float]]:
    rng = random.Random(seed)
    return [(float(i), 2.4 * 0.999**i + rng.uniform(-0.05, 0.05)) for i in range(n)]


def test_a_short_series_is_drawn_as_it_is() -> None:
    points = series(300)
    assert thin(points, 160) == points


def test_a_long_series_keeps_its_ends_its_spike_and_its_dip() -> None:
    points = series(5000)
    points[1234] = (1234.0, 48.9)  # one step's loss spike
    points[4321] = (4321.0, -3.0)  # one odd dip
    drawn = thin(points, 160)
    assert len(drawn) <= 2 * 160 + 2
    assert drawn[0] == points[0] and drawn[-1] == points[-1]
    assert (1234.0, 48.9) in drawn and (4321.0, -3.0) in drawn
    assert [p[0] for p in drawn] == sorted(p[0] for p in drawn)
    assert set(drawn) <= set(points)  # only real points, none invented


def test_every_slice_of_the_x_range_keeps_its_highest_and_lowest_point() -> None:
    points = series(20_000, seed=9)
    buckets = 100
    drawn = set(thin(points, buckets))
    width = (points[-1][0] - points[0][0]) / buckets
    slices: dict[int, list[tuple[float, float]]] = {}
    for p in points[1:-1]:
        slices.setdefault(min(buckets - 1, int((p[0] - points[0][0]) / width)), []).append(p)
    for inside in slices.values():
        assert max(inside, key=lambda p: p[1]) in drawn
        assert min(inside, key=lambda p: p[1]) in drawn


def test_a_series_without_an_x_range_is_left_alone() -> None:
    flat = [(5.0, float(i)) for i in range(1000)]
    assert thin(flat, 10) == flat


def test_a_step_counter_that_starts_again_is_thinned_without_losing_a_point_kind() -> None:
    """Logs mix counters (a relaunch from step 0, two loops' steps): xs go back and forth."""
    rng = random.Random(5)
    points = [(float(rng.choice([rng.randint(0, 200_000), i])), rng.random()) for i in range(9000)]
    points[4000] = (points[4000][0], 77.0)
    drawn = thin(points, 100)
    assert drawn[0] == points[0] and drawn[-1] == points[-1]
    assert set(drawn) <= set(points) and (points[4000][0], 77.0) in drawn
    assert len(drawn) <= 2 * 100 + 2
    order = {p: i for i, p in enumerate(points)}
    assert [order[p] for p in drawn] == sorted(order[p] for p in drawn)  # kept in their order


def test_xs_near_the_float_limit_are_thinned() -> None:
    """Steps read from a log can be any size a float holds: a span over the float limit
    (-1.5e308 .. 1.5e308) must not overflow to a slice number of NaN."""
    points = [((i - 2500) * 6e304, float(i % 10)) for i in range(5000)]
    points[2500] = (points[2500][0], 99.0)
    drawn = thin(points, 100)
    assert len(drawn) <= 2 * 100 + 2 and points[2500] in drawn
    assert drawn[0] == points[0] and drawn[-1] == points[-1]


class PlotApp(App[None]):
    def compose(self) -> ComposeResult:
        yield MetricPlot("loss")


async def test_a_series_plotext_cannot_draw_does_not_end_the_app() -> None:
    """Values near the float limit (a best-so-far printed as sys.float_info.max) overflow
    plotext's axis arithmetic: the plot says so, the app goes on, and the next series draws."""
    app = PlotApp()
    async with app.run_test(size=(100, 30)) as pilot:
        plot = app.query_one(MetricPlot)
        for odd in (
            [(float(i), 1.7e308 if i % 2 else 0.0) for i in range(500)],
            [((i - 2500) * 6e304, float(i % 10)) for i in range(5000)],
        ):
            plot.show(odd)
            await pilot.pause()
            assert app.is_running
            assert "cannot draw" in str(plot.render())
        plot.show([(float(i), 2.0 - i / 100) for i in range(100)])
        await pilot.pause()
        assert "cannot draw" not in str(plot.render())
