"""De-duplication and rate limit for one target, so that a flapping rule sends one summary, not
a hundred messages. Pure: time comes in as arguments.

- The same notice (event, run, rule) again within `dedup_secs` of the first is held and counted;
  when the window closes, one summary says how many more there were and shows the last.
- At most `max_per_minute` messages go out in any 60 s; the rest are held and go out as one
  summary as soon as the minute allows.
- `flush` (ftmon is closing) sends what is held at once, within the rate limit's spirit: one
  summary per kind of holding.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from supervisor.notify.message import Notice, summary_of_held, summary_of_repeats

RATE_WINDOW_SECS = 60.0


@dataclass
class _Repeats:
    since: float
    first: Notice
    count: int = 0
    last: Notice | None = None


class Throttle:
    def __init__(self, dedup_secs: float, max_per_minute: int) -> None:
        self.dedup_secs = dedup_secs
        self.max_per_minute = max_per_minute
        self._repeats: dict[tuple[str, str, str], _Repeats] = {}
        self._sent: deque[float] = deque()
        self._held: list[Notice] = []

    def offer(self, notice: Notice, now: float) -> list[Notice]:
        """What to send now because `notice` came (maybe nothing: it was held)."""
        out = self.due(now)
        rep = self._repeats.get(notice.key)
        if rep is not None and now - rep.since < self.dedup_secs:
            rep.count += 1
            rep.last = notice
            return out
        if self.dedup_secs > 0:
            self._repeats[notice.key] = _Repeats(now, notice)
        return out + self._rate([notice], now)

    def due(self, now: float) -> list[Notice]:
        """Summaries whose time has come."""
        ready: list[Notice] = []
        for key, rep in list(self._repeats.items()):
            if now - rep.since >= self.dedup_secs:
                del self._repeats[key]
                if rep.count and rep.last is not None:
                    ready.append(
                        summary_of_repeats(rep.first, rep.count, rep.last, now - rep.since)
                    )
        return self._rate(ready, now)

    def flush(self, now: float) -> list[Notice]:
        """Everything held, now (the notifier is closing)."""
        out = [
            summary_of_repeats(r.first, r.count, r.last, now - r.since)
            for r in self._repeats.values()
            if r.count and r.last is not None
        ]
        self._repeats.clear()
        held, self._held = self._held + out, []
        if len(held) > 1:
            return [summary_of_held(held, self.max_per_minute)]
        return held

    def next_due(self) -> float | None:
        """When `due` may next have something to send (None: nothing is held)."""
        times = [r.since + self.dedup_secs for r in self._repeats.values() if r.count]
        if self._held and self._sent:
            times.append(self._sent[0] + RATE_WINDOW_SECS)
        return min(times) if times else None

    def _rate(self, notices: list[Notice], now: float) -> list[Notice]:
        while self._sent and now - self._sent[0] >= RATE_WINDOW_SECS:
            self._sent.popleft()
        self._held += notices
        if not self._held or len(self._sent) >= self.max_per_minute:
            return []
        room = self.max_per_minute - len(self._sent)
        if len(self._held) <= room:
            out, self._held = self._held, []
        else:  # fill all but one place, and say the rest in one summary
            keep = room - 1
            out = [*self._held[:keep], summary_of_held(self._held[keep:], self.max_per_minute)]
            self._held = []
        self._sent.extend([now] * len(out))
        return out
