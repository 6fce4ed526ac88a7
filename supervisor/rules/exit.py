"""`exit`: how the watched process ended, as an anomaly when it did not end cleanly.

Clean (code 0): nothing. Status unknown (a foreign pid): INFO. Killed by ftmon: INFO, with
the reason ftmon gave (the anomaly that caused it was reported already). Killed by a signal:
ERROR with the signal's name (a SIGKILL nobody here sent is often the kernel OOM killer; the
`oom` rule says so when memory was short). A non-zero code: ERROR; codes 128+N, which a shell
reports for a child killed by signal N, say so.
"""

from __future__ import annotations

import signal

from supervisor.events import Anomaly, Exit, Severity
from supervisor.rules.base import Rule, RuleSettings


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_exit(exit: Exit) -> str:
    """One phrase for how a process ended: "exited cleanly", "killed by SIGKILL (9)", ..."""
    sig = exit.signal
    if sig is None and exit.returncode is not None and exit.returncode < 0:
        sig = -exit.returncode  # subprocess's convention
    if exit.killed_by_ftmon:
        return f"killed by ftmon: {exit.killed_by_ftmon}"
    if sig is not None:
        return f"killed by {signal_name(sig)} ({sig})"
    if exit.returncode is None:
        return "ended (exit status unknown)"
    if exit.returncode == 0:
        return "exited cleanly"
    if exit.returncode > 128 and exit.returncode - 128 < 65:
        n = exit.returncode - 128
        return f"exited with code {exit.returncode} (a shell's code for {signal_name(n)})"
    return f"exited with code {exit.returncode}"


class ExitSettings(RuleSettings):
    pass


class ExitRule(Rule):
    name = "exit"
    Settings = ExitSettings

    def on_exit(self, exit: Exit) -> list[Anomaly]:
        if exit.killed_by_ftmon:
            return [self.anomaly(Severity.INFO, describe_exit(exit), exit.ts)]
        if exit.returncode == 0 and exit.signal is None:
            return []
        if exit.returncode is None and exit.signal is None:
            # A foreign process (`--watch --pid`) whose status nobody can read: news, not a fault.
            return [self.anomaly(Severity.INFO, describe_exit(exit), exit.ts)]
        return [self.anomaly(Severity.ERROR, describe_exit(exit), exit.ts)]
