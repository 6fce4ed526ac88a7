"""The live log widget over real files: only visible lines, literal text, follow mode, search."""

from __future__ import annotations

from pathlib import Path

from textual.app import App, ComposeResult
from textual.message import Message

from supervisor.events import Severity
from tui.widgets.logview import LogView


class LogApp(App[None]):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield LogView(self.path, id="log")


def numbered(path: Path, n: int, start: int = 1) -> None:
    with open(path, "a") as f:
        f.writelines(f"line {i}\n" for i in range(start, start + n))


async def until(pilot, cond, tries: int = 100) -> None:  # type: ignore[no-untyped-def]
    for _ in range(tries):
        if cond():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


async def test_opens_at_the_end_and_reads_only_what_is_shown(tmp_path: Path) -> None:
    """A long log opens showing its last lines; lines far above were never read."""
    log = tmp_path / "out.log"
    numbered(log, 5000)
    app = LogApp(log)
    async with app.run_test(size=(80, 20)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.indexed.is_set())
        await pilot.pause()
        assert view.line_count == 5000
        assert view.visible_text()[-1] == "line 5000"
        assert view.index is not None
        assert 0 < len(view.index._cache) < 100  # only the screen was read


async def test_markup_and_control_codes_in_a_log_are_shown_literally(tmp_path: Path) -> None:
    """`[bold red]` and `[@click=app.quit]` in a log show as text and clicking does nothing."""
    log = tmp_path / "out.log"
    log.write_bytes(
        b"[bold red]alarm[/] and [@click=app.quit]quit[/]\n\x1b[31mred\x1b[0m \x07bell\n"
    )
    app = LogApp(log)
    async with app.run_test(size=(80, 10)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.line_count == 2)
        await pilot.pause()
        first = view.render_line(0).text
        assert "[bold red]alarm[/] and [@click=app.quit]quit[/]" in first
        assert "red �bell" in view.render_line(1).text  # ANSI gone, BEL visible
        await pilot.click(LogView, offset=(30, 0))
        await pilot.pause()
        assert app.is_running


async def test_follow_stops_on_scroll_up_and_resumes_on_end(tmp_path: Path) -> None:
    """Following shows new lines; scrolling up stops it; End brings it back to the end."""
    log = tmp_path / "out.log"
    numbered(log, 200)
    app = LogApp(log)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.line_count == 200)
        view.focus()
        numbered(log, 5, start=201)
        await until(pilot, lambda: view.visible_text()[-1:] == ["line 205"])
        await pilot.press("pageup")
        assert view.follow is False
        top = view.scroll_y
        numbered(log, 5, start=206)
        await until(pilot, lambda: view.line_count == 210)
        assert view.scroll_y == top  # stays where the person is reading
        await pilot.press("end")
        await pilot.pause()
        assert view.follow is True and view.visible_text()[-1] == "line 210"


async def test_search_jumps_to_matches_and_marks_them(tmp_path: Path) -> None:
    """Search finds the next and previous line with the text and stops following."""
    log = tmp_path / "out.log"
    numbered(log, 300)
    with open(log, "a") as f:
        f.write("the loss is NaN here\n")
    numbered(log, 300, start=302)
    messages: list[Message] = []
    app = LogApp(log)
    async with app.run_test(size=(60, 12), message_hook=messages.append) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.indexed.is_set())
        view.scroll_to(y=0, animate=False, immediate=True)
        assert view.search("nan") == 300
        await pilot.pause()
        assert view.follow is False
        assert "the loss is NaN here" in view.visible_text()
        assert view.search("line 299", backwards=True) == 298
        await pilot.pause()
        # A message is recorded at each node it bubbles through: count each one once.
        done = list({id(m): m for m in messages if isinstance(m, LogView.SearchDone)}.values())
        assert [m.lineno for m in done] == [300, 298]


async def test_a_search_from_the_end_of_a_followed_log_finds_what_is_above(
    tmp_path: Path,
) -> None:
    """Following a live run, the screen shows the log's end: a search for the NaN printed
    earlier goes on from the top, as `less` does, instead of saying the log does not hold it;
    a search backwards from the top goes on from the end."""
    log = tmp_path / "out.log"
    numbered(log, 300)
    with open(log, "a") as f:
        f.write("the loss is NaN here\n")
    numbered(log, 300, start=302)
    app = LogApp(log)
    async with app.run_test(size=(60, 12)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.indexed.is_set())
        await pilot.pause()
        assert view.follow and view.visible_text()[-1] == "line 601"
        assert view.search("nan") == 300
        await pilot.pause()
        assert "the loss is NaN here" in view.visible_text()
        view.hit = None
        view.scroll_to(y=0, animate=False, immediate=True)
        assert view.search("line 600", backwards=True) == 599
        assert view.search("absent") is None


