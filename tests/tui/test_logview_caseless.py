"""`/` in the log view ignores case in any script: `Über` finds the `ÜBER` printed earlier."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult

from tui.widgets.logview import LogView


class LogApp(App[None]):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield LogView(self.path, id="log")


async def test_a_search_for_uber_finds_the_capitals(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    lines = [f"line {i}" for i in range(1, 200)]
    lines[40] = "WARNUNG: ÜBERLAUF im Gradienten"
    log.write_text("".join(f"{line}\n" for line in lines))
    app = LogApp(log)
    async with app.run_test(size=(70, 12)) as pilot:
        view = app.query_one(LogView)
        for _ in range(100):
            if view.indexed.is_set():
                break
            await pilot.pause(0.05)
        assert view.search("Überlauf") == 40
        await pilot.pause()
        assert "WARNUNG: ÜBERLAUF im Gradienten" in view.visible_text()
