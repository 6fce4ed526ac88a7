"""`repetition`: the model collapsed into repeating itself.

Generated samples (`Sample` events) are judged on tokens: words split on whitespace, and each
CJK character a token of its own (Chinese and Japanese have no spaces, so `神神 F神神神` is six
tokens, five of them the same). A sample has collapsed when

- a unit of 1 to 8 tokens repeats back to back over at least `min_tokens` tokens
  (`F F F F ...`, `13, 13, 13, ...`, a sentence said again and again), or
- a unit of 1 to 10 characters repeats `min_tokens` times (`!!!!!!!!`, `<|im_start|>` x 20), or
- with at least `min_tokens` tokens, one token makes up more than `dominant_share` of them.

In a foreign log nothing marks a line as generated text, so ordinary text lines are judged on
looser, stricter-to-fire signs:

- the same line, or a block of up to `max_block` lines, repeated `lines` times in a row,
  after taking off a list marker (`1.`, `-`, `\\item`), which generated lists carry and
  repeated copies differ in;
- within one line, a unit of 1 to 40 characters repeated `in_line_repeats` times in a row.

What healthy logs repeat must not fire, so these never count: lines with no letters (`-----`,
`=====`, `|------|` tables, `████` bars, numbers), lines that look like log records (a level
word such as INFO or WARNING, a time of day, a `[...]` prefix: the same progress message from
eight ranks is not a collapsed model), and within a line, units made only of separator, bar,
digit and space characters. Progress bars reach the rules as `Progress`, not text.

De-duplication: after a report the rule is quiet for `quiet_lines` lines.
"""

from __future__ import annotations

import re
from collections import Counter, deque

from pydantic import Field

from supervisor.events import Anomaly, Eval, Event, Metric, Sample, Severity, Text
from supervisor.rules.base import LineCooldown, Rule, RuleSettings, clip

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_LIST_MARKER = re.compile(r"^(?:\d{1,4}[.)]|[-*•]|\\item)\s+")
_LOG_LIKE = re.compile(
    r"\b(?:INFO|WARN|WARNING|DEBUG|ERROR|CRITICAL|TRACE)\b|Warning:|\d\d:\d\d:\d\d|^\s*\["
)
# Characters that healthy logs repeat: separators, table rules, bars, digits, spaces.
_FILLER = frozenset(
    " \t-=_*#~^.·:;,+|/\\<>[](){}'\"`0123456789"
    "─━│┃┄┅┆┇┈┉┊┋┌┐└┘├┤┬┴┼═║╔╗╚╝╠╣╦╩╬▀▁▂▃▄▅▆▇█▉▊▋▌▍▎▏▐░▒▓■□▪▫"
)


def tokens(text: str) -> list[str]:
    """Words, with every CJK character a token of its own."""
    return _TOKEN.findall(text)


