"""How fast the TUI's log view opens a 2-million-line log and jumps to its end.

    python bench/tui.py                   # writes a 2M-line log with ../shared/bench/make_log.py
    python bench/tui.py --log big.log     # or times an existing log

Runs the real `LogView` in a headless Textual app (`App.run_test`) and prints:
  - time to the first frame with lines on it,
  - time from pressing End (from the top) to the last line on screen; until the index is
    complete the end is read backwards from the file's end, without line numbers,
  - time from opening to every line indexed (line numbers known, the whole log scrollable),
  - time for `/` to search the whole log for a word it does not hold, ASCII (`zqxjvw`: bytes
    lowered, `find`) and not (`Überzqxjvw`, `σίσυφοςq`: a regex where each letter is any of
    its case fold),
  - a baseline measured in the same run: reading the whole file once (`os.pread` in 8 MiB
    slices, no parsing), and the figures as ratios of it.

With `--plots` it also times the TUI's plots: the real app (`FtmonApp`, headless) launches a run
that prints the whole log at once (`cat LOG`), and the time from launch to the plots holding the
log's last loss point (every metric read, through the batch path: monitoring/batch.py) is
compared with `ftmon scan` of the same log (in this process) and `grep -cE ... | cat`.

With `--follow` it follows 3 runs at once in the same app, each printing `--follow-lines` lines
(10M by default) as fast as it can, and prints this process's RSS (the TUI, its supervisor and
the three monitors): sampled every half second, its peak and its value at the end.
Figures, not assertions: the machine and its load decide the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The same baseline as bench/scan.py's (this folder is on the path when a bench is run).
from scan import grep as grep_pipe  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.strip import Strip  # noqa: E402

from supervisor.events import Metric  # noqa: E402
from supervisor.monitoring.monitor import Monitor  # noqa: E402
from supervisor.reading.logindex import LogIndex  # noqa: E402
from supervisor.reading.tail import iter_file_lines  # noqa: E402
from supervisor.recipe.model import load_recipe  # noqa: E402
from tui.app import FtmonApp  # noqa: E402
from tui.widgets.logview import LogView  # noqa: E402

# A run that prints a log again and again, as fast as it can, up to a number of lines.
REPEAT = """
import sys
src, want = sys.argv[1], int(sys.argv[2])
data = open(src, "rb").read()
per = data.count(b"\\n")
out = sys.stdout.buffer
while want >= per:
    out.write(data)
    want -= per
out.write(b"".join(data.splitlines(keepends=True)[:want]))
out.flush()
"""

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


def search_only(path: Path, needle: str) -> float:
    """Seconds for the log view's search (LogIndex.find) to go through the whole log in vain."""
    index = LogIndex(path)
    index.refresh()
    if not needle.isascii():
        index.find(needle, len(index) - 1)  # the case-fold table is built once per process
    start = time.perf_counter()
    found = index.find(needle, 0)
    took = time.perf_counter() - start
    index.close()
    assert found is None, f"{needle!r} is in the log"
    return took


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


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for row in f:
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) / 1024
    return 0.0


def cpu_secs(fn: object) -> tuple[float, object]:
    """CPU seconds of this process and its waited-for children for one call of `fn`."""
    import resource

    def both() -> float:
        me = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    start = both()
    result = fn()  # type: ignore[operator]
    return both() - start, result


def last_loss_point(path: Path) -> tuple[tuple[float, float] | None, int]:
    """What `ftmon scan` reads (the Monitor, batch path): the last finite loss as the plots
    place it (x = step, else line number), and the number of lines."""
    monitor = Monitor()
    last = None
    for lines in iter_file_lines(path):
        for e in monitor.feed_lines(lines, 0.0):
            loss = e.values.get("loss") if type(e) is Metric else None  # type: ignore[union-attr]
            if loss is not None and math.isfinite(loss):
                last = (float(e.step if e.step is not None else e.lineno), loss)  # type: ignore[union-attr]
    return last, monitor.lines


def write_recipe(folder: Path, name: str, command: list[str]) -> Path:
    import yaml

    path = folder / f"{name}.yaml"
    data = {"name": name, "command": command, "kill_grace_secs": 1, "preflight": {"enabled": False}}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


async def ready(app: FtmonApp, pilot: Any) -> None:
    """The app has started up and drawn its main screen."""
    while not getattr(app, "started", False):
        await asyncio.sleep(0.02)
    await pilot.pause()


def is_ended(app: FtmonApp, ids: list[str]) -> bool:
    views = [app.book.runs.get(i) for i in ids]
    return all(v is not None and v.status not in ("running", "") for v in views)


async def ended(app: FtmonApp, ids: list[str]) -> None:
    while not is_ended(app, ids):
        await asyncio.sleep(0.05)


