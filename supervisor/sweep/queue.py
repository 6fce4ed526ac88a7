"""The sweep queue: start members when the machine has room, each as an ordinary supervised run.

Room is a `Capacity`. On the CPU it is `--max-parallel` members at a time. With GPUs
(`GpuCapacity`, reading the NVML seam of monitoring/resources.py) a member starts on a device
whose free memory fits its preflight estimate, with `CUDA_VISIBLE_DEVICES` set to that device;
what a started member has not yet allocated is held for it, so two members never count the same
free gigabytes; a member with no estimate (a command the preflight does not know) gets a device of
its own. A member whose estimate exceeds every device's total memory is refused with the
estimate instead of being launched to die; one that fits a device that is busy now waits.

Each member goes through `Supervisor.launch`, so it keeps its own policies: a member that goes NaN
is killed and relaunched by its own rule while the others run on; its slot is given back when its
lineage (the member and its relaunches) has ended. A member whose run was already going when the
queue started (`ftmon sweep --resume`, sweep/resume.py) is `Adopted`: it holds its slot (and on a
GPU its memory) until its lineage ends.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from supervisor.recipe.model import Recipe, RecipeError, apply_overrides
from supervisor.sweep.expand import Member
from supervisor.sweep.prune import Pruner

GB = 1024**3


@dataclass(frozen=True)
class Placed:
    """Where a member runs: the environment to add and the memory held for it."""

    env: dict[str, str] = field(default_factory=dict)
    device: int | None = None
    held_gb: float = 0.0


class Capacity(Protocol):
    def never_fits(self, estimate_gb: float | None) -> str:
        """Why a member with this estimate can never start here ("" when it can)."""
        ...

    def take(self, estimate_gb: float | None) -> Placed | None:
        """A place for the member now, or None to wait for one."""
        ...

    def hold(self, estimate_gb: float | None, device: int | None) -> Placed:
        """The place of a member already running (on `device`, if known), counted as taken
        even beyond the limit: it runs whatever the queue thinks."""
        ...

    def give(self, placed: Placed) -> None: ...


class CpuCapacity:
    """At most `max_parallel` members at a time; memory is not counted."""

    def __init__(self, max_parallel: int) -> None:
        self.max_parallel = max(1, max_parallel)
        self.running = 0

    def never_fits(self, estimate_gb: float | None) -> str:
        return ""

    def take(self, estimate_gb: float | None) -> Placed | None:
        if self.running >= self.max_parallel:
            return None
        self.running += 1
        return Placed()

    def hold(self, estimate_gb: float | None, device: int | None) -> Placed:
        self.running += 1
        return Placed()

    def give(self, placed: Placed) -> None:
        self.running -= 1


class GpuSource(Protocol):
    def memory(self) -> dict[int, tuple[int, int]]:
        """Per device index: (used bytes, total bytes)."""
        ...


class GpuCapacity:
    """Members on the device with the most free memory that fits their estimate."""

    def __init__(
        self, gpu: GpuSource, max_parallel: int | None = None, allowed: set[int] | None = None
    ) -> None:
        self.gpu = gpu
        self.max_parallel = max_parallel
        self.allowed = allowed  # the devices ftmon may use (its own CUDA_VISIBLE_DEVICES)
        self.held: dict[int, float] = {}  # device -> GB held for members started there
        self.running = 0

    def _memory(self) -> dict[int, tuple[int, int]]:
        memory = self.gpu.memory()
        if self.allowed is None:
            return memory
        return {i: m for i, m in memory.items() if i in self.allowed}

    def never_fits(self, estimate_gb: float | None) -> str:
        totals = {i: total / GB for i, (_, total) in self._memory().items()}
        if not totals:
            return "no GPU is visible"
        if estimate_gb is not None and all(estimate_gb > t for t in totals.values()):
            largest = max(totals.values())
            return (
                f"the memory estimate is {estimate_gb:.1f} GB and the largest GPU has "
                f"{largest:.1f} GB"
            )
        return ""

    def take(self, estimate_gb: float | None) -> Placed | None:
        if self.max_parallel is not None and self.running >= self.max_parallel:
            return None
        best: tuple[float, int, float] | None = None  # (free GB, device, GB to hold)
        for index, (used, total) in sorted(self._memory().items()):
            held = self.held.get(index, 0.0)
            # Free now, less what started members may still allocate (held until they end).
            free = min((total - used) / GB, total / GB - held)
            if estimate_gb is None:
                # No estimate (not a trainer the preflight knows): a device of its own, held
                # whole, rather than many members of unknown size on one card.
                fits, need = held == 0, total / GB
            else:
                fits, need = free >= estimate_gb, estimate_gb
            if fits and (best is None or free > best[0]):
                best = (free, index, need)
        if best is None:
            return None
        _, index, need = best
        self.held[index] = self.held.get(index, 0.0) + need
        self.running += 1
        return Placed({"CUDA_VISIBLE_DEVICES": str(index)}, index, need)

    def hold(self, estimate_gb: float | None, device: int | None) -> Placed:
        self.running += 1
        memory = self._memory()
        if device is None or device not in memory:
            return Placed()
        need = estimate_gb if estimate_gb is not None else memory[device][1] / GB
        self.held[device] = self.held.get(device, 0.0) + need
        return Placed({"CUDA_VISIBLE_DEVICES": str(device)}, device, need)

    def give(self, placed: Placed) -> None:
        self.running -= 1
        if placed.device is not None:
            self.held[placed.device] = max(0.0, self.held.get(placed.device, 0.0) - placed.held_gb)


def member_estimate_gb(recipe: Recipe) -> float | None:
    """The preflight's peak for the member's step; None when it cannot be estimated (a command
    that is not a known trainer)."""
    try:
        from supervisor.estimate.preflight import estimate_recipe
    except ImportError:
        return None
    try:
        return float(estimate_recipe(recipe).peak_gb)
    except Exception:  # no estimate is no reason to refuse: the member just holds nothing
        return None


@dataclass(frozen=True)
class Adopted:
    """A member whose run is going already: `wait()` returns when its lineage has ended (an
    object with `status` and `reason`, as `Supervisor.wait_lineage`'s RunEnded)."""

    member: Member
    run_id: str
    wait: Callable[[], Awaitable[Any]]
    device: int | None = None  # the GPU it runs on (its CUDA_VISIBLE_DEVICES), if one


@dataclass
class MemberOutcome:
    member: Member
    status: str  # finished, failed, killed, refused, stopped (never started: Ctrl-C)
    run_id: str | None = None
    detail: str = ""


class SweepQueue:
    """Runs a sweep's members through a Supervisor; see the module docstring.

    `record(member, status, run_id, detail)` is told each member's progress (the CLI writes it
    to the history and prints it); `estimate` is the preflight seam.
    """

    def __init__(
        self,
        supervisor: Any,
        capacity: Capacity,
        *,
        sweep_id: str,
        record: Callable[[Member, str, str | None, str], None],
        estimate: Callable[[Recipe], float | None] = member_estimate_gb,
        poll_secs: float = 5.0,
        pruner: Pruner | None = None,
    ) -> None:
        self.sup = supervisor
        self.capacity = capacity
        self.sweep_id = sweep_id
        self.record = record
        self.estimate = estimate
        self.poll_secs = poll_secs
        self.pruner = pruner
        self.stop = asyncio.Event()
        self._stopping: set[asyncio.Future[None]] = set()  # kills of pruned members

    async def run(
        self, members: list[Member], adopted: Sequence[Adopted] = ()
    ) -> list[MemberOutcome]:
        """Start `members` as there is room, `adopted` holding theirs first; each one's
        outcome, by member index."""
        from supervisor.runs.supervise import LaunchRefused

        outcomes = {m.index: MemberOutcome(m, "stopped") for m in members}
        pending = deque(members)
        running: dict[asyncio.Future[Any], tuple[Member, Placed, str]] = {}
        for a in adopted:
            held = self.capacity.hold(self.estimate(a.member.recipe), a.device)
            outcomes[a.member.index] = MemberOutcome(a.member, "running", a.run_id)
            running[asyncio.ensure_future(a.wait())] = (a.member, held, a.run_id)
        stop = asyncio.ensure_future(self.stop.wait())
        try:
            while (pending or running) and not self.stop.is_set():
                while pending and not self.stop.is_set():
                    member = pending[0]
                    gb = self.estimate(member.recipe)
                    why = self.capacity.never_fits(gb)
                    if why:
                        pending.popleft()
                        self._refused(outcomes[member.index], f"does not fit: {why}")
                        continue
                    placed = self.capacity.take(gb)
                    if placed is None:
                        break
                    pending.popleft()
                    try:
                        recipe = _with_env(member.recipe, placed.env)
                        run_id = await self.sup.launch(
                            recipe,
                            reason=f"sweep {self.sweep_id} member {member.index}: {member.label()}",
                            force=placed.device is not None,  # the fit was checked here
                            changes=member.changes,
                        )
                    except (LaunchRefused, RecipeError) as exc:
                        self.capacity.give(placed)
                        self._refused(outcomes[member.index], str(exc))
                        continue
                    outcomes[member.index].run_id = run_id
                    outcomes[member.index].status = "running"
                    self.record(member, "launched", run_id, "")
                    waiter = asyncio.ensure_future(self.sup.wait_lineage(run_id))
                    running[waiter] = (member, placed, run_id)
                if not running and not pending:
                    break
                waits: set[asyncio.Future[Any]] = {*running, stop}
                done, _ = await asyncio.wait(
                    waits, timeout=self.poll_secs if pending or self.pruner else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )  # fmt: skip
                self._prune(running, outcomes)
                for fut in done:
                    if fut is stop:
                        continue
                    member, placed, run_id = running.pop(fut)
                    self.capacity.give(placed)
                    ended = fut.result()
                    out = outcomes[member.index]
                    if out.status != "pruned":
                        out.status, out.detail = str(ended.status), ended.reason
        finally:
            stop.cancel()
            for fut in running:
                fut.cancel()
        return [outcomes[i] for i in sorted(outcomes)]

    def _prune(
        self,
        running: dict[asyncio.Future[Any], tuple[Member, Placed, str]],
        outcomes: dict[int, MemberOutcome],
    ) -> None:
        """Stop the members successive halving rules out (sweep/prune.py); each ends as a
        killed run, its member recorded as pruned with the reason."""
        if self.pruner is None or not running:
            return
        firsts = {member.index: run_id for member, _, run_id in running.values()}
        members = {member.index: member for member, _, _ in running.values()}
        for index, run_id, why in self.pruner.check(firsts):
            out = outcomes[index]
            out.status, out.detail = "pruned", why
            self.record(members[index], "pruned", None, why)
            self._stopping.add(asyncio.ensure_future(self._stop_run(run_id, why)))

    async def _stop_run(self, run_id: str, why: str) -> None:
        try:
            await self.sup.kill(run_id, reason=f"killed by ftmon: {why}")
        except KeyError:  # it ended meanwhile: nothing to stop
            pass

    def _refused(self, outcome: MemberOutcome, why: str) -> None:
        outcome.status, outcome.detail = "refused", why
        self.record(outcome.member, "refused", None, why)


def _with_env(recipe: Recipe, env: dict[str, str]) -> Recipe:
    if not env:
        return recipe
    return apply_overrides(recipe, [f"env.{k}={v}" for k, v in env.items()])


def visible_devices(value: str | None) -> set[int] | None:
    """The device indices a `CUDA_VISIBLE_DEVICES` value allows; None: all (unset, or UUIDs,
    which NVML indices cannot be matched with here)."""
    if value is None:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        return None
    return {int(p) for p in parts}