def repeated_token_run(toks: list[str], max_unit: int = 8) -> tuple[int, int, int]:
    """The longest back-to-back repetition of a unit of up to `max_unit` tokens.

    Returns (tokens covered, unit length, start index); (0, 0, 0) when nothing repeats.
    """
    best = (0, 0, 0)
    n = len(toks)
    for unit in range(1, min(max_unit, n // 2) + 1):
        run = 0
        for i in range(unit, n):
            if toks[i] == toks[i - unit]:
                run += 1
                covered = run + unit
                if covered > best[0] and run >= unit:  # at least two copies
                    best = (covered, unit, i - covered + 1)
            else:
                run = 0
    return best


class RepetitionSettings(RuleSettings):
    min_tokens: int = Field(
        12, ge=3, description="A sample repeating a unit over this many tokens has collapsed."
    )
    dominant_share: float = Field(
        0.5, gt=0, le=1, description="A sample where one token is more than this share."
    )
    lines: int = Field(4, ge=2, description="Log lines (or blocks) repeated this many times.")
    max_block: int = Field(4, ge=1, description="Longest block of lines checked for repeats.")
    in_line_repeats: int = Field(
        8, ge=3, description="A unit repeated this many times within one log line."
    )
    quiet_lines: int = Field(200, ge=0, description="Lines of quiet after a report.")


class RepetitionRule(Rule):
    name = "repetition"
    Settings = RepetitionSettings
    handles = (Metric, Eval, Sample, Text)

    def __init__(self, settings: RepetitionSettings | None = None) -> None:
        super().__init__(settings)
        s: RepetitionSettings = self.settings  # type: ignore[assignment]
        self.settings: RepetitionSettings
        self._quiet = LineCooldown(s.quiet_lines)
        self._chars = re.compile(rf"(.{{1,10}}?)\1{{{s.min_tokens - 1},}}", re.S)
        self._in_line = re.compile(rf"(.{{1,40}}?)\1{{{s.in_line_repeats - 1},}}", re.S)
        self._recent: deque[tuple[str, str]] = deque(maxlen=s.max_block * s.lines)
        self._runs = [0] * (s.max_block + 1)
        self._metric_line = 0

    def on_event(self, event: Event) -> list[Anomaly]:
        if isinstance(event, (Metric, Eval)):
            # The parser sends a line's metrics before its text: a metric line printed again
            # and again ("tensor(nan)" every step) is a training loop, not a looping model.
            self._metric_line = event.lineno
            return []
        if isinstance(event, Sample):
            found = self.judge_sample(event.text)
            if found is None:
                return []
            prompt = f" for {event.prompt!r}" if event.prompt else ""
            step = f" at step {event.step}" if event.step is not None else ""
            return self._report(f"sample{prompt}{step} {found}", event, (clip(event.text),))
        assert isinstance(event, Text)
        found = self._judge_line(event)
        if found is None:
            return []
        message, evidence = found
        return self._report(message, event, evidence)

    def judge_sample(self, text: str) -> str | None:
        """Why `text` looks collapsed, or None. Pure; also used by tests and the TUI."""
        s = self.settings
        toks = tokens(text)
        if len(toks) >= 2 * 2:
            covered, unit, start = repeated_token_run(toks)
            if covered >= s.min_tokens:
                shown = " ".join(toks[start : start + unit])
                return f"repeats {clip(shown, 60)!r} over {covered} tokens"
        m = self._chars.search(text)
        while m is not None:
            if not m.group(1).isspace():
                count = len(m.group(0)) // len(m.group(1))
                return f"repeats {clip(m.group(1), 60)!r} {count} times"
            m = self._chars.search(text, m.end())
        if len(toks) >= s.min_tokens:
            tok, count = Counter(toks).most_common(1)[0]
            if count > s.dominant_share * len(toks):
                return f"is {count} of {len(toks)} times {clip(tok, 40)!r}"
        return None

    def _judge_line(self, event: Text) -> tuple[str, tuple[str, ...]] | None:
        text = event.text
        s = self.settings
        # Within the line. The set-size gate is C-speed and rules out ordinary prose at once.
        if len(text) >= 16 and len(set(text)) * 3 < len(text):
            for m in self._in_line.finditer(text):
                unit = m.group(1)
                if all(c in _FILLER for c in unit):
                    continue
                count = len(m.group(0)) // len(unit)
                return (
                    f"a log line repeats {clip(unit.strip() or unit, 60)!r} {count} times",
                    (clip(text),),
                )
        # Across lines.
        stripped = text.strip()
        if not stripped:
            return None  # blank lines neither count nor break a run
        key = _LIST_MARKER.sub("", stripped)
        if (
            event.lineno == self._metric_line
            or not any(c.isalpha() for c in key)
            or _LOG_LIKE.search(stripped)
        ):
            self._recent.clear()
            self._runs = [0] * (s.max_block + 1)
            return None
        recent = self._recent
        found: tuple[str, tuple[str, ...]] | None = None
        for p in range(1, s.max_block + 1):
            if len(recent) >= p and recent[-p][0] == key:
                self._runs[p] += 1
                if found is None and self._runs[p] >= (s.lines - 1) * p:
                    copies = self._runs[p] // p + 1
                    block = [r[1] for r in list(recent)[-p:]]
                    what = f"the line {clip(key, 80)!r}" if p == 1 else f"a block of {p} lines"
                    found = (f"{what} repeated {copies} times in a row", tuple(block))
            else:
                self._runs[p] = 0
        recent.append((key, clip(stripped)))
        return found

    def _report(
        self, message: str, event: Sample | Text, evidence: tuple[str, ...]
    ) -> list[Anomaly]:
        if not self._quiet.ready(event.lineno):
            return []
        self._quiet.fire(event.lineno)
        return [self.anomaly(Severity.WARNING, message, event.ts, event.lineno, evidence)]
