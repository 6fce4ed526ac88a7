"""What a notification says: run events -> `Notice`s (which run, what was seen, what ftmon did,
where to look), each text redacted. Pure: no I/O, no clock.

One incident gives few messages: an `alert` action is the anomaly's own message (sent as the
anomaly), a relaunch is said once (by `RunRelaunched`, not by its action too), a run ftmon
killed is said by the kill (not by its end as well), and what the person did from the TUI is
not sent back to them.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from typing import Any

from supervisor.events import Anomaly, Severity
from supervisor.redaction import is_secret
from supervisor.redaction import redact_text as redact_by_shape
from supervisor.runs import events as ev

MAX_EVIDENCE = 5
MAX_LINE = 300


@dataclass(frozen=True, slots=True)
class Notice:
    """One message, before a preset shapes it. `count` > 1: a summary of that many."""

    event: str  # an EVENT_KINDS entry, "test" or "summary"
    run_id: str
    ts: float
    title: str
    severity: Severity
    seen: str = ""  # what was seen: rule, line, message
    evidence: tuple[str, ...] = ()
    did: str = ""  # what ftmon did
    look: str = ""  # the command that shows it all
    rule: str = ""
    lineno: int = 0
    count: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str, str]:
        """What makes two notices "the same" for de-duplication."""
        return (self.event, self.run_id, self.rule)

    def text(self) -> str:
        """Plain text: the title, then seen / evidence / did / look lines."""
        out = [self.title]
        if self.seen:
            out.append(f"seen: {self.seen}")
        out += [f"  > {line}" for line in self.evidence]
        if self.did:
            out.append(f"did:  {self.did}")
        if self.look:
            out.append(f"look: {self.look}")
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        """The event as JSON (the `json` preset's body, a command target's stdin)."""
        return {
            "source": "ftmon",
            "event": self.event,
            "run_id": self.run_id,
            "ts": self.ts,
            "severity": str(self.severity),
            "title": self.title,
            "seen": {
                "rule": self.rule,
                "line": self.lineno,
                "message": self.seen,
                "evidence": list(self.evidence),
            },
            "did": self.did,
            "look": self.look,
            "count": self.count,
            "text": self.text(),
            **({"extra": self.extra} if self.extra else {}),
        }


def secret_values(environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(name, value) of the secret-named environment variables worth hiding, longest first."""
    env = os.environ if environ is None else environ
    found = [(k, v) for k, v in env.items() if is_secret(k) and len(v) >= 6]
    return sorted(found, key=lambda kv: -len(kv[1]))


def redact_text(text: str, secrets: list[tuple[str, str]]) -> str:
    """`text` with every credential by its shape (`redaction.redact_text`: URL user info,
    `hf_...`, `sk-...`, ...) and every value of a secret-named variable of ftmon's environment
    (as `<redacted:NAME>`) hidden."""
    for name, value in secrets:
        if value in text:
            text = text.replace(value, f"<redacted:{name}>")
    return redact_by_shape(text)


def redacted(notice: Notice, secrets: list[tuple[str, str]]) -> Notice:
    """The notice with its text fields redacted and cut to a readable length."""

    def clean(text: str) -> str:
        text = redact_text(text, secrets)
        return text if len(text) <= MAX_LINE else text[: MAX_LINE - 3] + "..."

    return replace(
        notice,
        title=clean(notice.title),
        seen=clean(notice.seen),
        evidence=tuple(clean(e) for e in notice.evidence[-MAX_EVIDENCE:]),
        did=redact_text(notice.did, secrets),
    )


def look(run_id: str) -> str:
    return f"ftmon show {run_id}"


def seen_of(anomaly: Anomaly) -> str:
    where = f" at line {anomaly.lineno}" if anomaly.lineno else ""
    return f"{anomaly.rule} ({anomaly.severity}){where}: {anomaly.message}"


_SPACE = re.compile(r"\s+")


