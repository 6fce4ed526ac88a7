"""Kills that leave nothing: daemons that double-forked away from a run, under `ftmon run` and
`ftmon --watch --pid`, are found and killed; the survivors a kill could not end are named; the
zombies of a run's orphans re-parented to ftmon (its child subreaper) are reaped.

Real processes throughout (tests/programs/double_fork.py and stubborn*.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from supervisor.runs.executors import orphans, process
from supervisor.runs.executors.signals import KillReport
from tests.conftest import PROGRAMS, ftmon, wait_for
from tests.programs.recipes import write_recipe


def pids_of(folder: Path) -> dict[str, int]:
    wait_for(lambda: (folder / "pids").exists(), what="for the program's pid file")
    return {k: int(v) for k, v in (x.split() for x in (folder / "pids").read_text().splitlines())}


def gone(pid: int) -> bool:
    """Not running: no such process, or a zombie (dead, only its exit status left)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def survivors(pids: dict[str, int]) -> list[int]:
    """The program's processes still alive once the kill has reported (it waits for them)."""
    alive = [pid for pid in pids.values() if not gone(pid)]
    for pid in alive:  # never leave them behind for the next test
        os.kill(pid, signal.SIGKILL)
    return alive


def run_dir_of(logs: Path) -> Path:
    runs = [p for p in logs.iterdir() if p.is_dir()]
    assert len(runs) == 1, runs
    return runs[0]


@pytest.mark.parametrize(
    ("program", "args"),
    [
        ("double_fork.py", {"nan_after": 5}),  # (a) a setsid grandchild that double-forked
        ("stubborn.py", {"nan_after": 5}),  # (d) a plain stubborn tree ignoring SIGTERM
    ],
    ids=["double-forked-daemon", "stubborn-tree"],
)
def test_ftmon_run_kill_leaves_no_process_of_the_run(
    tmp_path: Path, program: str, args: dict[str, object]
) -> None:
    """`ftmon run` with `on: nan: kill` kills the run, the daemon that escaped its tree and
    session, and says "all gone"."""
    logs = tmp_path / "logs"
    recipe = write_recipe(
        tmp_path, program, name="escape", args={"output_dir": "{run_dir}", **args},
        on={"nan": {"do": "kill"}},
    )  # fmt: skip
    res = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs), timeout=90)
    out = res.stdout + res.stderr
    pids = pids_of(run_dir_of(logs))
    left = survivors(pids)
    assert "action  kill [nan]" in out, out
    assert left == [], f"survivors {left} of {pids}; ftmon said: {out}"
    assert "all gone" in out and "still alive" not in out
    assert "Traceback" not in out


def start_foreign(tmp_path: Path, *args: str, new_session: bool) -> subprocess.Popen[bytes]:
    """A run that ftmon did not start, writing its log itself (as if started by a shell)."""
    log = (tmp_path / "train.log").open("ab")
    try:
        argv = [sys.executable, str(PROGRAMS / "double_fork.py"), "--output_dir", str(tmp_path)]
        return subprocess.Popen(
            [*argv, *args], stdout=log, stderr=log, start_new_session=new_session
        )
    finally:
        log.close()


@pytest.mark.parametrize(
    ("extra", "new_session"),
    [
        ((), False),  # (b) setsid + double fork, the run in the test's own group and session
        (("--stay-in-group",), True),  # (c) a double-forked child that stayed in the run's group
    ],
    ids=["setsid-daemon", "daemon-in-group"],
)
def test_watch_pid_kill_leaves_no_process_of_the_run(
    tmp_path: Path, extra: tuple[str, ...], new_session: bool
) -> None:
    """`ftmon --watch LOG --pid P --on nan=kill` kills P and the daemon that left P's tree,
    whether it left the session too or stayed in P's process group."""
    run = start_foreign(tmp_path, "--nan-after", "5", *extra, new_session=new_session)
    try:
        pids = pids_of(tmp_path)
        res = ftmon(
            "--watch", str(tmp_path / "train.log"), "--from-start", "--json",
            "--pid", str(run.pid), "--on", "nan=kill", "--grace", "0.5", timeout=90,
        )  # fmt: skip
        run.wait(10)
        left = survivors(pids)
        records = [json.loads(x) for x in res.stdout.splitlines()]
        kills = [r for r in records if r["type"] == "action" and r["kind"] == "kill"]
        assert left == [], f"survivors {left} of {pids}; ftmon said: {res.stdout}{res.stderr}"
        assert len(kills) == 1 and kills[0]["ok"] is True, kills
        assert "all gone" in kills[0]["detail"] and "Traceback" not in res.stderr
        if new_session:  # the run leads its group: the group is signalled, not only the tree
            assert f"SIGTERM to group {run.pid}" in kills[0]["detail"]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_a_run_in_a_shared_group_is_killed_without_its_group(tmp_path: Path) -> None:
    """A foreign run in ftmon's own process group: its tree and its daemonized fork die, the
    group (which holds ftmon and this test) is never signalled."""
    run = start_foreign(tmp_path, new_session=False)
    try:
        pids = pids_of(tmp_path)
        assert os.getpgid(run.pid) == os.getpgrp()
        report = process.kill_tree(run.pid, None, grace=0.3)
        assert report.all_gone, report.detail()
        assert set(report.tree) >= set(pids.values())
        assert run.wait(5) == -signal.SIGKILL
        assert survivors(pids) == []
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


def test_spawned_run_orphans_reparent_to_ftmon_and_their_zombies_are_reaped(
    tmp_path: Path,
) -> None:
    """ftmon is the child subreaper of the runs it spawns: a run's double-forked daemon becomes
    ftmon's child, and once it dies (killed by someone else) ftmon reaps it: no zombie is left."""
    spawned = process.spawn(
        [sys.executable, str(PROGRAMS / "double_fork.py"), "--output_dir", str(tmp_path)],
        {**os.environ, "PYTHONUNBUFFERED": "1"}, tmp_path, tmp_path / "out.log",
    )  # fmt: skip
    try:
        daemon = pids_of(tmp_path)["daemon"]
        assert psutil.Process(daemon).ppid() == os.getpid(), "re-parented to ftmon, not init"
        assert orphans.token_of(daemon) == orphans.token_of(spawned.pid) is not None
        os.kill(daemon, signal.SIGKILL)
        wait_for(lambda: not psutil.pid_exists(daemon), what="for the zombie to be reaped")
    finally:
        report = process.kill_tree(spawned.pid, spawned.pgid, grace=0.2)
    assert report.all_gone, report.detail()


def test_a_kill_report_names_each_survivor_by_pid_and_command() -> None:
    """A report with survivors says how many and which (pid and command), never "all gone"."""
    report = KillReport(
        pid=10, pgid=10, tree=(10, 11, 12), termed=(10, 11), killed=(11, 12),
        survivors=(11, 12), survivor_commands=("python train.py --lr 0.1", "dataloader"),
    )  # fmt: skip
    text = report.detail()
    assert "2 still alive: 11 (python train.py --lr 0.1), 12 (dataloader)" in text
    assert "all gone" not in text and not report.all_gone
