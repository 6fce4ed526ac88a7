"""Supervised runs: launch a recipe, watch its log, apply the policy, relaunch from base weights.

One `Supervisor` serves the headless `ftmon run` / `ftmon attach` and the TUI. It runs on asyncio
and reports what happens as `run_events` facts to one callback, in order. Each run has one task
that reads its log (tail -> monitor), samples its resources at the recipe's rate, applies the
policy to each anomaly, waits for the process to end, and then relaunches when the policy said
so. The byte offset and line number read so far go to the history with the metrics of the same
batch, in one transaction, so a supervisor that dies loses nothing and a reattached one reads
no line twice.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from supervisor import policy, process
from supervisor.events import Action, Anomaly, Eval, Exit, Metric, Sample, Severity
from supervisor.history import History, RunRecord
from supervisor.run_events import (
    ActionTaken,
    AnomalyFound,
    ChainStopped,
    EndStatus,
    MetricsObserved,
    ResourcesObserved,
    RunEnded,
    RunEvent,
    RunPaused,
    RunRelaunched,
    RunResumed,
    RunStarted,
)

# How often the log is read when nothing wakes the loop earlier; the kill after a nan line
# therefore follows within this (plus the kill's own SIGTERM), well under a second.
READ_INTERVAL = 0.05
TICK_INTERVAL = 1.0  # stall and other time-based rules
DEFAULT_RESOURCE_SECS = 1.0
MIN_RESOURCE_SECS = 0.05  # 20 samples a second at most
DEFAULT_KILL_GRACE = 10.0


class LaunchRefused(Exception):
    """The recipe will not be launched: the memory estimate says it does not fit (use force),
    or the run could not be planned. The message is for a person."""


class AttachError(Exception):
    """The run cannot be reattached (unknown, already ended, supervised here already)."""


@dataclass
class _Lineage:
    """A first launch and all its relaunches."""

    root_id: str
    fingerprint: Any = None
    by_rule: Counter[str] = field(default_factory=Counter)
    last_run_id: str = ""
    final: asyncio.Future[RunEnded] | None = None


@dataclass
class _Run:
    """Mutable state of one live supervised run (internal to the supervisor)."""

    run_id: str
    recipe: Any
    attempt: int
    lineage: _Lineage
    pid: int
    pgid: int
    start_time: float
    log_path: Path
    spawned: process.Spawned | None  # None for a reattached run (not our child)
    paused: bool = False
    ending: str = ""  # why ftmon is killing it ("" while it is not being killed)
    ending_status: EndStatus = "killed"
    relaunch: tuple[Any, list[Any], str, str] | None = None  # (recipe, changes, rule, reason)
    chain_stop: tuple[str, str] | None = None  # (rule, why) when a wanted relaunch cannot be
    task: asyncio.Task[None] | None = None
    ended: asyncio.Future[RunEnded] | None = None
    last_rule: str = ""
    killing: asyncio.Task[Any] | None = None


class Supervisor:
    """Launches and supervises runs; see the module docstring. All methods run on one loop."""

    def __init__(
        self,
        history: History,
        logs_dir: Path,
        on_event: Callable[[RunEvent], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.history = history
        self.logs_dir = Path(logs_dir)
        self.on_event = on_event
        self.clock = clock
        self._runs: dict[str, _Run] = {}
        self._lineages: dict[str, _Lineage] = {}  # by root id

    # --- events ---------------------------------------------------------------------------

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

    # --- launch ---------------------------------------------------------------------------

    async def launch(
        self, recipe: Any, *, parent_id: str | None = None, reason: str = "", force: bool = False
    ) -> str:
        """Plan, write the run folder, spawn, record and start watching. Returns the run id.

        Raises LaunchRefused if the memory estimate says the recipe does not fit (unless
        `force`) or the plan cannot be made. A command that cannot be started gives a run that
        ends at once as failed (it is in the history, with the reason).
        """
        from supervisor import plan as planning

        if not force:
            self._preflight(recipe)
        parent = self.history.get(parent_id) if parent_id else None
        attempt = parent.attempt + 1 if parent else 1
        lineage = self._lineage_for(parent)
        run_id = self._unique_id(planning.new_run_id(recipe.name, attempt))
        try:
            plan = planning.plan_run(recipe, run_id, attempt, self.logs_dir)
            planning.write_run_files(plan)
        except (OSError, ValueError) as exc:
            raise LaunchRefused(f"{recipe.name}: cannot plan the run: {exc}") from exc
        if lineage is None:
            lineage = _Lineage(root_id=run_id, fingerprint=_fingerprint(planning, recipe))
            lineage.final = asyncio.get_running_loop().create_future()
            self._lineages[run_id] = lineage
        lineage.last_run_id = run_id
        changes = _changes_of(reason)
        log_path = Path(plan.log_path)
        now = self.clock()
        common = dict(
            run_id=run_id,
            name=recipe.name,
            started_at=now,
            parent_id=parent_id,
            attempt=attempt,
            reason_started=reason,
            recipe_yaml=planning.recipe_yaml_redacted(recipe),
            argv=list(plan.argv),
            cwd=str(plan.cwd),
            env=planning.redact_env(plan.env_shown),
            run_dir=str(plan.run_dir),
            log_path=str(log_path),
            base_fingerprint=lineage.fingerprint if not parent_id else None,
            changes=changes,
        )
        try:
            spawned = process.spawn(list(plan.argv), dict(plan.env), Path(plan.cwd), log_path)
        except process.SpawnError as exc:
            self.history.add_run(**common, status="failed")  # type: ignore[arg-type]
            self._emit(
                RunStarted(
                    run_id, now, recipe.name, attempt, parent_id, tuple(plan.argv), str(log_path), 0
                )
            )
            ended = self._finish(run_id, lineage, None, None, f"could not start: {exc}", "failed")
            lineage.final.set_result(ended) if lineage.final and not lineage.final.done() else None
            return run_id
        self.history.add_run(
            **common,
            pid=spawned.pid,
            proc_start_time=spawned.start_time,  # type: ignore[arg-type]
        )
        run = _Run(
            run_id,
            recipe,
            attempt,
            lineage,
            spawned.pid,
            spawned.pgid,
            spawned.start_time,
            log_path,
            spawned,
        )
        self._start(run, offset=0, lineno=0)
        self._emit(
            RunStarted(
                run_id,
                now,
                recipe.name,
                attempt,
                parent_id,
                tuple(plan.argv),
                str(log_path),
                spawned.pid,
            )
        )
        return run_id

    def _preflight(self, recipe: Any) -> None:
        try:
            from supervisor.estimate import preflight
        except ImportError:
            return
        try:
            result = preflight(recipe)
        except Exception:  # an estimate that cannot be made is no reason to refuse a run
            return
        if not getattr(result, "fits", True):
            raise LaunchRefused(
                f"{recipe.name}: the memory estimate says it does not fit (use --force to launch"
                f" anyway):\n{getattr(result, 'report', '')}"
            )

    def _unique_id(self, run_id: str) -> str:
        candidate, n = run_id, 2
        while self.history.get(candidate) is not None or candidate in self._runs:
            candidate, n = f"{run_id}-{n}", n + 1
        return candidate

    def _lineage_for(self, parent: RunRecord | None) -> _Lineage | None:
        """The lineage a child joins: the live one if its parent ran here, else rebuilt from
        the history (replay of an old run, relaunch after a reattach)."""
        if parent is None:
            return None
        if parent.id in self._runs:
            return self._runs[parent.id].lineage
        chain = self.history.lineage(parent.id)
        root = chain[0]
        if root.id in self._lineages:
            return self._lineages[root.id]
        lineage = _Lineage(root_id=root.id, fingerprint=root.base_fingerprint)
        for rec in chain:
            for action in self.history.actions(rec.id):
                if action.kind == "relaunch" and action.ok and action.rule != "user":
                    lineage.by_rule[action.rule] += 1
        lineage.final = asyncio.get_running_loop().create_future()
        self._lineages[root.id] = lineage
        return lineage

    def _start(self, run: _Run, *, offset: int, lineno: int) -> None:
        run.ended = asyncio.get_running_loop().create_future()
        self._runs[run.run_id] = run
        run.task = asyncio.create_task(self._supervise(run, offset, lineno), name=run.run_id)

    # --- the watch loop -------------------------------------------------------------------

    async def _supervise(self, run: _Run, offset: int, lineno: int) -> None:
        from supervisor.monitor import Monitor
        from supervisor.resources import ResourceProbe
        from supervisor.tail import Tail

        watch = getattr(run.recipe, "watch", None)
        monitor = Monitor(watch) if watch is not None else Monitor()
        tail = Tail(run.log_path, offset=offset, lineno=lineno)
        probe = ResourceProbe()
        res_every = _resource_interval(watch)
        if run.spawned is not None:
            exited = asyncio.ensure_future(process.wait_exit(run.spawned, self.clock))
        else:
            exited = asyncio.ensure_future(
                process.wait_pid_exit(run.pid, run.start_time, self.clock)
            )
        next_res = next_tick = time.monotonic()
        try:
            while True:
                await self._feed(run, monitor, tail.read())
                if exited.done():
                    break
                now = time.monotonic()
                if not run.paused and now >= next_res:
                    next_res = now + res_every
                    await self._sample(run, monitor, probe)
                if not run.paused and now >= next_tick:
                    next_tick = now + TICK_INTERVAL
                    for anomaly in monitor.tick(self.clock()) or []:
                        await self._on_anomaly(run, anomaly)
                await asyncio.wait({exited}, timeout=READ_INTERVAL)
            if run.killing is not None:
                await run.killing
            await self._feed(run, monitor, tail.read())
            await self._feed(run, monitor, _as_list(tail.flush_partial()))
            exit_ = exited.result()
            if run.ending:
                exit_ = dataclasses.replace(exit_, killed_by_ftmon=run.ending)
            for anomaly in monitor.feed_exit(exit_) or []:
                await self._on_anomaly(run, anomaly)
            if run.killing is not None:  # an exit anomaly (oom) may have asked for a relaunch
                await run.killing
            ended = self._end_of(run, exit_)
        except asyncio.CancelledError:
            exited.cancel()
            raise
        self._runs.pop(run.run_id, None)
        if run.ended is not None and not run.ended.done():
            run.ended.set_result(ended)
        await self._after_end(run, ended)

    def _end_of(self, run: _Run, exit_: Exit) -> RunEnded:
        if run.ending:
            status, reason = run.ending_status, run.ending
        elif exit_.signal is not None:
            status, reason = "failed", f"killed by signal {exit_.signal}"
        elif exit_.returncode is None:
            # A reattached run is not our child: its exit status cannot be known.
            status, reason = "finished", "ended (exit status unknown: the run was reattached)"
        elif exit_.returncode == 0:
            status, reason = "finished", "finished"
        else:
            status, reason = "failed", f"exited with code {exit_.returncode}"
        return self._finish(run.run_id, run.lineage, exit_.returncode, exit_.signal, reason, status)

    def _finish(
        self,
        run_id: str,
        lineage: _Lineage,
        returncode: int | None,
        signal: int | None,
        reason: str,
        status: EndStatus,
    ) -> RunEnded:
        now = self.clock()
        self.history.finish_run(
            run_id, status=status, ended_at=now, returncode=returncode, signal=signal, reason=reason
        )
        ended = RunEnded(run_id, now, returncode, signal, reason, status)
        self._emit(ended)
        return ended

    async def _after_end(self, run: _Run, ended: RunEnded) -> None:
        """Relaunch if the policy (or the user) asked for it, else close the lineage."""
        lineage = run.lineage
        if run.chain_stop is not None:
            self._stop_chain(run.run_id, lineage, *run.chain_stop, ended)
            return
        if run.relaunch is not None:
            recipe, changes, rule, reason = run.relaunch
            try:
                self._check_base_weights(lineage, recipe)
                child = await self.launch(recipe, parent_id=run.run_id, reason=reason, force=True)
            except (policy.ChainStop, LaunchRefused) as exc:
                self._stop_chain(run.run_id, lineage, rule, str(exc), ended)
                return
            if rule != "user":
                lineage.by_rule[rule] += 1
            self._emit(
                RunRelaunched(
                    run.run_id, child, self.clock(), reason, tuple(str(c) for c in changes)
                )
            )
            return
        if lineage.final is not None and not lineage.final.done():
            lineage.final.set_result(ended)

    def _stop_chain(
        self, run_id: str, lineage: _Lineage, rule: str, reason: str, ended: RunEnded
    ) -> None:
        self._act(run_id, "relaunch", rule, f"chain stopped: {reason}", ok=False)
        self._emit(ChainStopped(run_id, self.clock(), reason))
        if lineage.final is not None and not lineage.final.done():
            lineage.final.set_result(ended)

    def _lineage_of_id(self, run_id: str) -> _Lineage | None:
        for lineage in self._lineages.values():
            if lineage.last_run_id == run_id:
                return lineage
        return None

    def _check_base_weights(self, lineage: _Lineage, recipe: Any) -> None:
        from supervisor import plan as planning

        if lineage.fingerprint is None:
            return
        problem = planning.check_base_weights(recipe, lineage.fingerprint)
        if problem:
            raise policy.ChainStop(f"base weights changed since the first launch: {problem}")

    async def _feed(self, run: _Run, monitor: Any, lines: list[Any]) -> None:
        if not lines:
            return
        ts = self.clock()
        events = monitor.feed_lines(lines, ts)
        observed = tuple(e for e in events if isinstance(e, Metric | Eval | Sample))
        self.history.record_batch(
            run.run_id, events=observed, offset=lines[-1].end, lineno=lines[-1].lineno
        )
        if observed:
            self._emit(MetricsObserved(run.run_id, ts, observed))
        for event in events:
            if isinstance(event, Anomaly):
                await self._on_anomaly(run, event)

    async def _sample(self, run: _Run, monitor: Any, probe: Any) -> None:
        sample = probe.sample(run.pid, self.clock())
        if sample is None:
            return
        self._emit(ResourcesObserved(run.run_id, sample.ts, sample))
        for anomaly in monitor.feed_resource(sample) or []:
            await self._on_anomaly(run, anomaly)

    # --- the policy -----------------------------------------------------------------------

    async def _on_anomaly(self, run: _Run, anomaly: Anomaly) -> None:
        anomaly = dataclasses.replace(anomaly, run_id=run.run_id)
        self.history.add_anomaly(run.run_id, anomaly)
        self._emit(AnomalyFound(run.run_id, anomaly.ts, anomaly))
        if run.ending or (anomaly.rule == "exit" and anomaly.severity < Severity.ERROR):
            return  # already being stopped, or a clean exit: nothing to act on
        decision = policy.decide(run.recipe, anomaly.rule)
        run.last_rule = anomaly.rule
        if decision.kind == "alert":
            self._act(run.run_id, "alert", anomaly.rule, anomaly.message)
        elif decision.kind == "pause":
            if not run.paused:
                await self._pause(
                    run, policy.pause_reason(anomaly.rule, anomaly.message, run.pgid), anomaly.rule
                )
        elif decision.kind == "kill":
            self._begin_kill(run, f"killed by ftmon: rule {anomaly.rule}", anomaly.rule)
        elif decision.kind == "relaunch":
            self._plan_policy_relaunch(run, anomaly.rule)
            self._begin_kill(run, f"killed by ftmon: rule {anomaly.rule}", anomaly.rule)

    def _plan_policy_relaunch(self, run: _Run, rule: str) -> None:
        """Work out the child's recipe now, so the kill's action can say what comes next; a
        chain that cannot go on is told when the run has ended."""
        try:
            policy.check_relaunch_allowed(run.recipe, rule, run.lineage.by_rule, run.attempt)
            recipe, changes = self._adjusted(run.recipe, rule)
        except policy.ChainStop as exc:
            run.relaunch, run.chain_stop = None, (rule, str(exc))
            return
        reason = policy.relaunch_reason(rule, [str(c) for c in changes])
        run.relaunch = (recipe, changes, rule, reason)

    def _adjusted(self, recipe: Any, rule: str) -> tuple[Any, list[Any]]:
        from supervisor import adjust

        try:
            return adjust.apply_adjustments(recipe, policy.adjustment_for(recipe, rule))
        except adjust.AdjustmentExhausted as exc:
            raise policy.ChainStop(str(exc)) from exc

    def _begin_kill(self, run: _Run, reason: str, rule: str) -> None:
        """Start killing in a worker thread; the watch loop reads on and sees the exit."""
        if run.ending:
            return
        run.ending = reason
        run.killing = asyncio.ensure_future(self._kill(run, rule))

    async def _kill(self, run: _Run, rule: str) -> None:
        grace = float(getattr(run.recipe, "kill_grace", None) or DEFAULT_KILL_GRACE)
        report = await process.kill_tree_async(run.pid, run.pgid, grace)
        run.paused = False
        self._act(run.run_id, "kill", rule, f"{run.ending}: {report.detail()}", ok=report.all_gone)

    # --- what the user (TUI) can do -------------------------------------------------------

    async def _pause(self, run: _Run, reason: str, rule: str) -> None:
        if process.pause(run.pgid):
            run.paused = True
            self.history.set_status(run.run_id, "paused")
            self._act(run.run_id, "pause", rule, reason)
            self._emit(RunPaused(run.run_id, self.clock(), reason))

    async def pause(self, run_id: str) -> None:
        run = self._live(run_id)
        if not run.paused and not run.ending:
            await self._pause(run, "paused by the user", "user")

    async def resume(self, run_id: str) -> None:
        run = self._live(run_id)
        if run.paused and process.resume(run.pgid):
            run.paused = False
            self.history.set_status(run.run_id, "running")
            self._act(run.run_id, "resume", "user", "resumed")
            self._emit(RunResumed(run.run_id, self.clock()))

    async def kill(self, run_id: str, reason: str = "killed by the user") -> RunEnded:
        run = self._live(run_id)
        self._begin_kill(run, reason, "user")
        assert run.ended is not None
        return await asyncio.shield(run.ended)

    async def relaunch(
        self, run_id: str, recipe: Any = None, reason: str = "relaunched by the user"
    ) -> str:
        """Kill the run if it is live, then start a child from `recipe` (default: the run's own
        recipe, unchanged). Returns the child's id."""
        run = self._runs.get(run_id)
        if run is None:
            base = recipe if recipe is not None else self._recipe_from_history(run_id)
            lineage = self._lineage_for(self.history.get(run_id))
            if lineage is not None:
                self._check_base_weights(lineage, base)
            return await self.launch(base, parent_id=run_id, reason=reason, force=True)
        child_recipe = recipe if recipe is not None else run.recipe
        run.relaunch = (child_recipe, [], "user", reason)
        self._begin_kill(run, "killed by the user for a relaunch", "user")
        if run.task is not None:  # the run's task launches the child right after the end
            await asyncio.shield(run.task)
        child = run.lineage.last_run_id
        if child == run_id:
            raise LaunchRefused(f"relaunch of {run_id} did not start (see the chain's reason)")
        return child

    def proposed_relaunch(self, run_id: str, rule: str | None = None) -> tuple[Any, list[Any]]:
        """The recipe the policy would relaunch with, and the changes (for the TUI's form)."""
        run = self._runs.get(run_id)
        recipe = run.recipe if run else self._recipe_from_history(run_id)
        rule = rule or (run.last_rule if run else "") or _first_relaunch_rule(recipe)
        if not rule:
            return recipe, []
        try:
            return self._adjusted(recipe, rule)
        except policy.ChainStop:
            return recipe, []

    def _recipe_from_history(self, run_id: str) -> Any:
        from supervisor import recipe as recipes

        rec = self.history.resolve(run_id)
        return recipes.recipe_from_yaml(rec.recipe_yaml, source=f"history:{rec.id}")

    def _live(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise KeyError(f"{run_id} is not a live run of this supervisor")
        return run

    def live_runs(self) -> list[str]:
        return list(self._runs)

    async def wait_lineage(self, run_id: str) -> RunEnded:
        """The final RunEnded of the last attempt of `run_id`'s lineage."""
        run = self._runs.get(run_id)
        lineage = run.lineage if run else self._lineage_of_id(run_id)
        if lineage is None or lineage.final is None:
            raise KeyError(f"{run_id} is not supervised here")
        return await asyncio.shield(lineage.final)

    # --- reattach and close ---------------------------------------------------------------

    async def attach(self, run_id: str) -> str:
        """Reattach a live run from the history and go on reading where the last reader
        stopped. A run whose process is gone is read to its end and closed. Returns its id."""
        rec = self.history.resolve(run_id)
        if rec.id in self._runs:
            raise AttachError(f"{rec.id} is supervised here already")
        if not rec.live:
            raise AttachError(f"{rec.id} has ended ({rec.status}: {rec.end_reason})")
        recipe = self._recipe_from_history(rec.id)
        lineage = self._lineage_for(rec) if rec.parent_id else None
        if lineage is None:
            lineage = self._lineages.get(rec.id) or _Lineage(rec.id, rec.base_fingerprint)
            lineage.final = lineage.final or asyncio.get_running_loop().create_future()
            self._lineages[rec.id] = lineage
        lineage.last_run_id = rec.id
        pid, start = rec.pid or 0, rec.proc_start_time or 0.0
        run = _Run(rec.id, recipe, rec.attempt, lineage, pid, pid, start, Path(rec.log_path), None)
        if not process.is_alive(pid, start):
            run.ending, run.ending_status = "ended while no ftmon watched it", "finished"
        self._start(run, offset=rec.offset, lineno=rec.lineno)
        self._emit(
            RunStarted(
                rec.id,
                self.clock(),
                rec.name,
                rec.attempt,
                rec.parent_id,
                rec.argv,
                rec.log_path,
                pid,
                reattached=True,
            )
        )
        return rec.id

    async def close(self, kill: bool = False) -> None:
        """Stop supervising. Runs keep running (their rows stay live, offsets saved, so
        `ftmon attach` resumes) unless `kill`, which kills them and waits for their ends."""
        runs = list(self._runs.values())
        if kill:
            for run in runs:
                run.relaunch = None
                self._begin_kill(run, "killed by ftmon: supervision closed", "close")
            await asyncio.gather(*(r.task for r in runs if r.task), return_exceptions=True)
            return
        for run in runs:
            if run.task is not None:
                run.task.cancel()
        await asyncio.gather(*(r.task for r in runs if r.task), return_exceptions=True)
        for run in runs:
            self._runs.pop(run.run_id, None)
            ended = RunEnded(
                run.run_id,
                self.clock(),
                None,
                None,
                f"detached: reattach with `ftmon attach {run.run_id}`",
                "detached",
            )
            self._emit(ended)
            lineage = run.lineage
            if lineage.final is not None and not lineage.final.done():
                lineage.final.set_result(ended)


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, list | tuple) else [value]


def _resource_interval(watch: Any) -> float:
    """The fastest poll the resource rules of the recipe ask for, within 20 Hz."""
    asked = []
    for name in ("vram", "host_mem"):
        settings = getattr(watch, name, None) if watch is not None else None
        secs = getattr(settings, "poll_secs", None) if settings is not None else None
        if secs:
            asked.append(float(secs))
    return max(MIN_RESOURCE_SECS, min(asked) if asked else DEFAULT_RESOURCE_SECS)


def _first_relaunch_rule(recipe: Any) -> str:
    on = getattr(recipe, "on", None) or {}
    items = on.items() if hasattr(on, "items") else []
    for rule, entry in items:
        if policy.decide(recipe, rule).kind == "relaunch" and entry is not None:
            return str(rule)
    return ""


def _fingerprint(planning: Any, recipe: Any) -> Any:
    try:
        return planning.fingerprint_base_weights(recipe)
    except (OSError, ValueError):
        return None


def _changes_of(reason: str) -> list[str]:
    head, _, rest = reason.partition(": ")
    return [c for c in rest.split("; ") if c] if head.startswith("relaunch after") else []
