"""The history database: rows survive, two processes share it, runs are found by prefix."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.events import Action, Anomaly, Eval, Metric, Sample, Severity
from supervisor.store.history import History, HistoryError
from tests.conftest import ROOT


def add(history: History, run_id: str, started_at: float, **kw: object) -> None:
    history.add_run(run_id=run_id, name="tiny", started_at=started_at, **kw)  # type: ignore[arg-type]


def test_run_row_round_trips_and_survives_reopen(tmp_path: Path) -> None:
    """A run recorded at launch reads back with its argv, env, fingerprint after a reopen."""
    db = tmp_path / "ftmon.db"
    h = History(db)
    add(
        h, "20261122-2054-tiny", 100.0, argv=["python", "-c", "print(1)"], cwd="/w",
        env={"A": "1"}, pid=42, proc_start_time=99.5, log_path="/w/output.log",
        base_fingerprint={"size": 3}, recipe_yaml="name: tiny\n",
    )  # fmt: skip
    h.close()
    rec = History(db).get("20261122-2054-tiny")
    assert rec is not None
    assert rec.argv == ("python", "-c", "print(1)")
    assert rec.env == {"A": "1"}
    assert rec.pid == 42 and rec.proc_start_time == 99.5
    assert rec.base_fingerprint == {"size": 3}
    assert rec.status == "running" and rec.live


def test_database_is_in_wal_mode(tmp_path: Path) -> None:
    """The file is in WAL mode, so a reader (the TUI) never blocks a writer (ftmon run)."""
    History(tmp_path / "ftmon.db").close()
    mode = sqlite3.connect(tmp_path / "ftmon.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_record_batch_stores_metrics_and_offset_together(tmp_path: Path) -> None:
    """Metrics and evals become one row per value; the offset moves with them."""
    h = History(tmp_path / "ftmon.db")
    add(h, "r1", 1.0)
    events = [
        Metric(lineno=3, ts=5.0, values={"loss": 2.5, "lr": 1e-4}, step=10),
        Sample(lineno=4, ts=5.0, text="hello"),
        Eval(lineno=5, ts=5.0, values={"val_loss": 2.0}, step=10),
    ]
    h.record_batch("r1", events=events, offset=321, lineno=5)
    rows = h.metrics("r1")
    assert [(r.name, r.value, r.step, r.kind) for r in rows] == [
        ("loss", 2.5, 10, "metric"),
        ("lr", 1e-4, 10, "metric"),
        ("val_loss", 2.0, 10, "eval"),
    ]
    rec = h.get("r1")
    assert rec is not None and (rec.offset, rec.lineno) == (321, 5)


def test_a_step_too_big_for_sqlite_is_stored_without_its_step(tmp_path: Path) -> None:
    """`step 99999999999999999999` (a run id or a seed read as a step) is past SQLite's 64-bit
    integers: the values are kept without a step, and the batch (offset, the rows around it)
    is written, not lost to an OverflowError."""
    h = History(tmp_path / "ftmon.db")
    add(h, "r1", 1.0)
    events = [
        Metric(lineno=1, ts=5.0, values={"loss": 2.5}, step=10**20),
        Metric(lineno=2, ts=5.0, values={"loss": 2.4}, step=-(10**20)),
        Metric(lineno=3, ts=5.0, values={"loss": 2.3}, step=2**63 - 1),
    ]
    h.record_batch("r1", events=events, offset=99, lineno=3)
    assert [(r.step, r.value) for r in h.metrics("r1")] == [
        (None, 2.5),
        (None, 2.4),
        (2**63 - 1, 2.3),
    ]
    rec = h.get("r1")
    assert rec is not None and (rec.offset, rec.lineno) == (99, 3)


def test_resolve_by_prefix_last_and_ambiguity(tmp_path: Path) -> None:
    """`last`, a unique prefix and a full id find a run; an ambiguous prefix names the options."""
    h = History(tmp_path / "ftmon.db")
    add(h, "20261122-2054-sft", 1.0)
    add(h, "20261122-2055-sft", 2.0)
    add(h, "20261122-2055-sft-a2", 3.0, parent_id="20261122-2055-sft", attempt=2)
    assert h.resolve("last").id == "20261122-2055-sft-a2"
    assert h.resolve("20261122-2054").id == "20261122-2054-sft"
    assert h.resolve("20261122-2055-sft").id == "20261122-2055-sft"  # exact beats prefix
    with pytest.raises(HistoryError, match="several runs"):
        h.resolve("20261122-205")
    with pytest.raises(HistoryError, match="no run matches"):
        h.resolve("1999")
    assert [r.id for r in h.children("20261122-2055-sft")] == ["20261122-2055-sft-a2"]
    assert [r.id for r in h.lineage("20261122-2055-sft-a2")] == [
        "20261122-2055-sft",
        "20261122-2055-sft-a2",
    ]


def test_anomalies_actions_and_finish_read_back(tmp_path: Path) -> None:
    """Anomalies and actions keep their fields; a finished run is no longer live."""
    h = History(tmp_path / "ftmon.db")
    add(h, "r1", 1.0)
    h.add_anomaly("r1", Anomaly("nan", Severity.ERROR, "loss is nan", 2.0, 7, ("{'loss': nan}",)))
    h.add_action("r1", Action("kill", "nan", 2.1, "r1", "SIGTERM to group 5", ok=True))
    h.finish_run("r1", status="killed", ended_at=3.0, signal=15, reason="killed by ftmon: rule nan")
    (anomaly,) = h.anomalies("r1")
    assert (anomaly.rule, anomaly.severity, anomaly.lineno) == ("nan", Severity.ERROR, 7)
    assert anomaly.evidence == ("{'loss': nan}",)
    (action,) = h.actions("r1")
    assert (action.kind, action.detail, action.ok) == ("kill", "SIGTERM to group 5", True)
    rec = h.get("r1")
    assert rec is not None and not rec.live and rec.end_reason == "killed by ftmon: rule nan"
    assert h.live() == []


def test_two_processes_write_at_once_without_errors(tmp_path: Path) -> None:
    """Two processes appending actions at the same time both succeed (busy_timeout, WAL)."""
    db = tmp_path / "ftmon.db"
    add(History(db), "r1", 1.0)
    code = (
        "import sys\n"
        "from supervisor.store.history import History\n"
        "from supervisor.events import Action\n"
        "h = History(sys.argv[1])\n"
        "for i in range(150):\n"
        "    h.add_action('r1', Action('alert', 'nan', float(i), 'r1', sys.argv[2]))\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(db), tag], cwd=ROOT) for tag in ("a", "b")
    ]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    details = [a.detail for a in History(db).actions("r1")]
    assert details.count("a") == 150 and details.count("b") == 150


def test_not_a_database_gives_one_clear_error(tmp_path: Path) -> None:
    """A file that is not SQLite is reported with its path, not a traceback from sqlite3."""
    bad = tmp_path / "ftmon.db"
    bad.write_bytes(b"this is not a database, just text " * 200)
    with pytest.raises(HistoryError, match=str(bad)):
        History(bad)


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer ftmon is refused rather than misread."""
    db = tmp_path / "ftmon.db"
    History(db).close()
    con = sqlite3.connect(db)
    con.execute("UPDATE schema_version SET version = 99")
    con.commit()
    con.close()
    with pytest.raises(HistoryError, match="newer ftmon"):
        History(db)


