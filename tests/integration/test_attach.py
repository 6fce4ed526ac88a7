"""Reattaching: a supervisor that died loses nothing, and a resumed one reads no line twice."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import subprocess
from collections import Counter
from pathlib import Path

import psutil
import pytest

from supervisor.recipe.model import load_recipe
from supervisor.runs import events as ev
from supervisor.runs.reattach import AttachError
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from tests.integration.test_run_cli import ROOT, ftmon, ftmon_argv, ftmon_here, wait_for_metrics
from tests.programs.recipes import write_recipe

STEPS = 60


def steps_in_db(db: Path) -> Counter[int]:
    con = sqlite3.connect(db)
    rows = con.execute("SELECT step FROM metrics WHERE name = 'loss'").fetchall()
    con.close()
    return Counter(step for (step,) in rows)


def test_sigkilled_ftmon_then_attach_reads_every_line_once(tmp_path: Path) -> None:
    """`ftmon run` killed with SIGKILL mid-run: the run goes on, and `ftmon attach` (refused
    while that ftmon lived) reads on from the stored offset: every step stored exactly once."""
    logs = tmp_path / "logs"
    db = logs / "ftmon.db"
    recipe = write_recipe(tmp_path, "count_steps.py", args={"steps": STEPS, "interval": 0.05})
    proc = subprocess.Popen(
        [*ftmon_argv(), "run", str(recipe), "--headless", "--logs-dir", str(logs)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    wait_for_metrics(db, 5)
    with pytest.raises(AttachError, match=f"supervised by another ftmon \\(pid {proc.pid}\\)"):
        asyncio.run(Supervisor(History(db), logs, print).attach("last"))  # no double reading
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    con = sqlite3.connect(db)
    run_id, pid, status = con.execute("SELECT id, pid, status FROM runs").fetchone()
    con.close()
    assert status == "running" and psutil.Process(pid).is_running()  # the run goes on
    seen_before = sum(steps_in_db(db).values())
    assert seen_before < STEPS

    res = ftmon("attach", run_id[:12], "--logs-dir", str(logs))

    assert res.returncode == 0, res.stdout + res.stderr
    assert f"{run_id}: reattached" in res.stdout
    steps = steps_in_db(db)
    assert sorted(steps) == list(range(1, STEPS + 1))  # none skipped
    assert set(steps.values()) == {1}  # none twice
    rec = History(db).get(run_id)
    assert rec is not None and rec.status == "finished" and rec.lineno == STEPS + 1


def test_attach_refuses_an_ended_run_and_an_unknown_id(tmp_path: Path) -> None:
    """Attaching to a finished run exits 1 saying so and what to do instead (show, replay);
    an unknown id exits 2."""
    logs = tmp_path / "logs"
    recipe = write_recipe(tmp_path, "count_steps.py", args={"steps": 2, "interval": 0.01})
    assert ftmon_here("run", str(recipe), "--headless", "--logs-dir", str(logs))[0] == 0
    code, _, err = ftmon_here("attach", "last", "--logs-dir", str(logs))
    assert code == 1 and "has ended: finished" in err
    assert "ftmon show " in err and "ftmon replay " in err
    code, _, err = ftmon_here("attach", "1999", "--logs-dir", str(logs))
    assert code == 2 and "no run matches '1999'" in err


async def test_attach_does_not_take_a_reused_pid_for_the_run(tmp_path: Path) -> None:
    """A live pid whose start time differs from the recorded one is not the run: attach
    reads the log to its end and closes the run instead of watching the stranger."""
    logs = tmp_path / "logs"
    recipe = load_recipe(
        write_recipe(tmp_path, "count_steps.py", args={"steps": 2000, "interval": 0.02})
    )
    events: list[object] = []
    first = Supervisor(History(logs / "ftmon.db"), logs, events.append)
    run_id = await first.launch(recipe)
    for _ in range(500):
        if any(isinstance(e, ev.MetricsObserved) for e in events):
            break
        await asyncio.sleep(0.02)
    await first.close()  # detached: the process runs on
    history = History(logs / "ftmon.db")
    rec = history.get(run_id)
    assert rec is not None and rec.pid is not None
    proc = psutil.Process(rec.pid)
    try:
        history._db.execute(  # the recorded start time no longer matches: a reused pid
            "UPDATE runs SET proc_start_time = proc_start_time - 100 WHERE id = ?", (run_id,)
        )
        later: list[object] = []
        second = Supervisor(history, logs, later.append)
        await second.attach(run_id)
        (ended,) = [e for e in later if isinstance(e, ev.RunEnded)]
        assert ended.reason.startswith("ended while no ftmon watched it")
        assert second.live_runs() == [] and proc.is_running()  # the stranger is left alone
        rec = history.get(run_id)
        assert rec is not None and not rec.live and rec.lineno > 0
        try:
            await second.attach(run_id)
        except AttachError as exc:
            assert "has ended" in str(exc)
        else:
            raise AssertionError("a closed run was reattached")
    finally:
        proc.kill()
        proc.wait(5)
