"""Supervisor callbacks -> Textual messages, named as the facts they carry.

The `Supervisor` calls `Bridge.__call__` for every event, on the app's own asyncio loop (or,
should a caller ever do so, from another thread: then the message is posted thread-safely by
Textual's `post_message`). The widgets never see the supervisor's objects arrive any other way.

Frequent events must not flood the message queue: metrics are batched (the bridge keeps them
and posts one `MetricsArrived` that replaces any not yet handled for the same run; the handler
takes the whole batch), and resource samples replace each other (only the newest is drawn).
"""

from __future__ import annotations

from collections.abc import Callable

from textual.message import Message
from textual.message_pump import MessagePump

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


class RunEventMessage(Message):
    """Base of the bridge's messages: `event` is the supervisor's own frozen dataclass."""

    def __init__(self, event: RunEvent) -> None:
        super().__init__()
        self.event = event

    @property
    def run_id(self) -> str:
        return self.event.run_id


class RunLaunched(RunEventMessage):
    """A run was spawned or reattached (`RunStarted`)."""


class MetricsArrived(RunEventMessage):
    """New metrics for a run; `events` holds every batch since the last one was handled."""

    def __init__(self, event: MetricsObserved, batches: list[MetricsObserved]) -> None:
        super().__init__(event)
        self.batches = batches

    def can_replace(self, message: Message) -> bool:
        # The newer message holds the same list object with the older batches in it.
        return isinstance(message, MetricsArrived) and message.batches is self.batches


class ResourcesSampled(RunEventMessage):
    """A resource sample; a newer one for the same run replaces an unhandled older one."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ResourcesSampled) and message.run_id == self.run_id


class AnomalySeen(RunEventMessage):
    """A rule found something (`AnomalyFound`)."""


class ActionDone(RunEventMessage):
    """The policy or the person acted (`ActionTaken`)."""


class RunWasPaused(RunEventMessage):
    """The run was stopped; the event's `reason` says why (`RunPaused`)."""


class RunWasResumed(RunEventMessage):
    """The run goes on (`RunResumed`)."""


class RunFinished(RunEventMessage):
    """The run is over for this supervisor (`RunEnded`)."""


class RunWasRelaunched(RunEventMessage):
    """A new run was started from the parent's adjusted recipe (`RunRelaunched`)."""

    @property
    def run_id(self) -> str:
        return self.event.parent_id  # type: ignore[union-attr]


class ChainEnded(RunEventMessage):
    """The policy wanted a relaunch and could not (`ChainStopped`)."""


class RunStateChanged(RunEventMessage):
    """The run moved to another state (`StateChanged`: runs/state.py's RunState values)."""


_MESSAGES: dict[type, Callable[[RunEvent], RunEventMessage]] = {
    RunStarted: RunLaunched,
    ResourcesObserved: ResourcesSampled,
    AnomalyFound: AnomalySeen,
    ActionTaken: ActionDone,
    RunPaused: RunWasPaused,
    RunResumed: RunWasResumed,
    RunEnded: RunFinished,
    RunRelaunched: RunWasRelaunched,
    ChainStopped: ChainEnded,
    StateChanged: RunStateChanged,
}


class Bridge:
    """The supervisor's `on_event`: posts each event to `target` as a Textual message."""

    def __init__(self, target: MessagePump) -> None:
        self.target = target
        self._pending: dict[str, list[MetricsObserved]] = {}

    def __call__(self, event: RunEvent) -> None:
        if isinstance(event, MetricsObserved):
            batches = self._pending.get(event.run_id)
            if batches is None:
                batches = self._pending[event.run_id] = []
            batches.append(event)
            self.target.post_message(MetricsArrived(event, batches))
            return
        make = _MESSAGES.get(type(event))
        if make is not None:
            self.target.post_message(make(event))

    def take_metrics(self, message: MetricsArrived) -> list[MetricsObserved]:
        """The batches `message` stands for; later messages for the same run start a new list."""
        if self._pending.get(message.run_id) is message.batches:
            del self._pending[message.run_id]
        batches = list(message.batches)
        message.batches.clear()  # a replaced duplicate handled later finds nothing twice
        return batches
