"""The history database: every run ftmon started, what it found in them and what it did.

One SQLite file (default `logs/ftmon.db`, see `default_logs_dir`) in WAL mode, so that the TUI
and a headless `ftmon run` can use it at the same time: every write is one short transaction.
A write that finds the database locked past a short wait, or failing, is never dropped nor
raised: it waits in order (store/pending.py: memory, then a file in the run's folder) and a
writer thread stores it when the lock clears; `backlog()` says how far behind the history is,
and `close()` waits for it. A run's row is written when it
is launched and updated as it goes, so a run whose supervisor died keeps its row, its pid and
the byte offset read so far (which is how `ftmon attach` resumes).

Secrets are not this module's business to find: callers pass environments and recipes already
redacted (`plan.redact_env`); this module stores what it is given.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from supervisor.events import Action, Anomaly, Severity
from supervisor.reading.identity import LogHead
from supervisor.reading.tail import gc_paused
from supervisor.runs.events import StateChanged
from supervisor.store.pending import (
    SPILL_NAME,
    Backlog,
    PendingWrites,
    Statement,
    Write,
    read_spill,
)

# The schema, the row types and their decoding live in history_schema.py; imported here so that
# `from supervisor.store.history import RunRecord, HistoryError, ...` keeps working.
from supervisor.store.schema import (  # noqa: F401
    DB_NAME,
    LIVE_STATUSES,
    SCHEMA_VERSION,
    Decision,
    HistoryError,
    MetricRow,
    NotifyFailure,
    RunEnd,
    RunRecord,
    StateRow,
    SweepMemberRow,
    SweepRecord,
    loads_json,
    metric_rows,
    migrate,
    record_from_row,
)

log = logging.getLogger("ftmon.history")
# How long a queued write waits for the lock before it queues (on the caller's thread, which
# may be the event loop) and how long each retry of the writer thread waits.
WRITE_WAIT_MS = 200
RETRY_WAIT_MS = 1000
# How long `close()` waits for a locked database before leaving the rest in spill files.
CLOSE_WAIT_SECS = 600.0


def default_logs_dir() -> Path:
    """Where run folders and the database live: `$FTMON_HOME` if set, else `./logs`.

    `--logs-dir DIR` on the command line takes precedence over both.
    """
    home = os.environ.get("FTMON_HOME", "").strip()
    return Path(home) if home else Path("logs")


class History:
    """The history database. Safe to share between threads of one process (one lock) and
    between processes (SQLite WAL, short transactions, busy_timeout)."""

    def __init__(self, path: Path | str, *, busy_timeout_ms: int = 10_000) -> None:
        self.path = Path(path)
        self.busy_timeout_ms = int(busy_timeout_ms)
        self._pending = PendingWrites()
        self._run_dirs: dict[str, Path] = {}
        self._writer: threading.Thread | None = None
        self._wake = threading.Event()
        self._closing = False
        self._added: set[str] = set()  # runs added through this History (their rows may wait)
        self._last_decision_id = 0
        folder = self.path.parent
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # private when ftmon makes it
        except OSError as exc:  # a file where the logs folder should be, a read-only disk
            what = "is a file, not a folder" if folder.is_file() else (exc.strerror or str(exc))
            raise HistoryError(
                f"cannot use {folder} as the logs folder: {what} (choose another with "
                "--logs-dir or $FTMON_HOME)"
            ) from exc
        self._lock = threading.RLock()
        try:
            if not self.path.exists():  # created 0600: SQLite gives its -wal and -shm the same
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
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
        except OSError as exc:  # e.g. the database path is a folder
            raise HistoryError(f"{self.path}: cannot open: {exc.strerror or exc}") from exc

    @classmethod
    def in_logs_dir(cls, logs_dir: Path | str) -> History:
        return cls(Path(logs_dir) / DB_NAME)

    def close(self, wait_secs: float = CLOSE_WAIT_SECS) -> Backlog:
        """Write what waits (for up to `wait_secs` while the database stays locked), then close.
        Returns what could not be written: it is left in spill files, never dropped."""
        deadline = time.monotonic() + wait_secs
        if self._pending:
            log.warning("ftmon: %s; waiting for %s", self._pending.backlog().describe(), self.path)
        while self._pending and time.monotonic() < deadline and self._writer is not None:
            self._wake.set()
            time.sleep(0.05)
        self._closing = True
        self._wake.set()
        if self._writer is not None:
            self._writer.join()
        left = self._pending.backlog()
        if left.behind:  # still locked: what waits in memory goes to disk, for a later ftmon
            self._pending.spill_memory(self._spill_dir)
            left = self._pending.backlog()
            log.warning("ftmon: %s: left unwritten (%s)", self.path, left.describe())
        with self._lock:
            self._db.close()
        return left

    def backlog(self) -> Backlog:
        """How far behind the database is (rows waiting, spilled, since when, why)."""
        return self._pending.backlog()

    @property
    def behind(self) -> bool:
        return bool(self._pending)

    @contextmanager
    def _tx(self, wait_ms: int | None = None) -> Iterator[sqlite3.Connection]:
        """One short write transaction; BEGIN IMMEDIATE takes the write lock up front so that
        two processes wait for each other instead of failing on upgrade (for `wait_ms`, by
        default the busy timeout). Writes still waiting (see `_write`) go first, so that
        nothing overtakes them."""
        wait_ms = self.busy_timeout_ms if wait_ms is None else wait_ms
        deadline = time.monotonic() + wait_ms / 1000
        while self._pending and time.monotonic() < deadline:
            self._wake.set()
            time.sleep(0.01)
        with self._lock:
            self._db.execute(f"PRAGMA busy_timeout = {wait_ms}")
            try:
                self._db.execute("BEGIN IMMEDIATE")
            finally:
                self._db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _write(self, run_id: str | None, statements: list[Statement], rows: int = 1) -> None:
        """Store `statements` in one transaction, or queue them behind those already waiting
        when the database is locked or failing: never raises for that, never drops them."""
        write = Write(run_id, tuple(statements), rows)
        if not self._pending:
            with self._lock:
                try:
                    self._db.execute(f"PRAGMA busy_timeout = {WRITE_WAIT_MS}")
                    self._db.execute("BEGIN IMMEDIATE")
                except sqlite3.OperationalError as exc:
                    self._queue(write, str(exc))
                    return
                finally:
                    self._db.execute(f"PRAGMA busy_timeout = {self.busy_timeout_ms}")
                try:
                    _run(self._db, [write])
                    self._db.execute("COMMIT")
                    return
                except sqlite3.OperationalError as exc:
                    with _suppress_sqlite():
                        self._db.execute("ROLLBACK")
                    self._queue(write, str(exc))
                    return
                except BaseException:
                    with _suppress_sqlite():
                        self._db.execute("ROLLBACK")
                    raise
        self._queue(write, "")

    def _queue(self, write: Write, error: str) -> None:
        was_behind = bool(self._pending)
        self._pending.add(write, self._spill_dir(write.run_id))
        if error:
            self._pending.error = error
        if not was_behind:
            log.warning("ftmon: history is behind (%s): writes wait for %s", error, self.path)
        if self._writer is None:
            self._writer = threading.Thread(
                target=self._write_behind, name="ftmon-history", daemon=True
            )
            self._writer.start()
        self._wake.set()

    def _spill_dir(self, run_id: str | None) -> Path:
        """Where a waiting write of `run_id` spills: its run folder, else the logs folder."""
        if run_id is not None and run_id not in self._run_dirs:
            with _suppress_sqlite():
                rows = self._query("SELECT run_dir FROM runs WHERE id = ?", (run_id,))
                if rows and rows[0][0] and Path(rows[0][0]).is_dir():
                    self._run_dirs[run_id] = Path(rows[0][0])
        return self._run_dirs.get(run_id or "", self.path.parent)

    def _write_behind(self) -> None:
        """The writer thread: its own connection, retried until the queue is empty."""
        db = sqlite3.connect(self.path, timeout=RETRY_WAIT_MS / 1000, isolation_level=None)
        rows = 0
        try:
            while True:
                self._wake.wait(0.25)
                self._wake.clear()
                writes = self._pending.take()
                if not writes:
                    if self._closing:
                        return
                    continue
                try:
                    db.execute("BEGIN IMMEDIATE")
                    _run(db, writes)
                    db.execute("COMMIT")
                except sqlite3.Error as exc:
                    with _suppress_sqlite():
                        db.execute("ROLLBACK")
                    self._pending.failed(writes, str(exc))
                    if self._closing:
                        return
                    continue
                rows += sum(w.rows for w in writes)
                since = self._pending.backlog().since
                self._pending.done(writes)
                if not self._pending:
                    late = time.time() - since if since is not None else 0.0
                    log.warning(
                        "ftmon: history caught up: %d row(s) written up to %.1f s late to %s",
                        rows, late, self.path,
                    )  # fmt: skip
                    rows = 0
        finally:
            db.close()

    def _migrate(self) -> None:
        try:
            with self._tx(wait_ms=WRITE_WAIT_MS) as db:
                migrate(db, self.path)
            return
        except sqlite3.OperationalError:
            pass
        # Another process holds the write lock. A schema that is already current needs no
        # write (so ftmon starts, and its writes queue); one that needs a change waits for it.
        with self._lock:
            try:
                self._db.execute("BEGIN")
                migrate(self._db, self.path)
                self._db.execute("COMMIT")
                return
            except sqlite3.OperationalError:
                with _suppress_sqlite():
                    self._db.execute("ROLLBACK")
        with self._tx() as db:
            migrate(db, self.path)

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
        if run_dir:
            self._run_dirs[run_id] = Path(run_dir)
        self._added.add(run_id)
        self._write(
            run_id,
            [(
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
            )],
        )  # fmt: skip

    def set_status(self, run_id: str, status: str) -> None:
        """ "running" / "paused" while the run lives; use `finish_run` to end it."""
        self._write(run_id, [("UPDATE runs SET status = ? WHERE id = ?", (status, run_id))])

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
        self._write(
            run_id,
            [(
                "UPDATE runs SET status = ?, ended_at = ?, returncode = ?, signal = ?,"
                " end_reason = ?, owner_pid = NULL, owner_start = NULL WHERE id = ?",
                (status, ended_at, returncode, signal, reason, run_id),
            )],
        )  # fmt: skip

    def claim(
        self, run_id: str, pid: int, start: float, alive: Callable[[int, float], bool]
    ) -> int | None:
        """Make the supervisor process (`pid`, `start`) the one that supervises `run_id`.

        Two supervisors reading one run would store every metric twice and act twice, so a run
        has one owner. Returns None when claimed, or the pid of another owner still alive
        (`alive(pid, start)`); a dead owner (a SIGKILLed `ftmon run`) is replaced. While the
        database is locked the owner is judged from what is readable and the claim queued.
        """
        claim: Statement = (
            "UPDATE runs SET owner_pid = ?, owner_start = ? WHERE id = ?",
            (pid, start, run_id),
        )
        rows = self._query("SELECT owner_pid, owner_start FROM runs WHERE id = ?", (run_id,))
        if not rows and run_id not in self._added:  # (a run added here may still be queued)
            raise HistoryError(f"no run {run_id!r} in {self.path}")
        if rows:
            owner, owner_start = rows[0]
            if owner and owner != pid and alive(int(owner), float(owner_start or 0.0)):
                return int(owner)
        # Ours now: what an earlier owner could not write goes first (its release among it).
        self._recover_spilled(run_id)
        if not self._pending:
            try:
                with self._tx(wait_ms=WRITE_WAIT_MS) as db:  # the check again, atomically
                    row = db.execute(
                        "SELECT owner_pid, owner_start FROM runs WHERE id = ?", (run_id,)
                    ).fetchone()
                    if row is None:
                        raise HistoryError(f"no run {run_id!r} in {self.path}")
                    owner, owner_start = row
                    if owner and owner != pid and alive(int(owner), float(owner_start or 0.0)):
                        return int(owner)
                    db.execute(*claim)
                    return None
            except sqlite3.OperationalError:
                pass  # locked: judged from what was readable above; the claim waits in line
        self._write(run_id, [claim])
        return None

    def owner(self, run_id: str) -> tuple[int, float] | None:
        """The supervisor process (pid, start time) the run's row names as its owner, if any
        (alive or not: `runs.reattach.process_alive` tells)."""
        rows = self._query("SELECT owner_pid, owner_start FROM runs WHERE id = ?", (run_id,))
        if not rows or not rows[0][0]:
            return None
        return int(rows[0][0]), float(rows[0][1] or 0.0)

    def _recover_spilled(self, run_id: str) -> int:
        """Writes an earlier ftmon left in the run folder's spill file (it ended while the
        database was locked) are queued now, oldest first: this process owns the run now, so no
        one else writes them. Returns how many rows."""
        rows = self._query("SELECT run_dir FROM runs WHERE id = ?", (run_id,))
        if not rows or not rows[0][0]:
            return 0
        path = Path(rows[0][0]) / SPILL_NAME
        if not path.exists() or self._pending.owns(path):
            return 0
        writes = read_spill(path)
        path.unlink(missing_ok=True)
        for write in writes:
            self._write(write.run_id, list(write.statements), write.rows)
        n = sum(w.rows for w in writes)
        if n:
            log.warning("ftmon: %s: %d row(s) an earlier ftmon left in %s written", run_id, n, path)
        return n

    def release(self, run_id: str, pid: int) -> None:
        """`pid` no longer supervises `run_id` (it detached); another may attach."""
        self._write(
            run_id,
            [(
                "UPDATE runs SET owner_pid = NULL, owner_start = NULL"
                " WHERE id = ? AND owner_pid = ?",
                (run_id, pid),
            )],
        )  # fmt: skip

    def record_batch(
        self,
        run_id: str,
        *,
        events: Iterable[object] = (),
        offset: int | None = None,
        lineno: int | None = None,
        head: LogHead | None = None,
    ) -> None:
        """Metrics of one batch of lines and the offset just past them, in ONE transaction:
        either both are stored or neither, so a resumed reader never stores a line twice. A
        locked database queues the batch (see `_write`). `head`: the log's first bytes as read
        so far (reading/identity.py), for attach to know the file again."""
        # A catch-up's batch is thousands of row tuples, no cycles among them: built and written
        # with the cyclic collector paused. Its collections over them and everything else alive
        # took 1.3 s of the 11 s these writes cost in a TUI catching up with 2M lines.
        with gc_paused():
            self._record_batch(run_id, events, offset, lineno, head)

    def _record_batch(
        self,
        run_id: str,
        events: Iterable[object],
        offset: int | None,
        lineno: int | None,
        head: LogHead | None,
    ) -> None:
        rows = metric_rows(run_id, events)
        statements: list[Statement] = []
        if rows:
            statements.append((
                "INSERT INTO metrics (run_id, step, name, value, ts, lineno, kind)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
                True,
            ))  # fmt: skip
        if offset is not None and lineno is not None:
            statements.append(
                ("UPDATE runs SET offset = ?, lineno = ? WHERE id = ?", (offset, lineno, run_id))
            )
        if head is not None:
            statements.append((
                "UPDATE runs SET log_head_len = ?, log_head_sha = ? WHERE id = ?",
                (head.length, head.sha256, run_id),
            ))  # fmt: skip
        if statements:
            self._write(run_id, statements, rows=max(1, len(rows)))

    def add_anomaly(self, run_id: str, anomaly: Anomaly) -> None:
        self._write(run_id, [_anomaly_statement(run_id, anomaly)])

    def add_action(self, run_id: str, action: Action) -> None:
        self._write(run_id, [_action_statement(run_id, action)])

    # --- run states and decisions (supervisor/runs/state.py) ------------------------------

    def change_state(
        self,
        change: StateChanged,
        *,
        anomaly: Anomaly | None = None,
        action: Action | None = None,
        decide: Decision | None = None,
        done: int | None = None,
        outcome: str = "",
        end: RunEnd | None = None,
    ) -> int | None:
        """A run's move to `change.new`, with its cause, in ONE transaction: the `run_states`
        row, `runs.status`, and whichever of these caused or came with it: the anomaly that
        decided it, the action taken,
        a decision journaled (`decide`; its id is returned), a decision marked done (`done`,
        with `outcome`), the end of the run (`end`: exit status and reason; the owner let go).
        Queued like every write when the database is locked (never lost, never reordered)."""
        statements: list[Statement] = [
            (
                "INSERT INTO run_states (run_id, ts, old, new, cause, rule)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (change.run_id, change.ts, change.old, change.new, change.cause, change.rule),
            ),
            ("UPDATE runs SET status = ? WHERE id = ?", (change.new, change.run_id)),
        ]
        if anomaly is not None:
            statements.insert(0, _anomaly_statement(change.run_id, anomaly))
        if action is not None:
            statements.append(_action_statement(change.run_id, action))
        if done is not None:
            statements.append((
                "UPDATE decisions SET done_at = ?, outcome = ? WHERE id = ? AND done_at IS NULL",
                (change.ts, outcome, done),
            ))  # fmt: skip
        if end is not None:
            statements.append((
                "UPDATE runs SET ended_at = ?, returncode = ?, signal = ?, end_reason = ?,"
                " owner_pid = NULL, owner_start = NULL WHERE id = ?",
                (change.ts, end.returncode, end.signal, end.reason, change.run_id),
            ))  # fmt: skip
        decision_id = None
        if decide is not None:
            decision_id = self._new_decision_id()
            statements.append((
                "INSERT INTO decisions (id, run_id, ts, kind, rule, reason, recipe_yaml,"
                " changes_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    decision_id, change.run_id, change.ts, decide.kind, decide.rule,
                    decide.reason, decide.recipe_yaml, json.dumps(list(decide.changes)),
                ),
            ))  # fmt: skip
        self._write(change.run_id, statements)
        return decision_id

    def _new_decision_id(self) -> int:
        """A decision's id, known before it is written (the write may wait in the queue):
        microseconds since the epoch, kept increasing within this process."""
        with self._lock:
            self._last_decision_id = max(self._last_decision_id + 1, time.time_ns() // 1000)
            return self._last_decision_id

    def set_handle(self, run_id: str, described: dict[str, object]) -> None:
        """Where the run executes, as its executor describes it (`attach` rebuilds the handle
        from this)."""
        statement = (
            "UPDATE runs SET executor_json = ? WHERE id = ?",
            (json.dumps(described, default=str), run_id),
        )
        self._write(run_id, [statement])

    def finish_decision(self, decision_id: int, ts: float, outcome: str) -> None:
        """A journaled decision was carried out (or given up: `outcome` says which)."""
        statement = (
            "UPDATE decisions SET done_at = ?, outcome = ? WHERE id = ? AND done_at IS NULL",
            (ts, outcome, decision_id),
        )
        self._write(None, [statement])

    def states(self, run_id: str) -> list[StateRow]:
        """Every state the run went through, oldest first."""
        rows = self._query("SELECT * FROM run_states WHERE run_id = ? ORDER BY id", (run_id,))
        return [
            StateRow(r["run_id"], r["ts"], r["old"], r["new"], r["cause"], r["rule"]) for r in rows
        ]

    def decisions(self, run_id: str, *, open_only: bool = False) -> list[Decision]:
        """The run's journaled decisions, oldest first (`open_only`: not yet carried out)."""
        sql = "SELECT * FROM decisions WHERE run_id = ?"
        if open_only:
            sql += " AND done_at IS NULL"
        return [
            Decision(
                kind=r["kind"], rule=r["rule"], reason=r["reason"], recipe_yaml=r["recipe_yaml"],
                changes=_strings(loads_json(r["changes_json"], [])),
                id=int(r["id"]), run_id=r["run_id"], ts=float(r["ts"]), done_at=r["done_at"],
                outcome=r["outcome"],
            )
            for r in self._query(sql + " ORDER BY id", (run_id,))
        ]  # fmt: skip

    # --- reading --------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, tuple(params)).fetchall()

    def runs(self, limit: int | None = None) -> list[RunRecord]:
        """Newest first."""
        sql = "SELECT * FROM runs ORDER BY started_at DESC, rowid DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [record_from_row(r) for r in self._query(sql)]

    def get(self, run_id: str) -> RunRecord | None:
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return record_from_row(rows[0]) if rows else None

    def children(self, run_id: str) -> list[RunRecord]:
        rows = self._query(
            "SELECT * FROM runs WHERE parent_id = ? ORDER BY started_at, rowid", (run_id,)
        )
        return [record_from_row(r) for r in rows]

    def live(self) -> list[RunRecord]:
        """Runs whose row says they have not ended, oldest first."""
        rows = self._query(
            f"SELECT * FROM runs WHERE status IN ({', '.join('?' * len(LIVE_STATUSES))})"
            " ORDER BY started_at, rowid",
            LIVE_STATUSES,
        )
        return [record_from_row(r) for r in rows]

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
        if not ref:  # `ftmon show "$RUN"` with RUN unset: the prefix "" would match any run
            raise HistoryError("no run given: a run id, a unique prefix of one, or `last`")
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
        return record_from_row(rows[0])

    def anomalies(self, run_id: str) -> list[Anomaly]:
        rows = self._query("SELECT * FROM anomalies WHERE run_id = ? ORDER BY id", (run_id,))
        out = []
        for r in rows:
            try:
                sev = Severity[str(r["severity"]).upper()]
            except KeyError:
                sev = Severity.WARNING
            evidence = loads_json(r["evidence_json"], [])
            out.append(
                Anomaly(
                    rule=r["rule"], severity=sev, message=r["message"], ts=r["ts"],
                    lineno=r["lineno"], evidence=tuple(str(e) for e in evidence),  # type: ignore[union-attr]
                    run_id=run_id,
                )
            )  # fmt: skip
        return out

    # --- notifications not delivered (supervisor/notify/) ---------------------------------

    def add_notify_failure(
        self, *, run_id: str, ts: float, target: str, event: str, title: str, attempts: int,
        error: str,
    ) -> None:  # fmt: skip
        """A notification that could not be delivered (text already redacted by the caller)."""
        self._write(
            run_id,
            [(
                "INSERT INTO notify_failures (run_id, ts, target, event, title, attempts, error)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (run_id, ts, target, event, title, attempts, error),
            )],
        )  # fmt: skip

    def notify_failures(self, run_id: str) -> list[NotifyFailure]:
        rows = self._query("SELECT * FROM notify_failures WHERE run_id = ? ORDER BY id", (run_id,))
        return [
            NotifyFailure(r["run_id"], r["ts"], r["target"], r["event"], r["title"],
                          int(r["attempts"]), r["error"])
            for r in rows
        ]  # fmt: skip

    def actions(self, run_id: str) -> list[Action]:
        rows = self._query("SELECT * FROM actions WHERE run_id = ? ORDER BY id", (run_id,))
        out = []
        for r in rows:
            extra = loads_json(r["extra_json"], {})
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

    def latest_metrics(self, run_id: str) -> dict[str, MetricRow]:
        """The newest value of each metric (and eval) name the run printed, by name."""
        rows = self._query(
            "SELECT * FROM metrics WHERE run_id = ? AND rowid IN (SELECT MAX(rowid) FROM metrics"
            " WHERE run_id = ? GROUP BY name) ORDER BY name",
            (run_id, run_id),
        )
        return {
            r["name"]: MetricRow(
                r["run_id"], r["step"], r["name"], r["value"], r["ts"], r["lineno"], r["kind"]
            )
            for r in rows
        }

    # --- sweeps (stream I: supervisor/sweep/) ----------------------------------------------

    def add_sweep(
        self, sweep: SweepRecord, members: Iterable[tuple[int, dict[str, object]]]
    ) -> None:
        """A sweep and its members (queued), in one transaction."""
        with self._tx() as db:
            db.execute(
                "INSERT INTO sweeps (id, name, created_at, recipe_yaml, cwd, keys_json, replay_of)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sweep.id, sweep.name, sweep.created_at, sweep.recipe_yaml, sweep.cwd,
                 json.dumps(list(sweep.keys)), sweep.replay_of),
            )  # fmt: skip
            db.executemany(
                "INSERT INTO sweep_members (sweep_id, member, values_json) VALUES (?, ?, ?)",
                [(sweep.id, i, json.dumps(v, default=str)) for i, v in members],
            )

    def set_sweep_member(
        self,
        sweep_id: str,
        member: int,
        *,
        status: str,
        run_id: str | None = None,
        detail: str = "",
    ) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE sweep_members SET status = ?, detail = ?, run_id = COALESCE(?, run_id)"
                " WHERE sweep_id = ? AND member = ?",
                (status, detail, run_id, sweep_id, member),
            )

    def claim_sweep(
        self, sweep_id: str, pid: int, start: float, alive: Callable[[int, float], bool]
    ) -> int | None:
        """Make the ftmon (`pid`, `start`) the one that drives `sweep_id` (starts its queued
        members). Returns None when claimed, or the pid of another driver still alive. The
        check and the write are one BEGIN IMMEDIATE transaction: of two `ftmon sweep --resume`
        started together exactly one gets the sweep, so no member is started twice. A driver
        that died (SIGKILL, a lost terminal before SIGHUP was handled) is replaced."""
        with self._tx() as db:
            row = db.execute(
                "SELECT pid, start FROM sweep_owners WHERE sweep_id = ?", (sweep_id,)
            ).fetchone()
            if row is not None and int(row[0]) != pid and alive(int(row[0]), float(row[1])):
                return int(row[0])
            db.execute(
                "INSERT OR REPLACE INTO sweep_owners (sweep_id, pid, start) VALUES (?, ?, ?)",
                (sweep_id, pid, start),
            )
        return None

    def release_sweep(self, sweep_id: str, pid: int) -> None:
        """`pid` no longer drives `sweep_id`; `ftmon sweep --resume` may take it."""
        with self._tx() as db:
            db.execute("DELETE FROM sweep_owners WHERE sweep_id = ? AND pid = ?", (sweep_id, pid))

    def sweeps(self) -> list[SweepRecord]:
        """Newest first."""
        rows = self._query("SELECT * FROM sweeps ORDER BY created_at DESC, rowid DESC")
        return [_sweep_from_row(r) for r in rows]

    def sweep(self, ref: str) -> SweepRecord | None:
        """A sweep by id or unique id prefix; None when none (or several) match, or no `ref`."""
        if not ref.strip():
            return None
        rows = self._query("SELECT * FROM sweeps WHERE id = ?", (ref,))
        if not rows:
            escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self._query(
                "SELECT * FROM sweeps WHERE id LIKE ? ESCAPE '\\' LIMIT 2", (escaped + "%",)
            )
        return _sweep_from_row(rows[0]) if len(rows) == 1 else None

    def why_no_sweep(self, ref: str) -> str:
        """What to tell a user whose `ref` gave no sweep: none matches, or several share it."""
        if not ref.strip():
            return "no sweep given: a sweep id or a unique prefix of one"
        several = [s.id for s in self.sweeps() if s.id.startswith(ref)]
        if len(several) > 1:
            ids = ", ".join(several[:5]) + (", ..." if len(several) > 5 else "")
            return f"{ref!r} matches several sweeps: {ids}; give more of the id"
        return f"no sweep matches {ref!r} (`ftmon compare` lists the sweeps)"

    def sweep_member_of(self, run_id: str) -> SweepMemberRow | None:
        """The sweep member whose lineage `run_id` belongs to (a relaunch: its first run's; a
        replay of a member starts a lineage of its own and belongs to none)."""
        first = run_id
        for rec in reversed(self.lineage(run_id)):  # the run itself first, then its parents
            first = rec.id
            if rec.is_replay:
                break
        rows = self._query("SELECT sweep_id FROM sweep_members WHERE run_id = ?", (first,))
        if not rows:
            return None
        return next(m for m in self.sweep_members(rows[0]["sweep_id"]) if m.run_id == first)

    def sweep_members(self, sweep_id: str) -> list[SweepMemberRow]:
        rows = self._query(
            "SELECT * FROM sweep_members WHERE sweep_id = ? ORDER BY member", (sweep_id,)
        )
        return [
            SweepMemberRow(
                r["sweep_id"], int(r["member"]), r["run_id"],
                loads_json(r["values_json"], {}),  # type: ignore[arg-type]
                r["status"], r["detail"],
            )
            for r in rows
        ]  # fmt: skip


