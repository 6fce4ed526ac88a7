"""The report's PNG plots, drawn with matplotlib (the `report` extra).

Imported only by `ftmon report`: matplotlib takes a second to import, and `ftmon --help`, the
supervisor and the TUI never need it. The Agg backend draws without a display.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.report.document import Plot

WIDTH_PX, HEIGHT_PX, DPI = 800, 450, 100


class PlotsUnavailable(Exception):
    """matplotlib is not installed (`pip install 'ftmon[report]'`)."""


def draw(plots: list[Plot], folder: Path) -> dict[str, Path]:
    """Write each plot as `folder/<plot.file>` (WIDTH_PX x HEIGHT_PX); returns name -> path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotsUnavailable(
            "plots need matplotlib: pip install 'ftmon[report]' (or write the report without "
            "plots with --no-plots)"
        ) from exc
    written: dict[str, Path] = {}
    for plot in plots:
        fig, ax = plt.subplots(figsize=(WIDTH_PX / DPI, HEIGHT_PX / DPI), dpi=DPI)
        try:
            for s in plot.series:
                marker = "o" if len(s.values) < 20 else None
                ax.plot(s.steps, s.values, label=s.label, marker=marker, linewidth=1.5)
            values = [v for s in plot.series for v in s.values]
            if values and min(values) > 0 and max(values) / min(values) > 100:
                ax.set_yscale("log")  # a diverged run's spike would flatten every other curve
            ax.set_title(plot.title)
            ax.set_xlabel("step")
            ax.set_ylabel(plot.ylabel)
            ax.grid(True, alpha=0.3)
            if len(plot.series) > 1:
                ax.legend(fontsize="small")
            path = folder / plot.file
            fig.savefig(path, dpi=DPI)  # no bbox_inches="tight": the size stays as promised
            written[plot.file] = path
        finally:
            plt.close(fig)
    return written
