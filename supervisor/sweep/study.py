"""One sweep, start to end, for both front ends: record it in the history, pick the capacity
(GPUs by NVML, else `max_parallel` CPU slots), run the members through the queue and write each
member's progress to the history (`ftmon sweep`, `ftmon replay SWEEP` and the TUI's `o`); the
process doing so is the sweep's driver in the history while it does (`ftmon sweep --resume`,
sweep/resume.py, carries on a sweep whose driver stopped)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from supervisor.recipe.model import Recipe
from supervisor.store.history import History, SweepRecord
from supervisor.sweep.expand import Member
from supervisor.sweep.prune import Pruner
from supervisor.sweep.queue import (
    Capacity,
    CpuCapacity,
    GpuCapacity,
    MemberOutcome,
    SweepQueue,
    visible_devices,
)


def new_sweep_id(name: str, now: datetime | None = None) -> str:
    """`sweep-20261207-181005-demo-sweep`: never a run id (those start with a digit)."""
    return f"sweep-{(now or datetime.now()):%Y%m%d-%H%M%S}-{name}"


def record_sweep(
    history: History, recipe: Recipe, members: list[Member], replay_of: str | None = None
) -> str:
    """Write the sweep (its recipe, with the `sweep:` section) and its queued members."""
    assert recipe.sweep is not None
    sweep_id = new_sweep_id(recipe.name)
    n = 2
    while history.sweep(sweep_id) is not None:  # two sweeps of one recipe in one second
        sweep_id = f"{new_sweep_id(recipe.name)}-{n}"
        n += 1
    history.add_sweep(
        SweepRecord(sweep_id, recipe.name, time.time(), recipe.to_yaml(), os.getcwd(),
                    tuple(recipe.sweep.keys()), replay_of),
        [(m.index, m.values) for m in members],
    )  # fmt: skip
    return sweep_id


def driver_identity() -> tuple[int, float]:
    """This process as a sweep's driver (History.claim_sweep): pid and start time, so that a
    reused pid is not taken for a driver that died."""
    import psutil

    return os.getpid(), psutil.Process().create_time()


def capacity_for(gpu: Any, max_parallel: int | None) -> Capacity:
    """GPUs where NVML sees some (`gpu` is the NVML seam, None without), else CPU slots."""
    if gpu is not None:  # ftmon's own CUDA_VISIBLE_DEVICES limits which cards members get
        return GpuCapacity(
            gpu, max_parallel, visible_devices(os.environ.get("CUDA_VISIBLE_DEVICES"))
        )
    return CpuCapacity(max_parallel or 1)


def describe(capacity: Capacity) -> str:
    if isinstance(capacity, GpuCapacity):
        cap = f", at most {capacity.max_parallel} at a time" if capacity.max_parallel else ""
        return f"by free GPU memory{cap}"
    return f"{getattr(capacity, 'max_parallel', 1)} at a time"


def make_queue(
    supervisor: Any,
    history: History,
    sweep_id: str,
    capacity: Capacity,
    on_line: Callable[[str], None] = lambda line: None,
    pruner: Pruner | None = None,
) -> SweepQueue:
    """A queue whose members' progress goes to the history and, as lines, to `on_line`."""

    def record(member: Member, status: str, run_id: str | None, detail: str) -> None:
        history.set_sweep_member(sweep_id, member.index, status=status, run_id=run_id,
                                 detail=detail)  # fmt: skip
        if status == "launched":
            on_line(f"{sweep_id}: member {member.index} ({member.label()}) is {run_id}")
        elif status in ("refused", "pruned"):
            on_line(f"{sweep_id}: member {member.index} ({member.label()}) {status}: {detail}")

    # With pruning the queue looks at the members' metrics each second, else on each end.
    poll = 1.0 if pruner is not None else 5.0
    return SweepQueue(
        supervisor, capacity, sweep_id=sweep_id, record=record, pruner=pruner, poll_secs=poll
    )


async def run_study(
    supervisor: Any,
    history: History,
    recipe: Recipe,
    members: list[Member],
    *,
    gpu: Any,
    max_parallel: int | None = None,
    on_line: Callable[[str], None] = lambda line: None,
    replay_of: str | None = None,
    on_queue: Callable[[SweepQueue], None] = lambda queue: None,
) -> tuple[str, list[MemberOutcome]]:
    """Record the sweep and run its members to their ends; `on_queue` gets the queue (to stop
    it). Returns the sweep id and each member's outcome. This process drives the sweep until
    it returns (`ftmon sweep --resume` refuses meanwhile; sweep/resume.py)."""
    from supervisor.runs.reattach import process_alive

    assert recipe.sweep is not None
    sweep_id = record_sweep(history, recipe, members, replay_of)
    me = driver_identity()
    history.claim_sweep(sweep_id, *me, process_alive)  # new: no one else can hold it
    try:
        capacity = capacity_for(gpu, max_parallel or recipe.sweep.max_parallel)
        on_line(f"{sweep_id}: {len(members)} members, {describe(capacity)}")
        prune = recipe.sweep.prune
        pruner = Pruner(history, prune) if prune is not None else None
        queue = make_queue(supervisor, history, sweep_id, capacity, on_line, pruner)
        on_queue(queue)
        return sweep_id, await queue.run(members)
    finally:
        history.release_sweep(sweep_id, me[0])
