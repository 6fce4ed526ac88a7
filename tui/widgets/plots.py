"""The selected run's metrics as small plots: loss, val_loss, grad_norm, lr, tok_s. A
distributed run's loss plot overlays one line per rank.

Only the series that exist are drawn; a run that logs no grad norm shows no empty grad-norm box.
Plotting is plotext through textual-plotext; the data comes from `tui.state.RunView.series`.
"""

from __future__ import annotations

import math
import time

from rich.text import Text
from textual.app import ComposeResult, RenderResult
from textual.containers import Grid
from textual.widgets import Static
from textual_plotext import PlotextPlot

from tui.state import PLOTTED

TITLES = {
    "loss": "loss",
    "val_loss": "validation loss",
    "grad_norm": "grad norm",
    "lr": "learning rate",
    "tok_s": "tokens/s",
}
# plotext's axis arithmetic (spans, tick steps) overflows from about 1e307: a point with a step
# or a value past this is left out of the drawing (the title says how many), so one absurd
# value (a best-so-far printed as sys.float_info.max, a seed read as a step) does not blank
# the plot for as long as it stays in the series.
DRAWABLE = 1e300


def drawable(points: list[tuple[float, float]]) -> tuple[list[tuple[float, float]], int]:
    """The points plotext can draw, and how many were left out."""
    kept = [p for p in points if -DRAWABLE < p[0] < DRAWABLE and -DRAWABLE < p[1] < DRAWABLE]
    return kept, len(points) - len(kept)


def left_out_note(count: int) -> str:
    """What a plot's title adds when `count` points were left out by `drawable` ("" if none)."""
    if not count:
        return ""
    return f" (cannot draw {count} point{'' if count == 1 else 's'} past ±{DRAWABLE:g}: left out)"


def thin(points: list[tuple[float, float]], buckets: int) -> list[tuple[float, float]]:
    """At most 2 x `buckets` + 2 points that draw the same line at this resolution.

    A braille plot `w` cells wide has 2w dots across: thousands of points land a dozen on each
    dot column, and plotext's cost grows with the points, not the dots. The x range is cut into
    `buckets` equal slices and each slice keeps its lowest and highest point, so a spike or a
    dip one point wide is still drawn; the first and last points always stay, and the points
    kept stay in their order. Points are never invented, and xs need not increase (a log whose
    step counter starts again, or that prints two counters).
    """
    n = len(points)
    if n <= 2 * buckets + 2 or buckets < 1:
        return points
    xs = [p[0] for p in points]
    x0, x1 = min(xs), max(xs)
    # Halves: xs near the float limit (1.8e308) would give a span of inf, and slices of NaN.
    width = (x1 / 2 - x0 / 2) / buckets
    if not 0 < width < math.inf:  # one x for all: nothing to bin by
        return points
    low: dict[int, int] = {}  # slice -> index of its lowest point (the first of equals)
    high: dict[int, int] = {}
    last = buckets - 1
    for i in range(1, n - 1):
        x, y = points[i]
        b = min(last, int((x / 2 - x0 / 2) / width))
        at = low.get(b)
        if at is None:
            low[b] = high[b] = i
        elif y < points[at][1]:
            low[b] = i
        elif y > points[high[b]][1]:
            high[b] = i
    keep = sorted({0, n - 1, *low.values(), *high.values()})
    return [points[i] for i in keep]


