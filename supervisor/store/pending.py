"""Writes to the history that wait: the database is locked (another process holds its write lock
longer than the busy timeout) or failing (disk full, I/O error).

Nothing is dropped. Each write is a list of SQL statements, kept in order. Up to `MAX_MEMORY_ROWS`
rows wait in memory; past that, writes are appended to a file in their run's folder
(`history-pending.jsonl`; the logs folder for a write of no run) and read back, in order, once
the memory part is written. `Backlog` says how far behind the history is, for status lines and
the TUI. history.py owns the database; this module only keeps the queue.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

SPILL_NAME = "history-pending.jsonl"
MAX_MEMORY_ROWS = 20_000  # about 4 MB of metric rows; more go to the spill file

# One statement: (sql, params) runs once; (sql, [params, ...], True) runs executemany.
Statement = tuple[Any, ...]


@dataclass(frozen=True)
class Write:
    """One write of the history: its statements run in one transaction."""

    run_id: str | None
    statements: tuple[Statement, ...]
    rows: int = 1  # how many rows it stores (metrics count one each), for the backlog


@dataclass(frozen=True)
class Backlog:
    """How far behind the history database is. `rows == 0`: all written."""

    rows: int = 0  # rows waiting to be written (in memory and spilled)
    spilled: int = 0  # of those, rows in spill files
    since: float | None = None  # when the first waiting write was queued (time.time)
    error: str = ""  # why the last attempt failed ("database is locked")
    spill_files: tuple[str, ...] = ()

    @property
    def behind(self) -> bool:
        return self.rows > 0

    def describe(self) -> str:
        """One line for a status bar: '' when all is written."""
        if not self.behind:
            return ""
        where = f", {self.spilled} spilled to {', '.join(self.spill_files)}" if self.spilled else ""
        why = f" ({self.error})" if self.error else ""
        return f"history is behind: {self.rows} row(s) waiting{why}{where}"


class PendingWrites:
    """The FIFO of writes not yet in the database. Thread-safe."""

    def __init__(self, max_memory_rows: int = MAX_MEMORY_ROWS) -> None:
        self.max_memory_rows = max_memory_rows
        self._lock = threading.Lock()
        self._memory: deque[Write] = deque()
        self._memory_rows = 0
        self._spills: dict[Path, int] = {}  # spill file -> rows in it, in order of creation
        self._in_flight = 0  # rows taken by a writer and not yet committed
        self._since: float | None = None
        self.error = ""

    def __bool__(self) -> bool:
        with self._lock:
            return bool(self._memory or self._spills or self._in_flight)

    def add(self, write: Write, spill_dir: Path | None) -> None:
        """Queue `write` behind every write already waiting."""
        with self._lock:
            if self._since is None:
                self._since = time.time()
            spilling = bool(self._spills) or self._memory_rows + write.rows > self.max_memory_rows
            if spilling and spill_dir is not None:
                try:
                    self._spill(write, spill_dir)
                    return
                except OSError:
                    pass  # a full or read-only disk: memory it is (never dropped)
            self._memory.append(write)
            self._memory_rows += write.rows

    def _spill(self, write: Write, spill_dir: Path) -> None:
        path = spill_dir / SPILL_NAME
        with _open_private(path, os.O_APPEND) as fh:
            fh.write(_line(write))
        self._spills[path] = self._spills.get(path, 0) + write.rows

    def take(self) -> list[Write]:
        """The oldest waiting writes (all in memory, else one spill file's), marked in flight
        until `done` or `failed`."""
        with self._lock:
            if self._memory:
                out = list(self._memory)
                self._memory.clear()
                self._memory_rows = 0
            elif self._spills:
                path = next(iter(self._spills))
                out = read_spill(path)
                self._spills.pop(path)
                path.unlink(missing_ok=True)
            else:
                return []
            self._in_flight += sum(w.rows for w in out)
            return out

    def done(self, writes: Sequence[Write]) -> None:
        with self._lock:
            self._in_flight -= sum(w.rows for w in writes)
            if not (self._memory or self._spills or self._in_flight):
                self._since = None
                self.error = ""

    def failed(self, writes: Sequence[Write], error: str) -> None:
        """Put writes taken by `take` back at the head of the queue (in memory: they were
        there or in a spill file a moment ago, and stay bounded by what one take returns)."""
        with self._lock:
            self._in_flight -= sum(w.rows for w in writes)
            self._memory.extendleft(reversed(writes))
            self._memory_rows += sum(w.rows for w in writes)
            self.error = error

    def spill_memory(self, spill_dir: Callable[[str | None], Path]) -> None:
        """Move every write waiting in memory to its spill file (ftmon is closing)."""
        with self._lock:
            by_file: dict[Path, list[Write]] = {}
            for write in self._memory:
                by_file.setdefault(spill_dir(write.run_id) / SPILL_NAME, []).append(write)
            kept: deque[Write] = deque()
            for path, writes in by_file.items():
                # Older than what the file holds already: they go first.
                lines = "".join(_line(w) for w in writes)
                try:
                    old = path.read_text(encoding="utf-8") if path.exists() else ""
                    tmp = path.with_suffix(".tmp")
                    with _open_private(tmp, os.O_TRUNC) as fh:
                        fh.write(lines + old)
                    os.replace(tmp, path)
                except OSError:
                    kept.extend(writes)  # stays in memory; the backlog still counts it
                    continue
                self._spills[path] = self._spills.get(path, 0) + sum(w.rows for w in writes)
            self._memory = kept
            self._memory_rows = sum(w.rows for w in kept)

    def owns(self, path: Path) -> bool:
        """True if `path` is one of this queue's own spill files."""
        with self._lock:
            return path in self._spills

    def backlog(self) -> Backlog:
        with self._lock:
            spilled = sum(self._spills.values())
            rows = self._memory_rows + spilled + self._in_flight
            files = tuple(str(p) for p in self._spills)
            return Backlog(rows, spilled, self._since, self.error if rows else "", files)


def _open_private(path: Path, mode: int) -> TextIO:
    """A spill file holds what the history holds: readable by its owner only, like ftmon.db."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | mode, 0o600)
    return os.fdopen(fd, "w", encoding="utf-8")


def _line(write: Write) -> str:
    record = {"run_id": write.run_id, "rows": write.rows, "statements": write.statements}
    return json.dumps(record) + "\n"


def read_spill(path: Path) -> list[Write]:
    out: list[Write] = []
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return out
    for line in text.splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        statements = tuple(tuple(s) for s in rec["statements"])
        out.append(Write(rec["run_id"], statements, int(rec["rows"])))
    return out
