"""`hang`: one rank of a distributed run stopped advancing while the others went on or wait;
`straggler`: one rank advances markedly slower than the fastest.

Reads the rank of each metric line (`Metric.rank` from torchrun's `[rankN]:` prefix, or a
`rank` value in the line) and its step; monitoring/ranks.py keeps each rank's progress. On each
tick, a rank that has not advanced for max(`factor` x the run's p99 step interval,
`floor_secs`) while another rank is ahead of it (or advanced since) is reported as an ERROR that
names it: minutes before the NCCL watchdog (8-30 min) would end the job. Normal: a run of one
rank (nothing to compare), a run stopped by ftmon or a person (the clocks restart on resume).
Ranks that all stop at the same step (lockstep training prints after the collective, so the
one that stopped is not told apart) are one ERROR that says so, after the same limit and as
long as no line at all arrives (an evaluation or a save that prints is not a hang).
De-duplication: one report per rank and step; the rank must advance before it is reported
again.

`straggler` reads the same per-rank progress: a rank whose straggler score (its step rate over
the recent window / the fastest rank's, monitoring/ranks.py) is below `below` once every rank
has `min_steps` steps is a WARNING naming it and its score, which history stores. Normal: ranks
in lockstep (data parallel) all score about 1. De-duplication: once per rank until its score is
back above `below`. At the run's end every rank's score is one INFO line, stored in history.
"""

from __future__ import annotations

import math
from typing import ClassVar

from pydantic import Field

from supervisor.events import Anomaly, Event, Exit, Metric, Severity, show_step
from supervisor.monitoring.ranks import RankTracker
from supervisor.rules.base import Rule, RuleSettings


class HangSettings(RuleSettings):
    floor_secs: float = Field(
        60.0, gt=0, description="A rank may go this long without a step, whatever its pace."
    )
    factor: float = Field(3.0, gt=0, description="Times the run's p99 step interval.")


def rank_of(metric: Metric) -> int | None:
    if metric.rank is not None:
        return metric.rank
    value = metric.values.get("rank")
    if value is None or not math.isfinite(value):
        return None
    return int(value)


class HangRule(Rule):
    name = "hang"
    Settings = HangSettings
    handles: ClassVar[tuple[type, ...]] = (Metric,)

    def __init__(self, settings: RuleSettings | None = None) -> None:
        super().__init__(settings)
        s: HangSettings = self.settings  # type: ignore[assignment]
        self.tracker = RankTracker(floor_secs=s.floor_secs, factor=s.factor)
        self._said: set[tuple[int, int]] = set()
        self._last_line_ts: float | None = None

    def on_event(self, event: Event) -> list[Anomaly]:
        if isinstance(event, Metric) and event.step is not None:
            rank = rank_of(event)
            if rank is not None:
                self.tracker.observe(rank, event.step, event.ts)
        return []

    def on_lines(self, lineno: int, ts: float) -> list[Anomaly]:
        self._last_line_ts = ts
        return []

    def on_tick(self, ts: float) -> list[Anomaly]:
        out = []
        stuck = self.tracker.stuck(ts)
        # Ranks tied at one step while lines still arrive (an evaluation printing its progress,
        # a checkpoint being saved) are busy, not stuck.
        silent = self._last_line_ts is None or ts - self._last_line_ts >= self.tracker.threshold()
        if stuck is not None and silent and (-1, stuck[0]) not in self._said:
            self._said.add((-1, stuck[0]))
            step, secs = stuck
            message = (
                f"all {len(self.tracker.ranks)} ranks stopped after step {show_step(step)}: "
                f"no step for {secs:.0f} s (limit {self.tracker.threshold():.0f} s), none "
                "behind: a collective is stuck"
            )
            out.append(self.anomaly(Severity.ERROR, message, ts))
        for hang in self.tracker.hung(ts):
            key = (hang.rank, hang.step)
            if key in self._said:
                continue
            self._said.add(key)
            others = ", ".join(
                f"rank {r} at step {show_step(s)}" for r, s in sorted(hang.others.items())
            )
            message = (
                f"rank {hang.rank} hung: no step for {hang.secs:.0f} s after step "
                f"{show_step(hang.step)} (limit {self.tracker.threshold():.0f} s) while {others}"
            )
            out.append(self.anomaly(Severity.ERROR, message, ts))
        return out

    def on_resume(self, ts: float) -> None:
        self.tracker.restart_clocks(ts)
        self._last_line_ts = ts


class StragglerSettings(RuleSettings):
    below: float = Field(0.5, gt=0, le=1, description="Report a rank slower than this share.")
    min_steps: int = Field(10, ge=2, description="Steps every rank must have first.")


class StragglerRule(Rule):
    name = "straggler"
    Settings = StragglerSettings
    handles: ClassVar[tuple[type, ...]] = (Metric,)

    def __init__(self, settings: RuleSettings | None = None) -> None:
        super().__init__(settings)
        self.tracker = RankTracker()
        self._slow: set[int] = set()

    def on_event(self, event: Event) -> list[Anomaly]:
        if isinstance(event, Metric) and event.step is not None:
            rank = rank_of(event)
            if rank is not None:
                self.tracker.observe(rank, event.step, event.ts)
        return []

    def on_tick(self, ts: float) -> list[Anomaly]:
        s: StragglerSettings = self.settings  # type: ignore[assignment]
        ranks = self.tracker.ranks
        if len(ranks) < 2 or min(len(p.times) for p in ranks.values()) < s.min_steps:
            return []
        out = []
        for rank, score in self.tracker.scores(ts).items():
            if score >= s.below:
                self._slow.discard(rank)
            elif rank not in self._slow:
                self._slow.add(rank)
                message = (
                    f"rank {rank} straggles: straggler score {score:.2f} (its step rate over "
                    f"the fastest rank's), at step {show_step(ranks[rank].step)}"
                )
                out.append(self.anomaly(Severity.WARNING, message, ts))
        return out

    def on_exit(self, exit: Exit) -> list[Anomaly]:
        """Every rank's score at the end, for the history (`ftmon show`)."""
        if len(self.tracker.ranks) < 2:
            return []
        scores = self.tracker.scores(max(p.advanced_ts for p in self.tracker.ranks.values()))
        said = ", ".join(f"rank {r} {score:.2f}" for r, score in scores.items())
        return [self.anomaly(Severity.INFO, f"straggler scores at the end: {said}", exit.ts)]

    def on_resume(self, ts: float) -> None:
        self.tracker.restart_clocks(ts)
