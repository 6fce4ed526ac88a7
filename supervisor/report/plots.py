"""The report's PNG plots, drawn with matplotlib (the `report` extra).

Imported only by `ftmon report`: matplotlib takes a second to import, and `ftmon --help`, the
supervisor and the TUI never need it. The Agg backend draws without a display.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.report.document import Plot

WIDTH_PX, HEIGHT_PX, DPI = 800, 450, 100
# matplotlib's log axis overflows near the float limit (a best-so-far printed as float max):
# the axis stopped at 10 with the line running off it. Points past this are left out and the
# title says how many.
DRAWABLE = 1e300


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
            left_out = 0
            values: list[float] = []
            for s in plot.series:
                kept = [
                    (x, y) for x, y in zip(s.steps, s.values, strict=True)
                    if abs(x) < DRAWABLE and abs(y) < DRAWABLE
                ]  # fmt: skip
                left_out += len(s.values) - len(kept)
                values += [y for _, y in kept]
                marker = "o" if len(kept) < 20 else None
                xs, ys = [x for x, _ in kept], [y for _, y in kept]
                ax.plot(xs, ys, label=s.label, marker=marker, linewidth=1.5)
            if values and min(values) > 0 and max(values) / min(values) > 100:
                ax.set_yscale("log")  # a diverged run's spike would flatten every other curve
            title = plot.title
            if left_out:
                title += f" ({left_out} point{'s' if left_out > 1 else ''} past 1e300 left out)"
            ax.set_title(title)
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
