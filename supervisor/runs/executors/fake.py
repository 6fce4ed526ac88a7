"""A fake executor for the supervisor's policy tests: no processes, every call recorded.

`spawn` creates the log file (so the watch can tail it) and a handle with a made-up pid; the
test writes lines to the log, and ends the run with `exit(handle, returncode)`. A kill is
recorded and ends the run at once, as killed by SIGTERM; `stop_from_outside` / `continue_from_
outside` play a person's `kill -STOP` / `kill -CONT`. Real processes are the local executor's
business, tested with real processes (tests/integration/test_process.py, test_supervise.py).
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from supervisor.events import Exit
from supervisor.runs.executors.base import (
    LaunchSpec,
    RunHandle,
    SampleTargets,
    SpawnError,
    describe_handle,
    handle_from_description,
)


@dataclass(frozen=True)
class FakeKill:
    """What the fake kill reports (a `KillResult`)."""

    pid: int
    all_gone: bool = True

    def detail(self) -> str:
        return f"fake kill of {self.pid}; all gone" if self.all_gone else "fake kill: survivors"


@dataclass
class _FakeRun:
    spec: LaunchSpec
    ended: asyncio.Future[Exit]
    stopped: bool = False


@dataclass
class FakeExecutor:
    """Records every call as (method, run_id) in `calls`; see the module docstring."""

    name: str = "fake"
    fail_spawn: str = ""  # a SpawnError message for every spawn, when set
    calls: list[tuple[str, str]] = field(default_factory=list)
    runs: dict[int, _FakeRun] = field(default_factory=dict)
    _pids: itertools.count[int] = field(default_factory=lambda: itertools.count(900_001))

    def spawn(self, spec: LaunchSpec) -> RunHandle:
        self.calls.append(("spawn", spec.run_id))
        if self.fail_spawn:
            raise SpawnError(self.fail_spawn)
        spec.log_path.parent.mkdir(parents=True, exist_ok=True)
        spec.log_path.touch()
        pid = next(self._pids)
        self.runs[pid] = _FakeRun(spec, asyncio.get_running_loop().create_future())
        return RunHandle("fake", pid, 1.0, (spec.log_path,), extra={"run_id": spec.run_id})

    def _run(self, handle: RunHandle) -> _FakeRun | None:
        run = self.runs.get(handle.pid)
        return None if run is None or run.ended.done() else run

    def pause(self, handle: RunHandle) -> bool:
        self.calls.append(("pause", handle.extra.get("run_id", "")))
        run = self._run(handle)
        if run is not None:
            run.stopped = True
        return run is not None

    def resume(self, handle: RunHandle) -> bool:
        self.calls.append(("resume", handle.extra.get("run_id", "")))
        run = self._run(handle)
        if run is not None:
            run.stopped = False
        return run is not None

    def stopped(self, handle: RunHandle) -> bool:
        run = self._run(handle)
        return run is not None and run.stopped

    async def kill(self, handle: RunHandle, grace: float) -> FakeKill:
        self.calls.append(("kill", handle.extra.get("run_id", "")))
        self.exit(handle, None, signal.SIGTERM)
        return FakeKill(handle.pid)

    def alive(self, handle: RunHandle) -> bool:
        return self._run(handle) is not None

    async def wait(self, handle: RunHandle) -> Exit:
        run = self.runs.get(handle.pid)
        if run is None:
            return Exit(time.time(), None)
        return await asyncio.shield(run.ended)

    def sample_pids(self, handle: RunHandle) -> SampleTargets:
        return SampleTargets()  # a fake run has no processes

    def describe(self, handle: RunHandle) -> dict[str, Any]:
        return describe_handle(handle)

    def handle_from(self, described: Mapping[str, Any]) -> RunHandle:
        return handle_from_description(described)

    # --- what the test does to a run -------------------------------------------------------

    def exit(
        self, handle: RunHandle, returncode: int | None, sig: int | None = None, ended_by: str = ""
    ) -> None:
        """The run ends with `returncode` (or killed by `sig`; `ended_by`: a scheduler ended it)."""
        run = self.runs.get(handle.pid)
        if run is not None and not run.ended.done():
            run.ended.set_result(Exit(time.time(), returncode, sig, ended_by=ended_by))

    def stop_from_outside(self, handle: RunHandle) -> None:
        self.runs[handle.pid].stopped = True

    def continue_from_outside(self, handle: RunHandle) -> None:
        self.runs[handle.pid].stopped = False
