"""What the TUI remembers about each run it shows, folded from the supervisor's events.

This is bookkeeping for drawing, not a second supervisor: every decision (what a rule found,
what the policy did, whether a run is paused) arrives as an event and is only recorded here.
Kept free of Textual so it can be checked with plain events.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from math import isfinite

from supervisor.events import Action, Anomaly, Eval, Metric, ResourceSample, Severity
from supervisor.monitoring.ranks import RankTracker
from supervisor.parsing.kv import spellings_of
from supervisor.runs.events import (
    ActionTaken,
    AnomalyFound,
    ChainStopped,
    MetricsObserved,
    ResourcesObserved,
    RunEnded,
    RunEvent,
    RunPaused,
    RunRelaunched,
    RunResumed,
    RunStarted,
    StateChanged,
)
from supervisor.runs.state import END_STATES, LIVE_STATES
from supervisor.store.history import MetricRow, RunRecord

# The series the plots know (the parser's names: parsing/kv.py), in the order they are drawn;
# anything else is not plotted.
PLOTTED = ("loss", "val_loss", "grad_norm", "lr", "tok_s")
# Evaluation names that mean "validation loss": the parser's spellings of val_loss, and a
# plain `loss` inside an evaluation.
VAL_LOSS_NAMES = ("val_loss", *sorted(spellings_of("val_loss") - {"val_loss"}), "loss")
# What a training metric line adds to the plots (an evaluation adds val_loss only).
_METRIC_SERIES = ("loss", "grad_norm", "lr", "tok_s", "val_loss")
MAX_POINTS = 5000  # per series; older points are thinned so a long run stays cheap to draw


@dataclass
class RunView:
    """One run as the screen shows it."""

    run_id: str
    name: str
    attempt: int = 1
    parent_id: str | None = None
    argv: tuple[str, ...] = ()
    log_path: str = ""
    pid: int | None = None
    status: str = "running"  # a RunState value (runs/state.py), or "detached"
    reason: str = ""  # why it is paused or why it ended
    changes: tuple[str, ...] = ()  # the adjustment that made this relaunch
    series: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    marks: dict[int, Severity] = field(default_factory=dict)  # 1-based log line -> severity
    resources: ResourceSample | None = None
    executor: str = ""  # what runs it: "local", "torchrun", "slurm" (its handle in history)
    job_id: str = ""  # a Slurm job's id
    job_state: str = ""  # its last state as the supervisor said it: `PENDING (Resources)`
    # A distributed run's ranks: progress and straggler scores (monitoring/ranks.py), and each
    # rank's loss for the overlaid plot; the main series hold the lowest rank's values.
    ranks: RankTracker = field(default_factory=RankTracker)
    rank_series: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    last_ts: float = 0.0
    # Log lines the last batch of metrics came from (first to last metric): a catch-up reads
    # thousands at once, a followed log a few; the plots redraw less often during the first.
    batch_lines: int = 0

    @property
    def live(self) -> bool:
        return self.status in _LIVE

    def rank_rows(self) -> list[tuple[int, int, float]]:
        """(rank, last step, straggler score) for each rank seen, in rank order."""
        scores = self.ranks.scores(self.last_ts)
        return [(r, p.step, scores.get(r, 1.0)) for r, p in sorted(self.ranks.ranks.items())]

    def add_point(self, name: str, x: float, y: float) -> None:
        if not isfinite(y):
            return  # a NaN is shown by the feed and the log mark, not as a hole in the plot
        points = self.series.get(name)
        if points is None:
            points = self.series[name] = []
        points.append((x, y))
        if len(points) > MAX_POINTS:
            del points[1::2]  # every other point goes; the first and the newest stay (even max)


@dataclass(frozen=True, slots=True)
class FeedItem:
    """One line of the anomalies-and-actions feed."""

    ts: float
    run_id: str
    kind: str  # "anomaly" | "action" | "paused" | "ended" | "relaunched" | "stopped" | "started"
    text: str
    severity: Severity = Severity.INFO
    who: str = ""  # the run as the feed names it: `#attempt`, or `name #attempt` (see _who)
    tag: str = ""  # the word that says what happened: the rule, `killed`, `relaunch`, ...


class RunBook:
    """All runs the TUI knows, in the order it first saw them."""

    def __init__(self) -> None:
        self.runs: dict[str, RunView] = {}
        self.feed: list[FeedItem] = []
        # Notices already in the feed (rule, message): a notice that is the same for every run
        # ("vram rule off: no NVIDIA GPU") is said once, not at every launch and relaunch.
        self._noted: set[tuple[str, str]] = set()

    def get(self, run_id: str) -> RunView | None:
        return self.runs.get(run_id)

    def live_ids(self) -> list[str]:
        return [r.run_id for r in self.runs.values() if r.live]

    def children(self, run_id: str | None) -> list[RunView]:
        return [r for r in self.runs.values() if r.parent_id == run_id]

    def roots(self) -> list[RunView]:
        """Runs whose parent is not shown here: the first launch of each lineage."""
        return [r for r in self.runs.values() if r.parent_id not in self.runs]

    def add_record(self, rec: RunRecord) -> RunView:
        """A run known from the history database (shown before any event about it arrives)."""
        view = self.runs.get(rec.id)
        if view is None:
            view = RunView(rec.id, rec.name)
            self.runs[rec.id] = view
        view.attempt = rec.attempt
        view.parent_id = rec.parent_id
        view.argv = rec.argv
        view.log_path = rec.log_path
        view.pid = rec.pid
        view.status = rec.status
        view.reason = rec.end_reason
        view.changes = rec.changes
        self.set_executor(rec.id, rec.executor)
        return view

    def set_executor(self, run_id: str, described: dict[str, object] | None) -> None:
        """Where a run executes, from its handle in history (Executor.describe)."""
        view = self.runs.get(run_id)
        if view is not None and described:
            view.executor = str(described.get("executor") or "")
            view.job_id = str(described.get("job_id") or "")

    def load_history(self, run_id: str, anomalies: list[Anomaly], metrics: list[MetricRow]) -> None:
        """Marks and plot points a run had before this TUI saw it (a reattached run, or one
        of its ancestors), from the history database."""
        view = self.runs.get(run_id)
        if view is None:
            return
        for anomaly in anomalies:
            if anomaly.lineno:
                old = view.marks.get(anomaly.lineno, Severity.INFO)
                view.marks[anomaly.lineno] = max(old, anomaly.severity)
        for row in metrics:
            name = "val_loss" if row.kind == "eval" and row.name in VAL_LOSS_NAMES else row.name
            if name in PLOTTED and row.value is not None:  # a NaN is stored as NULL
                x = float(row.step if row.step is not None else row.lineno)
                view.add_point(name, x, row.value)

    def apply(self, event: RunEvent) -> list[FeedItem]:
        """Record one event; returns the feed lines it adds."""
        items: list[FeedItem] = []
        if isinstance(event, RunStarted):
            view = self.runs.get(event.run_id) or RunView(event.run_id, event.name)
            self.runs[event.run_id] = view
            view.name, view.attempt, view.parent_id = event.name, event.attempt, event.parent_id
            view.argv, view.log_path, view.pid = event.argv, event.log_path, event.pid
            view.status, view.reason = "running", ""
            verb = "reattached" if event.reattached else "started"
            text = f"pid {event.pid}"
            if event.finishing:  # what an ftmon that died left half done, finished now
                text += f"; finishing its {event.finishing} for rule {event.finishing_rule}"
            items.append(self._item(event.ts, event.run_id, "started", text, tag=verb))
        elif isinstance(event, MetricsObserved):
            view = self.runs.get(event.run_id)
            if view is not None and event.events:
                for ev in event.events:
                    self._add_values(view, ev)
                view.batch_lines = event.events[-1].lineno - event.events[0].lineno + 1
        elif isinstance(event, ResourcesObserved):
            view = self.runs.get(event.run_id)
            if view is not None:
                view.resources = event.sample
        elif isinstance(event, AnomalyFound):
            items += self._anomaly(event.run_id, event.anomaly)
        elif isinstance(event, ActionTaken):
            items += self._action(event.run_id, event.action)
        elif isinstance(event, RunPaused):
            self._set(event.run_id, "paused", event.reason)
            items.append(
                self._item(
                    event.ts, event.run_id, "paused", event.reason, Severity.WARNING, "paused"
                )
            )
        elif isinstance(event, RunResumed):
            self._set(event.run_id, "running", "")
            items.append(self._item(event.ts, event.run_id, "action", "", tag="resumed"))
        elif isinstance(event, RunEnded):
            self._set(event.run_id, event.status, event.reason)
            sev = Severity.INFO if event.status in ("finished", "detached") else Severity.ERROR
            items.append(
                self._item(
                    event.ts, event.run_id, "ended", _ended_text(event), sev, _ended_tag(event)
                )
            )
        elif isinstance(event, RunRelaunched):
            child = self.runs.get(event.run_id)
            # Its RunStarted (which carries the attempt) normally comes first; if not, the id
            # says which run it is until it does.
            as_ = f"as #{child.attempt}" if child is not None else f"as {event.run_id}"
            if child is None:
                parent = self.runs.get(event.parent_id)
                child = RunView(event.run_id, parent.name if parent else event.run_id)
                self.runs[event.run_id] = child
            child.parent_id = event.parent_id
            child.changes = event.changes
            what = f": {'; '.join(event.changes)}" if event.changes else ""
            text = f"{as_}{what}, from the base weights"
            items.append(
                self._item(
                    event.ts, event.parent_id, "relaunched", text, Severity.WARNING, "relaunch"
                )
            )
        elif isinstance(event, StateChanged):
            # The end is told by RunEnded (with its reason); a live state is the run's status.
            view = self.runs.get(event.run_id)
            if view is not None and event.new not in _ENDED and view.status not in _ENDED:
                view.status = event.new
        elif isinstance(event, ChainStopped):
            items.append(
                self._item(event.ts, event.run_id, "stopped", event.reason, Severity.ERROR,
                           "no relaunch")
            )  # fmt: skip
        self.feed.extend(items)
        return items

    def _set(self, run_id: str, status: str, reason: str) -> None:
        view = self.runs.get(run_id)
        if view is not None:
            view.status, view.reason = status, reason

    def _add_values(self, view: RunView, ev: object) -> None:
        if isinstance(ev, Metric):
            values = ev.values
            x = float(ev.step if ev.step is not None else ev.lineno)
            # (a catch-up passes hundreds of thousands of metrics here: the rank is looked for
            # only where there can be one)
            rank = _rank(ev) if ev.rank is not None or "rank" in values else None
            if rank is not None:
                view.last_ts = max(view.last_ts, ev.ts)
                if ev.step is not None:
                    view.ranks.observe(rank, ev.step, ev.ts)
                if "loss" in ev.values and math.isfinite(ev.values["loss"]):
                    points = view.rank_series.setdefault(rank, [])
                    points.append((x, ev.values["loss"]))
                    if len(points) > MAX_POINTS:
                        del points[1::2]
                if rank != min(view.ranks.ranks, default=rank):
                    return  # the plots' own series are the first rank's
            add = view.add_point
            for name in _METRIC_SERIES:
                y = values.get(name)
                if y is not None:
                    add(name, x, y)
        elif isinstance(ev, Eval):
            x = float(ev.step if ev.step is not None else ev.lineno)
            for name in VAL_LOSS_NAMES:
                if name in ev.values:
                    view.add_point("val_loss", x, ev.values[name])
                    break

    def _anomaly(self, run_id: str, anomaly: Anomaly) -> list[FeedItem]:
        view = self.runs.get(run_id or anomaly.run_id)
        if view is not None and anomaly.rule == "slurm":  # "job 12 PENDING (Resources)"
            job, _, state = anomaly.message.removeprefix("job ").partition(" ")
            view.job_id, view.job_state = view.job_id or job, state
        if view is not None and anomaly.lineno:
            old = view.marks.get(anomaly.lineno, Severity.INFO)
            view.marks[anomaly.lineno] = max(old, anomaly.severity)
        if anomaly.severity == Severity.INFO and anomaly.rule == "exit":
            return []  # the run's end is a feed line of its own (RunEnded)
        if anomaly.severity == Severity.INFO and not anomaly.lineno:
            # A notice about the setup, not about a line of the log: once is enough.
            if (anomaly.rule, anomaly.message) in self._noted:
                return []
            self._noted.add((anomaly.rule, anomaly.message))
        where = f" (line {anomaly.lineno})" if anomaly.lineno else ""
        text = f"{anomaly.message}{where}"
        # "grad_norm is 319.3" names its rule already: no `grad_norm grad_norm is 319.3`.
        tag = "" if anomaly.message.startswith(f"{anomaly.rule} ") else anomaly.rule
        return [self._item(anomaly.ts, run_id, "anomaly", text, anomaly.severity, tag)]

    def _action(self, run_id: str, action: Action) -> list[FeedItem]:
        # Each action that worked has its own line already: an alert is its anomaly, a pause,
        # resume, kill or relaunch is the RunPaused / RunResumed / RunEnded / RunRelaunched it
        # caused. Only one that failed adds a line here (the history keeps them all); a
        # relaunch that did not happen is said by its ChainStopped.
        if action.ok or action.kind == "relaunch":
            return []
        text = f"on {action.rule} failed: {action.detail}" if action.detail else "failed"
        return [self._item(action.ts, run_id, "action", text, Severity.ERROR, action.kind)]

    def _item(
        self,
        ts: float,
        run_id: str,
        kind: str,
        text: str,
        severity: Severity = Severity.INFO,
        tag: str = "",
    ) -> FeedItem:
        if text.startswith((f"{tag} ", f"{tag}:")):
            tag = ""  # "paused by the user", not "paused paused by the user"
        return FeedItem(
            ts=ts, run_id=run_id, kind=kind, text=text, severity=severity, who=self._who(run_id),
            tag=tag,
        )  # fmt: skip

    def _who(self, run_id: str) -> str:
        """`#2` while every run shown is of one recipe, else `name #2`."""
        view = self.runs.get(run_id)
        if view is None:
            return run_id
        if all(r.name == view.name for r in self.runs.values()):
            return f"#{view.attempt}"
        return f"{view.name} #{view.attempt}"


def _rank(metric: Metric) -> int | None:
    if metric.rank is not None:
        return metric.rank
    value = metric.values.get("rank")
    return int(value) if value is not None and math.isfinite(value) else None


_LIVE = frozenset(s.value for s in LIVE_STATES)
_ENDED = frozenset(s.value for s in END_STATES) | {"detached"}


def _ended_text(event: RunEnded) -> str:
    """How a run ended, the status said once: `killed by ftmon: rule nan (signal 15)`,
    `exited with code 1`, `(exit 0)` (the tag says `finished`)."""
    if event.signal:
        code = f"signal {event.signal}"
    elif event.returncode is not None:
        code = f"exit {event.returncode}"
    else:
        code = ""
    reason = "" if event.reason == event.status else event.reason
    if code and code.split()[-1] in reason.split():
        code = ""  # "exited with code 1", not "exited with code 1 (exit 1)"
    return " ".join(part for part in (reason, f"({code})" if code else "") if part)


def _ended_tag(event: RunEnded) -> str:
    """The status, unless the reason starts with it (`killed by ftmon: ...`)."""
    said = event.reason != event.status and event.reason.startswith(event.status)
    return "" if said else event.status