def test_a_run_has_one_live_owner(tmp_path: Path) -> None:
    """A run claimed by a live ftmon cannot be claimed by another; a dead owner is replaced."""
    import psutil

    from supervisor.runs.executors.process import is_alive

    h = History(tmp_path / "ftmon.db")
    add(h, "r1", 1.0)
    me = (os.getpid(), psutil.Process().create_time())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_start = psutil.Process(dead.pid).create_time()
    dead.wait()
    assert h.claim("r1", dead.pid, dead_start, is_alive) is None
    assert h.claim("r1", *me, is_alive) is None  # the dead owner is replaced
    assert h.claim("r1", 1, 0.0, is_alive) == os.getpid()  # a live owner is not
    h.release("r1", os.getpid())
    assert h.claim("r1", 1, 0.0, is_alive) is None
    h.finish_run("r1", status="finished", ended_at=2.0)
    rec = h.get("r1")
    assert rec is not None and rec.owner_pid is None


def test_a_file_where_the_logs_folder_should_be_is_one_clear_error(tmp_path: Path) -> None:
    """FTMON_HOME naming a file: a HistoryError saying so and how to choose another folder."""
    not_a_folder = tmp_path / "logs"
    not_a_folder.write_text("I am a file")
    with pytest.raises(HistoryError, match=r"is a file, not a folder .*--logs-dir"):
        History.in_logs_dir(not_a_folder)
    assert not_a_folder.read_text() == "I am a file"
