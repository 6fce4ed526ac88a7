"""The loop that runs a log through the Monitor, shared by `--watch`, `scan`, runs and the TUI.

`watch_log` follows a growing file (woken by inotify through `supervisor.reading.tail.follow`),
feeds each batch of lines to the Monitor, ticks it about once a second so that stalls are noticed,
samples the memory of a watched pid, and ends when that pid exits (after reading what it wrote
last) or when `stop` is set. `scan_file` reads a finished file once. Neither prints anything:
events go to the caller's callback and a `WatchSummary` comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from supervisor.events import (
    Anomaly,
    Eval,
    Event,
    Exit,
    Metric,
    ResourceSample,
    Severity,
    show_step,
)
from supervisor.monitoring.resources import ResourceProbe
from supervisor.reading.tail import Tail, follow, iter_file_lines
from supervisor.rules.exit import describe_exit  # one wording for how a process ended
from supervisor.runs.executors.process import wait_pid_exit

if TYPE_CHECKING:
    from supervisor.runs.executors.base import SampleTargets

TICK_SECS = 1.0
# How often the executor is asked which processes a run has (`scontrol listpids` for a Slurm
# job: a command per ask, so every few seconds, not every sample).
TARGETS_SECS = 3.0
# A backlog (`--from-start`, a reattach, a run printing faster than it is read) is read this
# much at a time: a batch's lines and events live together, so the bytes per read bound the
# memory (bench/tui.py --follow: three runs caught up at once peaked at 194 MB with 4 MiB
# reads, 158 MB with 1 MiB; Tail's default is 32 MiB), and the loop yields in between. A 1 MiB
# batch holds thousands of lines: enough for the batch path (batch.py) to pay off.
BACKLOG_READ = 1 << 20
log = logging.getLogger("ftmon.watch")
# Anomalies kept in a summary; the rest are still counted per rule (a NaN on every line of a
# million-line log must not hold a million objects).
MAX_KEPT = 10_000


@dataclass
class WatchSummary:
    """What one watch or scan saw: counts, the last step and loss, and how it ended."""

    path: str
    lines: int = 0  # lines read in this watch
    lineno: int = 0  # number of the last line read
    offset: int = 0  # byte offset to resume from
    metrics: int = 0
    evals: int = 0
    by_rule: Counter[str] = field(default_factory=Counter)
    by_severity: Counter[tuple[str, Severity]] = field(default_factory=Counter)  # (rule, sev.)
    worst: dict[str, Severity] = field(default_factory=dict)  # by rule
    anomalies: list[Anomaly] = field(default_factory=list)
    last_step: int | None = None
    last_loss: float | None = None
    exit: Exit | None = None
    ended: str = ""  # "exit" (the pid ended), "stop" (asked to), "eof" (a scan)

    def note(self, event: Event) -> None:
        if isinstance(event, Metric):
            self.metrics += 1
            if event.step is not None:
                self.last_step = event.step
            if "loss" in event.values:
                self.last_loss = event.values["loss"]
        elif isinstance(event, Eval):
            self.evals += 1
        elif isinstance(event, Anomaly):
            self.by_rule[event.rule] += 1
            self.by_severity[(event.rule, event.severity)] += 1
            self.worst[event.rule] = max(self.worst.get(event.rule, event.severity), event.severity)
            if len(self.anomalies) < MAX_KEPT:
                self.anomalies.append(event)

    def found(self, min_severity: Severity = Severity.WARNING) -> int:
        """How many anomalies of at least `min_severity` were seen (for the exit code)."""
        return sum(self.shown(min_severity).values())

    def shown(self, min_severity: Severity = Severity.INFO) -> Counter[str]:
        """Anomalies of at least `min_severity`, per rule."""
        out: Counter[str] = Counter()
        for (rule, severity), n in self.by_severity.items():
            if severity >= min_severity:
                out[rule] += n
        return out

    def report(self, min_severity: Severity = Severity.INFO) -> list[str]:
        """The human-readable summary, a few lines; the anomalies counted are those of at least
        `min_severity` (the ones printed), and how many were left out is said."""
        out = [f"{self.path}: {_n(self.lines, 'line')} read (to line {self.lineno}), "
               f"{_n(self.metrics, 'metric line')}, {_n(self.evals, 'evaluation')}"]  # fmt: skip
        step = show_step(self.last_step)
        loss = "-" if self.last_loss is None else f"{self.last_loss:.6g}"
        out.append(f"last step {step}, last loss {loss}")
        shown = self.shown(min_severity)
        below = sum(self.by_rule.values()) - sum(shown.values())
        rules = ", ".join(f"{r} x{n}" for r, n in sorted(shown.items())) or "none"
        if below:
            rules += f" ({_n(below, 'more')} below {min_severity.name.lower()}, not shown)"
        out.append(f"anomalies: {rules}")
        if self.exit is not None:
            out.append(f"process ended: {describe_exit(self.exit)}")
        return out

    def to_json(self, min_severity: Severity = Severity.INFO) -> dict[str, Any]:
        """The summary as a JSON-ready dict (non-finite numbers as strings: JSON has none);
        `anomalies` counts those of at least `min_severity`, `below_min_severity` the others."""
        shown = self.shown(min_severity)
        return {
            "type": "summary",
            "path": self.path,
            "lines": self.lines,
            "lineno": self.lineno,
            "offset": self.offset,
            "metrics": self.metrics,
            "evals": self.evals,
            "anomalies": dict(sorted(shown.items())),
            "below_min_severity": sum(self.by_rule.values()) - sum(shown.values()),
            "last_step": self.last_step,
            "last_loss": json_number(self.last_loss),
            "exit": None
            if self.exit is None
            else {
                "returncode": self.exit.returncode,
                "signal": self.exit.signal,
                "killed_by_ftmon": self.exit.killed_by_ftmon,
            },
            "ended": self.ended,
        }


def json_number(value: float | None) -> float | str | None:
    if value is None or math.isfinite(value):
        return value
    return str(value)  # "nan", "inf", "-inf"


def start_of_last_line(path: Path) -> tuple[int, int]:
    """(offset, lines before it) of the end of the last complete line: where `--watch` starts.

    A partial last line is left unread so that it is seen whole once it is finished. Counting the
    lines before it keeps the line numbers in anomalies true to the file.
    """
    lines = 0
    last_end = 0
    pos = 0
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below; a missing file is not an error
    except FileNotFoundError:
        return 0, 0  # not written yet: everything it will hold is new
    with fh:
        while chunk := fh.read(1 << 20):
            n = chunk.count(b"\n")
            if n:
                lines += n
                last_end = pos + chunk.rindex(b"\n") + 1
            pos += len(chunk)
    return last_end, lines


def _guarded(call: Callable[..., Any], *args: Any) -> list[Any]:
    """A Monitor call whose failure is logged, not raised: the watch of a whole training run
    must not end on a bug. (A rule's or the parser's failure on one line is handled inside the
    Monitor, losing only that finding; this is the last guard, for anything else.)"""
    try:
        return list(call(*args) or ())
    except Exception:
        log.exception("ftmon: %s failed; the watch goes on", getattr(call, "__name__", call))
        return []


async def _wait(stop: asyncio.Event, secs: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), secs)


async def watch_log(
    path: str | os.PathLike[str],
    monitor: Any,
    on_event: Callable[[Event], None],
    *,
    from_start: bool = False,
    pid: int | None = None,
    probe: ResourceProbe | None = None,
    poll_secs: float = 0.5,
    stop: asyncio.Event | None = None,
    clock: Callable[[], float] = time.time,
    start_time: float | None = None,
    offset: int | None = None,
    lineno: int = 0,
    on_resource: Callable[[ResourceSample], None] | None = None,
    tick_secs: float = TICK_SECS,
    exited: Callable[[], Awaitable[Exit]] | None = None,
    targets: Callable[[], SampleTargets] | None = None,
    targets_secs: float = TARGETS_SECS,
) -> WatchSummary:
    """Follow `path` until `pid` exits or `stop` is set; every event goes to `on_event`.

    Reading starts at `offset`/`lineno` when given (a reattach), else at the start of the file
    (`from_start`) or after its last complete line. With `pid`, its tree's memory is sampled every
    `poll_secs` and its exit (identified by `start_time` when known) is fed to the Monitor after
    the last lines it wrote have been read. `exited` (an executor's `wait`) says when the run
    ended instead of waiting on `pid`. `targets` (an executor's `sample_pids`, asked every
    `targets_secs` in a worker thread) names the processes to sample instead of `pid`'s tree;
    its note, when it has one, is said once as an INFO anomaly of rule `resources`. Raises
    OSError if the file cannot be opened.
    """
    path = Path(path)
    if offset is None:
        # Counting the lines of a big log takes a moment: not on the event loop (the TUI's).
        start = (0, 0) if from_start else await asyncio.to_thread(start_of_last_line, path)
        offset, lineno = start
    tail = Tail(path, offset=offset, lineno=lineno, max_read=BACKLOG_READ)
    summary = WatchSummary(path=str(path), lineno=lineno, offset=offset)
    stop = stop if stop is not None else asyncio.Event()
    reading_done = asyncio.Event()
    pid_ended = asyncio.Event()

    def emit(events: list[Any] | None) -> None:
        for event in events or ():
            summary.note(event)
            on_event(event)

    def take(lines: list[Any]) -> None:
        if not lines:
            return
        summary.lines += len(lines)
        summary.lineno = lines[-1].lineno
        summary.offset = lines[-1].end
        emit(_guarded(monitor.feed_lines, lines, clock()))

    async def read() -> None:
        try:
            await follow(tail, take, stop)
        finally:
            reading_done.set()
            stop.set()  # an unreadable file ends the watch too (the error is raised below)

    async def tick() -> None:
        while not stop.is_set():
            await _wait(stop, tick_secs)
            if not stop.is_set():
                emit(_guarded(monitor.tick, clock()))

    async def sample() -> None:
        prober = probe if probe is not None else ResourceProbe()
        roots: tuple[int, ...] = (pid,) if pid is not None else ()
        asked = float("-inf")
        again = targets_secs
        said: set[str] = set()
        while not stop.is_set():
            if targets is not None and time.monotonic() - asked >= again:
                asked = time.monotonic()
                try:
                    found = await asyncio.to_thread(targets)
                except Exception:  # the watch goes on with the processes it had
                    log.exception("ftmon: asking which processes to sample failed")
                else:
                    roots = found.pids
                    # None yet (a job just leaving the queue): asked again sooner.
                    again = targets_secs if roots or found.note else min(1.0, targets_secs)
                    if found.note and found.note not in said:
                        said.add(found.note)
                        emit([Anomaly("resources", Severity.INFO, found.note, clock())])
            got = prober.sample_many(roots, clock()) if roots else None
            if got is not None:
                if on_resource is not None:
                    on_resource(got)
                emit(_guarded(monitor.feed_resource, got))
            await _wait(stop, poll_secs)

    async def wait_for_pid() -> None:
        if exited is not None:
            exit_ = await exited()
        else:
            assert pid is not None
            exit_ = await wait_pid_exit(pid, start_time, clock=clock)
        pid_ended.set()
        stop.set()
        await reading_done.wait()
        # What the process wrote just before it ended, including an unfinished last line: a
        # backlog when it printed faster than it was read (or all of it, for a run that ended
        # at once), so a batch at a time, letting the event loop (the TUI) run in between.
        while lines := tail.read():
            take(lines)
            await asyncio.sleep(0)
        take(tail.flush_partial())
        summary.exit = exit_
        summary.ended = "exit"
        emit(_guarded(monitor.feed_exit, exit_))

    reader = asyncio.create_task(read())
    others = [asyncio.create_task(tick())]
    waiter = None
    if pid is not None or exited is not None:
        waiter = asyncio.create_task(wait_for_pid())
    if pid is not None or targets is not None:
        others.append(asyncio.create_task(sample()))
    try:
        await stop.wait()
        if waiter is not None and not pid_ended.is_set():
            waiter.cancel()  # stopped by the caller: the pid runs on, nothing more to wait for
        await reader  # raises what made reading fail
        if waiter is not None and pid_ended.is_set():
            await waiter  # the last lines and the exit are fed before returning
    finally:
        for task in [reader, *others] + ([waiter] if waiter else []):
            task.cancel()
        await asyncio.gather(reader, *others, *([waiter] if waiter else []), return_exceptions=True)
    if not summary.ended:
        summary.ended = "stop"
    return summary


def scan_file(
    path: str | os.PathLike[str],
    monitor: Any,
    summary: WatchSummary | None = None,
    ts: float | None = None,
    keep: Callable[[Event], bool] | None = None,
) -> list[Event]:
    """Run a whole (finished) file through the Monitor once, all lines stamped with one time.

    Fills `summary` when one is given; returns the events `keep` accepts (all by default: a
    caller that wants only anomalies of a million-line log need not hold its million metrics).
    Raises OSError if the file cannot be read.
    """
    ts = time.time() if ts is None else ts
    events: list[Event] = []
    if summary is None:
        summary = WatchSummary(path=str(path))
    for lines in iter_file_lines(path):
        summary.lines += len(lines)
        summary.lineno = lines[-1].lineno
        summary.offset = lines[-1].end
        for event in _guarded(monitor.feed_lines, lines, ts):
            summary.note(event)
            if keep is None or keep(event):
                events.append(event)
    summary.ended = "eof"
    return events


def _n(count: int, noun: str) -> str:
    """`1 line`, `3 lines`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"
