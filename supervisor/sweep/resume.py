"""`ftmon sweep --resume SWEEP`: carry on a sweep whose `ftmon sweep` stopped (Ctrl-C, a lost SSH
session, a crash) in the same sweep, without running again what ran.

The sweep is read back from the history: its recipe as recorded (so the same members, the same
policies, the same `max_parallel`), its members and their runs. A member never launched (still
`queued`) is started through the same queue and capacity as `ftmon sweep`; a member whose lineage
ended is left as it is; a member whose run is still alive is adopted: reattached as `ftmon attach`
does (the run is read on from its stored offset, an open decision is finished) and it holds its
slot until its lineage ends. A run another ftmon supervises (an `ftmon attach` in another
terminal) is waited for, its slot held, and adopted if that ftmon lets go of it.

One ftmon drives a sweep at a time: `ftmon sweep` and `--resume` claim it in the history
(`History.claim_sweep`, one write transaction: check the driver, take it), so of two resumes
started together one starts the queued members and the other refuses; a driver that died is
replaced. The claim is made before the members are read, so what the last driver launched is seen.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from supervisor.recipe.model import Recipe, RecipeError, recipe_from_yaml
from supervisor.store.history import History, RunRecord, SweepRecord
from supervisor.sweep.expand import Member, expand
from supervisor.sweep.prune import Pruner
from supervisor.sweep.queue import Adopted, MemberOutcome, SweepQueue, visible_devices
from supervisor.sweep.study import capacity_for, describe, driver_identity, make_queue

# How often a member supervised by another ftmon is looked at (its end, or that it was let go).
ELSEWHERE_POLL_SECS = 2.0


class ResumeError(Exception):
    """The sweep cannot be resumed (unknown, its recipe no longer expands to its members, or
    another ftmon drives it); a one-line reason."""


@dataclass
class ResumePlan:
    """What a resume finds: members to start, members whose runs are alive, members over."""

    sweep: SweepRecord
    recipe: Recipe
    queued: list[Member] = field(default_factory=list)
    alive: list[tuple[Member, RunRecord]] = field(default_factory=list)  # the newest live run
    ended: list[tuple[Member, str]] = field(default_factory=list)  # how each ended

    @property
    def nothing_left(self) -> bool:
        return not self.queued and not self.alive

    def summary(self) -> str:
        """`2 to start, 1 running, 1 ended (finished)`."""
        counts: dict[str, int] = {}
        for _, status in self.ended:
            counts[status] = counts.get(status, 0) + 1
        how = ", ".join(f"{n} {status}" for status, n in counts.items())
        ended = f"{len(self.ended)} ended" + (f" ({how})" if how else "")
        return f"{len(self.queued)} to start, {len(self.alive)} running, {ended}"


def recorded_study(history: History, ref: str) -> tuple[SweepRecord, Recipe, list[Member]]:
    """The sweep `ref` (id or unique prefix), its recorded recipe and its members expanded
    again; ResumeError when unknown or when they no longer match the recorded members."""
    sweep = history.sweep(ref)
    if sweep is None:
        raise ResumeError(history.why_no_sweep(ref))
    if not sweep.recipe_yaml:
        raise ResumeError(f"{sweep.id}: no recipe was recorded with this sweep")
    try:
        recipe = recipe_from_yaml(sweep.recipe_yaml, f"sweep {sweep.id}")
        if recipe.cwd is None and sweep.cwd:  # run where the study ran
            recipe = recipe.model_copy(update={"cwd": sweep.cwd})
        members = expand(recipe)
    except RecipeError as exc:
        raise ResumeError(f"{sweep.id}: the recorded recipe no longer loads: {exc}") from exc
    recorded = {m.member: _canonical(m.values) for m in history.sweep_members(sweep.id)}
    expanded = {m.index: _canonical(m.values) for m in members}
    if recorded != expanded:
        differ = sorted(i for i in recorded.keys() | expanded.keys()
                        if recorded.get(i) != expanded.get(i))  # fmt: skip
        raise ResumeError(
            f"{sweep.id}: the recorded recipe no longer expands to the recorded members "
            f"(member {differ[0]} differs); `ftmon replay {sweep.id}` starts it afresh"
        )
    return sweep, recipe, members


def plan_resume(history: History, ref: str) -> ResumePlan:
    """Each member of the sweep sorted into queued, alive (its newest live run) or ended."""
    from supervisor.report.compare import lineage_down

    sweep, recipe, members = recorded_study(history, ref)
    by_index = {m.index: m for m in members}
    plan = ResumePlan(sweep, recipe)
    for row in history.sweep_members(sweep.id):
        member = by_index[row.member]
        if row.run_id is None:
            if row.status == "queued":
                plan.queued.append(member)
            else:  # refused (never launched)
                plan.ended.append((member, row.status))
            continue
        chain = lineage_down(history, row.run_id)
        live = [rec for rec in chain if rec.live]
        if live:
            plan.alive.append((member, live[-1]))
        else:
            last = chain[-1].status if chain else "unknown"
            plan.ended.append((member, "pruned" if row.status == "pruned" else last))
    return plan


def claim(history: History, sweep_id: str, me: tuple[int, float]) -> None:
    """Become the sweep's driver, or ResumeError naming the ftmon that is."""
    from supervisor.runs.reattach import process_alive

    owner = history.claim_sweep(sweep_id, *me, process_alive)
    if owner is not None:
        raise ResumeError(
            f"{sweep_id} is being driven by another ftmon (pid {owner}); "
            "stop that one first, or let it finish"
        )


