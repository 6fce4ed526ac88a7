"""A run's life as data: the states it moves through, which moves are allowed, and the one
function that makes a move.

```
  starting ──(spawn failed)──────────────────────────────────────► failed_to_start
     │ spawned
     ▼      ftmon pauses          stop confirmed
  running ──────────────► pausing ──────────────► paused
     │  ▲                                    ▲      │
     │  └──── resumed (ftmon or kill -CONT) ─┼──────┘
     │  └──── SIGSTOP seen from outside ─────┘
     │
     │ kill decided (from running, pausing or paused; journaled first)
     ├─────────────────────► killing
     │                          │ the process ended
     │ ended on its own         ▼
     └─────────────────────► exited ──(relaunch decided)──► relaunching
                                │                               │ child started,
                                │ nothing follows               │ or chain stopped
                                ▼                               ▼
                          finished | failed | killed  ◄─────────┘
```

The states are what history's `runs.status` holds, so a run left in `killing` or
`relaunching` by an ftmon that died tells the next one what it was in the middle of. Every
move goes through `change_state`, which refuses a move the table does not allow and returns the
one `StateChanged` event that the supervisor writes to history (with its cause, in one
transaction) and hands to its listeners. Nothing here does I/O.
"""

from __future__ import annotations

from enum import Enum

from supervisor.runs.events import StateChanged


class RunState(str, Enum):
    """Where a run is in its life (the value is what history stores). A `str` Enum rather than
    StrEnum: ftmon runs on Python 3.10."""

    STARTING = "starting"  # planned and recorded, the process not yet confirmed started
    RUNNING = "running"
    PAUSING = "pausing"  # a pause decided and journaled, the stop not yet confirmed
    PAUSED = "paused"  # stopped (SIGSTOP), by ftmon or by anyone
    KILLING = "killing"  # a kill decided and journaled: TERM sent, grace running
    EXITED = "exited"  # the process ended; how, and what follows, being settled
    RELAUNCHING = "relaunching"  # the run ended and a relaunch is decided, the child not yet up
    FAILED_TO_START = "failed_to_start"
    FINISHED = "finished"  # exit 0 (or unknown and no error seen)
    FAILED = "failed"  # non-zero exit, a signal ftmon did not send, errors found
    KILLED = "killed"  # ftmon killed it (for a rule or for the user)

    def __str__(self) -> str:
        return self.value


# Grouped as supervisord groups its states: what callers ask about a run.
LIVE_STATES: tuple[RunState, ...] = (
    RunState.STARTING,
    RunState.RUNNING,
    RunState.PAUSING,
    RunState.PAUSED,
    RunState.KILLING,
    RunState.EXITED,
    RunState.RELAUNCHING,
)
"""Not over: history lists these as live; `attach` picks them up (and finishes what a state
such as `killing` or `relaunching` says was under way)."""

PROCESS_STATES: tuple[RunState, ...] = (
    RunState.STARTING,
    RunState.RUNNING,
    RunState.PAUSING,
    RunState.PAUSED,
    RunState.KILLING,
)
"""The process may still be alive."""

SIGNALLABLE_STATES: tuple[RunState, ...] = (
    RunState.RUNNING,
    RunState.PAUSING,
    RunState.PAUSED,
)
"""A person or a policy may pause, resume or kill it (a kill under way is not stopped twice)."""

STOPPED_STATES: tuple[RunState, ...] = (RunState.PAUSING, RunState.PAUSED)
"""Time-based rules (stall) sleep: the run is not expected to write."""

END_STATES: tuple[RunState, ...] = (
    RunState.FINISHED,
    RunState.FAILED,
    RunState.KILLED,
    RunState.FAILED_TO_START,
)
"""Over: no move leaves these."""

_ENDINGS = (RunState.FINISHED, RunState.FAILED, RunState.KILLED)

TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.STARTING: frozenset({RunState.RUNNING, RunState.FAILED_TO_START}),
    RunState.RUNNING: frozenset(
        {RunState.PAUSING, RunState.PAUSED, RunState.KILLING, RunState.EXITED}
    ),
    # A pause that cannot be confirmed (the group is gone) falls back to running; the exit
    # then follows.
    RunState.PAUSING: frozenset(
        {RunState.PAUSED, RunState.RUNNING, RunState.KILLING, RunState.EXITED}
    ),
    RunState.PAUSED: frozenset({RunState.RUNNING, RunState.KILLING, RunState.EXITED}),
    RunState.KILLING: frozenset({RunState.EXITED}),
    RunState.EXITED: frozenset({RunState.RELAUNCHING, *_ENDINGS}),
    RunState.RELAUNCHING: frozenset(_ENDINGS),
    RunState.FAILED_TO_START: frozenset(),
    RunState.FINISHED: frozenset(),
    RunState.FAILED: frozenset(),
    RunState.KILLED: frozenset(),
}


class IllegalTransition(ValueError):
    """A move the table does not allow: a bug in the caller, never a user's mistake."""


def can_change(old: RunState | None, new: RunState) -> bool:
    """Whether `old -> new` is allowed (`None`: a run's first state, which is `starting`)."""
    if old is None:
        return new is RunState.STARTING
    return new in TRANSITIONS[old]


def change_state(
    run_id: str, old: RunState | None, new: RunState, *, ts: float, cause: str, rule: str = ""
) -> StateChanged:
    """The event for `run_id` moving from `old` to `new` because of `cause` (for a person:
    "rule nan", "paused by the user", "SIGSTOP seen") and `rule` (the rule or "user", for a
    program). Raises IllegalTransition for a move the table does not allow."""
    if not can_change(old, new):
        was = old.value if old is not None else "(new)"
        raise IllegalTransition(f"{run_id}: {was} -> {new.value} is not a run state transition")
    return StateChanged(run_id, ts, old.value if old is not None else "", new.value, cause, rule)


def state_of(status: str) -> RunState | None:
    """A history status as a RunState; None for a value this ftmon does not know."""
    try:
        return RunState(status)
    except ValueError:
        return None
