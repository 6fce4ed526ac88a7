"""Supervised runs: launch a recipe, watch its log, apply the policy, relaunch from base weights.

One `Supervisor` serves the headless `ftmon run` / `ftmon attach` and the TUI. It runs on asyncio
and reports what happens as `run_events` facts to one callback, in order. Each run has one task:
`watch.watch_log` (the loop `--watch` uses too) reads the log through a `_RunMonitor`, which
stores each batch's metrics together with the byte offset just past it (one transaction: a
supervisor that dies loses nothing, a reattached one reads no line twice), samples resources at
the recipe's rate and ends when the process does. The policy acts on each anomaly as it comes;
after the end the task relaunches when the policy (or the user) asked for it.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil

from supervisor.events import Anomaly, Severity
from supervisor.recipe.model import Recipe, RecipeError
from supervisor.runs import checkpoints, policy, writes
from supervisor.runs import plan as planning
from supervisor.runs.deciding import _relaunch_decision
from supervisor.runs.events import (
    ChainStopped,
    RunEnded,
    RunEvent,
    RunRelaunched,
    RunResumed,
    RunStarted,
)
from supervisor.runs.executors.base import Executor, LaunchSpec, RunHandle, SpawnError
from supervisor.runs.executors.choose import ByHandle, executor_for
from supervisor.runs.reattach import Reattaching, process_alive
from supervisor.runs.replay import replay_recipe
from supervisor.runs.state import RunState
from supervisor.runs.supervise_run import _Lineage, _Run, _settle
from supervisor.store.history import History
from supervisor.store.schema import RunEnd, replay_reason

# Inherited variables worth keeping in the history beside the recipe's own env: they change
# what a run does, and a pasted command should set them as the run had them.
RELEVANT_INHERITED = (
    "CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "PYTORCH_CUDA_ALLOC_CONF", "HF_HOME",
    "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "OMP_NUM_THREADS",
)  # fmt: skip


class LaunchRefused(Exception):
    """The recipe will not be launched (the memory estimate says it does not fit, a redacted
    secret is missing from the environment, the folder cannot be written). For a person."""


class Supervisor(Reattaching):
    """Launches and supervises runs; see the module docstring. All methods run on one loop."""

    def __init__(
        self,
        history: History,
        logs_dir: Path,
        on_event: Callable[[RunEvent], None],
        clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
    ) -> None:
        self.history = history
        # By default each run is acted on by the executor that started it (local, torchrun, Slurm).
        self.executor: Executor = executor if executor is not None else ByHandle()
        self.logs_dir = Path(logs_dir)
        self.on_event = on_event
        self.clock = clock
        self._runs: dict[str, _Run] = {}
        # This process, as the owner of the runs it supervises (see History.claim).
        self._me = (os.getpid(), psutil.Process().create_time())
        self._lineages: dict[str, _Lineage] = {}  # by the id of any run of it, as it goes
        if isinstance(self.executor, ByHandle):  # a Slurm job's queue state is news
            self.executor.slurm.on_state = self._job_state

    def _job_state(self, handle: RunHandle, info: Any) -> None:
        """A Slurm job moved (`PENDING (Resources)`, `RUNNING on node7`): said, and recorded."""
        for run in list(self._runs.values()):
            if run.handle.job_id == handle.job_id:
                said = f"job {info.job_id} {info.summary()}"
                self._on_anomaly(run, Anomaly("slurm", Severity.INFO, said, self.clock()))

    # --- launch ---------------------------------------------------------------------------

    async def launch(
        self,
        recipe: Recipe,
        *,
        parent_id: str | None = None,
        reason: str = "",
        force: bool = False,
        changes: Sequence[str] = (),
        fresh: bool = False,
    ) -> str:
        """Plan, write the run folder, spawn, record, start watching; returns the run id.

        Raises LaunchRefused when the memory estimate says it does not fit (unless `force`) or
        the run cannot be planned. A command that cannot be started gives a run that ends at
        once as failed, in the history with the reason. `changes` are what a relaunch changed
        (for the history); `fresh` starts a new lineage even with a parent (a replay: its own
        relaunch budget and base-weights fingerprint).
        """
        warning = "" if force else self._preflight(recipe)
        parent = self.history.get(parent_id) if parent_id else None
        attempt = parent.attempt + 1 if parent else 1
        lineage = None if fresh else self._lineage_for(parent)
        run_id = planning.new_run_id(recipe.name, attempt, logs_dir=self.logs_dir)
        while self.history.get(run_id) is not None:  # a db shared with another logs folder
            run_id = planning.new_run_id(recipe.name, attempt, logs_dir=self.logs_dir)
        try:
            plan = planning.plan_run(recipe, run_id, attempt, self.logs_dir)
            planning.check_launchable(plan)  # the program and its folder exist
            unsafe = writes.check_launch(plan, force)  # what it writes is safe to relaunch
            planning.write_run_files(plan)
        except RecipeError as exc:
            raise LaunchRefused(str(exc)) from exc
        except OSError as exc:
            raise LaunchRefused(f"{recipe.name}: cannot write the run folder: {exc}") from exc
        if lineage is None:
            fp = planning.base_weights_fingerprint(recipe.base_weights, plan.cwd)
            lineage = _Lineage(run_id, fp, asyncio.get_running_loop().create_future())
        lineage.last_run_id = run_id
        self._lineages[run_id] = lineage
        env = {k: v for k, v in plan.env.items() if k in RELEVANT_INHERITED}
        env.update(plan.recipe_env, PYTHONUNBUFFERED="1")
        now = self.clock()
        common: dict[str, Any] = dict(
            run_id=run_id, name=recipe.name, started_at=now, parent_id=parent_id, attempt=attempt,
            reason_started=reason, recipe_yaml=recipe.to_yaml(), argv=plan.argv_shown,
            cwd=str(plan.cwd), env=planning.redact_env(env), run_dir=str(plan.run_dir),
            log_path=str(plan.log_path), changes=list(changes),
            base_fingerprint=lineage.fingerprint if lineage.root_id == run_id else None,
        )  # fmt: skip
        spec = LaunchSpec(run_id, tuple(plan.argv), plan.env, plan.cwd, plan.run_dir, plan.log_path)
        try:
            handle = executor_for(recipe, self.executor).spawn(spec)
        except SpawnError as exc:
            self.history.add_run(**common, status=RunState.STARTING.value)
            run = _Run(run_id, recipe, attempt, lineage, RunHandle("", 0, 0.0, (plan.log_path,)))
            self._change(run, RunState.STARTING, reason or "launched")
            self._emit(RunStarted(run_id, now, recipe.name, attempt, parent_id,
                                  tuple(plan.argv_shown), str(plan.log_path), 0))  # fmt: skip
            why = f"could not start: {exc}"
            self._change(run, RunState.FAILED_TO_START, why, end=RunEnd(None, None, why))
            ended = RunEnded(run_id, self.clock(), None, None, why, "failed")
            self._emit(ended)
            _settle(lineage.final, ended)
            return run_id
        self.history.add_run(
            **common, pid=handle.pid, proc_start_time=handle.start_time,
            status=RunState.STARTING.value,
        )  # fmt: skip
        self.history.set_handle(run_id, self.executor.describe(handle))
        self.history.claim(run_id, *self._me, process_alive)
        run = _Run(run_id, recipe, attempt, lineage, handle)
        self._change(run, RunState.STARTING, reason or "launched")
        self._emit(RunStarted(run_id, now, recipe.name, attempt, parent_id,
                              tuple(plan.argv_shown), str(plan.log_path), handle.pid))  # fmt: skip
        how = f"pid {handle.pid}" if handle.pid else f"{handle.executor} job {handle.job_id}"
        self._change(run, RunState.RUNNING, f"started as {how}")
        if warning:
            self._act(run_id, "alert", "preflight", warning)
        if unsafe:
            self._act(run_id, "alert", "writes", writes.forced_note(unsafe))
        self._start(run, offset=0, lineno=0)
        return run_id

    def _preflight(self, recipe: Recipe) -> str:
        """Refuse a recipe the memory estimate says does not fit; a warning when it is near
        the card's limit (\"\" when not, or when no estimate can be made)."""
        if not recipe.preflight.enabled:
            return ""
        try:
            from supervisor.estimate.preflight import preflight
        except ImportError:  # estimate.py is optional
            return ""
        try:
            result = preflight(recipe, gpu_gb=recipe.preflight.gpu_gb)
        except Exception:  # an estimate that cannot be made is no reason to refuse a run
            return ""
        if result.near_limit:
            return f"near the memory limit: peak {result.peak_gb:.1f} of {result.gpu_gb:.1f} GB"
        if not result.fits:
            raise LaunchRefused(
                f"{recipe.name}: the memory estimate says it does not fit (--force launches it"
                f" anyway)\n{result.report}".rstrip()
            )
        return ""

    async def _after_end(self, run: _Run, ended: RunEnded) -> None:
        """Relaunch if the policy (or the user) decided so, then close the run: its end state
        written with the relaunch (or the chain's stop) and its decision marked done."""
        if run.chain_stop is not None:
            self._stop_chain(run, *run.chain_stop, ended)
        elif run.relaunch is not None:
            recipe, changes, rule, reason = run.relaunch
            if run.state is not RunState.RELAUNCHING:
                # Journaled with the kill, unless the relaunch came later (the user asked for
                # one during a kill, or the exit rule's policy): then the kill is done, and the
                # relaunch is written down now, before it is carried out.
                journal, done = None, ""
                if run.decision_kind != "relaunch":
                    journal = _relaunch_decision(run.relaunch)
                    done = ended.reason if run.decision is not None else ""
                self._change(run, RunState.RELAUNCHING, reason, rule, decide=journal, done=done)
            try:
                self._check_base_weights(run.lineage, recipe)
                recipe, changes = checkpoints.start_from(
                    self.history, run.run_id, recipe, rule, changes
                )
                child = await self.launch(
                    recipe, parent_id=run.run_id, reason=reason, force=True, changes=changes
                )
            except (policy.ChainStop, LaunchRefused) as exc:
                self._stop_chain(run, rule, str(exc), ended)
                return
            if rule != "user":
                run.lineage.by_rule[rule] += 1
            detail = f"{child}: {'; '.join(changes) or 'no changes'}"
            self._close(run, ended, rule=rule, action=("relaunch", detail, True),
                        outcome=f"relaunched as {child}")  # fmt: skip
            self._emit(RunRelaunched(run.run_id, child, self.clock(), reason, tuple(changes)))
        else:
            done = f"relaunched as {run.relaunched_as}" if run.relaunched_as else ""
            self._close(run, ended, outcome=done)
            _settle(run.lineage.final, ended)

    def _stop_chain(self, run: _Run, rule: str, reason: str, ended: RunEnded) -> None:
        self._close(
            run, ended, rule=rule, action=("relaunch", f"chain stopped: {reason}", False),
            outcome=f"chain stopped: {reason}",
        )  # fmt: skip
        self._emit(ChainStopped(run.run_id, self.clock(), reason))
        _settle(run.lineage.final, ended)

    def _check_base_weights(self, lineage: _Lineage, recipe: Recipe) -> None:
        if lineage.fingerprint is None:
            return
        # A relaunch starts where the recipe says (no `cwd`: where ftmon is), known before its
        # plan unless `cwd` has a placeholder; then the first launch's folder is checked.
        cwd = None if recipe.cwd and "{" in recipe.cwd else planning.run_cwd(recipe, {})
        problem = planning.check_base_weights(recipe.base_weights, lineage.fingerprint, cwd)
        if problem:
            raise policy.ChainStop(f"base weights changed since the first launch: {problem}")

    # --- what the user (TUI) can do -------------------------------------------------------

    async def pause(self, run_id: str) -> None:
        run = self._live(run_id)
        self._pause(run, "paused by the user; resume it, relaunch it or kill it", "user")

    async def resume(self, run_id: str) -> None:
        run = self._live(run_id)
        if run.state is RunState.PAUSED and self.executor.resume(run.handle):
            self._resumed(run, "resumed by the user", "user")

    def _resumed(self, run: _Run, detail: str, rule: str) -> None:
        """The run goes on (resumed by ftmon or by anyone): recorded now, and the stall clock
        restarts now."""
        self._change(run, RunState.RUNNING, detail, rule, action=("resume", detail, True))
        if run.monitor is not None:
            run.monitor.resumed(self.clock())
        self._emit(RunResumed(run.run_id, self.clock()))

    async def kill(self, run_id: str, reason: str = "killed by the user") -> RunEnded:
        """Kill a live run (TERM, grace, KILL, sweep) and return how it ended."""
        run = self._live(run_id)
        run.relaunch = run.chain_stop = None
        self._begin_kill(run, reason, "user")
        assert run.ended is not None
        return await asyncio.shield(run.ended)

    async def relaunch(
        self, run_id: str, recipe: Recipe | None = None, reason: str = "relaunched by the user"
    ) -> str:
        """Kill the run if it is live, then start a child from `recipe` (default: the run's own
        recipe, unchanged) from the base weights. Returns the child's id. Raises LaunchRefused,
        leaving a live run alone, when the base weights changed since the lineage's first
        launch or the child cannot be planned."""
        run = self._runs.get(run_id)
        rec = self.history.resolve(run_id)
        old = run.recipe if run is not None else self._recipe_from_history(rec.id)
        child_recipe = recipe if recipe is not None else old
        changes = policy.recipe_changes(old, child_recipe)
        lineage = run.lineage if run is not None else self._lineage_for(rec)
        try:
            if lineage is not None:
                self._check_base_weights(lineage, child_recipe)
        except policy.ChainStop as exc:
            raise LaunchRefused(f"not relaunching {rec.id}: {exc}") from exc
        if run is None:
            return await self.launch(
                child_recipe, parent_id=rec.id, reason=reason, force=True, changes=changes
            )
        run.relaunch = (child_recipe, changes, "user", reason)
        run.chain_stop = None
        self._begin_kill(run, "killed by the user for a relaunch", "user")
        if run.task is not None:  # the task launches the child right after the run's end
            await asyncio.shield(run.task)
        if run.lineage.last_run_id == run_id:
            raise LaunchRefused(f"the relaunch of {run_id} did not start (see its actions)")
        return run.lineage.last_run_id

    async def replay(self, run_ref: str, sets: Sequence[str] = (), force: bool = False) -> str:
        """Run a recorded run again (`ftmon replay`, the TUI's history screen): its recipe with
        `sets` applied, in the folder it ran in, as a new lineage that names the run it
        replays. Returns the new run's id; raises RecipeError or LaunchRefused."""
        rec = self.history.resolve(run_ref)
        recipe, changes = replay_recipe(rec, sets)
        return await self.launch(
            recipe, parent_id=rec.id, reason=replay_reason(rec.id), force=force, fresh=True,
            changes=changes,
        )  # fmt: skip

    def proposed_relaunch(self, run_id: str, rule: str | None = None) -> tuple[Recipe, list[str]]:
        """The recipe the policy would relaunch with and the changes (the TUI prefills its
        form with them). Without a rule: the rule that last fired, else the first relaunch
        policy of the recipe; no changes when nothing applies or the adjustment is exhausted."""
        run = self._runs.get(run_id)
        recipe = run.recipe if run else self._recipe_from_history(run_id)
        rule = rule or (run.last_rule if run else "") or policy.first_relaunch_rule(recipe)
        if not rule or policy.policy_for(recipe, rule) is None:
            return recipe, []
        try:
            return self._adjusted(recipe, rule)
        except policy.ChainStop:
            return recipe, []

    def _live(self, run_id: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None:
            raise KeyError(f"{run_id} is not a live run of this supervisor")
        return run

    def live_runs(self) -> list[str]:
        return list(self._runs)

    async def wait_lineage(self, run_id: str) -> RunEnded:
        """The RunEnded of the last attempt of `run_id`'s lineage (after any relaunches)."""
        lineage = self._lineages.get(run_id)
        if lineage is None:
            raise KeyError(f"{run_id} is not supervised here")
        return await asyncio.shield(lineage.final)

    # --- close ------------------------------------------------------------------------------

    async def close(self, kill: bool = False) -> None:
        """Stop supervising. Runs keep running (rows stay live, offsets saved: `ftmon attach`
        resumes) unless `kill`, which kills them and waits for their ends."""
        runs = list(self._runs.values())
        for run in runs:
            if kill:
                run.relaunch = run.chain_stop = None
                self._begin_kill(run, "killed by ftmon: supervision closed", "close")
            elif not run.kill_reason:  # a kill under way is seen through to the run's end
                run.stop.set()
        await asyncio.gather(*(r.task for r in runs if r.task), return_exceptions=True)
