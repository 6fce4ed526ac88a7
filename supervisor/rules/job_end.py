"""`time_limit`, `preempted`, `node_fail`, `job_oom`: a scheduler ended the run.

A Slurm job can end for reasons of the cluster rather than of the program: its `--time` ran
out, a higher-priority job preempted it, its node failed, its cgroup's memory limit killed it.
The executor (runs/executors/slurm.py) reads the job's final state and puts the reason into the
`Exit` (`ended_by`); one of these rules reports it as an ERROR, so that a policy may act on it:
`on: {preempted: {do: relaunch}}`. Normal: a run that ended by itself or was killed by ftmon
(`ended_by` empty). De-duplication: a run ends once.
"""

from __future__ import annotations

from typing import ClassVar

from supervisor.events import Anomaly, Exit, Severity
from supervisor.rules.base import Rule, RuleSettings

WHAT = {
    "time_limit": "the scheduler ended the job at its time limit",
    "preempted": "the scheduler preempted the job",
    "node_fail": "the job's node failed",
    "job_oom": "the job was killed for exceeding its memory limit (cgroup OOM)",
}

RULE_NAMES: tuple[str, ...] = tuple(WHAT)
"""Rules that fire on the run's end (as `exit` does): a policy's relaunch or alert follows it."""


class JobEndSettings(RuleSettings):
    pass


class JobEndRule(Rule):
    """One rule per way a scheduler ends a job; `name` is the `ended_by` value it reports."""

    Settings = JobEndSettings
    name: ClassVar[str] = ""

    def on_exit(self, exit: Exit) -> list[Anomaly]:
        if exit.ended_by != self.name or exit.killed_by_ftmon:
            return []
        return [self.anomaly(Severity.ERROR, WHAT[self.name], exit.ts)]


class TimeLimitRule(JobEndRule):
    name = "time_limit"


class PreemptedRule(JobEndRule):
    name = "preempted"


class NodeFailRule(JobEndRule):
    name = "node_fail"


class JobOomRule(JobEndRule):
    name = "job_oom"
