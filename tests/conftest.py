"""What every test tier shares: where things are, waiting on a condition, scanning a text.

Import the helpers (`from tests.conftest import ROOT, wait_for`); pytest also loads this file
first, so nothing here may import textual or torch (the unit tier runs without them).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from supervisor.events import Anomaly
from supervisor.monitoring.monitor import Monitor
from supervisor.reading.tail import LineSplitter
from supervisor.rules import WatchSettings

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("FTMON_SHARED", ROOT.parent / "shared"))
CORPUS = SHARED / "corpus"
PROGRAMS = ROOT / "tests" / "programs"
MAKE_LOG = SHARED / "bench" / "make_log.py"


def wait_for(predicate: Callable[[], object], timeout: float = 20.0, what: str = "") -> None:
    """Poll until `predicate()` is true: a guard against hanging, never a timing claim."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout:g} s {what}".rstrip())
        time.sleep(0.02)


async def async_wait_for(
    predicate: Callable[[], object], timeout: float = 20.0, what: str = ""
) -> None:
    """`wait_for` for code on the event loop: sleeps with asyncio so the loop keeps running."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout:g} s {what}".rstrip())
        await asyncio.sleep(0.02)


def scan(text: str, watch: WatchSettings | None = None) -> list[Anomaly]:
    """Anomalies the Monitor finds in `text`, read as a log file would be."""
    splitter = LineSplitter()
    lines = splitter.feed(text.encode()) + splitter.flush()
    return [e for e in Monitor(watch).feed_lines(lines, 100.0) if isinstance(e, Anomaly)]


def ftmon(
    *args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The real `ftmon` console script of this environment, run to its end."""
    return subprocess.run(
        [ftmon_path(), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ftmon_path() -> str:
    exe = Path(sys.executable).with_name("ftmon")
    return str(exe) if exe.exists() else "ftmon"


def python_argv(program: str, *args: str) -> Sequence[str]:
    """argv running one of tests/programs with this interpreter."""
    return [sys.executable, str(PROGRAMS / program), *args]


def make_planted_log(folder: Path, lines: int, plant: int) -> tuple[Path, list[tuple[int, str]]]:
    """A healthy bench log from ../shared/bench/make_log.py with `plant` anomalies at known
    lines: (the log, [(line, kind)]). Skips the test where the generator is absent."""
    import pytest

    if not MAKE_LOG.is_file():
        pytest.skip(f"no {MAKE_LOG}")
    log = folder / f"bench-{lines}.log"
    argv = [sys.executable, str(MAKE_LOG), "--lines", str(lines), "--plant", str(plant)]
    done = subprocess.run(
        [*argv, "--out", str(log)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    planted = [(int(n), kind) for n, kind in (r.split("\t") for r in done.stderr.split("\n") if r)]
    return log, planted