class NoticeMaker:
    """Run events -> notices; remembers each run's anomalies so that an action, a relaunch or a
    stopped chain says what it was about."""

    def __init__(self) -> None:
        self._by_rule: dict[tuple[str, str], Anomaly] = {}  # (run, rule) -> the last one
        self._last: dict[str, Anomaly] = {}  # run -> the last warning or worse

    def make(self, event: object) -> Notice | None:
        if isinstance(event, ev.AnomalyFound):
            return self._anomaly(event)
        if isinstance(event, ev.ActionTaken):
            return self._action(event)
        if isinstance(event, ev.RunRelaunched):
            return self._relaunch(event)
        if isinstance(event, ev.ChainStopped):
            return self._with_cause(
                event.run_id, event.ts, "chain_stopped", "", Severity.ERROR,
                f"{event.run_id}: relaunch chain stopped",
                f"stopped relaunching: {event.reason}",
            )  # fmt: skip
        if isinstance(event, ev.RunEnded):
            return self._ended(event)
        return None

    def _anomaly(self, event: ev.AnomalyFound) -> Notice:
        a = event.anomaly
        self._by_rule[(event.run_id, a.rule)] = a
        if a.severity >= Severity.WARNING:
            self._last[event.run_id] = a
        return Notice(
            "anomaly", event.run_id, event.ts, f"{event.run_id}: {a.severity} {a.rule}: "
            f"{_SPACE.sub(' ', a.message)}", a.severity, seen=seen_of(a), evidence=a.evidence,
            did="recorded it; the recipe's policy for this rule acts on it (alert if none)",
            look=look(event.run_id), rule=a.rule, lineno=a.lineno,
        )  # fmt: skip

    def _action(self, event: ev.ActionTaken) -> Notice | None:
        a = event.action
        if a.rule == "user" or a.kind == "relaunch":
            return None  # the person did it themselves; a relaunch is told by RunRelaunched
        if a.kind == "alert":
            if (event.run_id, a.rule) in self._by_rule:
                return None  # the anomaly's own message is the alert
            return Notice(
                "anomaly", event.run_id, event.ts, f"{event.run_id}: alert {a.rule}: {a.detail}",
                Severity.WARNING, seen=f"{a.rule}: {a.detail}", did="alerted (no action)",
                look=look(event.run_id), rule=a.rule,
            )  # fmt: skip
        failed = "" if a.ok else " (FAILED)"
        severity = Severity.WARNING if a.kind in ("pause", "resume") else Severity.ERROR
        return self._with_cause(
            event.run_id, event.ts, "action", a.rule, severity,
            f"{event.run_id}: {a.kind}{failed} (rule {a.rule})", f"{a.kind}{failed}: {a.detail}",
        )  # fmt: skip

    def _relaunch(self, event: ev.RunRelaunched) -> Notice:
        changes = "; ".join(event.changes) or "no changes"
        cause = self._last.get(event.parent_id)
        return self._with_cause(
            event.parent_id, event.ts, "relaunch", cause.rule if cause else "", Severity.ERROR,
            f"{event.parent_id}: relaunched as {event.run_id}",
            f"relaunched from the base weights as {event.run_id} ({changes}): {event.reason}",
            extra={"child_id": event.run_id, "changes": list(event.changes)},
        )  # fmt: skip

    def _ended(self, event: ev.RunEnded) -> Notice | None:
        if event.status == "finished":
            return Notice(
                "run_finished", event.run_id, event.ts, f"{event.run_id}: finished",
                Severity.INFO, seen="the run exited with code 0", did="nothing: it finished",
                look=look(event.run_id),
            )  # fmt: skip
        if event.status != "failed":
            return None  # killed: the kill said it; detached: the run goes on
        how = f"exit code {event.returncode}" if event.returncode is not None else ""
        how = f"signal {event.signal}" if event.signal is not None else how
        return self._with_cause(
            event.run_id, event.ts, "run_failed", "", Severity.ERROR, f"{event.run_id}: failed",
            f"recorded the end ({how or 'no exit status'}): {event.reason}",
        )  # fmt: skip

    def _with_cause(
        self, run_id: str, ts: float, kind: str, rule: str, severity: Severity, title: str,
        did: str, extra: dict[str, Any] | None = None,
    ) -> Notice:  # fmt: skip
        """A notice about what ftmon did, with the anomaly behind it as what was seen."""
        cause = self._by_rule.get((run_id, rule)) if rule else None
        cause = cause or self._last.get(run_id)
        return Notice(
            kind, run_id, ts, title, severity, seen=seen_of(cause) if cause else "",
            evidence=cause.evidence if cause else (), did=did, look=look(run_id),
            rule=rule or (cause.rule if cause else ""), lineno=cause.lineno if cause else 0,
            extra=extra or {},
        )  # fmt: skip


def summary_of_repeats(first: Notice, repeats: int, last: Notice, secs: float) -> Notice:
    """One message for `repeats` more notices like `first` that the de-duplication held back."""
    minutes = f"{secs / 60:.0f} min" if secs >= 90 else f"{secs:.0f} s"
    what = f"{first.rule or first.event}"
    return replace(
        last,
        event="summary",
        title=f"{first.run_id}: {what} again, {repeats} more time(s) in {minutes}",
        did=f"held back {repeats} message(s) like this one (de-duplication); the last: {last.did}",
        count=repeats,
        extra={**last.extra, "summarises": first.event},
    )


def summary_of_held(held: list[Notice], max_per_minute: int) -> Notice:
    """One message for notices held back by the rate limit."""
    last = held[-1]
    runs = sorted({n.run_id for n in held if n.run_id})
    lines = tuple(n.title for n in held[-MAX_EVIDENCE:])
    return Notice(
        "summary", last.run_id, last.ts, f"ftmon: {len(held)} more events (over "
        f"{max_per_minute} a minute)", max(n.severity for n in held),
        seen=f"{len(held)} events on {', '.join(runs) or 'no run'}", evidence=lines,
        did="held them back to stay under the rate limit; every one is in the history",
        look=look(last.run_id) if last.run_id else "ftmon history", count=len(held),
    )  # fmt: skip
