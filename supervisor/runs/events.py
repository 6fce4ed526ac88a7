"""What happens to supervised runs, as small frozen dataclasses named as facts.

`events.py` holds what the monitor finds in a log; this module holds what the supervisor does
with runs (started, paused, killed, relaunched, ...). The `Supervisor` hands each of these to its
`on_event` callback in the order they happened; the TUI turns them into Textual messages and the
headless `ftmon run` prints them. Every event carries the run it is about and the time (`ts`,
seconds since the epoch from the supervisor's clock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from supervisor.events import Action, Anomaly, Eval, Metric, ResourceSample, Sample

EndStatus = Literal["finished", "failed", "killed", "detached"]


@dataclass(frozen=True, slots=True)
class RunStarted:
    """A run was spawned (a first launch, a relaunch, a replay) or reattached."""

    run_id: str
    ts: float
    name: str
    attempt: int
    parent_id: str | None
    argv: tuple[str, ...]
    log_path: str
    pid: int
    reattached: bool = False
    # A reattached run's decision that an ftmon which died left unfinished, being finished now:
    # "kill", "relaunch" or "pause" ("" when none), the rule that decided it and when.
    finishing: str = ""
    finishing_rule: str = ""
    decided_at: float = 0.0


@dataclass(frozen=True, slots=True)
class MetricsObserved:
    """A batch of metrics, evaluations and samples read from the run's log, in line order."""

    run_id: str
    ts: float
    events: tuple[Metric | Eval | Sample, ...]


@dataclass(frozen=True, slots=True)
class AnomalyFound:
    """A rule found something in the run's log, resources or exit."""

    run_id: str
    ts: float
    anomaly: Anomaly


@dataclass(frozen=True, slots=True)
class ActionTaken:
    """The policy or the user acted on a run (alert, pause, resume, kill, relaunch)."""

    run_id: str
    ts: float
    action: Action


@dataclass(frozen=True, slots=True)
class RunPaused:
    """The run's process group was stopped (SIGSTOP); `reason` says what the person can do."""

    run_id: str
    ts: float
    reason: str


@dataclass(frozen=True, slots=True)
class RunResumed:
    """The run's process group was continued (SIGCONT)."""

    run_id: str
    ts: float


@dataclass(frozen=True, slots=True)
class RunEnded:
    """The run is over for this supervisor.

    `status` is "finished" (exit 0), "failed" (non-zero exit or killed by a signal ftmon did not
    send), "killed" (ftmon killed it: `reason` says for which rule or that the user asked) or
    "detached" (the supervisor stopped watching and left the process running).
    """

    run_id: str
    ts: float
    returncode: int | None
    signal: int | None
    reason: str
    status: EndStatus


@dataclass(frozen=True, slots=True)
class RunRelaunched:
    """A new run `run_id` was started from `parent_id`'s recipe with `changes` applied."""

    parent_id: str
    run_id: str
    ts: float
    reason: str
    changes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ResourcesObserved:
    """A resource sample of the run's process tree."""

    run_id: str
    ts: float
    sample: ResourceSample


@dataclass(frozen=True, slots=True)
class ChainStopped:
    """The policy wanted a relaunch but could not: max reached, adjustment exhausted, base
    weights changed, or the relaunch itself failed. The lineage ends with `run_id`."""

    run_id: str
    ts: float
    reason: str


@dataclass(frozen=True, slots=True)
class StateChanged:
    """The run moved from state `old` to `new` (values of runs/state.py's `RunState`; `old` is
    "" for a run's first state) because of `cause` (for a person) and `rule` (the rule that
    decided it, "user", or "" for what the process did by itself)."""

    run_id: str
    ts: float
    old: str
    new: str
    cause: str
    rule: str = ""


RunEvent = (
    StateChanged
    | RunStarted
    | MetricsObserved
    | AnomalyFound
    | ActionTaken
    | RunPaused
    | RunResumed
    | RunEnded
    | RunRelaunched
    | ResourcesObserved
    | ChainStopped
)