async def resume_study(
    supervisor: Any,
    history: History,
    ref: str,
    *,
    gpu: Any,
    max_parallel: int | None = None,
    on_line: Callable[[str], None] = lambda line: None,
    on_queue: Callable[[SweepQueue], None] = lambda queue: None,
) -> tuple[ResumePlan, list[MemberOutcome]]:
    """Claim the sweep, adopt its live members, start its queued ones, wait for all of them;
    returns the plan as found after the claim and the outcome of each member it dealt with.
    ResumeError before anything started."""
    sweep_id = recorded_study(history, ref)[0].id
    me = driver_identity()
    claim(history, sweep_id, me)
    try:
        plan = plan_resume(history, sweep_id)  # read after the claim: nothing started since
        spec = plan.recipe.sweep
        assert spec is not None
        capacity = capacity_for(gpu, max_parallel or spec.max_parallel)
        on_line(f"{sweep_id}: resumed: {plan.summary()}; {describe(capacity)}")
        pruner = Pruner(history, spec.prune) if spec.prune is not None else None
        queue = make_queue(supervisor, history, sweep_id, capacity, on_line, pruner)
        on_queue(queue)  # before the adoptions: a Ctrl-C during them stops the queue too
        adopted = [await _adopt(supervisor, history, m, rec, on_line) for m, rec in plan.alive]
        outcomes = await queue.run(plan.queued, [a for a in adopted if a is not None])
    finally:
        history.release_sweep(sweep_id, me[0])
    return plan, outcomes


@dataclass(frozen=True)
class _Ended:
    """How a member supervised elsewhere ended, as the queue reads a RunEnded."""

    status: str
    reason: str


async def _adopt(
    sup: Any, history: History, member: Member, rec: RunRecord, on_line: Callable[[str], None]
) -> Adopted | None:
    """Reattach the member's live run (it counts against the capacity while alive); one that
    another live ftmon supervises is waited for instead. None: it cannot be followed at all."""
    from supervisor.runs.reattach import AttachError

    device = _device_of(rec)
    try:
        run_id = await sup.attach(rec.id)
    except AttachError as exc:
        if not _owned_elsewhere(history, rec.id):
            on_line(f"{rec.id}: member {member.index} cannot be adopted: {exc}")
            return None
        on_line(f"{rec.id}: member {member.index} is supervised by another ftmon; waiting for it")
        return Adopted(member, rec.id, lambda: _wait_elsewhere(sup, history, rec.id), device)
    on_line(f"{run_id}: member {member.index} adopted ({member.label()})")
    return Adopted(member, run_id, lambda: sup.wait_lineage(run_id), device)


async def _wait_elsewhere(sup: Any, history: History, run_id: str) -> Any:
    """Until the lineage of `run_id` has no live run (another ftmon records its end); if that
    ftmon lets go of it meanwhile, it is adopted here."""
    from supervisor.report.compare import lineage_down
    from supervisor.runs.reattach import AttachError

    while True:
        chain = lineage_down(history, run_id)
        live = [rec for rec in chain if rec.live]
        if not live:
            last = chain[-1] if chain else None
            return _Ended(last.status if last else "unknown", last.end_reason if last else "")
        if not _owned_elsewhere(history, live[-1].id):
            try:
                adopted = await sup.attach(live[-1].id)
            except AttachError:
                pass
            else:
                return await sup.wait_lineage(adopted)
        await asyncio.sleep(ELSEWHERE_POLL_SECS)


def _owned_elsewhere(history: History, run_id: str) -> bool:
    """Another ftmon process, alive, supervises the run (its row names it as the owner; a pid
    reused since by another program is not it: the start time is compared too)."""
    from supervisor.runs.reattach import process_alive

    owner = history.owner(run_id)
    return owner is not None and owner[0] != os.getpid() and process_alive(*owner)


def _device_of(rec: RunRecord) -> int | None:
    """The GPU the sweep placed the run on (the one device of its CUDA_VISIBLE_DEVICES)."""
    devices = visible_devices(rec.env.get("CUDA_VISIBLE_DEVICES"))
    return next(iter(devices)) if devices is not None and len(devices) == 1 else None


def _canonical(values: dict[str, Any]) -> str:
    return json.dumps(values, default=str, sort_keys=True)
