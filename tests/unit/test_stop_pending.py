"""A SIGSTOP that ftmon sent but the process has not taken yet (it was not scheduled since) counts
as stopped: otherwise, on a busy machine, ftmon's own pause read back as "resumed from outside
ftmon" (tests/integration/test_supervise.py::test_pause_stops_the_group_and_resume_continues_it
failed that way under load)."""

from __future__ import annotations

import signal

from supervisor.runs.executors.local import stop_pending

# /proc/PID/status of a running python, trimmed to the lines around the masks.
STATUS = """Name:\tpython3
State:\tR (running)
Pid:\t4242
SigQ:\t0/63448
SigPnd:\t{sig}
ShdPnd:\t{shd}
SigBlk:\t0000000000000000
SigIgn:\t0000000001001000
SigCgt:\t0000000100000002
"""

STOP = f"{1 << (signal.SIGSTOP - 1):016x}"
NONE = "0" * 16


def test_a_stop_sent_to_the_group_is_pending_until_taken() -> None:
    assert stop_pending(STATUS.format(sig=NONE, shd=STOP))


def test_a_stop_sent_to_the_thread_is_pending_too() -> None:
    assert stop_pending(STATUS.format(sig=STOP, shd=NONE))


def test_other_pending_signals_are_not_a_stop() -> None:
    others = 1 << (signal.SIGCONT - 1) | 1 << (signal.SIGTERM - 1) | 1 << (signal.SIGTSTP - 1)
    assert not stop_pending(STATUS.format(sig=f"{others:016x}", shd=f"{others:016x}"))
    assert not stop_pending(STATUS.format(sig=NONE, shd=NONE))
    assert not stop_pending("")  # a status file without the masks
