"""`ftmon sweep --resume SWEEP`: a real 3-member sweep of tiny programs, one member at a time,
interrupted after its first member launched, carried on in the same sweep: the running member is
adopted (its end seen, its slot held), the two queued ones run, none runs twice. Also an unknown
sweep, a sweep with nothing left, and the terminal going away (SIGHUP) under `ftmon sweep`."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor.store.history import History
from supervisor.store.schema import SweepRecord
from tests.conftest import ftmon, ftmon_path, wait_for
from tests.programs.recipes import write_recipe


def _sweep_recipe(tmp_path: Path, go: Path) -> Path:
    """Three members, one at a time; each counts only once `go` exists (the test's cue)."""
    return write_recipe(
        tmp_path, "count_steps.py", name="resumable",
        args={"steps": 3, "interval": 0.01, "wait_for": str(go)},
        sweep={"grid": {"steps": [3, 4, 5]}, "max_parallel": 1},
    )  # fmt: skip


def _query(db: Path, sql: str, *params: object) -> list[tuple]:  # type: ignore[type-arg]
    if not db.exists():  # (connecting would create it, before ftmon does)
        return []
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    except sqlite3.OperationalError:  # not created yet
        return []
    finally:
        con.close()


def _first_member(db: Path) -> tuple[str, str] | None:
    """(sweep id, run id) once member 1 is recorded as launched."""
    rows = _query(db, "SELECT sweep_id, run_id FROM sweep_members WHERE member = 1"
                      " AND status = 'launched'")  # fmt: skip
    return rows[0] if rows else None


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """The ftmon processes a test starts; at its end (passed or not) those still running are
    killed, and so are the runs its history names that are still alive."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait()
    for (pid,) in _query(tmp_path / "logs" / "ftmon.db", "SELECT pid FROM runs"):
        if pid and psutil.pid_exists(pid):
            with contextlib.suppress(OSError):
                os.killpg(pid, signal.SIGKILL)  # each run leads its own group


def _start(procs: list[subprocess.Popen[str]], *args: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [ftmon_path(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    procs.append(proc)
    return proc


def test_interrupted_sweep_resumes_in_the_same_sweep_without_rerunning(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    go = tmp_path / "go"
    recipe, logs = _sweep_recipe(tmp_path, go), tmp_path / "logs"
    db = logs / "ftmon.db"
    first = _start(started, "sweep", str(recipe), "--max-parallel", "1", "--logs-dir", str(logs))
    wait_for(lambda: _first_member(db), what="member 1 launched")
    sweep_id, run1 = _first_member(db)  # type: ignore[misc]
    # While `ftmon sweep` drives it, a resume refuses: it would start the queued members twice.
    busy = ftmon("sweep", "--resume", sweep_id, "--logs-dir", str(logs))
    assert busy.returncode == 2, busy.stdout + busy.stderr
    assert busy.stderr == (
        f"ftmon: {sweep_id} is being driven by another ftmon (pid {first.pid}); "
        "stop that one first, or let it finish\n"
    )
    first.send_signal(signal.SIGINT)
    out, err = first.communicate(timeout=30)
    assert first.returncode == 130, out + err
    assert f"carry on with: ftmon sweep --resume {sweep_id} --logs-dir {logs}" in out
    assert "2 member(s) still queued, 1 running" in out
    (pid1,) = _query(db, "SELECT pid FROM runs WHERE id = ?", run1)[0]
    assert psutil.Process(pid1).is_running()  # member 1 runs on, waiting for its cue
    assert _query(db, "SELECT member, status FROM sweep_members ORDER BY member") == [
        (1, "launched"), (2, "queued"), (3, "queued"),
    ]  # fmt: skip

    dry = ftmon("sweep", "--resume", sweep_id, "--dry-run", "--logs-dir", str(logs))
    assert dry.stdout.splitlines() == [
        f"resumable-1: steps=3  (running as {run1}: would adopt)",
        "resumable-2: steps=4  (queued: would start)",
        "resumable-3: steps=5  (queued: would start)",
    ]  # fmt: skip
    # Two resumes at once (two terminals): one drives the sweep, the other refuses.
    both = [_start(started, "sweep", "--resume", sweep_id, "--logs-dir", str(logs))
            for _ in range(2)]  # fmt: skip
    wait_for(lambda: any(p.poll() is not None for p in both), what="one resume refused")
    loser = next(p for p in both if p.poll() is not None)
    resume = next(p for p in both if p is not loser)
    _, lost = loser.communicate()
    assert loser.returncode == 2 and f"driven by another ftmon (pid {resume.pid})" in lost
    # Member 1 is adopted (owned by the resume now) and holds the only slot: nothing else
    # starts until it ends.
    wait_for(lambda: _query(db, "SELECT owner_pid FROM runs WHERE id = ?", run1)
             == [(resume.pid,)], what="member 1 adopted")  # fmt: skip
    assert _query(db, "SELECT COUNT(*) FROM runs") == [(1,)]
    go.touch()
    out, err = resume.communicate(timeout=60)
    assert resume.returncode == 0, out + err
    assert f"{run1}: member 1 adopted (steps=3)" in out

    runs = _query(
        db, "SELECT m.member, m.status, r.id, r.status, r.started_at, r.ended_at"
            " FROM sweep_members m JOIN runs r ON r.id = m.run_id ORDER BY m.member",
    )  # fmt: skip
    assert [(m, s, rs) for m, s, _, rs, _, _ in runs] == [
        (1, "launched", "finished"), (2, "launched", "finished"), (3, "launched", "finished"),
    ]  # fmt: skip
    assert runs[0][2] == run1  # the same run, not a second one
    assert _query(db, "SELECT COUNT(*) FROM runs") == [(3,)]
    assert _query(db, "SELECT COUNT(*) FROM sweeps") == [(1,)]
    # One at a time: member 2 waited for the adopted member 1, member 3 for member 2.
    assert runs[1][4] >= runs[0][5] and runs[2][4] >= runs[1][5]

    table = json.loads(ftmon("compare", sweep_id, "--json", "--logs-dir", str(logs)).stdout)
    assert [(r["label"], r["status"]) for r in table["rows"]] == [
        ("#1", "finished"), ("#2", "finished"), ("#3", "finished"),
    ]  # fmt: skip
    assert [r["values"] for r in table["rows"]] == [{"steps": 3}, {"steps": 4}, {"steps": 5}]
    report = ftmon("report", sweep_id, "--no-plots", "-o", str(tmp_path / "report"),
                   "--logs-dir", str(logs))  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    text = (tmp_path / "report" / f"{sweep_id}.md").read_text()
    assert "3 members sweeping steps" in text
    assert all(
        f"| {run_id} | 1 | sweep {sweep_id} member {m}:" in text for m, _, run_id, *_ in runs
    )


def test_a_member_another_ftmon_supervises_holds_its_slot_until_let_go(
    tmp_path: Path, started: list[subprocess.Popen[str]]
) -> None:
    """Member 1 reattached by `ftmon attach` in another terminal: the resume waits for it (its
    slot held, nothing else starts) and adopts it once that ftmon stops supervising it."""
    go = tmp_path / "go"
    recipe, logs = _sweep_recipe(tmp_path, go), tmp_path / "logs"
    db = logs / "ftmon.db"
    first = _start(started, "sweep", str(recipe), "--logs-dir", str(logs))
    wait_for(lambda: _first_member(db), what="member 1 launched")
    sweep_id, run1 = _first_member(db)  # type: ignore[misc]
    first.send_signal(signal.SIGINT)
    first.communicate(timeout=30)
    other = _start(started, "attach", run1, "--logs-dir", str(logs))
    owner = lambda: _query(db, "SELECT owner_pid FROM runs WHERE id = ?", run1)  # noqa: E731
    wait_for(lambda: owner() == [(other.pid,)], what="member 1 attached elsewhere")
    resume = _start(started, "sweep", "--resume", sweep_id, "--logs-dir", str(logs))
    wait_for(lambda: _query(db, "SELECT 1 FROM sweep_owners WHERE pid = ?", resume.pid),
             what="the resume drives the sweep")  # fmt: skip
    time.sleep(0.5)  # (a member 2 started now would be a bug: the slot is member 1's)
    assert _query(db, "SELECT COUNT(*) FROM runs") == [(1,)]
    other.send_signal(signal.SIGINT)  # the other ftmon lets go of member 1
    assert other.wait(timeout=30) == 130
    wait_for(lambda: owner() == [(resume.pid,)], what="member 1 adopted by the resume")
    assert _query(db, "SELECT COUNT(*) FROM runs") == [(1,)]
    go.touch()
    out, err = resume.communicate(timeout=60)
    assert resume.returncode == 0, out + err
    assert f"{run1}: member 1 is supervised by another ftmon; waiting for it" in out
    assert _query(db, "SELECT r.status FROM sweep_members m JOIN runs r ON r.id = m.run_id"
                      " ORDER BY m.member") == [("finished",)] * 3  # fmt: skip


def test_resume_of_an_unknown_sweep_exits_2_with_one_line(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    none = ftmon("sweep", "--resume", "sweep-nope", "--logs-dir", str(logs))
    assert none.returncode == 2
    assert none.stderr == f"ftmon: no sweep matches 'sweep-nope': no history in {logs}\n"
    assert not logs.exists()  # nothing made
    History.in_logs_dir(logs).close()
    unknown = ftmon("sweep", "--resume", "sweep-nope", "--logs-dir", str(logs))
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert unknown.stderr == (
        "ftmon: no sweep matches 'sweep-nope' (`ftmon compare` lists the sweeps)\n"
    )


def test_resume_of_a_prefix_two_sweeps_share_names_both(tmp_path: Path) -> None:
    """Two studies started the same day share a prefix: `--resume sweep-2026` names them
    instead of saying no sweep matches."""
    logs = tmp_path / "logs"
    history = History.in_logs_dir(logs)
    for i, sweep_id in enumerate(("sweep-20261207-1010-a", "sweep-20261207-1020-b")):
        history.add_sweep(SweepRecord(sweep_id, "s", float(i), "name: s\n", "", (), None), [])
    history.close()
    both = ftmon("sweep", "--resume", "sweep-2026", "--logs-dir", str(logs))
    assert both.returncode == 2 and both.stdout == ""
    assert both.stderr == (
        "ftmon: 'sweep-2026' matches several sweeps: sweep-20261207-1020-b, "
        "sweep-20261207-1010-a; give more of the id\n"
    )
    # compare and report say the same (they said "no run matches" / "no sweep matches").
    for command in (["compare", "sweep-2026"], ["report", "sweep-2026", "-o", str(tmp_path / "r")]):
        out = ftmon(*command, "--logs-dir", str(logs))
        assert out.returncode == 2 and out.stderr == both.stderr, command
    assert not (tmp_path / "r").exists()


def test_resume_of_a_finished_sweep_says_nothing_is_left(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path, "count_steps.py", name="done-study", args={"steps": 1, "interval": 0.0},
        sweep={"grid": {"steps": [1, 2]}, "max_parallel": 2},
    )  # fmt: skip
    logs = tmp_path / "logs"
    done = ftmon("sweep", str(recipe), "--logs-dir", str(logs))
    assert done.returncode == 0, done.stdout + done.stderr
    ((sweep_id,),) = _query(logs / "ftmon.db", "SELECT id FROM sweeps")
    again = ftmon("sweep", "--resume", sweep_id[:-3], "--logs-dir", str(logs))  # a prefix works
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout.splitlines()[-1] == (
        f"{sweep_id}: nothing left to run (0 to start, 0 running, 2 ended (2 finished)); "
        f"compare: ftmon compare {sweep_id}"
    )
    assert _query(logs / "ftmon.db", "SELECT COUNT(*) FROM runs") == [(2,)]


def test_terminal_hangup_leaves_members_running_and_queued_for_resume(tmp_path: Path) -> None:
    """`ftmon sweep` in a terminal (a pty, as over SSH) whose other end closes: the kernel sends
    SIGHUP; ftmon detaches as on Ctrl-C (exit 130, runs released, the sweep free to resume)
    and the running member, in a session of its own, does not get the hangup."""
    go = tmp_path / "go"
    recipe, logs = _sweep_recipe(tmp_path, go), tmp_path / "logs"
    db = logs / "ftmon.db"
    pid, master = pty.fork()
    if pid == 0:  # the child: session leader with the pty as its controlling terminal
        try:
            # As a login shell starts it: SIGHUP at its default. A test run under `nohup`
            # passes SIGHUP on ignored, and ftmon keeps an ignored SIGHUP ignored (as asked).
            signal.signal(signal.SIGHUP, signal.SIG_DFL)
            argv = [ftmon_path(), "sweep", str(recipe), "--logs-dir", str(logs)]
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    member_pid = 0
    try:
        wait_for(lambda: _first_member(db), what="member 1 launched")
        sweep_id, run1 = _first_member(db)  # type: ignore[misc]
        (member_pid,) = _query(db, "SELECT pid FROM runs WHERE id = ?", run1)[0]
        os.close(master)  # the terminal goes away
        master = -1
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert done[0] == pid, "ftmon did not end on SIGHUP"
        assert os.waitstatus_to_exitcode(done[1]) == 130
        assert psutil.Process(member_pid).is_running()
        assert _query(db, "SELECT status, owner_pid FROM runs WHERE id = ?", run1) == [
            ("running", None),
        ]  # fmt: skip
        assert _query(db, "SELECT member, status FROM sweep_members ORDER BY member") == [
            (1, "launched"), (2, "queued"), (3, "queued"),
        ]  # fmt: skip
        assert _query(db, "SELECT * FROM sweep_owners WHERE sweep_id = ?", sweep_id) == []
    finally:
        if master >= 0:
            os.close(master)
        if member_pid and psutil.pid_exists(member_pid):
            os.killpg(member_pid, signal.SIGKILL)
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass


def test_a_sweep_has_one_driver_and_a_dead_one_is_replaced(tmp_path: Path) -> None:
    """History.claim_sweep: a live driver keeps the sweep, a dead one (killed without letting
    go) is replaced, a released sweep is free."""
    history = History.in_logs_dir(tmp_path / "logs")
    try:
        assert history.claim_sweep("sweep-x", 100, 1.0, lambda pid, start: True) is None
        assert history.claim_sweep("sweep-x", 200, 2.0, lambda pid, start: True) == 100
        assert history.claim_sweep("sweep-x", 200, 2.0, lambda pid, start: False) is None
        assert history.claim_sweep("sweep-x", 100, 1.0, lambda pid, start: True) == 200
        history.release_sweep("sweep-x", 100)  # not the driver: changes nothing
        assert history.claim_sweep("sweep-x", 100, 1.0, lambda pid, start: True) == 200
        history.release_sweep("sweep-x", 200)
        assert history.claim_sweep("sweep-x", 100, 1.0, lambda pid, start: True) is None
    finally:
        history.close()
