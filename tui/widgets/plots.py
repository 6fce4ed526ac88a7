"""The selected run's metrics as small plots: loss, val_loss, grad_norm, lr, tok_s.

Only the series that exist are drawn; a run that logs no grad norm shows no empty grad-norm box.
Plotting is plotext through textual-plotext; the data comes from `tui.state.RunView.series`.
"""

from __future__ import annotations

from textual.app import ComposeResult
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


class MetricPlot(PlotextPlot):
    """One series of one run."""

    def __init__(self, name: str) -> None:
        super().__init__(id=f"plot-{name}", classes="metric-plot")
        self.series_name = name
        self.points: list[tuple[float, float]] = []

    def show(self, points: list[tuple[float, float]]) -> None:
        self.points = list(points)
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title(TITLES.get(self.series_name, self.series_name))
        if self.points:
            xs = [p[0] for p in self.points]
            ys = [p[1] for p in self.points]
            plt.plot(xs, ys, marker="braille")
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

    @property
    def shown(self) -> list[str]:
        """Names of the series drawn now, in order."""
        return [p.series_name for p in self.query(MetricPlot)]

    def show(self, series: dict[str, list[tuple[float, float]]]) -> None:
        """Draw `series`; adds or removes plots so that exactly the present series are shown."""
        wanted = [name for name in PLOTTED if series.get(name)]
        if wanted != self.shown:
            self.remove_children()
            if wanted:
                self.mount_all([MetricPlot(name) for name in wanted])
                self.styles.grid_size_columns = (
                    3 if len(wanted) > 4 else 2 if len(wanted) > 1 else 1
                )
                self.styles.grid_size_rows = 2 if len(wanted) > 2 else 1
            else:
                self.mount(Static("no metrics yet", id="no-metrics"))
            self.call_after_refresh(self._draw, series)
        else:
            self._draw(series)

    def _draw(self, series: dict[str, list[tuple[float, float]]]) -> None:
        for plot in self.query(MetricPlot):
            plot.show(series.get(plot.series_name, []))