async def plots_timing(path: Path, expect: tuple[float, float]) -> tuple[float, float]:
    """Seconds (wall, CPU of this process) from launching `cat LOG` in the TUI to its plots
    holding `expect`, the log's last loss point."""
    with tempfile.TemporaryDirectory() as tmp:
        recipe = write_recipe(Path(tmp), "replay", ["cat", str(path)])
        app = FtmonApp(logs_dir=Path(tmp) / "logs", reattach=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await ready(app, pilot)
            start, cpu0 = time.perf_counter(), time.process_time()
            run_id = await app.launch(load_recipe(recipe), force=True)
            assert run_id is not None, "the run was not launched"
            took: tuple[float, float] | None = None
            while took is None:
                view = app.book.runs.get(run_id)
                points = view.series.get("loss") if view is not None else None
                if points and points[-1] == expect:
                    took = time.perf_counter() - start, time.process_time() - cpu0
                elif view is not None and view.status not in ("running", ""):
                    raise SystemExit(
                        f"the run ended ({view.status}); loss plotted up to "
                        f"{points[-1] if points else None}, not {expect}"
                    )
                await asyncio.sleep(0.02)
            await ended(app, [run_id])  # leave nothing running behind the app's teardown
            return took


async def follow_rss(source: Path, lines: int, runs: int = 3) -> tuple[float, float, float, float]:
    """Follow `runs` runs that each print `lines` lines; RSS (MB) before, peak and at the end,
    and the wall seconds it took."""
    with tempfile.TemporaryDirectory() as tmp:
        app = FtmonApp(logs_dir=Path(tmp) / "logs", reattach=False)
        async with app.run_test(size=(160, 48)) as pilot:
            await ready(app, pilot)
            before = rss_mb()
            peak = before
            start = time.perf_counter()
            ids = []
            for k in range(runs):
                cmd = [sys.executable, "-c", REPEAT, str(source), str(lines)]
                recipe = write_recipe(Path(tmp), f"print-{k}", cmd)
                run_id = await app.launch(load_recipe(recipe), force=True)
                assert run_id is not None, "a run was not launched"
                ids.append(run_id)
            while not is_ended(app, ids):
                peak = max(peak, rss_mb())
                await asyncio.sleep(0.5)
            await pilot.pause()
            return before, peak, rss_mb(), time.perf_counter() - start


def plots(path: Path) -> None:
    expect, lines = last_loss_point(path)
    if expect is None:
        raise SystemExit(f"{path}: no loss to plot")
    grep_pipe(path)
    grep_cpu, _ = cpu_secs(lambda: grep_pipe(path))
    scan_cpu, _ = cpu_secs(lambda: last_loss_point(path))
    wall, cpu = asyncio.run(plots_timing(path, expect))
    print(f"\nplots of a {lines:,}-line log, launched as `cat LOG` in the TUI:")
    print(f"grep -cE ... LOG | cat (CPU):        {grep_cpu:8.2f} s")
    print(
        f"ftmon scan of it, this process (CPU): {scan_cpu:8.2f} s  "
        f"({scan_cpu / grep_cpu:5.1f}x grep)"
    )
    print(
        f"launch -> plots complete:            {wall:8.2f} s wall, {cpu:.2f} s CPU "
        f"({cpu / scan_cpu:4.2f}x the scan, {lines / wall:,.0f} lines/s wall)"
    )


def follow(source: Path, lines: int) -> None:
    before, peak, end, wall = asyncio.run(follow_rss(source, lines))
    print(
        f"\nfollowing 3 runs of {lines:,} lines each in the TUI ({3 * lines / wall:,.0f} lines/s):"
    )
    print(
        f"RSS before launch {before:6.0f} MB, peak {peak:6.0f} MB, at the end {end:6.0f} MB "
        "(the issue asks under 150 MB)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lines", type=int, default=2_000_000)
    parser.add_argument("--log", type=Path, help="an existing log (else one is written)")
    parser.add_argument("--plots", action="store_true", help="time the TUI's plots too")
    parser.add_argument("--follow", action="store_true", help="RSS while following 3 runs")
    parser.add_argument("--follow-lines", type=int, default=10_000_000, help="lines per run")
    parser.add_argument("--only", action="store_true", help="skip the log view's figures")
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
        if not args.only:
            view_figures(path)
        if args.plots:
            plots(path)
        if args.follow:
            follow(path, args.follow_lines)
    return 0


def view_figures(path: Path) -> None:
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
    for label, needle in (("ASCII", "zqxjvw"), ("Latin", "Überzqxjvw"), ("Greek", "σίσυφοςq")):
        took = min(search_only(path, needle) for _ in range(3))
        line = f"search all, not found, {label}:"
        print(f"{line:<34}{took * 1000:8.1f} ms  ({took / baseline:5.1f}x)")


if __name__ == "__main__":
    sys.exit(main())
