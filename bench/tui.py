"""How fast the TUI's log view opens a 2-million-line log and jumps to its end.

    python bench/tui.py                   # writes a 2M-line log with ../shared/bench/make_log.py
    python bench/tui.py --log big.log     # or times an existing log

Runs the real `LogView` in a headless Textual app (`App.run_test`) and prints:
  - time to the first frame with lines on it,
  - time from pressing End (from the top) to the last line on screen; until the index is
    complete the end is read backwards from the file's end, without line numbers,
  - time from opening to every line indexed (line numbers known, the whole log scrollable),
  - a baseline measured in the same run: reading the whole file once (`os.pread` in 8 MiB
    slices, no parsing), and the figures as ratios of it.
Figures, not assertions: the machine and its load decide the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from textual.app import App, ComposeResult  # noqa: E402
from textual.strip import Strip  # noqa: E402

from supervisor.reading.logindex import LogIndex  # noqa: E402
from tui.widgets.logview import LogView  # noqa: E402

MAKE_LOG = ROOT.parent / "shared" / "bench" / "make_log.py"


class TimedLogView(LogView):
    """Notes when it first draws a line of the log and when it first draws `last_line`."""

    last_line = ""
    first_drawn: float | None = None
    end_drawn: float | None = None

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if self.line_count and self.first_drawn is None:
            self.first_drawn = time.perf_counter()
        at_last = int(self.scroll_y) + y == self.line_count - 1
        shown = self._tail_shown() if self.showing_tail else []
        at_last = at_last or (bool(shown) and y == len(shown) - 1)
        if self.end_drawn is None and at_last and self.last_line[:40] in strip.text:
            self.end_drawn = time.perf_counter()
        return strip


class LogApp(App[None]):
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path

    def compose(self) -> ComposeResult:
        yield TimedLogView(self.path, poll=False, id="log")


def read_baseline(path: Path) -> float:
    """Seconds to read every byte of the file once."""
    fd = os.open(path, os.O_RDONLY)
    start = time.perf_counter()
    pos, size = 0, os.fstat(fd).st_size
    while pos < size:
        pos += len(os.pread(fd, 8 << 20, pos))
    os.close(fd)
    return time.perf_counter() - start


def index_only(path: Path) -> float:
    start = time.perf_counter()
    index = LogIndex(path)
    index.refresh()
    index.close()
    return time.perf_counter() - start


async def view_timings(path: Path, last_line: str) -> tuple[float, float, float, int]:
    """Seconds from start to the first line drawn, from End to the last line drawn, and from
    start to the whole log indexed (line numbers known, scrolling over all of it)."""
    TimedLogView.last_line = last_line
    start = time.perf_counter()
    app = LogApp(path)
    async with app.run_test(size=(160, 48)) as pilot:
        view = app.query_one(TimedLogView)
        while view.first_drawn is None:
            await asyncio.sleep(0.005)
        first_frame = view.first_drawn - start
        await pilot.press("home")  # start from the top, as a person reading the log would
        await pilot.pause()
        view.end_drawn = None
        pressed = time.perf_counter()
        await pilot.press("end")
        while view.end_drawn is None:
            await asyncio.sleep(0.005)
        await view.indexed.wait()
        indexed = time.perf_counter() - start
        return first_frame, view.end_drawn - pressed, indexed, view.line_count


async def startup_only() -> float:
    """Seconds from start to the first frame of the same app on a one-line log (the floor)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "one.log"
        path.write_text("one line\n")
        TimedLogView.first_drawn = None
        TimedLogView.last_line = ""
        start = time.perf_counter()
        app = LogApp(path)
        async with app.run_test(size=(160, 48)):
            view = app.query_one(TimedLogView)
            while view.first_drawn is None:
                await asyncio.sleep(0.005)
            return view.first_drawn - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--log", type=Path, help="an existing log (else one is written)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.log
        if path is None:
            path = Path(tmp) / "big.log"
            print(f"writing {args.lines:,} lines with {MAKE_LOG.name} ...", flush=True)
            subprocess.run(
                [sys.executable, str(MAKE_LOG), "--lines", str(args.lines), "--out", str(path)],
                check=True,
            )
        size_mb = path.stat().st_size / 1e6
        probe = LogIndex(path)
        probe.refresh()
        last_line = probe.line(len(probe) - 1)
        probe.close()
        read_baseline(path)  # warm the page cache so every figure reads from memory
        baseline = read_baseline(path)
        indexed = index_only(path)
        floor = asyncio.run(startup_only())
        TimedLogView.first_drawn = None
        first, to_end, numbered, lines = asyncio.run(view_timings(path, last_line))
    print(f"log: {lines:,} lines, {size_mb:,.0f} MB")
    print(f"baseline, read the file once:     {baseline * 1000:8.1f} ms")
    print(
        f"index every line start:           {indexed * 1000:8.1f} ms  ({indexed / baseline:5.1f}x)"
    )
    print(f"first frame, one-line log:        {floor * 1000:8.1f} ms  ({floor / baseline:5.1f}x)")
    print(f"first frame with lines:           {first * 1000:8.1f} ms  ({first / baseline:5.1f}x)")
    print(f"End pressed -> last line shown:   {to_end * 1000:8.1f} ms  ({to_end / baseline:5.1f}x)")
    ratio = numbered / baseline
    print(f"open -> every line indexed:       {numbered * 1000:8.1f} ms  ({ratio:5.1f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
