"""What the supervisor decides for a run and carries out: the one policy engine on each anomaly
(runs/engine.py), a pause, a kill (journaled with the move to `killing`, then carried out by the
executor while reading goes on), and the child's recipe a relaunch will start from.
supervise.py's `Supervisor` builds on this (launch, what follows a run's end, what a user can
do); reattach.py finishes what an ftmon that died left half done.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from supervisor.events import Anomaly, Severity
from supervisor.recipe.model import Recipe, RecipeError
from supervisor.redaction import redact_anomaly
from supervisor.runs import adjust, policy, writes
from supervisor.runs.engine import PolicyEngine
from supervisor.runs.events import AnomalyFound, RunPaused
from supervisor.runs.executors.torchrun import pause_warning
from supervisor.runs.state import SIGNALLABLE_STATES, RunState
from supervisor.runs.supervise_run import RunWatching, _Run
from supervisor.store.schema import Decision


class Deciding(RunWatching):
    """The policy and the acts it decides; see the module docstring."""

    def _on_anomaly(self, run: _Run, anomaly: Any) -> None:
        """Record an anomaly and act on it as the recipe says, through the one policy engine
        (runs/engine.py; called by watch_log in line order; a kill is started here and runs
        in a worker thread while reading goes on)."""
        if not isinstance(anomaly, Anomaly):
            return
        anomaly = redact_anomaly(dataclasses.replace(anomaly, run_id=run.run_id))
        self._emit(AnomalyFound(run.run_id, anomaly.ts, anomaly))
        if anomaly.severity >= Severity.ERROR and anomaly.rule != "exit":
            run.errors += 1
        run.unrecorded = anomaly  # written with the state change it causes, if it causes one
        try:
            self._apply_policy(run, anomaly)
        finally:
            if run.unrecorded is not None:  # it changed no state: written on its own
                run.unrecorded = None
                self.history.add_anomaly(run.run_id, anomaly)

    def _apply_policy(self, run: _Run, anomaly: Anomaly) -> None:
        """The one policy engine's decision for `anomaly`, carried out."""
        engine = PolicyEngine(lambda rule: policy.action_for(run.recipe, rule))
        followed = run.relaunch is not None or run.chain_stop is not None
        if run.state is None or run.kill_reason:
            return  # already being stopped
        kind = engine.decide(run.state, anomaly, followed=followed)
        if not kind:
            return
        run.last_rule = anomaly.rule
        if kind == "alert":
            self._act(run.run_id, "alert", anomaly.rule, anomaly.message)
        elif kind == "pause":
            why = policy.pause_reason(anomaly.rule, anomaly.message, run.pid)
            self._pause(run, why, anomaly.rule)
        elif kind == "kill":
            self._begin_kill(run, f"killed by ftmon: rule {anomaly.rule}", anomaly.rule)
        elif kind == "relaunch":
            self._plan_policy_relaunch(run, anomaly.rule)
            if run.state in SIGNALLABLE_STATES:  # not a rule that fired on the exit itself
                self._begin_kill(run, f"killed by ftmon: rule {anomaly.rule}", anomaly.rule)

    def _plan_policy_relaunch(self, run: _Run, rule: str) -> None:
        """Work out the child's recipe before the kill; a chain that cannot go on is stopped
        (and told) once the run has ended."""
        try:
            policy.check_relaunch_allowed(run.recipe, rule, run.lineage.by_rule, run.attempt)
            recipe, changes = self._adjusted(run.recipe, rule)
        except policy.ChainStop as exc:
            run.relaunch, run.chain_stop = None, (rule, str(exc))
            return
        run.relaunch = (recipe, changes, rule, policy.relaunch_reason(rule, changes))

    def _adjusted(self, recipe: Recipe, rule: str) -> tuple[Recipe, list[str]]:
        try:
            new, changes = adjust.relaunch_recipe(recipe, rule)
        except adjust.AdjustmentExhausted as exc:
            raise policy.ChainStop(exc.reason) from exc
        except RecipeError as exc:
            raise policy.ChainStop(f"the adjusted recipe is not valid: {exc}") from exc
        return new, [str(c) for c in changes]

    def _begin_kill(self, run: _Run, reason: str, rule: str) -> None:
        """Journal the decision (kill, or the relaunch that follows it) with the move to
        `killing`, then kill; the decision is marked done when the run is closed."""
        if run.kill_reason or run.state not in SIGNALLABLE_STATES:
            return
        if not self.executor.alive(run.handle):
            # The rule fired on the last lines of a run that has already exited (they are read
            # before its exit is fed): nothing to kill, and its own exit status says how it
            # ended.
            return
        run.kill_reason = reason
        if run.relaunch is not None:
            journal = _relaunch_decision(run.relaunch)
        else:
            journal = Decision("kill", rule, reason)
        self._change(run, RunState.KILLING, reason, rule, decide=journal)
        run.killing = asyncio.ensure_future(self._kill(run, rule))

    async def _kill(self, run: _Run, rule: str) -> None:
        saved = await writes.wait_before_kill(
            run.recipe, run.run_id, run.attempt, run.handle.log_path
        )  # a checkpoint being written is finished first: a kill must not corrupt it
        report = await self.executor.kill(run.handle, run.recipe.kill_grace_secs)
        detail = f"{run.kill_reason}: {saved}{report.detail()}"
        self._act(run.run_id, "kill", rule, detail, ok=report.all_gone)

    def _pause(self, run: _Run, reason: str, rule: str) -> None:
        """Journal the pause with the move to `pausing`, stop the run, confirm."""
        if run.state is not RunState.RUNNING:
            return
        self._change(run, RunState.PAUSING, reason, rule, decide=Decision("pause", rule, reason))
        if self.executor.pause(run.handle):
            self._change(
                run, RunState.PAUSED, reason, rule, action=("pause", reason, True), done="paused"
            )
            # A distributed job must be resumed before its process group times out.
            warning = pause_warning(run.handle)
            said = f"{reason}; {warning}" if warning else reason
            self._emit(RunPaused(run.run_id, self.clock(), said))
        else:
            self._change(run, RunState.RUNNING, "nothing to pause: the process is gone", rule,
                         done="the process is gone")  # fmt: skip


def _relaunch_decision(relaunch: tuple[Recipe, list[str], str, str]) -> Decision:
    recipe, changes, rule, reason = relaunch
    return Decision("relaunch", rule, reason, recipe.to_yaml(), tuple(changes))
