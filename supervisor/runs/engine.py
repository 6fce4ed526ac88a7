"""The one policy engine: which anomaly acts on a run, given the run's state, and the Monitor as
a run's state lets it see time. Used by the Supervisor (`ftmon run`, `attach`, the TUI) and by
`ftmon --watch LOG --pid P --on RULE=ACTION`, so the gate is the same everywhere:

- only a fault acts: an anomaly below warning ("vram rule off: no NVIDIA GPU") is news;
- a run that is being killed, or has ended, is not acted on again (one kill per run);
- a pause acts only on a running run (a paused one is not paused twice);
- `exit` fires after the end: only its own policy (alert or relaunch) acts, and not when an
  earlier rule already decided what follows.

`StateAwareMonitor` wraps the pure Monitor for a run under supervision: while the run is
stopped (by ftmon or by anyone: the executor's `stopped()` is read on every resource sample and
tick) time-based rules do not run, and a resume, by ftmon or by `kill -CONT` from a shell,
restarts their clocks at the moment it is seen.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from supervisor.events import Anomaly, Exit, ResourceSample, Severity
from supervisor.rules.job_end import RULE_NAMES as JOB_END_RULES
from supervisor.runs.state import SIGNALLABLE_STATES, STOPPED_STATES, RunState


class PolicyEngine:
    """`action_for(rule)` is the configured action ("alert", "pause", "kill", "relaunch", or ""
    for none): a recipe's `on:` or `--watch`'s `--on` options."""

    def __init__(self, action_for: Callable[[str], str]) -> None:
        self.action_for = action_for

    def decide(self, state: RunState, anomaly: Anomaly, *, followed: bool = False) -> str:
        """The action to carry out for `anomaly` on a run in `state` ("" for none). `followed`:
        what follows the run's end is decided already (a relaunch or a chain stop)."""
        if anomaly.severity < Severity.WARNING:
            return ""
        kind = self.action_for(anomaly.rule)
        if anomaly.rule == "exit" or anomaly.rule in JOB_END_RULES:  # fired on the end
            return kind if kind in ("alert", "relaunch") and not followed else ""
        if state not in SIGNALLABLE_STATES:
            return ""  # being killed, or over: the process is not acted on twice
        if kind == "pause" and state in STOPPED_STATES:
            return ""
        return kind


class StateAwareMonitor:
    """A Monitor seen through a run's state; see the module docstring.

    `state()` is the run's state now; `stopped()` asks the executor whether the process is
    stopped; `on_stopped(ts)` / `on_continued(ts)` are told when a stop or a continue is seen
    that ftmon did not make; `kill_reason()` is why ftmon is killing the run ("" if it is not),
    so that the exit rule says so; `on_exit(exit)` is told first when the process has ended.
    """

    def __init__(
        self,
        monitor: Any,
        *,
        state: Callable[[], RunState | None],
        stopped: Callable[[], bool],
        on_stopped: Callable[[float], None],
        on_continued: Callable[[float], None],
        kill_reason: Callable[[], str],
        on_exit: Callable[[Exit], None] = lambda exit_: None,
    ) -> None:
        self.monitor = monitor
        self._state, self._stopped = state, stopped
        self._on_stopped, self._on_continued = on_stopped, on_continued
        self._kill_reason, self._on_exit = kill_reason, on_exit

    def observe(self, ts: float) -> bool:
        """Look at the process: a stop or a continue made outside ftmon becomes a state change.
        True while the run is stopped."""
        state = self._state()
        if state is RunState.RUNNING and self._stopped():
            self._on_stopped(ts)
        elif state is RunState.PAUSED and not self._stopped():
            self._on_continued(ts)
        return self._state() in STOPPED_STATES

    def resumed(self, ts: float) -> None:
        """The run goes on from `ts`: time-based rules count from here."""
        self.monitor.resumed(ts)

    def feed_lines(self, lines: list[Any], ts: float) -> list[Any]:
        if self._state() is RunState.PAUSED:
            self.observe(ts)  # a line from a paused run: it was continued
        return list(self.monitor.feed_lines(lines, ts) or [])

    def feed_resource(self, sample: ResourceSample) -> list[Anomaly]:
        if self.observe(sample.ts):
            return []
        return list(self.monitor.feed_resource(sample) or [])

    def tick(self, ts: float) -> list[Anomaly]:
        if self.observe(ts):
            return []
        return list(self.monitor.tick(ts) or [])

    def feed_exit(self, exit_: Exit) -> list[Anomaly]:
        self._on_exit(exit_)
        why = self._kill_reason()
        if why:  # the exit rule says "killed by ftmon: " itself
            why = why.removeprefix("killed by ftmon: ")
            exit_ = dataclasses.replace(exit_, killed_by_ftmon=why)
        return list(self.monitor.feed_exit(exit_) or [])
