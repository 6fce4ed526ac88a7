"""Reattaching a run from the history, and finishing what an ftmon that died left half done:
`attach` reads on from the stored offset (no line twice, none skipped), and takes up the run's
open decision (journaled before it was carried out): a kill is done, a relaunch is started
with the recipe the decision names, unless its child had started already. Also the lineage and
recipe of a recorded run, which launch and relaunch read too.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

from supervisor.reading.identity import LogHead, check_resume
from supervisor.recipe.model import Recipe, RecipeError
from supervisor.runs.deciding import Deciding
from supervisor.runs.events import RunPaused, RunStarted
from supervisor.runs.executors.base import RunHandle
from supervisor.runs.replay import recorded_recipe, recorded_recipe_text
from supervisor.runs.state import RunState, state_of
from supervisor.runs.supervise_run import _Lineage, _Run
from supervisor.store.history import RunRecord
from supervisor.store.schema import Decision


class AttachError(Exception):
    """The run cannot be reattached (unknown, ended, supervised here already)."""


class Reattaching(Deciding):
    """Reattach and recorded runs; see the module docstring."""

    _lineages: dict[str, _Lineage]  # by the id of any run of it (the Supervisor's)

    def _lineage_for(self, parent: RunRecord | None) -> _Lineage | None:
        """The lineage a child joins: the one in memory, else rebuilt from the history (a
        replay of an old run, a relaunch after a reattach)."""
        if parent is None:
            return None
        if parent.id in self._lineages:
            return self._lineages[parent.id]
        chain = self.history.lineage(parent.id)
        lineage = _Lineage(
            chain[0].id, chain[0].base_fingerprint, asyncio.get_running_loop().create_future()
        )
        for rec in chain:
            for action in self.history.actions(rec.id):
                if action.kind == "relaunch" and action.ok and action.rule != "user":
                    lineage.by_rule[action.rule] += 1
            self._lineages[rec.id] = lineage
        return lineage

    def _recipe_from_history(self, run_id: str) -> Recipe:
        """The recorded recipe; without a `cwd` of its own it gets the folder the run ran in,
        so that a relaunch from an ftmon started elsewhere runs where the run did."""
        return recorded_recipe(self.history.resolve(run_id))

    async def attach(self, run_id: str) -> str:
        """Reattach a run from the history and read on from the stored offset and line number:
        no line twice, none skipped. A run whose process has gone (or whose pid now names
        another process) is read to its end and closed. Returns the run's id."""
        rec = self.history.resolve(run_id)
        if rec.id in self._runs:
            raise AttachError(f"{rec.id} is supervised here already")
        if not rec.live:
            why = f" ({rec.end_reason})" if rec.end_reason not in ("", rec.status) else ""
            raise AttachError(
                f"{rec.id} has ended: {rec.status}{why}; nothing to reattach. "
                f"See it with `ftmon show {rec.id}`, run it again with `ftmon replay {rec.id}`"
            )
        try:
            recipe = self._recipe_from_history(rec.id)
        except RecipeError as exc:
            raise AttachError(f"{rec.id}: the recorded recipe no longer loads: {exc}") from exc
        lineage = self._lineage_for(rec) if rec.parent_id else None
        if lineage is None:
            lineage = _Lineage(
                rec.id, rec.base_fingerprint, asyncio.get_running_loop().create_future()
            )
        lineage.last_run_id = rec.id
        self._lineages[rec.id] = lineage
        owner = self.history.claim(rec.id, *self._me, process_alive)
        if owner is not None:
            raise AttachError(
                f"{rec.id} is supervised by another ftmon (pid {owner}); stop that one first"
            )
        pid, start = rec.pid or 0, rec.proc_start_time or 0.0
        if rec.executor:  # the row's pid and start time name the process (the columns rule)
            described = {**rec.executor, "pid": pid, "start_time": start}
            handle = self.executor.handle_from(described)
        else:  # a run recorded before handles were: a local process group
            handle = RunHandle("local", pid, start, (Path(rec.log_path),), extra={"pgid": pid})
        run = _Run(rec.id, recipe, rec.attempt, lineage, handle)
        run.state = state_of(rec.status) or RunState.RUNNING
        pending = self._resume_decision(run, rec)
        self._emit(RunStarted(
            rec.id, self.clock(), rec.name, rec.attempt, rec.parent_id, rec.argv, rec.log_path,
            handle.pid, reattached=True, finishing=pending.kind if pending else "",
            finishing_rule=pending.rule if pending else "",
            decided_at=pending.ts if pending else 0.0,
        ))  # fmt: skip
        # A log truncated or replaced while no ftmon watched is read again from its start (B).
        stored = LogHead(rec.log_head_len, rec.log_head_sha) if rec.log_head_len else None
        resume = check_resume(handle.log_path, rec.offset, rec.lineno, stored)
        if resume.restarted:
            self._act(rec.id, "alert", "log", resume.reason)
        run.log_head = None if resume.restarted else stored
        rec = dataclasses.replace(rec, offset=resume.offset, lineno=resume.lineno)
        if run.state is RunState.PAUSED:
            why = "was paused when reattached; resume it, relaunch it or kill it"
            self._emit(RunPaused(rec.id, self.clock(), why))
        if not self.executor.alive(handle):
            await self._catch_up(run, rec)  # its decision, if any, is finished there
            return rec.id
        self._start(run, offset=rec.offset, lineno=rec.lineno)
        if pending is not None and pending.kind in ("kill", "relaunch"):
            if run.state is not RunState.KILLING:
                self._change(run, RunState.KILLING, run.kill_reason, pending.rule)
            run.killing = asyncio.ensure_future(self._kill(run, pending.rule))
        elif pending is not None and pending.kind == "pause":
            if self.executor.pause(handle):
                self._change(run, RunState.PAUSED, pending.reason, pending.rule,
                             action=("pause", pending.reason, True), done="paused")  # fmt: skip
            else:
                self._change(run, RunState.RUNNING, "nothing to pause", done="gone")
        return rec.id

    def _resume_decision(self, run: _Run, rec: RunRecord) -> Decision | None:
        """The decision an ftmon that died left unfinished, taken up again: a kill's reason, a
        relaunch's recipe and changes (journaled before they were carried out)."""
        pending = self.history.decisions(rec.id, open_only=True)
        if not pending:
            return None
        decision = pending[-1]
        run.decision, run.decision_kind = decision.id, decision.kind
        if decision.kind == "relaunch":
            run.kill_reason = _kill_reason(decision.rule)
            started = [c for c in self.history.children(rec.id) if c.started_at >= decision.ts]
            if started:  # it died after the child started, before closing the run: not twice
                run.relaunched_as = started[0].id
                return decision
            child = recorded_recipe_text(decision.recipe_yaml, rec.cwd, f"{rec.id} (decision)")
            run.relaunch = (child, list(decision.changes), decision.rule, decision.reason)
        elif decision.kind == "kill":
            run.kill_reason = decision.reason
        return decision


def _kill_reason(rule: str) -> str:
    """Why a run is killed for a relaunch (the relaunch decision names the rule)."""
    if rule == "user":
        return "killed by the user for a relaunch"
    return f"killed by ftmon: rule {rule}"


def process_alive(pid: int, start: float) -> bool:
    """Whether the supervisor (an ftmon) that owns a run is still alive (History.claim)."""
    from supervisor.runs.executors.process import is_alive

    return is_alive(pid, start)
