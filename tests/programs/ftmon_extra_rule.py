"""Test program: the real `ftmon` command line with one more rule, `RaisesOn`, whose bug makes
it raise on chosen lines (as a rule might on one odd line), and which otherwise says INFO
`seen line N` for each line holding `probe`, so a test can see it go on after failing.

    python ftmon_extra_rule.py LINENO[,LINENO...] -- watch LOG ...   # or: scan LOG ...
"""

from __future__ import annotations

import sys

from supervisor.events import Anomaly, Eval, Event, Metric, Progress, Sample, Severity, Text
from supervisor.rules.base import Rule


class RaisesOn(Rule):
    """Raises ZeroDivisionError on every event of the given lines; INFO on `probe` lines."""

    name = "raises_on"
    handles = (Metric, Eval, Sample, Progress, Text)

    def __init__(self, lines: frozenset[int]) -> None:
        super().__init__()
        self.lines = lines

    def on_event(self, event: Event) -> list[Anomaly]:
        lineno: int = event.lineno  # type: ignore[union-attr]
        if lineno in self.lines:
            return [Anomaly(self.name, Severity.INFO, "unreachable", 0.0, 1 // 0)]
        if isinstance(event, Text) and "probe" in event.text:
            return [self.anomaly(Severity.INFO, f"seen line {lineno}", event.ts, lineno)]
        return []


def main() -> int:
    from supervisor.cli.main import main as ftmon_main

    lines, sep, *argv = sys.argv[1:]
    assert sep == "--", "usage: ftmon_extra_rule.py LINENO[,LINENO...] -- COMMAND ..."
    rule = RaisesOn(frozenset(int(n) for n in lines.split(",")))
    return ftmon_main(argv, extra_rules=[rule])


if __name__ == "__main__":
    sys.exit(main())
