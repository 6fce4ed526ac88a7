"""One supervised run as it goes: its state (`_Run`, `_Lineage`), the Monitor as its watch
sees it (`_RunMonitor`: each batch's metrics and offset stored in one transaction; time-based
rules asleep while the run is stopped), the one function that changes a run's state
(`RunWatching._change`: state, cause and decision in one history transaction, one event), and
the watch task (watch_log until the process ends or supervision stops, then how it ended).
supervise.py builds the `Supervisor` on this and adds the decisions: launch, the policy,
relaunches from base weights, what a user can do, reattach.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor.events import Action, Anomaly, Eval, Exit, Metric, Sample
from supervisor.monitoring import watch
from supervisor.reading.identity import HeadTracker, LogHead
from supervisor.recipe.model import Recipe
from supervisor.runs.engine import StateAwareMonitor
from supervisor.runs.events import (
    ActionTaken,
    EndStatus,
    MetricsObserved,
    ResourcesObserved,
    RunEnded,
    RunEvent,
    RunPaused,
    StateChanged,
)
from supervisor.runs.executors.base import Executor, RunHandle
from supervisor.runs.state import PROCESS_STATES, RunState, change_state
from supervisor.store.history import History, RunRecord
from supervisor.store.schema import Decision, RunEnd

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
    """Mutable state of one live supervised run (internal). Its life is `state` (changed only
    by `RunWatching._change`); the rest is what the policy decided to do next."""

    run_id: str
    recipe: Recipe
    attempt: int
    lineage: _Lineage
    handle: RunHandle
    state: RunState | None = None  # None until its first state (starting) is recorded
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Future[RunEnded] | None = None
    task: asyncio.Task[None] | None = None
    kill_reason: str = ""  # why ftmon is killing it; "" while it is not
    relaunch: tuple[Recipe, list[str], str, str] | None = None  # (recipe, changes, rule, why)
    chain_stop: tuple[str, str] | None = None  # (rule, why) when a wanted relaunch cannot be
    decision: int | None = None  # the journaled decision (kill or relaunch) not yet done
    decision_kind: str = ""  # its kind: "pause", "kill" or "relaunch"
    relaunched_as: str = ""  # the child of a relaunch found started (an ftmon died after it)
    killing: asyncio.Task[None] | None = None
    monitor: _RunMonitor | None = None
    last_rule: str = ""
    errors: int = 0  # anomalies of severity error or worse, the exit's own aside
    unrecorded: Anomaly | None = None  # the anomaly being acted on, written with its move
    log_head: LogHead | None = None  # the log's first bytes as stored (reading/identity.py)

    @property
    def pid(self) -> int:
        return self.handle.pid

    @property
    def log_path(self) -> Path:
        return self.handle.log_path


class _RunMonitor(StateAwareMonitor):
    """The Monitor as a supervised run's watch sees it: the run's state decides what time-based
    rules see (engine.py), and each batch's metrics and resume offset are stored in one
    transaction and announced."""

    def __init__(self, sup: RunWatching, run: _Run, monitor: Any) -> None:
        super().__init__(
            monitor,
            state=lambda: run.state,
            stopped=lambda: sup.executor.stopped(run.handle),
            on_stopped=lambda ts: sup._stopped_outside(run),
            on_continued=lambda ts: sup._resumed(run, "resumed from outside ftmon", "user"),
            kill_reason=lambda: run.kill_reason,
            on_exit=lambda exit_: sup._exited(run),
        )
        self.sup, self.run = sup, run
        run.monitor = self
        self.head = HeadTracker(run.log_path, run.log_head)  # the log's identity (B)

    def feed_lines(self, lines: list[Any], ts: float) -> list[Any]:
        events = super().feed_lines(lines, ts)
        observed = tuple(e for e in events if isinstance(e, Metric | Eval | Sample))
        self.sup.history.record_batch(
            self.run.run_id, events=observed, offset=lines[-1].end, lineno=lines[-1].lineno,
            head=self.head.advance(lines[-1].end),
        )  # fmt: skip
        if observed:
            self.sup._emit(MetricsObserved(self.run.run_id, ts, observed))
        return [e for e in events if isinstance(e, Anomaly)]


class RunWatching:
    """The watch task of each run, the one place a run's state changes (`_change`), and the
    two ways everything else is reported (`_emit` a fact, `_act` an action). The Supervisor
    subclass supplies the decisions named at the end."""

    history: History
    executor: Executor
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

    def _change(
        self,
        run: _Run,
        new: RunState,
        cause: str,
        rule: str = "",
        *,
        action: tuple[str, str, bool] | None = None,
        decide: Decision | None = None,
        done: str = "",
        end: RunEnd | None = None,
    ) -> StateChanged:
        """Move `run` to `new` (runs/state.py refuses a move its table does not allow) and
        write it to history in ONE transaction with its cause: the action taken (`action`:
        kind, detail, ok), a decision journaled before it is carried out (`decide`), the open
        decision marked done (`done`: its outcome), the end (`end`), and the anomaly that caused
        it when one did (`run.unrecorded`). Emits the StateChanged, then the ActionTaken."""
        change = change_state(run.run_id, run.state, new, ts=self.clock(), cause=cause, rule=rule)
        act = None
        if action is not None:
            kind, detail, ok = action
            act = Action(kind, rule, change.ts, run_id=run.run_id, detail=detail, ok=ok)
        finishing = run.decision if done else None
        caused_by, run.unrecorded = run.unrecorded, None
        decision_id = self.history.change_state(
            change, anomaly=caused_by, action=act, decide=decide, done=finishing, outcome=done,
            end=end,
        )  # fmt: skip
        if finishing is not None:
            run.decision, run.decision_kind = None, ""
        if decision_id is not None and decide is not None:
            run.decision, run.decision_kind = decision_id, decide.kind
        run.state = new
        self._emit(change)
        if act is not None:
            self._emit(ActionTaken(run.run_id, act.ts, act))
        return change

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
                pid=run.pid or None, start_time=run.handle.start_time, offset=offset,
                lineno=lineno, poll_secs=_resource_interval(run.recipe.watch), stop=run.stop,
                clock=self.clock,
                on_resource=lambda s: self._emit(ResourcesObserved(run.run_id, s.ts, s)),
                exited=lambda: self.executor.wait(run.handle),
                targets=lambda: self.executor.sample_pids(run.handle),
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

    def _exited(self, run: _Run) -> None:
        """The process has ended (its exit is being classified)."""
        if run.state in PROCESS_STATES:
            self._change(run, RunState.EXITED, "the process ended")

    def _end_of(self, run: _Run, exit_: Exit, unknown: str = "ended after a reattach") -> RunEnded:
        """How the run ended, announced; history gets it with the run's end state (after the
        relaunch, when one follows)."""
        self._exited(run)
        status: EndStatus
        if run.kill_reason:
            status, reason = "killed", run.kill_reason
        elif exit_.signal is not None:
            status, reason = "failed", f"killed by signal {exit_.signal}"
        elif exit_.returncode is None:  # a reattached run is not our child: no exit status
            status, reason = self._unknown_exit(run, unknown)
        elif exit_.returncode == 0:
            status, reason = "finished", "finished"
        else:
            status, reason = "failed", f"exited with code {exit_.returncode}"
        ended = RunEnded(run.run_id, self.clock(), exit_.returncode, exit_.signal, reason, status)
        self._emit(ended)
        return ended

    def _close(
        self,
        run: _Run,
        ended: RunEnded,
        *,
        rule: str = "",
        action: tuple[str, str, bool] | None = None,
        outcome: str = "",
    ) -> None:
        """The run's last move: to the end state its exit says, with what ended it; an open
        decision is marked done with `outcome`."""
        self._change(
            run, RunState(ended.status), ended.reason, rule, action=action,
            done=outcome or ended.reason, end=RunEnd(ended.returncode, ended.signal, ended.reason),
        )  # fmt: skip

    async def _catch_up(self, run: _Run, rec: RunRecord) -> None:
        """A run that ended while nobody watched: read what it wrote since, then close it (and
        carry out what its journaled decision said should follow)."""
        from supervisor.monitoring.monitor import Monitor

        monitor = _RunMonitor(self, run, Monitor(run.recipe.watch, patterns=run.recipe.patterns))
        run.stop.set()  # one pass over what is there, then stop
        await watch.watch_log(
            run.log_path, monitor, lambda ev: self._on_anomaly(run, ev),
            offset=rec.offset, lineno=rec.lineno, stop=run.stop, clock=self.clock,
        )  # fmt: skip
        ended = self._end_of(run, Exit(self.clock(), None), "ended while no ftmon watched it")
        await self._after_end(run, ended)

    def _unknown_exit(self, run: _Run, what: str) -> tuple[EndStatus, str]:
        """How a run ended whose exit status nobody could collect (not our child): failed
        if a rule found an error in it, else finished."""
        if run.errors:
            return "failed", f"{what} (exit status unknown; {run.errors} error(s) found)"
        return "finished", f"{what} (exit status unknown; no error found)"

    def _stopped_outside(self, run: _Run) -> None:
        """A stop ftmon did not make (`kill -STOP` from a shell): the run is paused, and time
        does not count against it until it goes on."""
        why = "stopped from outside ftmon (SIGSTOP)"
        self._change(run, RunState.PAUSED, why, "user", action=("pause", why, True))
        self._emit(RunPaused(run.run_id, self.clock(), f"{why}; resume it or kill it"))

    # --- decided by the Supervisor ---------------------------------------------------------

    def _on_anomaly(self, run: _Run, anomaly: Any) -> None:
        raise NotImplementedError

    async def _after_end(self, run: _Run, ended: RunEnded) -> None:
        raise NotImplementedError

    def _resumed(self, run: _Run, detail: str, rule: str) -> None:
        raise NotImplementedError


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
