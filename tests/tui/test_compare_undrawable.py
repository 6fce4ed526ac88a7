"""The comparison screen's overlay with a value plotext cannot draw (a float-max or inf loss in
one member): that point is left out (the title says so) and the curves are still drawn."""

from __future__ import annotations

from pathlib import Path

from supervisor.events import Metric
from tests.tui.test_tui_compare import SIZE, T0, fill_sweep
from tui.app import FtmonApp
from tui.widgets.plots import DRAWABLE

BRAILLE = range(0x2801, 0x2900)


async def test_an_undrawable_value_in_one_member_leaves_the_overlay_drawn(tmp_path: Path) -> None:
    app = FtmonApp(tmp_path / "logs", None, recipes_dir=tmp_path / "recipes", reattach=False)
    fill_sweep(app.history)
    odd = [Metric(61, T0 + 61, {"loss": 1.7976931348623157e308}, 61),
           Metric(62, T0 + 62, {"loss": float("inf")}, 62)]  # fmt: skip
    app.history.record_batch("20260101-0000-study-1", events=odd, offset=0, lineno=2)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("c")
        await pilot.pause()
        screen = app.screen
        assert type(screen).__name__ == "CompareScreen"
        screen.metric = "loss"
        screen._plot()
        await pilot.pause()
        assert app.is_running
        drawn = str(screen.query_one("#overlay").render())
        assert any(ord(c) in BRAILLE for c in drawn)
        assert f"cannot draw 2 points past ±{DRAWABLE:g}" in drawn
