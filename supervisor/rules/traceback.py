"""`traceback`: a Python "Traceback (most recent call last):" block, reported with its exception.

The block is the header, frames ("  File ...", indented source, `^^^^` carets, TorchScript
"At:" frames) and, at the end, the first unindented line, normally `SomeError: message`. The
anomaly carries that final line as its message and the header, the last frames and the final
line as evidence, at the final line's number. torchrun's `[rankN]:` prefix and a logger prefix
before "Traceback" are taken off first, so interleaved ranks do not break the block.

A block that ends in `KeyboardInterrupt` (Ctrl-C) is said at INFO: the run was stopped, not
broken. A block that never ends (the log stops inside it) is reported when another header arrives,
after `max_lines` lines, or when the process exits. Chained exceptions ("During handling of the
above exception ...") give one report per block; `quiet_lines` keeps a rank-by-rank repeat of
the same failure from giving more.
"""

from __future__ import annotations

import re
from collections import deque

from pydantic import Field

from supervisor.events import Anomaly, Event, Exit, Severity, Text
from supervisor.rules.base import LineCooldown, Rule, RuleSettings, clip

_HEADER = "Traceback (most recent call last)"
_RANK = re.compile(r"^\[(?:rank|default)\d*\]:\s?")
# `Name: message`, `pkg.Name: message` or a bare `Name`; also "RuntimeError: RuntimeError: ...".
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure)\b|"
                        r"[A-Za-z_][\w.]*:\s)")  # fmt: skip


class TracebackSettings(RuleSettings):
    max_lines: int = Field(200, ge=5, description="A block longer than this is reported as is.")
    quiet_lines: int = Field(
        20, ge=0, description="Lines after a report during which a new block is not reported."
    )


class TracebackRule(Rule):
    name = "traceback"
    Settings = TracebackSettings
    handles = (Text,)

    def __init__(self, settings: TracebackSettings | None = None) -> None:
        super().__init__(settings)
        self.settings: TracebackSettings
        self._open = False
        self._start = 0
        self._header = ""
        self._frames: deque[str] = deque(maxlen=4)
        self._strays = 0
        self._last_lineno = 0
        self._last_ts = 0.0
        self._quiet = LineCooldown(self.settings.quiet_lines)

    def on_event(self, event: Event) -> list[Anomaly]:
        assert isinstance(event, Text)
        text = event.text
        if not self._open and "Traceback" not in text:
            return []
        if text.startswith("["):
            text = _RANK.sub("", text)
        out: list[Anomaly] = []
        if _HEADER in text:
            if self._open:
                out += self._close(self._last_lineno, self._last_ts, "", "traceback (cut off)")
            self._open = True
            self._start = event.lineno
            self._header = clip(text)
            self._frames.clear()
            self._strays = 0
        elif self._open:
            stripped = text.strip()
            if not stripped or text[0] in " \t" or stripped == "At:" or stripped.startswith("^"):
                self._frames.append(clip(text))
            elif _EXCEPTION.match(stripped):
                out += self._close(event.lineno, event.ts, clip(stripped), clip(stripped, 200))
            else:
                # Another process's line interleaved with the block: skip a few, then give up.
                self._strays += 1
                if self._strays > 3:
                    out += self._close(event.lineno, event.ts, "", "traceback (no exception line)")
            if self._open and event.lineno - self._start > self.settings.max_lines:
                out += self._close(event.lineno, event.ts, "", "traceback (no exception line)")
        self._last_lineno = event.lineno
        self._last_ts = event.ts
        return out

    def on_exit(self, exit: Exit) -> list[Anomaly]:
        if not self._open:
            return []
        return self._close(self._last_lineno, self._last_ts, "", "traceback (cut off)")

    def _close(self, lineno: int, ts: float, final: str, message: str) -> list[Anomaly]:
        self._open = False
        if not self._quiet.ready(self._start):
            return []
        self._quiet.fire(lineno)
        evidence = (self._header, *self._frames, *((final,) if final else ()))
        # Ctrl-C (or a supervisor's SIGINT) ends a run with a KeyboardInterrupt traceback: the
        # run was stopped, it did not fail.
        stopped = final.split(":", 1)[0].strip() == "KeyboardInterrupt"
        severity = Severity.INFO if stopped else Severity.ERROR
        return [self.anomaly(severity, message, ts, lineno, evidence)]
