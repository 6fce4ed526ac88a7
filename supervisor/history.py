"""The history database: every run ftmon started, what it found in them and what it did.

One SQLite file (default `logs/ftmon.db`, see `default_logs_dir`) in WAL mode, so that the TUI
and a headless `ftmon run` can use it at the same time: every write is one short transaction and
a busy database is waited for (`busy_timeout`), never an error. A run's row is written when it
is launched and updated as it goes, so a run whose supervisor died keeps its row, its pid and
the byte offset read so far (which is how `ftmon attach` resumes).

Secrets are not this module's business to find: callers pass environments and recipes already
redacted (`plan.redact_env`); this module stores what it is given.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from supervisor.events import Action, Anomaly, Eval, Metric, Severity

SCHEMA_VERSION = 1
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
"""

# Statuses a run row can hold. "running" also covers a paused run and one whose supervisor died.
LIVE_STATUSES = ("running", "paused")


class HistoryError(Exception):
    """The database cannot be used (not a SQLite file, newer schema, unknown run id)."""


def default_logs_dir() -> Path:
    """Where run folders and the database live: `$FTMON_HOME` if set, else `./logs`.

    `--logs-dir DIR` on the command line takes precedence over both.
    """
    home = os.environ.get("FTMON_HOME", "").strip()
    return Path(home) if home else Path("logs")


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

    @property
    def live(self) -> bool:
        """The row says the run has not ended (its process may still have died unseen)."""
        return self.status in LIVE_STATUSES


@dataclass(frozen=True, slots=True)
class MetricRow:
    run_id: str
    step: int | None
    name: str
    value: float
    ts: float
    lineno: int
    kind: str = "metric"


def _loads(text: str, default: object) -> object:
    try:
        return json.loads(text) if text else default
    except json.JSONDecodeError:
        return default


def _record(row: sqlite3.Row) -> RunRecord:
    fp = _loads(row["base_fingerprint_json"], None)
    return RunRecord(
        id=row["id"],
        name=row["name"],
        parent_id=row["parent_id"],
        attempt=int(row["attempt"]),
        reason_started=row["reason_started"],
        recipe_yaml=row["recipe_yaml"],
        argv=tuple(str(a) for a in _loads(row["argv_json"], [])),  # type: ignore[union-attr]
        cwd=row["cwd"],
        env={str(k): str(v) for k, v in _loads(row["env_json"], {}).items()},  # type: ignore[union-attr]
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
        changes=tuple(str(c) for c in _loads(row["changes_json"], [])),  # type: ignore[union-attr]
        owner_pid=row["owner_pid"],
    )


def metric_rows(run_id: str, events: Iterable[object]) -> list[MetricRow]:
    """Flatten `Metric`/`Eval` events into one row per value; other events are skipped."""
    rows: list[MetricRow] = []
    for ev in events:
        if isinstance(ev, Metric | Eval):
            kind = "eval" if isinstance(ev, Eval) else "metric"
            for name, value in ev.values.items():
                rows.append(MetricRow(run_id, ev.step, name, float(value), ev.ts, ev.lineno, kind))
    return rows


