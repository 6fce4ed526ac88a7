"""A long backlog is read a batch at a time, and the event loop (the TUI's) runs in between.

A run that prints a long log and ends at once (or a log followed `--from-start`) leaves ftmon
a backlog: read in one go, it froze the TUI for all of it and held every batch's events at
once. Here a real file of 180,000 lines is watched from the start with a run that has already
ended; a task counts the event loop's turns, and each batch must find it turned since the last.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from supervisor.events import Exit, LogLine, Metric
from supervisor.monitoring.monitor import Monitor
from supervisor.monitoring.watch import watch_log

LINES = 180_000  # about 6 MiB: several backlog reads (BACKLOG_READ, 1 MiB)


class CountingMonitor(Monitor):
    """A real Monitor that notes, for each batch, how often the loop had turned."""

    def __init__(self, turns: list[int]) -> None:
        super().__init__()
        self.turns = turns
        self.seen: list[int] = []
        self.sizes: list[int] = []

    def feed_lines(self, lines: list[LogLine], ts: float) -> list:  # type: ignore[override]
        self.seen.append(self.turns[0])
        self.sizes.append(len(lines))
        return super().feed_lines(lines, ts)


async def test_a_backlog_after_the_run_ended_is_read_batch_by_batch(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(
        "".join(f"step {i} | loss: {1.0 + (i % 7) / 10:.3f} | lr: 2e-5\n" for i in range(LINES))
    )
    turns = [0]

    async def spin() -> None:
        while True:
            turns[0] += 1
            await asyncio.sleep(0)

    async def exited() -> Exit:
        return Exit(time.time(), 0)

    monitor = CountingMonitor(turns)
    metrics: list[Metric] = []
    spinner = asyncio.create_task(spin())
    try:
        summary = await watch_log(
            log, monitor, lambda e: metrics.append(e) if isinstance(e, Metric) else None,
            from_start=True, exited=exited,
        )  # fmt: skip
    finally:
        spinner.cancel()
    assert summary.lines == LINES and summary.exit is not None
    assert len(metrics) == LINES  # every line read once, every metric reported
    assert len(monitor.seen) >= 6, monitor.sizes  # several batches, none the whole backlog
    # The loop turned between any two batches: nothing else was starved while they were read.
    assert all(b > a for a, b in zip(monitor.seen, monitor.seen[1:], strict=False)), monitor.seen
