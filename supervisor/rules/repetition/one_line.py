"""Judging one sample or one log line alone: a unit repeated back to back, a periodic tail,
runs of one character, a phrase said again and again, one or two dominant tokens, few distinct
word trigrams, a printed list of one token id, a line mostly of repeats."""

from __future__ import annotations

import re
from collections import Counter

from supervisor.rules.base import clip
from supervisor.rules.repetition.settings import RepetitionSettings
from supervisor.rules.repetition.text import (
    _BAR,
    _BRACKETS,
    _DATA_LIST,
    _FILLER,
    _ID_RUN,
    _LAST_NUMBER,
    _MIN_SPAN,
    _PADDING,
    _PUNCT,
    _UNDRAWN,
    _may_repeat,
    _printed_values,
    _trailing_char_runs,
    _unspaced_loop,
    _wordish,
    periodic_tail,
    repeated_token_run,
    tokens,
)

_SAMPLE_CACHE = 256  # samples judged and remembered (the cache is emptied when full)
_SAMPLE_CACHE_CHARS = 4096  # longer samples are judged afresh: the cache stays small
_UNKNOWN = object()


class LineJudge:
    """Judges one sample, or one log line (or a string inside a record) alone: no state but
    the settings' regexes and a cache of samples judged."""

    def __init__(self, settings: RepetitionSettings) -> None:
        s = self.settings = settings
        self._chars = re.compile(rf"(.{{1,10}}?)\1{{{s.min_tokens - 1},}}", re.S)
        self._in_line = re.compile(rf"(.{{1,40}}?)\1{{{s.in_line_repeats - 1},}}", re.S)
        self._mostly = re.compile(rf"(.{{3,40}}?)\1{{{s.tail_repeats - 1},}}", re.S)
        self._judged: dict[str, str | None] = {}

    def judge_sample(self, text: str) -> str | None:
        """Why `text` looks collapsed, or None (RepetitionRule.judge_sample)."""
        # Remembered per text: a run samples the same prompts, and the answers repeat.
        if len(text) > _SAMPLE_CACHE_CHARS:
            return self._judge_sample(text)
        known = self._judged.get(text, _UNKNOWN)
        if known is _UNKNOWN:
            if len(self._judged) >= _SAMPLE_CACHE:
                self._judged.clear()
            known = self._judged[text] = self._judge_sample(text)
        return known  # type: ignore[return-value]

    def _judge_sample(self, text: str) -> str | None:
        s = self.settings
        toks = tokens(text)
        if len(toks) >= 2 * 2:
            covered, unit, start = repeated_token_run(toks)
            if covered >= s.min_tokens:
                shown = " ".join(toks[start : start + unit])
                return f"repeats {clip(shown, 60)!r} over {covered} tokens"
        if not toks:
            return None  # blank: nothing that could loop (see the module's docstring)
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

    def judge_in_line(self, head: str) -> str | None:
        """Why one line (or a string inside a record) loops within itself, or None. The regex
        costs ~1 us per character, so cheap gates first; the repetition must cover half the
        line: a model's loop fills its output."""
        s = self.settings
        if len(head) >= _MIN_SPAN and _may_repeat(head, s.in_line_repeats - 1):
            for m in self._in_line.finditer(head):
                unit, span = m.group(1), m.group(0)
                if len(span) * 2 < len(head) or all(c in _FILLER for c in unit):
                    continue
                if set(unit) <= _UNDRAWN and _BAR.search(head):
                    continue  # the empty cells of a progress bar
                if _printed_values(unit):
                    continue  # `nan, nan, nan`: a printed tensor, the nan rule's business
                if _PADDING.search(span[: 4 * len(unit)]):
                    continue  # a data preview padded to length is not a looping model
                count = len(m.group(0)) // len(unit)
                return f"a log line repeats {clip(unit.strip() or unit, 60)!r} {count} times"
        if len(head) >= _MIN_SPAN:
            why = _trailing_char_runs(head, s.in_line_repeats)
            if why is not None:
                return why
        if len(head) >= s.tail_chars:
            why = self._judge_long_line(head)
            if why is not None:
                return why
        if len(head) >= 24 and _may_repeat(head, s.phrase_copies - 1, at_end=True):
            why = self._judge_phrase_loop(head)
            if why is not None:
                return why
        if len(head) >= 24 and _may_repeat(head, s.tail_repeats - 1):
            return self._judge_mostly_repeats(head)
        return None

    def _judge_phrase_loop(self, head: str) -> str | None:
        """A phrase of 2 to 8 words said `phrase_copies` times back to back, anywhere in the
        line (`of the state of the state of the state ...`, `Thank you. Thank you. ...`): a
        loop the model broke out of, or one the length limit cut, too short to fill half the
        line. Prose does not say a phrase of two words or more five times in a row; a word
        alone (`very very`) and printed values (`nan nan`, `True True`) never count."""
        # Brackets alone between the copies are layout (`Let me ( Let me ) Let me (`).
        toks = [t for t in tokens(head) if not set(t) <= _BRACKETS]
        if len(toks) < 2 * self.settings.phrase_copies:
            return None
        covered, unit, start = repeated_token_run(toks)
        if unit < 2 or covered < unit * self.settings.phrase_copies:
            return None
        phrase = toks[start : start + unit]
        if not all(_wordish(t) for t in phrase) or _PADDING.search(" ".join(phrase)):
            return None
        if all(t.lstrip("([{")[:1] in ("'", '"') for t in phrase):
            return None  # a printed list of strings (`['neg', 'pos', 'neg', 'pos', ...]`)
        shown = clip(" ".join(phrase), 60)
        return f"a log line says {shown!r} {covered // unit} times in a row"

    def _judge_long_line(self, head: str) -> str | None:
        """A periodic tail, one or two dominant tokens, or a list that is one id repeated."""
        s = self.settings
        # Cheap gates (C-level counts) before the Python loops: a periodic tail repeats the
        # line's last 8 characters, a dominant unit some window of the line, many times.
        end = head.rstrip()[-8:]
        if end.strip() and head.count(end) >= s.tail_repeats:
            found = self._periodic_tail(head)
            if found is not None:
                return found
        last = _LAST_NUMBER.search(head[-24:])
        if last is not None and head.count(last.group(1)) >= s.id_repeats:
            found = self._id_loop(head)
            if found is not None:
                return found
        found = _unspaced_loop(head)
        if found is not None:
            return found
        if not _may_repeat(head, 7):
            return None
        return self._dominant(head)

    def _periodic_tail(self, head: str) -> str | None:
        s = self.settings
        unit, copies, covered = periodic_tail(head, s.max_tail_unit)
        if (
            copies >= s.tail_repeats
            and covered >= s.tail_chars
            and any(_wordish(t) for t in tokens(unit))
            and not _PADDING.search(unit)
        ):
            return f"a log line ends repeating {clip(unit.strip() or unit, 60)!r} {copies} times"
        return None

    def few_words(self, toks: list[str]) -> tuple[int, int] | None:
        """Long text that says the same few phrases again: a loop, even one whose copies drift.

        Read as word trigrams (shingles): prose of 30 words or more rarely says a trigram twice
        (legal text, the most repetitive prose, repeats under a third of them); a passage said
        again and again, with or without small changes, repeats most of its trigrams. Only
        words count (not numbers or printed values), and they must be most of the tokens:
        key/value records and tables say their keys once each.
        Returns (words, distinct trigrams) when the share repeated is `few_words_share` or more.
        """
        s = self.settings
        words = [t.strip(_PUNCT).lower() for t in toks if _wordish(t) and not _PADDING.search(t)]
        if len(words) < s.few_words_min or len(words) < 0.6 * len(toks):
            return None
        grams = list(zip(words, words[1:], words[2:], strict=False))
        distinct = len(set(grams))
        if len(grams) - distinct >= s.few_words_share * len(grams):
            return len(words), distinct
        return None

    def _dominant(self, head: str) -> str | None:
        s = self.settings
        toks = tokens(head)
        for part in (toks, toks[len(toks) // 2 :]):  # the whole line, or a loop filling its end
            few = self.few_words(part)
            if few is not None:
                return f"a log line of {few[0]} words says only {few[1]} distinct phrases"
        if len(toks) >= s.dominant_tokens:
            top = Counter(t for t in toks if _wordish(t) and not _PADDING.search(t))
            common = top.most_common(2)
            if common and common[0][1] > s.dominant_share * len(toks):
                return (
                    f"a log line is {common[0][1]} of {len(toks)} times {clip(common[0][0], 40)!r}"
                )
            if len(common) == 2 and common[0][1] + common[1][1] >= s.pair_share * len(toks):
                pair = f"{clip(common[0][0], 20)!r} and {clip(common[1][0], 20)!r}"
                return (
                    f"a log line alternates {pair} ({common[0][1] + common[1][1]} of {len(toks)})"
                )
        return None

    def _id_loop(self, head: str) -> str | None:
        m = _ID_RUN.search(head)
        if m is not None and len(m.group(0)) * 5 >= len(head) * 4 and not _DATA_LIST.search(head):
            count = len(re.findall(rf"\b{m.group(1)}\b", m.group(0)))
            return f"a printed list repeats the id {m.group(1)} {count} times"
        return None

    def _judge_mostly_repeats(self, head: str) -> str | None:
        """A line made mostly of back-to-back copies of short units (each repeated enough)."""
        s = self.settings
        body = head.strip()
        covered, units = 0, []
        for m in self._mostly.finditer(body):
            unit = m.group(1)
            if any(_wordish(t) for t in tokens(unit)) and not _PADDING.search(unit):
                covered += len(m.group(0))
                units.append(unit.strip() or unit)
        if units and covered >= s.mostly_share * len(body):
            shown = ", ".join(repr(clip(u, 30)) for u in units[:3])
            return f"a log line is mostly repeats of {shown}"
        return None
