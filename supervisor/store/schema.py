"""The history database's shape: the SQLite schema and its migration, and the rows decoded as
frozen dataclasses (`RunRecord`, `MetricRow`). supervisor/history.py holds the `History` class
that reads and writes them (and re-exports these names).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.events import Eval, Metric
from supervisor.runs.state import LIVE_STATES

SCHEMA_VERSION = 2  # 2: run_states, decisions, runs.executor_json
DB_NAME = "ftmon.db"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    parent_id TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    reason_started TEXT NOT NULL DEFAULT '',
    recipe_yaml TEXT NOT NULL DEFAULT '',
    argv_json TEXT NOT NULL DEFAULT '[]',
    cwd TEXT NOT NULL DEFAULT '',
    env_json TEXT NOT NULL DEFAULT '{}',
    run_dir TEXT NOT NULL DEFAULT '',
    pid INTEGER,
    proc_start_time REAL,
    log_path TEXT NOT NULL DEFAULT '',
    offset INTEGER NOT NULL DEFAULT 0,
    lineno INTEGER NOT NULL DEFAULT 0,
    started_at REAL NOT NULL,
    ended_at REAL,
    status TEXT NOT NULL DEFAULT 'running',
    returncode INTEGER,
    signal INTEGER,
    end_reason TEXT NOT NULL DEFAULT '',
    base_fingerprint_json TEXT NOT NULL DEFAULT '',
    changes_json TEXT NOT NULL DEFAULT '[]',
    owner_pid INTEGER,
    owner_start REAL
);
CREATE INDEX IF NOT EXISTS runs_parent ON runs(parent_id);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_at);
CREATE TABLE IF NOT EXISTS anomalies (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    ts REAL NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    lineno INTEGER NOT NULL DEFAULT 0,
    evidence_json TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS anomalies_run ON anomalies(run_id);
CREATE TABLE IF NOT EXISTS actions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    ok INTEGER NOT NULL DEFAULT 1,
    extra_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS actions_run ON actions(run_id);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    step INTEGER,
    name TEXT NOT NULL,
    value REAL,
    ts REAL NOT NULL,
    lineno INTEGER NOT NULL,
    kind TEXT NOT NULL DEFAULT 'metric'
);
CREATE INDEX IF NOT EXISTS metrics_run ON metrics(run_id, name, step);
CREATE TABLE IF NOT EXISTS sweeps (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at REAL NOT NULL,
    recipe_yaml TEXT NOT NULL DEFAULT '',
    cwd TEXT NOT NULL DEFAULT '',
    keys_json TEXT NOT NULL DEFAULT '[]',
    replay_of TEXT
);
CREATE TABLE IF NOT EXISTS sweep_members (
    sweep_id TEXT NOT NULL,
    member INTEGER NOT NULL,
    run_id TEXT,
    values_json TEXT NOT NULL DEFAULT '{}',
    status TEXT NOT NULL DEFAULT 'queued',
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (sweep_id, member)
);
CREATE INDEX IF NOT EXISTS sweep_members_run ON sweep_members(run_id);
CREATE TABLE IF NOT EXISTS sweep_owners (
    sweep_id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    start REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS run_states (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    ts REAL NOT NULL,
    old TEXT NOT NULL,
    new TEXT NOT NULL,
    cause TEXT NOT NULL DEFAULT '',
    rule TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS run_states_run ON run_states(run_id);
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    ts REAL NOT NULL,
    kind TEXT NOT NULL,
    rule TEXT NOT NULL,
    reason TEXT NOT NULL DEFAULT '',
    recipe_yaml TEXT NOT NULL DEFAULT '',
    changes_json TEXT NOT NULL DEFAULT '[]',
    done_at REAL,
    outcome TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS decisions_run ON decisions(run_id);
CREATE TABLE IF NOT EXISTS notify_failures (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL DEFAULT '',
    ts REAL NOT NULL,
    target TEXT NOT NULL,
    event TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS notify_failures_run ON notify_failures(run_id);
"""

