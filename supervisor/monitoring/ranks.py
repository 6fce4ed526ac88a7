"""The ranks of a distributed run, followed apart: each rank's step, its step interval, whether
it stopped while the others went on, and how fast it is next to them.

A rank is known from its metric lines: torchrun's `[rankN]:` / `[defaultN]:` prefix (the parser
keeps it as `Metric.rank`) or a `rank` field in the line itself (the reference trainer prints
one). Pure: no I/O and no clock; time comes in with the events.

Hang: in data-parallel training every rank waits for the slowest at each collective, so a rank
that stops (a deadlock, a dead NFS read, a SIGSTOP) stops the others one step later; they then
sit in the collective until the NCCL watchdog fires, 8 to 30 minutes on. What tells the ranks
apart is the step each printed last: the ones that went on are ahead, the stopped one is
behind. A rank is reported as hung when no rank has advanced for `threshold()` seconds (three
times the run's p99 step interval, at least `floor_secs`) and it is behind the others, or when it
has not advanced for that long while another rank has.

Straggler score: a rank's step rate over the recent window divided by the fastest rank's, in
0..1 (1: the fastest; 0.5: half as fast). Ranks in lockstep all score about 1; a rank that
lags by whole steps, or has stopped, scores lower.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

WINDOW = 64  # step intervals kept per rank (the p99 and the rate are over these)


@dataclass
class RankProgress:
    """One rank: the highest step it printed, when, and its recent step intervals."""

    rank: int
    step: int = -1
    advanced_ts: float = 0.0  # when `step` last grew
    first_ts: float = 0.0
    times: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=WINDOW))
    intervals: deque[float] = field(default_factory=lambda: deque(maxlen=WINDOW))

    def observe(self, step: int, ts: float) -> bool:
        """A metric line of this rank at `step`; True when the rank advanced."""
        if step <= self.step:
            return False
        if self.step >= 0 and ts > self.advanced_ts:
            self.intervals.append((ts - self.advanced_ts) / (step - self.step))
        else:
            self.first_ts = ts
        self.step, self.advanced_ts = step, ts
        self.times.append((ts, step))
        return True

    def rate(self, now: float) -> float:
        """Steps per second over the window, counting the time since the last advance (a rank
        that stopped sees its rate fall as the clock runs)."""
        if not self.times:
            return 0.0
        t0, s0 = self.times[0]
        span = now - t0
        return (self.step - s0) / span if span > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Hang:
    """A rank that stopped: at `step`, `secs` ago, while `others` (rank -> step) went on."""

    rank: int
    step: int
    secs: float
    others: dict[int, int]


def p99(values: list[float]) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


class RankTracker:
    """Every rank of one run; see the module docstring."""

    def __init__(self, floor_secs: float = 60.0, factor: float = 3.0) -> None:
        self.floor_secs = floor_secs
        self.factor = factor
        self.ranks: dict[int, RankProgress] = {}

    def observe(self, rank: int, step: int, ts: float) -> bool:
        progress = self.ranks.get(rank)
        if progress is None:
            progress = self.ranks[rank] = RankProgress(rank)
        return progress.observe(step, ts)

    def restart_clocks(self, ts: float) -> None:
        """The run was stopped by ftmon or a person and goes on: nobody hung meanwhile."""
        for progress in self.ranks.values():
            progress.advanced_ts = max(progress.advanced_ts, ts)
            progress.times.clear()

    def threshold(self) -> float:
        """How long a rank may go without a step: 3x the run's p99 interval, at least the floor."""
        intervals = [i for p in self.ranks.values() for i in p.intervals]
        return max(self.factor * p99(intervals), self.floor_secs)

    def hung(self, now: float) -> list[Hang]:
        """Ranks that stopped while others went on (empty with fewer than two ranks)."""
        if len(self.ranks) < 2:
            return []
        limit = self.threshold()
        top = max(p.step for p in self.ranks.values())
        latest = max(p.advanced_ts for p in self.ranks.values())
        out = []
        for p in self.ranks.values():
            quiet = now - p.advanced_ts
            if quiet < limit:
                continue
            behind = p.step < top
            others_moved = latest - p.advanced_ts >= limit
            if behind or others_moved:
                others = {r: q.step for r, q in self.ranks.items() if r != p.rank}
                out.append(Hang(p.rank, p.step, quiet, others))
        return out

    def stuck(self, now: float) -> tuple[int, float] | None:
        """(step, seconds) when every rank stopped at the same step for `threshold()`: a
        collective that never completes, with no rank behind to name (lockstep training prints
        its step after the collective, so the rank that stopped is not told apart)."""
        if len(self.ranks) < 2:
            return None
        steps = {p.step for p in self.ranks.values()}
        quiet = now - max(p.advanced_ts for p in self.ranks.values())
        if len(steps) == 1 and quiet >= self.threshold():
            return steps.pop(), quiet
        return None

    def scores(self, now: float) -> dict[int, float]:
        """Straggler score per rank, 0..1 (1: as fast as the fastest)."""
        rates = {r: p.rate(now) for r, p in self.ranks.items()}
        best = max(rates.values(), default=0.0)
        if best <= 0:
            return {r: 1.0 for r in rates}
        return {r: round(min(1.0, rate / best), 3) for r, rate in sorted(rates.items())}
