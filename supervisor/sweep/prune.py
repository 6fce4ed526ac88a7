"""Stop the losers early: successive halving over a sweep's members (`sweep.prune`).

    prune: {metric: val_loss, mode: min, rungs: [100, 300], keep: 0.33}

Asynchronous successive halving (as in ASHA): when a member's run reaches a rung (it has logged
a step at or past it), its value is the `metric` as of that step (the last value logged at or
before it); among every member
that has reached that rung (earlier ones included), it goes on only if it is among the best
`keep` share (at least one). Otherwise it is stopped, and the sweep's record says why: "pruned at
step 100: val_loss 2.41 is not in the best 33% of 3 (cut-off 2.10)". A member whose first run was
relaunched is judged on the run that goes on. Members never compared against later ones: what
was kept stays kept, which is what lets the queue start new members while others run.

The metrics are read from the history database, where the supervisor stores them as it reads.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from supervisor.sweep.spec import Prune


@dataclass
class Pruner:
    history: Any
    settings: Prune
    # rung -> {member index: value at the rung}
    reached: dict[int, dict[int, float]] = field(default_factory=dict)
    decided: set[int] = field(default_factory=set)  # members already stopped

    def check(self, running: dict[int, str]) -> list[tuple[int, str, str]]:
        """Members to stop now: (member index, the run to stop, why). `running` maps a member
        index to its first run's id (its relaunches are followed through the history)."""
        from supervisor.report.compare import lineage_down

        out: list[tuple[int, str, str]] = []
        for member, first in running.items():
            if member in self.decided:
                continue
            chain = lineage_down(self.history, first)
            run_id = chain[-1].id if chain else first
            why = self._judge(member, run_id)
            if why:
                self.decided.add(member)
                out.append((member, run_id, why))
        return out

    def _judge(self, member: int, run_id: str) -> str:
        latest = self.history.latest_metrics(run_id)
        steps = [m.step for m in latest.values() if m.step is not None]
        if not steps:
            return ""
        step = max(steps)
        for rung in self.settings.rungs:
            seen = self.reached.setdefault(rung, {})
            if step < rung or member in seen:
                continue
            value = self._value_at(run_id, rung)
            if value is None:
                continue  # no value yet: judged at the next check that has one
            seen[member] = value
            why = self._verdict(rung, member, seen)
            if why:
                return why
        return ""

    def _value_at(self, run_id: str, rung: int) -> float | None:
        """The metric as of the rung: its last value logged at or before the rung's step (the
        first one after it when none was), whenever the check happens to run."""
        rows = [
            m
            for m in self.history.metrics(run_id, self.settings.metric)
            if m.step is not None and m.value is not None and math.isfinite(m.value)
        ]
        before = [m for m in rows if m.step <= rung]
        if before:
            return float(before[-1].value)
        return float(rows[0].value) if rows else None

    def _verdict(self, rung: int, member: int, seen: dict[int, float]) -> str:
        sign = 1.0 if self.settings.mode == "min" else -1.0
        ranked = sorted(seen, key=lambda m: sign * seen[m])
        kept = max(1, math.floor(len(ranked) * self.settings.keep))
        if member in ranked[:kept]:
            return ""
        cutoff = seen[ranked[kept - 1]]
        return (
            f"pruned at step {rung}: {self.settings.metric} {seen[member]:.4g} is not in the best "
            f"{self.settings.keep:.0%} of {len(ranked)} (cut-off {cutoff:.4g})"
        )
