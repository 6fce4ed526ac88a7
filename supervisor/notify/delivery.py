"""The background side of notifying: one worker thread per target takes notices from a queue,
throttles them and sends each with a timeout and retries with backoff. Putting a notice on the
queue never blocks, so a webhook that hangs or fails never slows supervision down; the outcome
of every delivery comes back through `on_result` (from the worker thread).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from supervisor.notify.config import NotifyTarget
from supervisor.notify.message import Notice
from supervisor.notify.send import SendError
from supervisor.notify.throttle import Throttle
from supervisor.redaction import redact_text

Sender = Callable[[NotifyTarget, Notice, float], None]
QUEUE_MAX = 1000  # beyond it a notice is dropped and the drop reported (a stuck target)
IDLE_WAKE_SECS = 1.0


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    target: str  # the target's label
    notice: Notice
    ok: bool
    attempts: int
    error: str = ""
    secs: float = 0.0  # from the first attempt to the outcome


def deliver(
    target: NotifyTarget, notice: Notice, send: Sender, *, abort: threading.Event | None = None
) -> DeliveryResult:
    """Send with the target's timeout; retry with backoff (`backoff_secs * 2**k`) on failure.
    `abort` set: no more retries."""
    start = time.monotonic()
    abort = abort or threading.Event()
    if abort.is_set():
        return DeliveryResult(target.label, notice, False, 0, "not sent: ftmon was closing")
    error = ""
    attempts = 0
    for attempt in range(target.retries + 1):
        if attempt and abort.wait(target.backoff_secs * 2 ** (attempt - 1)):
            error += " (no more retries: ftmon was closing)"
            break
        attempts += 1
        try:
            send(target, notice, target.timeout_secs)
        except SendError as exc:
            error = str(exc)
            continue
        except Exception as exc:  # a bug in a sender must not end the worker
            error = f"{type(exc).__name__}: {exc}"
            continue
        return DeliveryResult(target.label, notice, True, attempts, "", time.monotonic() - start)
    # A command's stderr or a server's reason can quote a credential back: hidden by its shape.
    return DeliveryResult(
        target.label, notice, False, attempts, redact_text(error), time.monotonic() - start
    )


_STOP = object()


class Delivery:
    """One target's queue and worker thread (started at construction)."""

    def __init__(
        self,
        target: NotifyTarget,
        send: Sender,
        on_result: Callable[[DeliveryResult], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.target = target
        self._send = send
        self._on_result = on_result
        self._clock = clock
        self._queue: queue.Queue[object] = queue.Queue(QUEUE_MAX)
        self._throttle = Throttle(target.dedup_secs, target.max_per_minute)
        self._abort = threading.Event()
        self._thread = threading.Thread(
            target=self._work, name=f"ftmon-notify {target.label}", daemon=True
        )
        self._thread.start()

    def put(self, notice: Notice) -> None:
        """Queue a notice; never blocks (a full queue drops it, reported as a failure)."""
        try:
            self._queue.put_nowait(notice)
        except queue.Full:
            self._on_result(DeliveryResult(self.target.label, notice, False, 0,
                                           "dropped: the target's queue is full"))  # fmt: skip

    def close(self, timeout: float) -> bool:
        """Send what is queued and held (summaries at once), waiting at most `timeout`; then
        stop retrying. True when everything was dealt with in time."""
        try:
            self._queue.put(_STOP, timeout=max(timeout, 0.01))
        except queue.Full:
            self._abort.set()
            return False
        self._thread.join(timeout)
        if self._thread.is_alive():
            # No more retries; what is still queued is reported as not sent, once the attempt
            # under way ends (at its timeout at most): a short wait lets that be recorded.
            self._abort.set()
            self._thread.join(min(self.target.timeout_secs, 1.0))
            return False
        return True

    def _work(self) -> None:
        while True:
            wake = self._throttle.next_due()
            wait = IDLE_WAKE_SECS if wake is None else max(0.0, wake - self._clock())
            try:
                item = self._queue.get(timeout=min(wait, IDLE_WAKE_SECS))
            except queue.Empty:
                item = None
            now = self._clock()
            if item is _STOP:
                for notice in self._throttle.flush(now):
                    self._deliver(notice)
                return
            if isinstance(item, Notice):
                ready = self._throttle.offer(item, now)
            else:
                ready = self._throttle.due(now)
            for notice in ready:
                self._deliver(notice)

    def _deliver(self, notice: Notice) -> None:
        result = deliver(self.target, notice, self._send, abort=self._abort)
        try:
            self._on_result(result)
        except Exception:  # a failing front end must not end the worker
            pass
