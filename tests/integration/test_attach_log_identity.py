"""A log that changed while no ftmon watched is known at attach and read again from its start.

Real processes: `ftmon run` (SIGKILLed midway), a run that goes on writing, `ftmon attach`."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
from pathlib import Path

import psutil

from tests.conftest import ftmon, ftmon_path, wait_for
from tests.programs.recipes import write_recipe

FIRST, THEN = 50, 300


def db_row(db: Path) -> tuple[str, int, int, int] | None:
    """The run's row (None while the database is being created)."""
    if not db.exists():
        return None
    con = sqlite3.connect(db)
    try:
        return con.execute("SELECT id, pid, offset, lineno FROM runs").fetchone()
    except sqlite3.OperationalError:
        return None  # no tables yet
    finally:
        con.close()


def read_up_to(db: Path, lineno: int) -> bool:
    row = db_row(db)
    return row is not None and row[3] == lineno


def loss_steps(db: Path) -> list[int]:
    con = sqlite3.connect(db)
    try:
        return [r[0] for r in con.execute("SELECT step FROM metrics WHERE name = 'loss'")]
    finally:
        con.close()


def test_a_log_truncated_while_away_is_read_again_from_the_start(tmp_path: Path) -> None:
    """`ftmon run` is SIGKILLed after the first 50 lines; the log is then truncated and the run
    writes 300 more lines (far past the stored offset) and ends. `ftmon attach` says the log
    changed and reads it from its start: none of the 300 lines is skipped."""
    logs, go = tmp_path / "logs", tmp_path / "go"
    db = logs / "ftmon.db"
    recipe = write_recipe(
        tmp_path, "two_phases.py", name="phases",
        args={"first": FIRST, "then": THEN, "wait_for": str(go)},
    )  # fmt: skip
    sup = subprocess.Popen(
        [ftmon_path(), "run", str(recipe), "--headless", "--logs-dir", str(logs)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for(lambda: read_up_to(db, FIRST), timeout=60)
    finally:
        sup.send_signal(signal.SIGKILL)
        sup.wait(10)
    row = db_row(db)
    assert row is not None
    run_id, pid, offset, _ = row
    log = logs / run_id / "output.log"
    with open(log, "r+b") as fh:  # `> output.log` while no ftmon watches
        fh.truncate(0)
    go.touch()
    psutil.Process(pid).wait(30)
    assert log.stat().st_size > offset, "the new log grew past the stored offset"

    res = ftmon("attach", run_id, "--logs-dir", str(tmp_path / "logs"))

    assert res.returncode == 0, res.stdout + res.stderr
    assert "reading it again from the start" in res.stdout + res.stderr
    steps = loss_steps(db)
    skipped = set(range(FIRST + 1, FIRST + THEN + 1)) - set(steps)
    assert not skipped, f"{len(skipped)} of {THEN} lines skipped at attach"
    assert sorted(steps) == list(range(1, FIRST + THEN + 1)), "no line stored twice"
