"""One supervised run as it goes: its state (`_Run`, `_Lineage`), the Monitor as its watch
sees it (`_RunMonitor`: each batch's metrics and offset stored in one transaction), and the
watch task (`RunWatching`: watch_log until the process ends or supervision stops, then how it
ended). supervisor/supervise.py builds the `Supervisor` on this and adds the decisions: launch,
the policy, relaunches from base weights, what a user can do, reattach.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from supervisor.events import Action, Anomaly, Eval, Exit, Metric, ResourceSample, Sample
from supervisor.monitoring import watch
from supervisor.recipe.model import Recipe
from supervisor.runs.events import (
    ActionTaken,
    EndStatus,
    MetricsObserved,
    ResourcesObserved,
    RunEnded,
    RunEvent,
)
from supervisor.store.history import History, RunRecord

DEFAULT_RESOURCE_SECS = 1.0
MIN_RESOURCE_SECS = 0.05  # 20 samples a second at most


@dataclass
class _Lineage:
    """A first launch and all its relaunches."""

    root_id: str
    fingerprint: dict[str, object] | None
    final: asyncio.Future[RunEnded]
    by_rule: Counter[str] = field(default_factory=Counter)
    last_run_id: str = ""


@dataclass
class _Run:
    """Mutable state of one live supervised run (internal)."""

    run_id: str
    recipe: Recipe
    attempt: int
    lineage: _Lineage
    pid: int
    start_time: float
    log_path: Path
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Future[RunEnded] | None = None
    task: asyncio.Task[None] | None = None
    paused: bool = False
    ending: str = ""  # why ftmon is killing it; "" while it is not
    relaunch: tuple[Recipe, list[str], str, str] | None = None  # (recipe, changes, rule, why)
    chain_stop: tuple[str, str] | None = None  # (rule, why) when a wanted relaunch cannot be
    killing: asyncio.Task[None] | None = None
    last_rule: str = ""
    exited: bool = False  # the process has ended (its exit is being classified)
    errors: int = 0  # anomalies of severity error or worse, the exit's own aside

    @property
    def pgid(self) -> int:
        return self.pid  # every run starts in its own session: its group id is its pid


class _RunMonitor:
    """The Monitor as watch_log sees it, plus what supervision adds: each batch's metrics and
    resume offset are stored in one transaction, metrics are announced per batch, time-based
    rules sleep while the run is paused, and the exit says when ftmon was the killer."""

    def __init__(self, sup: RunWatching, run: _Run, monitor: Any) -> None:
        self.sup, self.run, self.monitor = sup, run, monitor

    def feed_lines(self, lines: list[Any], ts: float) -> list[Any]:
        if self.run.paused and not _stopped(self.run.pid):  # `kill -CONT` from a shell
            self.sup._resumed(self.run, "resumed from outside ftmon")
        events = self.monitor.feed_lines(lines, ts)
        observed = tuple(e for e in events if isinstance(e, Metric | Eval | Sample))
        self.sup.history.record_batch(
            self.run.run_id, events=observed, offset=lines[-1].end, lineno=lines[-1].lineno
        )
        if observed:
            self.sup._emit(MetricsObserved(self.run.run_id, ts, observed))
        return [e for e in events if isinstance(e, Anomaly)]

    def feed_resource(self, sample: ResourceSample) -> list[Anomaly]:
        return [] if self.run.paused else list(self.monitor.feed_resource(sample) or [])

    def tick(self, ts: float) -> list[Anomaly]:
        return [] if self.run.paused else list(self.monitor.tick(ts) or [])

    def feed_exit(self, exit_: Exit) -> list[Anomaly]:
        self.run.exited = True
        if self.run.ending:  # the exit rule says "killed by ftmon: " itself
            why = self.run.ending.removeprefix("killed by ftmon: ")
            exit_ = dataclasses.replace(exit_, killed_by_ftmon=why)
        return list(self.monitor.feed_exit(exit_) or [])


class RunWatching:
    """The watch task of each run, and the two ways everything is reported (`_emit` a fact,
    `_act` an action). The Supervisor subclass supplies the decisions named at the end."""

    history: History
    on_event: Callable[[RunEvent], None]
    clock: Callable[[], float]
    _runs: dict[str, _Run]
    _me: tuple[int, float]

    def _emit(self, event: RunEvent) -> None:
        try:
            self.on_event(event)
        except Exception as exc:  # a broken display must not stop supervision
            print(f"ftmon: event handler failed on {type(event).__name__}: {exc}", file=sys.stderr)

    def _act(self, run_id: str, kind: str, rule: str, detail: str, ok: bool = True) -> Action:
        action = Action(kind=kind, rule=rule, ts=self.clock(), run_id=run_id, detail=detail, ok=ok)
        self.history.add_action(run_id, action)
        self._emit(ActionTaken(run_id, action.ts, action))
        return action

    def _start(self, run: _Run, *, offset: int, lineno: int) -> None:
        run.ended = asyncio.get_running_loop().create_future()
        self._runs[run.run_id] = run
        run.task = asyncio.create_task(self._supervise(run, offset, lineno), name=run.run_id)

    # --- the watch task -------------------------------------------------------------------

    async def _supervise(self, run: _Run, offset: int, lineno: int) -> None:
        try:
            await self._watch_run(run, offset, lineno)
        except Exception as exc:  # a bug here must not leave waiters hanging or the run unowned
            print(f"ftmon: supervising {run.run_id} failed: {exc!r}", file=sys.stderr)
            self._runs.pop(run.run_id, None)
            why = f"supervision failed ({exc}); reattach with `ftmon attach {run.run_id}`"
            ended = RunEnded(run.run_id, self.clock(), None, None, why, "detached")
            with contextlib.suppress(Exception):
                self.history.release(run.run_id, self._me[0])
            self._emit(ended)
            _settle(run.ended, ended)
            _settle(run.lineage.final, ended)

    async def _watch_run(self, run: _Run, offset: int, lineno: int) -> None:
        from supervisor.monitoring.monitor import Monitor

        monitor = _RunMonitor(self, run, Monitor(run.recipe.watch, patterns=run.recipe.patterns))
        try:
            summary = await watch.watch_log(
                run.log_path, monitor, lambda ev: self._on_anomaly(run, ev),
                pid=run.pid, start_time=run.start_time, offset=offset, lineno=lineno,
                poll_secs=_resource_interval(run.recipe.watch), stop=run.stop, clock=self.clock,
                on_resource=lambda s: self._emit(ResourcesObserved(run.run_id, s.ts, s)),
            )  # fmt: skip
        except OSError as exc:
            print(f"ftmon: {run.run_id}: cannot read {run.log_path}: {exc}", file=sys.stderr)
            summary = None
        if run.killing is not None:
            await run.killing
        self._runs.pop(run.run_id, None)
        if summary is None or summary.exit is None:  # stopped: the process runs on
            why = f"detached: reattach with `ftmon attach {run.run_id}`"
            ended = RunEnded(run.run_id, self.clock(), None, None, why, "detached")
            self.history.release(run.run_id, self._me[0])
            self._emit(ended)
            _settle(run.ended, ended)
            _settle(run.lineage.final, ended)
            return
        ended = self._end_of(run, summary.exit)
        _settle(run.ended, ended)
        await self._after_end(run, ended)

    def _end_of(self, run: _Run, exit_: Exit) -> RunEnded:
        status: EndStatus
        if run.ending:
            status, reason = "killed", run.ending
        elif exit_.signal is not None:
            status, reason = "failed", f"killed by signal {exit_.signal}"
        elif exit_.returncode is None:  # a reattached run is not our child: no exit status
            status, reason = self._unknown_exit(run, "ended after a reattach")
        elif exit_.returncode == 0:
            status, reason = "finished", "finished"
        else:
            status, reason = "failed", f"exited with code {exit_.returncode}"
        return self._finish(run.run_id, exit_.returncode, exit_.signal, reason, status)

    def _finish(
        self, run_id: str, rc: int | None, sig: int | None, reason: str, status: EndStatus
    ) -> RunEnded:
        now = self.clock()
        self.history.finish_run(
            run_id, status=status, ended_at=now, returncode=rc, signal=sig, reason=reason
        )
        ended = RunEnded(run_id, now, rc, sig, reason, status)
        self._emit(ended)
        return ended

    async def _catch_up(self, run: _Run, rec: RunRecord) -> None:
        """A run that ended while nobody watched: read what it wrote since, then close it."""
        from supervisor.monitoring.monitor import Monitor

        monitor = _RunMonitor(self, run, Monitor(run.recipe.watch, patterns=run.recipe.patterns))
        run.stop.set()  # one pass over what is there, then stop
        await watch.watch_log(
            run.log_path, monitor, lambda ev: self._on_anomaly(run, ev),
            offset=rec.offset, lineno=rec.lineno, stop=run.stop, clock=self.clock,
        )  # fmt: skip
        status, reason = self._unknown_exit(run, "ended while no ftmon watched it")
        _settle(run.lineage.final, self._finish(rec.id, None, None, reason, status))

    def _unknown_exit(self, run: _Run, what: str) -> tuple[EndStatus, str]:
        """How a run ended whose exit status nobody could collect (not our child): failed
        if a rule found an error in it, else finished."""
        if run.errors:
            return "failed", f"{what} (exit status unknown; {run.errors} error(s) found)"
        return "finished", f"{what} (exit status unknown; no error found)"

    # --- decided by the Supervisor ---------------------------------------------------------

    def _on_anomaly(self, run: _Run, anomaly: Any) -> None:
        raise NotImplementedError

    async def _after_end(self, run: _Run, ended: RunEnded) -> None:
        raise NotImplementedError

    def _resumed(self, run: _Run, detail: str) -> None:
        raise NotImplementedError


def _stopped(pid: int) -> bool:
    """The process is stopped (SIGSTOP); a vanished one counts as not."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.Error:
        return False


def _settle(future: asyncio.Future[RunEnded] | None, ended: RunEnded) -> None:
    if future is not None and not future.done():
        future.set_result(ended)


def _resource_interval(watch_settings: Any) -> float:
    """The fastest poll the enabled resource rules of the recipe ask for, within 20 Hz."""
    asked = []
    for name in ("vram", "host_mem"):
        settings = getattr(watch_settings, name, None)
        secs = getattr(settings, "poll_secs", None)
        if secs and getattr(settings, "enabled", True):
            asked.append(float(secs))
    return max(MIN_RESOURCE_SECS, min(asked) if asked else DEFAULT_RESOURCE_SECS)
