"""store/pending.py: writes that wait for a locked database keep their order, spill past the
memory bound to the run folder and come back from it, and a failed attempt loses nothing."""

from __future__ import annotations

from pathlib import Path

from supervisor.store.pending import SPILL_NAME, PendingWrites, Write


def write(n: int, rows: int = 10, run_id: str = "r") -> Write:
    return Write(run_id, (("INSERT INTO t VALUES (?)", (n,)),), rows)


def test_writes_come_back_in_order_across_the_spill_file(tmp_path: Path) -> None:
    """Past the memory bound, writes go to the run folder's spill file; taking drains memory
    first, then the file, so the order they were queued in is kept."""
    pending = PendingWrites(max_memory_rows=30)
    for n in range(8):
        pending.add(write(n), tmp_path)
    backlog = pending.backlog()
    assert (backlog.rows, backlog.spilled) == (80, 50)
    assert (tmp_path / SPILL_NAME).exists() and backlog.behind
    assert (tmp_path / SPILL_NAME).stat().st_mode & 0o777 == 0o600, "private, like ftmon.db"
    taken = []
    while batch := pending.take():
        taken += batch
        pending.done(batch)
    assert [w.statements[0][1][0] for w in taken] == list(range(8))
    assert not pending and not pending.backlog().behind
    assert not (tmp_path / SPILL_NAME).exists()


def test_a_failed_attempt_puts_the_writes_back_first(tmp_path: Path) -> None:
    """Writes taken for an attempt that failed go back ahead of those queued meanwhile, and the
    backlog says why."""
    pending = PendingWrites()
    pending.add(write(1), tmp_path)
    batch = pending.take()
    pending.add(write(2), tmp_path)
    pending.failed(batch, "database is locked")
    assert pending.backlog().error == "database is locked"
    assert (
        "history is behind: 20 row(s) waiting (database is locked)" in pending.backlog().describe()
    )
    assert [w.statements[0][1][0] for w in pending.take()] == [1, 2]


def test_closing_moves_memory_to_the_spill_file_ahead_of_what_it_holds(tmp_path: Path) -> None:
    """What waits in memory is older than the spill file's content: it goes in front of it."""
    pending = PendingWrites(max_memory_rows=10)
    for n in range(3):
        pending.add(write(n), tmp_path)  # 0 in memory, 1 and 2 spilled
    pending.spill_memory(lambda run_id: tmp_path)
    assert pending.backlog().spilled == 30
    assert [w.statements[0][1][0] for w in pending.take()] == [0, 1, 2]
