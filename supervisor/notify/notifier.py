"""The supervisor's notification listener: run events in, notices out to each target's
delivery thread. Attach it next to the other listener with `tee`:

    notifier = Notifier(load_user_targets(), history, on_result=...)
    notifier.watch_recipe(recipe)            # the recipe's own `notify:` targets
    Supervisor(history, logs_dir, tee(printer, notifier))
    ...
    notifier.close(timeout)                  # send what is queued and held, then stop

Which targets a run's events go to: the user config's, plus its recipe's (`watch_recipe`, by
recipe name; a run not launched here, such as a reattached one, reads its recipe from the
history). A failed delivery is written to the history (`notify_failures`) and passed to
`on_result`. Calling the notifier never blocks and never raises into the supervisor.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from supervisor.events import Severity
from supervisor.notify.config import NotifyTarget
from supervisor.notify.delivery import Delivery, DeliveryResult, Sender
from supervisor.notify.message import Notice, NoticeMaker, redacted, secret_values
from supervisor.notify.send import send as os_send
from supervisor.runs import events as ev

if TYPE_CHECKING:
    from supervisor.recipe.model import Recipe
    from supervisor.store.history import History

ALWAYS_SENT = ("test", "summary")  # whatever the target's `events` say


def tee(*listeners: Callable[[Any], None]) -> Callable[[Any], None]:
    """One `on_event` callback that calls each listener in order."""

    def both(event: Any) -> None:
        for listener in listeners:
            listener(event)

    return both


class Notifier:
    def __init__(
        self,
        targets: Sequence[NotifyTarget] = (),
        history: History | None = None,
        *,
        on_result: Callable[[DeliveryResult], None] | None = None,
        send: Sender = os_send,
        clock: Callable[[], float] = time.time,
        environ: dict[str, str] | None = None,
    ) -> None:
        self.user_targets = list(targets)
        self.history = history
        self._on_result = on_result
        self._send = send
        self._clock = clock
        self._maker = NoticeMaker()
        self._secrets = secret_values(environ)
        self._deliveries: dict[str, Delivery] = {}
        self._by_name: dict[str, list[NotifyTarget]] = {}  # a recipe's targets, by its name
        self._names: dict[str, str] = {}  # run id -> recipe name
        self._targets: dict[str, list[NotifyTarget]] = {}  # run id -> its targets
        self._broken = False
        self.closed = False

    # --- what the supervisor and the front ends call -------------------------------------

    def watch_recipe(self, recipe: Recipe) -> None:
        """Runs of `recipe` (and its relaunches) also notify its own `notify:` targets."""
        self._by_name[recipe.name] = list(recipe.notify)

    def __call__(self, event: object) -> None:
        """The `on_event` listener: never blocks (queues only), never raises."""
        try:
            if isinstance(event, ev.RunStarted):
                self._names[event.run_id] = event.name
            notice = self._maker.make(event)
            if notice is not None:
                self.publish(notice, self._targets_for(notice.run_id))
        except Exception as exc:  # notifying must never break supervising
            if not self._broken:
                self._broken = True
                print(f"ftmon: notify: {type(exc).__name__}: {exc}", file=sys.stderr)

    def sweep_finished(
        self, sweep_id: str, summary: str, run_ids: Sequence[str] = (), look: str = ""
    ) -> None:
        """For sweeps: say that sweep `sweep_id` is over (`summary`: one line of how it went;
        `look`: the command that shows it). Goes to the user's targets and those of its runs."""
        notice = Notice(
            "sweep_finished", "", self._clock(), f"sweep {sweep_id} finished", Severity.INFO,
            seen=summary, did=f"ran {len(run_ids)} run(s): {', '.join(run_ids[:10])}".rstrip(": "),
            look=look, extra={"sweep_id": sweep_id, "run_ids": list(run_ids)},
        )  # fmt: skip
        targets = _unique([*self.user_targets, *(t for r in run_ids for t in self._targets_for(r))])
        self.publish(notice, targets)

    def publish(self, notice: Notice, targets: Iterable[NotifyTarget]) -> None:
        """Queue `notice` (redacted) for each of `targets` that wants it."""
        if self.closed:
            return
        notice = redacted(notice, self._secrets)
        for target in targets:
            if wants(target, notice):
                self._delivery(target).put(notice)

    def close(self, timeout: float = 10.0) -> bool:
        """Send what is queued (held summaries at once), waiting at most `timeout` in all;
        what is not sent by then is recorded as not delivered. True when all went out."""
        self.closed = True
        deadline = time.monotonic() + timeout
        ok = True
        for delivery in self._deliveries.values():
            ok = delivery.close(max(0.0, deadline - time.monotonic())) and ok
        return ok

    # --- inside ------------------------------------------------------------------------------

    def _targets_for(self, run_id: str) -> list[NotifyTarget]:
        if not run_id:
            return list(self.user_targets)
        if run_id not in self._targets:
            name = self._names.get(run_id)
            own = self._by_name[name] if name in self._by_name else self._recorded(run_id)
            self._targets[run_id] = _unique([*self.user_targets, *own])
        return self._targets[run_id]

    def _recorded(self, run_id: str) -> list[NotifyTarget]:
        """The `notify:` of the run's recipe as the history holds it (a reattached run)."""
        if self.history is None:
            return []
        from supervisor.recipe.model import RecipeError, recipe_from_yaml

        rec = self.history.get(run_id)
        if rec is None or not rec.recipe_yaml:
            return []
        try:
            return list(recipe_from_yaml(rec.recipe_yaml, run_id).notify)
        except RecipeError:
            return []  # an old snapshot that no longer validates: the user's targets only

    def _delivery(self, target: NotifyTarget) -> Delivery:
        key = target.model_dump_json()
        if key not in self._deliveries:
            self._deliveries[key] = Delivery(target, self._send, self._result, self._clock)
        return self._deliveries[key]

    def _result(self, result: DeliveryResult) -> None:
        """From a delivery thread: record a failure, then tell the front end."""
        if not result.ok and self.history is not None:
            n = result.notice
            try:
                self.history.add_notify_failure(
                    run_id=n.run_id, ts=self._clock(), target=result.target, event=n.event,
                    title=n.title, attempts=result.attempts, error=result.error,
                )  # fmt: skip
            except Exception as exc:  # a closed or locked database: still tell the front end
                result = DeliveryResult(
                    result.target, n, False, result.attempts,
                    f"{result.error} (not recorded: {exc})", result.secs,
                )  # fmt: skip
        if self._on_result is not None:
            self._on_result(result)


def wants(target: NotifyTarget, notice: Notice) -> bool:
    """Whether `target` asked for this kind of notice (an anomaly: at its severity or above)."""
    if notice.event in ALWAYS_SENT:
        return True
    if notice.event not in target.events:
        return False
    return notice.event != "anomaly" or notice.severity >= target.min_severity


def _unique(targets: Iterable[NotifyTarget]) -> list[NotifyTarget]:
    seen: dict[str, NotifyTarget] = {}
    for t in targets:
        seen.setdefault(t.model_dump_json(), t)
    return list(seen.values())


# How long a closing `ftmon run` waits for notifications still queued (the run's last message).
NOTIFY_CLOSE_SECS = 10.0


def failure_line(result: DeliveryResult) -> str:
    """The line a front end shows for a notification that was not delivered."""
    who = result.notice.run_id or "ftmon"
    tries = f" after {result.attempts} attempt(s)" if result.attempts else ""
    return (
        f"{who}: notify  {result.target} FAILED{tries}: {result.error} "
        f"(the {result.notice.event} message)"
    )