class MetricPlot(PlotextPlot):
    """One series of one run."""

    def __init__(self, name: str) -> None:
        super().__init__(id=f"plot-{name}", classes="metric-plot")
        self.series_name = name
        self.points: list[tuple[float, float]] = []
        self.ranks: list[int] = []  # the ranks overlaid, when it is a distributed run's plot
        self.render_secs = 0.0  # how long its last drawing took (plotext builds it here)
        # The last drawing and what it was drawn for (size, themes); `show` forgets it. Any
        # layout change (a gauge or status line updated) renders every widget again, and
        # plotext would build the same picture again each time.
        self._drawing: RenderResult | None = None
        self._drawn_for: tuple[object, ...] = ()

    def render(self) -> RenderResult:
        drawn_for = (self.size, self.app.theme, self.theme)
        if self._drawing is not None and drawn_for == self._drawn_for:
            return self._drawing
        started = time.monotonic()
        try:
            out = super().render()
        except (ArithmeticError, ValueError):
            # plotext's axis arithmetic overflows on values near the float limit (a best-so-far
            # printed as sys.float_info.max): one plot says so rather than the app ending.
            out = Text(
                f"{TITLES.get(self.series_name, self.series_name)}: cannot draw these values"
            )
        self.render_secs = time.monotonic() - started
        self._drawing, self._drawn_for = out, drawn_for
        return out

    def show(
        self,
        points: list[tuple[float, float]],
        ranks: dict[int, list[tuple[float, float]]] | None = None,
    ) -> None:
        self.points = list(points)
        self.ranks = sorted(ranks) if ranks else []
        self._drawing = None
        # Dot columns across (2 per cell), or a wide terminal's before the first layout.
        buckets = 2 * (self.size.width or 200)
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        left_out = 0
        if ranks:
            ranks = dict(ranks)
            for rank in self.ranks:
                ranks[rank], dropped = drawable(ranks[rank])
                left_out += dropped
        points, dropped = drawable(self.points)
        left_out += dropped
        plt.title(TITLES.get(self.series_name, self.series_name) + left_out_note(left_out))
        if ranks:
            for rank in self.ranks:  # one line per rank, each in its own colour, labelled
                drawn = thin(ranks[rank], buckets)
                xs = [p[0] for p in drawn]
                plt.plot(xs, [p[1] for p in drawn], marker="braille", label=f"rank {rank}")
        elif points:
            drawn = thin(points, buckets)
            xs = [p[0] for p in drawn]
            ys = [p[1] for p in drawn]
            plt.plot(xs, ys, marker="braille")
            if len(points) == 1:
                # One point: plotext would invent ticks around it (2.5 3.8 5.0 for step 5).
                plt.xticks(xs, [f"{xs[0]:g}"])
                plt.yticks(ys, [f"{ys[0]:.4g}"])
        self.refresh()


class Plots(Grid):
    """A grid with one plot per series the run has; a note when it has none yet."""

    DEFAULT_CSS = """
    Plots {
        grid-size: 3 2;
        grid-gutter: 0 1;
        height: 100%;
    }
    Plots > .metric-plot { height: 1fr; }
    Plots > #no-metrics { column-span: 3; row-span: 2; content-align: center middle;
        color: $text-muted; width: 100%; height: 100%; }
    """

    def compose(self) -> ComposeResult:
        yield Static("no metrics yet", id="no-metrics")
        for name in PLOTTED:
            plot = MetricPlot(name)
            plot.display = False
            yield plot

    show_secs = 0.0  # how long the last `show` took (thinning, plotext's data)

    def draw_secs(self) -> float:
        """What the last redraw cost: `show` (thinning, plotext's data) and drawing each shown
        plot. Both count: thinning 5000-point series is about as dear as plotext's drawing."""
        return self.show_secs + sum(p.render_secs for p in self.query(MetricPlot) if p.display)

    @property
    def shown(self) -> list[str]:
        """Names of the series drawn now, in order."""
        return [p.series_name for p in self.query(MetricPlot) if p.display]

    def show(
        self,
        series: dict[str, list[tuple[float, float]]],
        rank_loss: dict[int, list[tuple[float, float]]] | None = None,
    ) -> None:
        """Draw `series`: exactly the present series get a plot, the others are hidden; with
        `rank_loss` the loss plot overlays each rank's loss."""
        started = time.monotonic()
        wanted = [name for name in PLOTTED if series.get(name)]
        self.query_one("#no-metrics").display = not wanted
        for plot in self.query(MetricPlot):
            plot.display = plot.series_name in wanted
            if plot.display:
                overlay = rank_loss if plot.series_name == "loss" else None
                plot.show(series[plot.series_name], overlay)
        count = max(1, len(wanted))
        # One row up to three plots; four or five fill two rows evenly (2+2, 3+2), never one
        # plot alone on a row beside empty cells.
        columns = count if count <= 3 else (count + 1) // 2
        self.styles.grid_size_columns = columns
        self.styles.grid_size_rows = (count + columns - 1) // columns
        self.show_secs = time.monotonic() - started
