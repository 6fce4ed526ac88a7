"""A report plot with one value near the float limit (a best-so-far printed as float max) is
drawn with that point left out and said in its title: matplotlib's log axis overflowed on it
(a RuntimeWarning, and an axis stopping at 10 with the line running off it)."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from supervisor.report.document import Plot, Series

pytest.importorskip("matplotlib")


def test_a_float_max_value_is_left_out_and_said(tmp_path: Path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    from supervisor.report.plots import draw

    titles: list[str] = []
    ylims: list[tuple[float, float]] = []
    close = plt.close

    def noted(fig: object = None) -> None:
        if fig is not None:
            ax = fig.axes[0]  # type: ignore[attr-defined]
            titles.append(ax.get_title())
            ylims.append(ax.get_ylim())
        close(fig)

    monkeypatch.setattr(plt, "close", noted)
    steps = [float(i) for i in range(1, 31)]
    values = [2.0 - i / 100 for i in range(1, 30)] + [1.7976931348623157e308]
    plot = Plot("loss.png", "training loss", "loss", [Series("run", steps, values)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the overflow was a RuntimeWarning
        written = draw([plot], tmp_path)
    assert written["loss.png"].stat().st_size > 1000
    assert titles == ["training loss (1 point past 1e300 left out)"]
    low, high = ylims[0]
    assert low < 1.71 and 1.99 < high < 3  # the axis fits the drawn points