async def test_anomaly_lines_are_marked(tmp_path: Path) -> None:
    """A line an anomaly points at gets a marker in the gutter."""
    log = tmp_path / "out.log"
    numbered(log, 5)
    app = LogApp(log)
    async with app.run_test(size=(60, 8)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.line_count == 5)
        view.scroll_to(y=0, animate=False, immediate=True)
        view.set_marks({3: Severity.ERROR})
        await pilot.pause()
        assert view.render_line(2).text.startswith("3▶ line 3")
        assert view.render_line(1).text.startswith("2  line 2")


async def test_truncated_log_is_shown_anew(tmp_path: Path) -> None:
    """A log truncated and rewritten (a trainer restarted in place) shows its new lines."""
    log = tmp_path / "out.log"
    numbered(log, 50)
    app = LogApp(log)
    async with app.run_test(size=(60, 8)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.line_count == 50)
        log.write_text("fresh start\n")
        await until(pilot, lambda: view.line_count == 1)
        await pilot.pause()
        assert view.visible_text() == ["fresh start"]


async def test_end_of_a_log_shows_before_it_is_indexed(tmp_path: Path) -> None:
    """A log just opened shows its last lines at once, read from its end; line numbers come
    when the index is complete."""
    small, big = tmp_path / "small.log", tmp_path / "big.log"
    numbered(small, 3)
    numbered(big, 20_000)
    app = LogApp(small)
    async with app.run_test(size=(60, 10)) as pilot:
        view = app.query_one(LogView)
        view.open(big)  # the index has not been given any time yet
        assert view.showing_tail
        assert view.visible_text()[-1] == "line 20000"
        assert "…" in view.render_line(len(view.visible_text()) - 1).text
        await until(pilot, lambda: view.indexed.is_set())
        await pilot.pause()
        assert not view.showing_tail and view.line_count == 20_000
        assert view.visible_text()[-1] == "line 20000"


async def test_long_lines_scroll_sideways_with_the_gutter_kept(tmp_path: Path) -> None:
    """A line wider than the view can be scrolled to its end; line numbers stay in place."""
    log = tmp_path / "out.log"
    log.write_text("short\n" + "x" * 100 + " the end\n")
    app = LogApp(log)
    async with app.run_test(size=(40, 6)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.indexed.is_set())
        await pilot.pause()
        view.focus()
        assert "the end" not in view.render_line(1).text
        await until(pilot, lambda: view.max_scroll_x > 0)
        view.scroll_to(x=view.max_scroll_x, animate=False, immediate=True)
        await pilot.pause()
        assert view.render_line(1).text.startswith("2 ") and "the end" in view.render_line(1).text


async def test_an_empty_log_says_it_waits_for_output_until_the_first_line(tmp_path: Path) -> None:
    """A run that has printed nothing yet shows a note instead of a blank box; the note goes
    when the first line arrives."""
    from tui.widgets.logview import EMPTY_NOTE

    log = tmp_path / "out.log"
    log.write_bytes(b"")
    app = LogApp(log)
    async with app.run_test(size=(80, 10)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.indexed.is_set())
        await pilot.pause()
        assert view.render_line(0).text.startswith(EMPTY_NOTE)
        numbered(log, 1)
        await until(pilot, lambda: view.line_count == 1)
        await pilot.pause()
        assert EMPTY_NOTE not in view.render_line(0).text and "line 1" in view.render_line(0).text


async def test_a_token_the_run_printed_is_not_shown(tmp_path: Path) -> None:
    """A run that prints its HF token and a database URL with a password: the log file keeps
    what the run wrote (ftmon never rewrites it), the log view shows neither secret."""
    token = "hf_" + "aB3dE5fG7hJ9kL1mN3pQ5rS7"
    log = tmp_path / "out.log"
    log.write_text(
        f"Traceback: login failed with token {token}\n"
        "connecting to postgres://trainer:S3cretPass@db.internal/runs\n"
        "step 1 loss 2.0 \u009b31m\n"
    )
    app = LogApp(log)
    async with app.run_test(size=(100, 10)) as pilot:
        view = app.query_one(LogView)
        await until(pilot, lambda: view.line_count == 3)
        await pilot.pause()
        shown = "\n".join(view.visible_text())
        assert token not in shown and "S3cretPass" not in shown
        assert "login failed with token <redacted>" in shown
        assert "postgres://trainer:<redacted>@db.internal/runs" in shown
        assert "\u009b" not in shown  # a C1 CSI is made visible, never sent to the terminal
    assert token in log.read_text()