# The statuses of a run that is not over (runs/state.py's live states): `attach` picks these
# up, and finishes what a state such as `killing` or `relaunching` says was under way.
LIVE_STATUSES = tuple(s.value for s in LIVE_STATES)


class HistoryError(Exception):
    """The database cannot be used (not a SQLite file, newer schema, unknown run id)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One row of `runs`, decoded."""

    id: str
    name: str
    parent_id: str | None
    attempt: int
    reason_started: str
    recipe_yaml: str
    argv: tuple[str, ...]
    cwd: str
    env: dict[str, str]
    run_dir: str
    pid: int | None
    proc_start_time: float | None
    log_path: str
    offset: int
    lineno: int
    started_at: float
    ended_at: float | None
    status: str
    returncode: int | None
    signal: int | None
    end_reason: str
    base_fingerprint: dict[str, object] | None
    changes: tuple[str, ...]
    owner_pid: int | None = None  # the ftmon process supervising it now, if any
    executor: dict[str, object] | None = None  # where it executes (Executor.describe), if known
    log_head_len: int = 0  # the log's first bytes as read (reading/identity.py): how many,
    log_head_sha: str = ""  # and their SHA-256; attach re-reads a log whose head changed

    @property
    def live(self) -> bool:
        """The row says the run has not ended (its process may still have died unseen)."""
        return self.status in LIVE_STATUSES

    @property
    def is_replay(self) -> bool:
        """Started by `ftmon replay` of its parent: a new lineage that names the run it replays,
        not one of the parent's relaunches (compare and report do not fold it in)."""
        return self.parent_id is not None and self.reason_started == replay_reason(self.parent_id)


def replay_reason(run_id: str) -> str:
    """`reason_started` of a replay of `run_id` (the one spelling `RunRecord.is_replay` reads)."""
    return f"replay of {run_id}"


@dataclass(frozen=True, slots=True)
class SweepRecord:
    """One row of `sweeps`: a study started by `ftmon sweep` (its members in sweep_members)."""

    id: str
    name: str
    created_at: float
    recipe_yaml: str
    cwd: str
    keys: tuple[str, ...]
    replay_of: str | None


@dataclass(frozen=True, slots=True)
class SweepMemberRow:
    """One member of a sweep: its swept values, and its first run once launched (relaunches
    are that run's children). status: queued, launched, refused (with why), pruned."""

    sweep_id: str
    member: int
    run_id: str | None
    values: dict[str, object]
    status: str
    detail: str


# One row of the metrics table as inserted: run_id, step, name, value, ts, lineno, kind.
MetricValues = tuple[str, "int | None", str, float, float, int, str]


@dataclass(frozen=True, slots=True)
class MetricRow:
    run_id: str
    step: int | None
    name: str
    value: float
    ts: float
    lineno: int
    kind: str = "metric"


def loads_json(text: str, default: object) -> Any:
    """A JSON column read back; empty or bad text gives `default`."""
    try:
        return json.loads(text) if text else default
    except json.JSONDecodeError:
        return default


@dataclass(frozen=True, slots=True)
class StateRow:
    """One row of `run_states`: a run's move from `old` to `new`, when and why."""

    run_id: str
    ts: float
    old: str
    new: str
    cause: str
    rule: str


@dataclass(frozen=True, slots=True)
class RunEnd:
    """How a run ended, written with its move to an end state."""

    returncode: int | None
    signal: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class Decision:
    """A decision to pause, kill or relaunch a run, journaled before it is carried out
    (`done_at` None until it is). A relaunch carries the child's recipe and what changed."""

    kind: str  # "pause", "kill" or "relaunch" (kill the run if live, then launch the child)
    rule: str  # the rule that decided it, or "user"
    reason: str  # for a person: the kill reason, the relaunch reason
    recipe_yaml: str = ""  # a relaunch's child recipe (secrets redacted as recipes are)
    changes: tuple[str, ...] = ()
    id: int = 0
    run_id: str = ""
    ts: float = 0.0
    done_at: float | None = None
    outcome: str = ""