class History:
    """The history database. Safe to share between threads of one process (one lock) and
    between processes (SQLite WAL, short transactions, busy_timeout)."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout_ms / 1000, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise HistoryError(f"{self.path}: not a usable ftmon database: {exc}") from exc

    @classmethod
    def in_logs_dir(cls, logs_dir: Path | str) -> History:
        return cls(Path(logs_dir) / DB_NAME)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction; BEGIN IMMEDIATE takes the write lock up front so that
        two processes wait for each other instead of failing on upgrade."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._tx() as db:
            for stmt in _SCHEMA.split(";"):
                if stmt.strip():
                    db.execute(stmt)
            columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")}
            for column, kind in (("owner_pid", "INTEGER"), ("owner_start", "REAL")):
                if column not in columns:  # a database from before supervisors owned runs
                    db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            row = db.execute("SELECT version FROM schema_version").fetchone()
            if row is None:
                db.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION,))
            elif int(row[0]) > SCHEMA_VERSION:
                raise HistoryError(
                    f"{self.path}: written by a newer ftmon (schema {row[0]}, "
                    f"this one knows {SCHEMA_VERSION})"
                )

    # --- runs -----------------------------------------------------------------------------

    def add_run(
        self,
        *,
        run_id: str,
        name: str,
        started_at: float,
        parent_id: str | None = None,
        attempt: int = 1,
        reason_started: str = "",
        recipe_yaml: str = "",
        argv: Sequence[str] = (),
        cwd: str = "",
        env: dict[str, str] | None = None,
        run_dir: str = "",
        pid: int | None = None,
        proc_start_time: float | None = None,
        log_path: str = "",
        base_fingerprint: dict[str, object] | None = None,
        changes: Sequence[str] = (),
        status: str = "running",
    ) -> None:
        """Record a run at launch (env and recipe_yaml must already be redacted)."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO runs (id, name, parent_id, attempt, reason_started, recipe_yaml,"
                " argv_json, cwd, env_json, run_dir, pid, proc_start_time, log_path, started_at,"
                " status, base_fingerprint_json, changes_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id, name, parent_id, attempt, reason_started, recipe_yaml,
                    json.dumps(list(argv)), cwd, json.dumps(env or {}, sort_keys=True), run_dir,
                    pid, proc_start_time, log_path, started_at, status,
                    json.dumps(base_fingerprint) if base_fingerprint is not None else "",
                    json.dumps(list(changes)),
                ),
            )  # fmt: skip

    def set_process(self, run_id: str, pid: int, proc_start_time: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET pid = ?, proc_start_time = ? WHERE id = ?",
                (pid, proc_start_time, run_id),
            )

    def set_status(self, run_id: str, status: str) -> None:
        """ "running" / "paused" while the run lives; use `finish_run` to end it."""
        with self._tx() as db:
            db.execute("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))

    def finish_run(
        self,
        run_id: str,
        *,
        status: str,
        ended_at: float,
        returncode: int | None = None,
        signal: int | None = None,
        reason: str = "",
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = ?, ended_at = ?, returncode = ?, signal = ?,"
                " end_reason = ?, owner_pid = NULL, owner_start = NULL WHERE id = ?",
                (status, ended_at, returncode, signal, reason, run_id),
            )

    def claim(
        self, run_id: str, pid: int, start: float, alive: Callable[[int, float], bool]
    ) -> int | None:
        """Make the supervisor process (`pid`, `start`) the one that supervises `run_id`.

        Two supervisors reading one run would store every metric twice and act twice, so a run
        has one owner. Returns None when claimed, or the pid of another owner still alive
        (`alive(pid, start)`); a dead owner (a SIGKILLed `ftmon run`) is replaced.
        """
        with self._tx() as db:
            row = db.execute(
                "SELECT owner_pid, owner_start FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                raise HistoryError(f"no run {run_id!r} in {self.path}")
            owner, owner_start = row
            if owner and owner != pid and alive(int(owner), float(owner_start or 0.0)):
                return int(owner)
            db.execute(
                "UPDATE runs SET owner_pid = ?, owner_start = ? WHERE id = ?", (pid, start, run_id)
            )
            return None

    def release(self, run_id: str, pid: int) -> None:
        """`pid` no longer supervises `run_id` (it detached); another may attach."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET owner_pid = NULL, owner_start = NULL"
                " WHERE id = ? AND owner_pid = ?",
                (run_id, pid),
            )

    def set_offset(self, run_id: str, offset: int, lineno: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET offset = ?, lineno = ? WHERE id = ?", (offset, lineno, run_id)
            )

    def record_batch(
        self,
        run_id: str,
        *,
        events: Iterable[object] = (),
        offset: int | None = None,
        lineno: int | None = None,
    ) -> None:
        """Metrics of one batch of lines and the offset just past them, in ONE transaction:
        either both are stored or neither, so a resumed reader never stores a line twice."""
        rows = metric_rows(run_id, events)
        with self._tx() as db:
            if rows:
                db.executemany(
                    "INSERT INTO metrics (run_id, step, name, value, ts, lineno, kind)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(r.run_id, r.step, r.name, r.value, r.ts, r.lineno, r.kind) for r in rows],
                )
            if offset is not None and lineno is not None:
                db.execute(
                    "UPDATE runs SET offset = ?, lineno = ? WHERE id = ?",
                    (offset, lineno, run_id),
                )

    def add_metrics(self, run_id: str, events: Iterable[object]) -> None:
        self.record_batch(run_id, events=events)

    def add_anomaly(self, run_id: str, anomaly: Anomaly) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO anomalies (run_id, ts, rule, severity, message, lineno,"
                " evidence_json) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id, anomaly.ts, anomaly.rule, str(anomaly.severity), anomaly.message,
                    anomaly.lineno, json.dumps(list(anomaly.evidence)),
                ),
            )  # fmt: skip

    def add_action(self, run_id: str, action: Action) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO actions (run_id, ts, kind, rule, detail, ok, extra_json)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    run_id, action.ts, action.kind, action.rule, action.detail,
                    1 if action.ok else 0, json.dumps(action.extra, default=str),
                ),
            )  # fmt: skip

    # --- reading --------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Newest first."""
        sql = "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_record(r) for r in self._query(sql)]

    def get(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _record(rows[0]) if rows else None

    def children(self, run_id: str) -> list[RunRecord]:
        rows = self._query(
            "SELECT * FROM runs WHERE parent_id = ? ORDER BY started_at, rowid", (run_id,)
        )
        return [_record(r) for r in rows]

    def live(self) -> list[RunRecord]:
        """Runs whose row says they have not ended, oldest first."""
        rows = self._query(
            "SELECT * FROM runs WHERE status IN (?, ?) ORDER BY started_at, rowid", LIVE_STATUSES
        )
        return [_record(r) for r in rows]

    def lineage(self, run_id: str) -> list[RunRecord]:
        """The ancestors of a run, first launch first, ending with the run itself."""
        chain: list[RunRecord] = []
        seen: set[str] = set()
        current = self.get(run_id)
        while current is not None and current.id not in seen:
            chain.append(current)
            seen.add(current.id)
            current = self.get(current.parent_id) if current.parent_id else None
        return list(reversed(chain))

    def resolve(self, ref: str) -> RunRecord:
        """A run by id, unique id prefix, or `last` (the newest). HistoryError otherwise."""
        ref = ref.strip()
        if ref == "last":
            newest = self.runs(limit=1)
            if not newest:
                raise HistoryError(f"{self.path}: no runs recorded yet")
            return newest[0]
        exact = self.get(ref)
        if exact is not None:
            return exact
        escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self._query(
            "SELECT * FROM runs WHERE id LIKE ? ESCAPE '\\' ORDER BY started_at DESC LIMIT 6",
            (escaped + "%",),
        )
        if not rows:
            raise HistoryError(f"no run matches {ref!r} in {self.path}")
        if len(rows) > 1:
            ids = ", ".join(r["id"] for r in rows[:5])
            raise HistoryError(f"{ref!r} matches several runs: {ids}")
        return _record(rows[0])

    def anomalies(self, run_id: str) -> list[Anomaly]:
        rows = self._query("SELECT * FROM anomalies WHERE run_id = ? ORDER BY id", (run_id,))
        out = []
        for r in rows:
            try:
                sev = Severity[str(r["severity"]).upper()]
            except KeyError:
                sev = Severity.WARNING
            evidence = _loads(r["evidence_json"], [])
            out.append(
                Anomaly(
                    rule=r["rule"], severity=sev, message=r["message"], ts=r["ts"],
                    lineno=r["lineno"], evidence=tuple(str(e) for e in evidence),  # type: ignore[union-attr]
                    run_id=run_id,
                )
            )  # fmt: skip
        return out

    def actions(self, run_id: str) -> list[Action]:
        rows = self._query("SELECT * FROM actions WHERE run_id = ? ORDER BY id", (run_id,))
        out = []
        for r in rows:
            extra = _loads(r["extra_json"], {})
            out.append(
                Action(
                    kind=r["kind"], rule=r["rule"], ts=r["ts"], run_id=run_id,
                    detail=r["detail"], ok=bool(r["ok"]),
                    extra=extra if isinstance(extra, dict) else {},
                )
            )  # fmt: skip
        return out

    def metrics(self, run_id: str, name: str | None = None) -> list[MetricRow]:
        sql = "SELECT * FROM metrics WHERE run_id = ?"
        params: list[object] = [run_id]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        rows = self._query(sql + " ORDER BY lineno, rowid", params)
        return [
            MetricRow(
                r["run_id"], r["step"], r["name"], r["value"], r["ts"], r["lineno"], r["kind"]
            )
            for r in rows
        ]