def _sweep_from_row(r: sqlite3.Row) -> SweepRecord:
    keys = loads_json(r["keys_json"], [])
    return SweepRecord(
        r["id"], r["name"], float(r["created_at"]), r["recipe_yaml"], r["cwd"],
        tuple(str(k) for k in keys) if isinstance(keys, list) else (), r["replay_of"],
    )  # fmt: skip


def _run(db: sqlite3.Connection, writes: Iterable[Write]) -> None:
    """The statements of `writes`, in order, inside the caller's transaction."""
    for write in writes:
        for statement in write.statements:
            if len(statement) == 3:
                db.executemany(statement[0], statement[1])
            else:
                db.execute(statement[0], statement[1])


def _suppress_sqlite() -> contextlib.AbstractContextManager[None]:
    return contextlib.suppress(sqlite3.Error)


def _strings(value: object) -> tuple[str, ...]:
    """A JSON list read back as strings (anything else: none)."""
    return tuple(str(v) for v in value) if isinstance(value, list) else ()


def _anomaly_statement(run_id: str, anomaly: Anomaly) -> Statement:
    return (
        "INSERT INTO anomalies (run_id, ts, rule, severity, message, lineno, evidence_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            run_id, anomaly.ts, anomaly.rule, str(anomaly.severity), anomaly.message,
            anomaly.lineno, json.dumps(list(anomaly.evidence)),
        ),
    )  # fmt: skip


def _action_statement(run_id: str, action: Action) -> Statement:
    return (
        "INSERT INTO actions (run_id, ts, kind, rule, detail, ok, extra_json)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            run_id, action.ts, action.kind, action.rule, action.detail,
            1 if action.ok else 0, json.dumps(action.extra, default=str),
        ),
    )  # fmt: skip
