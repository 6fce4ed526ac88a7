"""Reading history a batch at a time: the same answers as `Monitor.feed_lines`, less overhead.

`ftmon scan`, `--watch --from-start` and a supervisor catching up with a log read thousands of
lines at once. The per-line path (monitor.py) parses a line, then hands each of its events to
each rule that handles it, lowering every text and searching it for the rules' gate words. Here
a whole batch is parsed first (the parser is one object reading in order, as before), then:

- the gate words are searched once over the batch's whole text (hyperscan when installed, one
  `re` pass otherwise), so only lines holding one of them are lowered and checked word by word
  as the monitor checks them;
- each rule is fed, in one tight loop, the events it handles, in line order. Rules are
  independent objects, so feeding rule by rule gives each the same sequence as feeding event by
  event; the anomalies are then put back in the monitor's order (by event, then by rule).

Nothing here knows what a rule or the parser does: they are the same objects the per-line path
uses, so their answers (and the counters, evidence and state left behind) are identical; the
tests compare both paths on generated logs, every corpus file and random ones. A rule or the
parser that raises costs the fast loop nothing until it does: then the loop goes on from the
event after (`_each`), and the failure is handled as the monitor handles it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from itertools import chain, compress, repeat
from operator import is_
from typing import TYPE_CHECKING

from supervisor.events import Anomaly, Eval, Event, LogLine, Metric, Sample, Text

try:  # optional extra `ftmon[fast]`, as for parsing/prefilter.py
    import hyperscan as _hs
except ImportError:  # pragma: no cover - depends on the machine
    _hs = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from supervisor.monitoring.monitor import Monitor
    from supervisor.rules.base import Rule

_RETURNED = (Metric, Eval, Sample)
# A longer batch is fed in slices of this many lines: its events, and what each rule said of
# each, are held a slice at a time (memory), with the same answers (the rules see one sequence).
SLICE_LINES = 8192
# The only characters outside ASCII whose lower case holds ASCII (İ -> i̇, Kelvin sign -> k):
# a line with one may meet an ASCII gate word once lowered although no caseless match sees it.
# (tests/unit/test_batch.py checks the whole of Unicode for others.)
LOWERS_TO_ASCII = ("\u0130", "\u212a")


class GateSearch:
    """Which lines of a batch may hold one of the rules' gate words (lower-case substrings).

    A superset: every line whose lowered text holds a word is in it; a few more may be (the
    exact check runs on those). None from `lines_with_words` when it cannot say cheaply.
    """

    def __init__(self, words: Sequence[str], engine: str = "auto") -> None:
        self.words = tuple(sorted(set(words)))
        self._db = None
        self._re: re.Pattern[str] | None = None
        # ASCII-caseless matching finds every lowered ASCII word; a non-ASCII word that has
        # case itself (é / É) would need Unicode case folding: then no bulk search at all.
        cased = any(not c.isascii() and c.upper() != c.lower() for w in self.words for c in w)
        if not self.words or cased:
            return
        if engine != "re" and _hs is not None:
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            db.compile(
                expressions=[_hs_literal(w) for w in self.words],
                ids=list(range(len(self.words))),
                elements=len(self.words),
                flags=[_hs.HS_FLAG_CASELESS] * len(self.words),
            )
            self._db = db
        else:
            self._re = re.compile("|".join(map(re.escape, self.words)))

    def lines_with_words(self, texts: list[str]) -> set[int] | None:
        if self._db is None and self._re is None:
            return None
        joined = "\n".join(texts)
        hits: set[int] = set()
        if any(c in joined for c in LOWERS_TO_ASCII):
            hits.update(i for i, t in enumerate(texts) if any(c in t for c in LOWERS_TO_ASCII))
        if self._db is not None:
            data = joined.encode("utf-8", "surrogatepass")
            ends: list[int] = []

            def on_match(_id: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
                ends.append(end)

            self._db.scan(data, match_event_handler=on_match)
            hits.update(_lines_of(data, ends))
            return hits
        assert self._re is not None
        low = joined.lower()
        if len(low) != len(joined):  # lowering changed lengths: offsets no longer line up
            return None
        starts = _starts(joined)
        right = bisect.bisect_right
        hits.update(right(starts, m.start()) - 1 for m in self._re.finditer(low))
        return hits


def _each(
    call: Callable[..., list],
    items: Iterator,
    failed: Callable[[int, Exception], list],
    *more: object,
) -> list[list]:
    """`[call(x, *more) for x in items]` in C (map); an item `call` raises on gets
    `failed(its index, the exception)` instead and the rest go on (in C again)."""
    out: list[list] = []
    rest = [repeat(m) for m in more]
    while True:
        try:
            out.extend(map(call, items, *rest))  # what it gave before raising stays in `out`
            return out
        except Exception as exc:  # map took the item it raised on: `items` goes on after it
            out.append(failed(len(out), exc))


def _hs_literal(word: str) -> bytes:
    """A hyperscan pattern matching `word` literally (every byte escaped as \\xHH)."""
    return "".join(f"\\x{b:02x}" for b in word.encode("utf-8")).encode()


def _starts(joined: str) -> list[int]:
    starts = [0]
    find = joined.find
    i = find("\n")
    while i >= 0:
        starts.append(i + 1)
        i = find("\n", i + 1)
    return starts


def _lines_of(data: bytes, ends: list[int]) -> set[int]:
    """Line numbers (0-based, `\\n`-separated) of the bytes just before each match end."""
    out: set[int] = set()
    line, at = 0, 0
    count = data.count
    for end in sorted(ends):
        pos = end - 1
        if pos < at:
            continue
        line += count(b"\n", at, pos)
        at = pos
        out.add(line)
    return out


class BatchFeeder:
    """Feeds a `Monitor` a batch at a time (see the module docstring)."""

    def __init__(self, monitor: Monitor, engine: str = "auto") -> None:
        self.monitor = monitor
        rules = monitor.rules
        self._gates = [(r.text_gate, r.on_event) for r in rules]
        self._search = GateSearch([w for r in rules for w in r.text_gate], engine)

    def feed(self, lines: list[LogLine], ts: float) -> list[Event]:
        """What `Monitor._feed_fast` returns for `lines`, with the monitor left as it leaves it."""
        if len(lines) <= SLICE_LINES:
            return self._feed(lines, ts)
        out: list[Event] = []
        for start in range(0, len(lines), SLICE_LINES):
            out += self._feed(lines[start : start + SLICE_LINES], ts)
        return out

    def _feed(self, lines: list[LogLine], ts: float) -> list[Event]:
        m = self.monitor
        before = list(m._recent)
        # The loops below run in C (map, chain, compress): a Python loop costs ~50 ns a turn,
        # and there are several turns per event.
        parsed: list[list[Event]] = _each(
            m.parser.parse, iter(lines), lambda k, _exc: m.unparsed(lines[k], ts), ts
        )
        events: list[Event] = list(chain.from_iterable(parsed))
        line_of = list(chain.from_iterable(map(repeat, range(len(lines)), map(len, parsed))))
        kinds = list(map(type, events))
        everywhere = range(len(events))
        at_kind = {t: list(compress(everywhere, map(is_, kinds, repeat(t)))) for t in set(kinds)}
        text_at = at_kind.get(Text, [])
        gated = self._gated_texts(events, text_at, line_of, lines)
        anomalies: list[tuple[int, int, list[Anomaly]]] = []
        for order, rule in enumerate(m.rules):
            runs = [
                (gated[order] if rule.text_gate else text_at) if t is Text else at_kind.get(t, [])
                for t in rule.handles
            ]
            runs = [r for r in runs if r]
            if not runs:
                continue
            at = runs[0] if len(runs) == 1 else sorted(chain.from_iterable(runs))
            failed = partial(self._rule_failed, rule, events, at)
            found = _each(rule.on_event, map(events.__getitem__, at), failed)
            for i, said in zip(compress(at, found), filter(None, found), strict=True):
                anomalies.append((i, order, said))
        out = self._assemble(events, kinds, line_of, lines, before, anomalies)
        keep = m._recent.maxlen or 0
        m._recent.clear()
        m._recent.extend((before + lines[-keep:])[-keep:] if keep else ())
        return out

    def _rule_failed(
        self, rule: Rule, events: list[Event], at: list[int], k: int, exc: Exception
    ) -> list[Anomaly]:
        """`rule` raised on the k-th of the events it was fed (`at`): as the monitor says it."""
        return self.monitor.rule_failed(rule, events[at[k]], exc)

    def _gated_texts(
        self, events: list[Event], text_at: list[int], line_of: list[int], lines: list[LogLine]
    ) -> list[list[int]]:
        """For each rule with a gate, the positions of the texts the monitor would pass it."""
        out: list[list[int]] = [[] for _ in self._gates]
        if not any(gate for gate, _ in self._gates):
            return out
        hits = self._search.lines_with_words([ln.text for ln in lines])
        for i in text_at:
            if hits is not None and line_of[i] not in hits:
                continue
            low = events[i].text.lower()  # type: ignore[union-attr]
            for order, (gate, _) in enumerate(self._gates):
                if gate and any(w in low for w in gate):
                    out[order].append(i)
        return out

    def _assemble(
        self,
        events: list[Event],
        kinds: list[type],
        line_of: list[int],
        lines: list[LogLine],
        before: list[LogLine],
        anomalies: list[tuple[int, int, list[Anomaly]]],
    ) -> list[Event]:
        """Returned events and anomalies in the monitor's order, counted, with evidence."""
        m = self.monitor
        count = m._count
        out: list[Event] = []
        if not anomalies:
            out = [e for e, t in zip(events, kinds, strict=True) if t in _RETURNED]
            for e in out:
                count(e)
            return out
        anomalies.sort(key=lambda a: (a[0], a[1]))
        finish = _Finisher(m, before, lines)
        j = 0
        n = len(anomalies)
        for i, (e, t) in enumerate(zip(events, kinds, strict=True)):
            if t in _RETURNED:
                out.append(e)
                count(e)
            while j < n and anomalies[j][0] == i:
                out.extend(finish(line_of[i], anomalies[j][2]))
                j += 1
        return out


class _Finisher:
    """`Monitor._finish` with the monitor's recent lines as they were at a line of the batch."""

    def __init__(self, monitor: Monitor, before: list[LogLine], lines: list[LogLine]) -> None:
        self.monitor = monitor
        self.before = before
        self.lines = lines

    def __call__(self, k: int, found: list[Anomaly]) -> list[Anomaly]:
        m = self.monitor
        keep = m._recent.maxlen or 0
        window = (self.before + self.lines[max(0, k + 1 - keep) : k + 1])[-keep:]
        m._recent.clear()
        m._recent.extend(window)
        return m._finish(found)