@dataclass(frozen=True, slots=True)
class NotifyFailure:
    """A notification that could not be delivered (supervisor/notify/): to which target, about
    what, after how many attempts, and why."""

    run_id: str
    ts: float
    target: str
    event: str
    title: str
    attempts: int
    error: str


def record_from_row(row: sqlite3.Row) -> RunRecord:
    """A `runs` row as a RunRecord (bad JSON in a column reads as its empty value)."""
    fp = loads_json(row["base_fingerprint_json"], None)
    return RunRecord(
        id=row["id"],
        name=row["name"],
        parent_id=row["parent_id"],
        attempt=int(row["attempt"]),
        reason_started=row["reason_started"],
        recipe_yaml=row["recipe_yaml"],
        argv=tuple(str(a) for a in loads_json(row["argv_json"], [])),  # type: ignore[union-attr]
        cwd=row["cwd"],
        env={str(k): str(v) for k, v in loads_json(row["env_json"], {}).items()},  # type: ignore[union-attr]
        run_dir=row["run_dir"],
        pid=row["pid"],
        proc_start_time=row["proc_start_time"],
        log_path=row["log_path"],
        offset=int(row["offset"]),
        lineno=int(row["lineno"]),
        started_at=float(row["started_at"]),
        ended_at=row["ended_at"],
        status=row["status"],
        returncode=row["returncode"],
        signal=row["signal"],
        end_reason=row["end_reason"],
        base_fingerprint=fp if isinstance(fp, dict) else None,
        changes=tuple(str(c) for c in loads_json(row["changes_json"], [])),  # type: ignore[union-attr]
        owner_pid=row["owner_pid"],
        executor=_executor_of(row),
        log_head_len=int(row["log_head_len"] or 0),
        log_head_sha=row["log_head_sha"] or "",
    )


def _executor_of(row: sqlite3.Row) -> dict[str, object] | None:
    described = loads_json(row["executor_json"] or "", None)
    return described if isinstance(described, dict) else None


_MIN_STEP, _MAX_STEP = -(2**63), 2**63 - 1


def metric_rows(run_id: str, events: Iterable[object]) -> list[MetricValues]:
    """Flatten `Metric`/`Eval` events into one row per value, as the `metrics` table's
    (run_id, step, name, value, ts, lineno, kind); other events are skipped. Plain tuples: a
    long log's catch-up writes hundreds of thousands, and a dataclass per row cost more than
    SQLite's insert of it."""
    rows: list[MetricValues] = []
    add = rows.append
    for ev in events:
        if type(ev) is Metric or type(ev) is Eval:  # exact types: the test costs less
            label = "metric" if type(ev) is Metric else "eval"
            step, ts, lineno = ev.step, ev.ts, ev.lineno
            if step is not None and not _MIN_STEP <= step <= _MAX_STEP:
                step = None  # past SQLite's 64-bit integers: a seed or an id read as a step
            for name, value in ev.values.items():
                add((run_id, step, name, float(value), ts, lineno, label))
    return rows


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Create the tables, add the columns of later versions, refuse a newer schema (inside
    the caller's write transaction)."""
    for stmt in _SCHEMA.split(";"):
        if stmt.strip():
            db.execute(stmt)
    columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
    added = (
        ("owner_pid", "INTEGER"), ("owner_start", "REAL"), ("executor_json", "TEXT"),
        ("log_head_len", "INTEGER"), ("log_head_sha", "TEXT"),  # reading/identity.py
    )  # fmt: skip
    for column, kind in added:
        if column not in columns:  # a database from before supervisors owned runs
            db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    if row is None:
        db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
    elif int(row[0]) > SCHEMA_VERSION:
        raise HistoryError(
            f"{path}: written by a newer ftmon (schema {row[0]}, this one knows {SCHEMA_VERSION})"
        )
    elif int(row[0]) < SCHEMA_VERSION:  # the tables and columns above bring it up to date
        db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
