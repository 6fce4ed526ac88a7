"""Judging text lines across lines: a line or a block repeated in a row, a block repeated with
small changes, near-duplicate lines, a hard-wrapped passage that says few phrases, a paragraph
said again with blank lines between."""

from __future__ import annotations

import itertools
from collections import deque

from supervisor.rules.base import clip
from supervisor.rules.repetition.one_line import LineJudge
from supervisor.rules.repetition.settings import RepetitionSettings
from supervisor.rules.repetition.text import (
    _CRASH,
    _DIGITS,
    _JSON_ITEM,
    _LIST_MARKER,
    _LOG_LIKE,
    _MARKER_START,
    _PUNCT,
    _TABLE_ROW,
    _is_prose,
    counters_only,
    similar_at_least,
    tokens,
)

_PASSAGE_TOKENS = 300  # tokens of consecutive text lines judged together (the latest ones)


class AcrossLines:
    """Judges a text line against the lines before it: a line or block repeated, a block that
    drifts, near-duplicate lines, a passage of few phrases, a paragraph said again."""

    def __init__(self, settings: RepetitionSettings, line: LineJudge) -> None:
        s = self.settings = settings
        self._line = line
        self._recent: deque[tuple[str, str, bool]] = deque(maxlen=s.max_block)
        self._runs = [0] * (s.max_block + 1)
        # The last prose line's tokens, whether a blank line came after it, and the run of
        # near-duplicates it ends (with the texts, for the evidence).
        self._near_prev: list[str] | None = None
        self._near_blank = False
        self._near_run: list[str] = []
        self._near_toks: list[list[str]] = []  # the run's lines as tokens
        self._near_words: set[str] = set()  # the words the run has said, and how many of
        self._near_new = 0  # them its lines after the first brought
        # Recent text lines for the drifting-block check: (tokens, text), and per period the
        # number of lines in a row that match the line one period back.
        self._fuzzy: deque[tuple[list[str], str]] = deque(maxlen=2 * s.max_block)
        self._fuzzy_runs = [0] * (s.max_block + 1)
        # Consecutive text lines read as one passage (a reply hard-wrapped over lines): their
        # tokens, and the shapes (numbers masked) of recent lines, so copies are read once.
        self._passage: deque[list[str]] = deque()
        self._passage_tokens = 0
        self._shapes: deque[tuple[str, ...]] = deque(maxlen=2 * s.max_block)
        # Paragraphs: the lines since the last blank line, and the last ones closed by one.
        self._para: list[str] = []
        self._paras: deque[tuple[str, ...]] = deque(maxlen=s.blank_copies)

    def blank(self) -> None:
        """A blank line: it neither counts nor breaks a run, but it closes a paragraph."""
        self._near_blank = self._near_prev is not None
        if self._para:
            self._paras.append(tuple(self._para))
            self._para = []

    def reset(self) -> None:
        """A metric line: a run of text lines ends."""
        s = self.settings
        self._para = []
        self._paras.clear()
        self._recent.clear()
        self._runs = [0] * (s.max_block + 1)
        self._near_prev = None
        self._near_run, self._near_toks = [], []
        self._fuzzy.clear()
        self._fuzzy_runs = [0] * (s.max_block + 1)
        self._end_passage()

    def judge(self, stripped: str) -> tuple[str, tuple[str, ...]] | None:
        """Why the text line `stripped` (not blank, no metric line) repeats the ones before."""
        s = self.settings
        near = self._judge_near(stripped)
        if near is not None:
            return near
        key = stripped
        if stripped[0] in _MARKER_START:
            key = _LIST_MARKER.sub("", stripped)
        marked = len(key) < len(stripped)
        if stripped[0] in '["' and (item := _JSON_ITEM.match(stripped)) is not None:
            key = item.group(1)  # a JSON list's item: the bracket and the comma are layout
        recent = self._recent
        runs = self._runs
        found: tuple[str, tuple[str, ...]] | None = None
        for p in range(1, min(len(recent), s.max_block) + 1):
            if recent[-p][0] != key:
                runs[p] = 0
                continue
            runs[p] += 1
            if found is not None:
                continue
            if p >= s.block_lines and runs[p] >= (s.block_copies - 1) * p:
                block = list(recent)[-p:]
                # A block of one-word items (a generated list) needs a third copy.
                wordy = any(len(tokens(k)) >= 3 for k, _, _ in block)
                if self._is_text_block(block, wordy=False) and (
                    wordy or runs[p] >= s.block_copies * p
                ):
                    copies = runs[p] // p + 1
                    found = (
                        f"a block of {p} lines repeated {copies} times in a row",
                        tuple(clip(t) for _, t, _ in block[-3:]),
                    )
                continue
            if runs[p] >= (s.lines - 1) * p:
                block = list(recent)[-p:]
                listed = marked and all(m for _, _, m in block)
                if runs[p] < ((s.lines if listed else s.plain_lines) - 1) * p:
                    continue
                # Judged only now, not on every line: what healthy logs repeat never counts.
                if all(_is_prose(k) for k, _, _ in block):
                    what = f"the line {clip(key, 80)!r}" if p == 1 else f"a block of {p} lines"
                    copies = runs[p] // p + 1
                    shown = [t for _, t, _ in list(recent)[-max(p, 2) :]] + [stripped]
                    found = (
                        f"{what} repeated {copies} times in a row",
                        tuple(clip(t) for t in shown),
                    )
        recent.append((key, stripped, marked))
        drift = self._judge_drifting_block(key, stripped)
        return found or drift or self._judge_paragraph(key)

    def _judge_paragraph(self, key: str) -> tuple[str, tuple[str, ...]] | None:
        """A paragraph of two lines or more (lines between blank lines) said again, word for
        word, `blank_copies` times: a model's reply looping over its paragraphs. (One line is
        the near-duplicate check's; three or more, the block check's, from two copies.)"""
        s = self.settings
        self._para.append(key)
        para = tuple(self._para)
        before = list(self._paras)[-(s.blank_copies - 1) :]
        if (
            len(para) < 2
            or len(before) < s.blank_copies - 1
            or any(p != para for p in before)
            or len(set(para)) < 2
            or not all(_is_prose(k) and len(tokens(k)) >= 3 for k in para)
        ):
            return None
        self._paras.clear()
        return (
            f"a paragraph of {len(para)} lines said {s.blank_copies} times, blank lines between",
            tuple(clip(k) for k in para[-3:]),
        )

    def _is_text_block(self, block: list[tuple[str, str, bool]], wordy: bool = True) -> bool:
        """A block of generated text or code: distinct lines, none a log record, mostly words
        (per-rank copies of one line, tables and warnings stay with the exact-line count)."""
        keys = [k for k, _, _ in block]
        if len(set(keys)) < self.settings.block_lines:
            return False
        if any(_LOG_LIKE.search(k) or _TABLE_ROW.match(k) for k in keys):
            return False
        prose = sum(1 for k in keys if any(c.isalpha() for c in k))
        return prose * 2 >= len(keys) and (not wordy or any(len(tokens(k)) >= 3 for k in keys))

    def _end_passage(self) -> None:
        self._passage.clear()
        self._passage_tokens = 0
        self._shapes.clear()

    def _judge_passage(self, toks: list[str], text: str) -> tuple[str, tuple[str, ...]] | None:
        """Consecutive text lines read as one passage that says few distinct words.

        A reply hard-wrapped over lines of 80 characters loops across them, each line too
        short to judge alone. A line whose shape (its words, numbers masked) was among the
        recent ones is read once: eight ranks print the same sentence, a status line counts up.
        """
        s = self.settings
        shape = tuple(_DIGITS.sub("0", t) for t in toks if any(c.isalpha() for c in t))
        if shape in self._shapes:
            return None
        self._shapes.append(shape)
        passage = self._passage
        passage.append(toks)
        self._passage_tokens += len(toks)
        while self._passage_tokens - len(passage[0]) >= _PASSAGE_TOKENS:
            self._passage_tokens -= len(passage.popleft())
        if len(passage) < 2 or self._passage_tokens < s.few_words_min:
            return None
        few = self._line.few_words([t for line in passage for t in line])
        lines = len(passage)
        if few is None and lines > 2:
            # A loop that starts inside the passage (the next line says the last one again,
            # shifted) is diluted by the healthy text before it: the last two lines alone.
            few = self._line.few_words(
                [t for line in itertools.islice(passage, lines - 2, None) for t in line]
            )
            lines = 2
        if few is None:
            return None
        self._end_passage()
        message = f"{lines} lines in a row ({few[0]} words) say only {few[1]} distinct phrases"
        return message, (clip(text),)

    def _lines_agree(self, a: list[str], b: list[str]) -> bool:
        """The same line, or a near-duplicate sentence whose words (not numbers) changed."""
        if a == b:
            return True
        s = self.settings
        if min(len(a), len(b)) < 3 or (a[0] != b[0] and a[-1] != b[-1]):
            return False  # cheap: reworded copies keep their start or their end
        return similar_at_least(a, b, s.near_similarity) and not counters_only(a, b)

    def _judge_drifting_block(self, key: str, stripped: str) -> tuple[str, tuple[str, ...]] | None:
        """A block of text lines followed by a copy whose lines match it, some only nearly."""
        s = self.settings
        recent = self._fuzzy
        runs = self._fuzzy_runs
        if not _is_prose(key) or _TABLE_ROW.match(key) or _CRASH.search(key):
            # Log records, tables, numbers and crash output break a block of generated text.
            recent.clear()
            self._fuzzy_runs = [0] * (s.max_block + 1)
            self._end_passage()
            return None
        toks = tokens(key)
        found = self._judge_passage(toks, stripped)
        for p in range(1, min(len(recent), s.max_block) + 1):
            if not self._lines_agree(recent[-p][0], toks):
                runs[p] = 0
                continue
            runs[p] += 1
            if found is None and p >= s.block_lines and runs[p] == p * (s.block_copies - 1):
                window = [*recent, (toks, stripped)]
                block, copy = window[-2 * p : -p], window[-p:]
                texts = [t for _, t in block]
                exact = sum(a == b for (a, _), (b, _) in zip(block, copy, strict=True))
                # As for an exact block: distinct lines, mostly words (an exact copy is
                # reported by the exact check first); most lines copied exactly, only some
                # reworded (a template of `Question:` / `Answer:` lines filled with new text
                # each time is not a loop); and lines unlike their neighbours: a list of lines
                # all alike (`Paris is the capital of France.`, `Rome is ...`) matches itself
                # one block back without repeating anything.
                if (
                    exact * 2 > p
                    and self._is_text_block([(t, t, False) for t in texts])
                    and not any(
                        self._lines_agree(a, b) for (a, _), (b, _) in itertools.pairwise(block)
                    )
                ):
                    copies = runs[p] // p + 1
                    found = (
                        f"a block of {p} lines repeated {copies} times with small changes",
                        (*(clip(t) for t in texts[-2:]), clip(stripped)),
                    )
            elif found is None and 2 <= p < s.block_lines and runs[p] >= 2 * p:
                found = self._settled_pair(p, [*recent, (toks, stripped)])
        recent.append((toks, stripped))
        return found

    def _settled_pair(
        self, p: int, window: list[tuple[list[str], str]]
    ) -> tuple[str, tuple[str, ...]] | None:
        """A short block (a question and its answer) that drifted, then repeats verbatim: a
        generation that settled into a loop. Copies printed per rank never drift, so the copy
        before the repeated one must differ from it (only nearly); its lines unlike each other."""
        if len(window) < 3 * p:
            return None
        before, block, copy = window[-3 * p : -2 * p], window[-2 * p : -p], window[-p:]
        if any(a != b for (a, _), (b, _) in zip(block, copy, strict=True)):
            return None
        if all(a == b for (a, _), (b, _) in zip(before, block, strict=True)):
            return None
        if any(len(t) < 3 for t, _ in block) or any(
            self._lines_agree(a, b) for (a, _), (b, _) in itertools.pairwise(block)
        ):
            return None
        texts = [t for _, t in copy]
        return (
            f"a block of {p} lines drifted, then repeats itself word for word",
            tuple(clip(t) for t in texts),
        )

    def _judge_near(self, stripped: str) -> tuple[str, tuple[str, ...]] | None:
        """Near-duplicate prose lines in a row (not the same line printed again)."""
        s = self.settings
        toks = tokens(stripped) if _is_prose(stripped) else []
        blank, self._near_blank = self._near_blank, False
        words = sum(1 for t in toks if t.strip(_PUNCT).isalpha())
        # Sentences: mostly words (not a progress frame or a dict of metrics that has letters).
        if len(toks) < s.near_min_tokens or words < 4 or words < 0.6 * len(toks):
            self._near_prev = None
            self._near_run, self._near_toks = [], []
            return None
        prev, self._near_prev = self._near_prev, toks
        words_of = {t.strip(_PUNCT).lower() for t in toks}
        # The same line again with nothing between is what every rank prints (the exact-repeat
        # check judges those, with its own count), unless the run already came back to one of
        # its earlier lines (`A B A A`: a sampler collapsing onto one sentence).
        returned = prev == toks and not blank and any(toks == t for t in self._near_toks[:-1])
        if (
            prev is None
            or not similar_at_least(prev, toks, s.near_similarity)
            or (prev == toks and not blank and not returned)
            or (prev != toks and counters_only(prev, toks))
        ):
            # Unlike lines, a copy printed per rank, or a status line whose numbers count up.
            self._near_run = [stripped]
            self._near_toks = [toks]
            self._near_words = words_of
            self._near_new = 0
            return None
        self._near_run.append(stripped)
        self._near_toks.append(toks)
        self._near_new += len(words_of - self._near_words)
        self._near_words |= words_of
        lines = len(self._near_run)
        # Copies of one sentence with blank lines between (a model's paragraphs): three do.
        copies = all(t == toks for t in self._near_toks)
        if lines < (s.blank_copies if copies else s.near_lines):
            return None
        # A loop's lines bring (almost) no new words; a list of facts in one template
        # (`Paris is the capital of France.`, `Rome is ...`) brings new ones on every line.
        if self._near_new > max(1.0, s.near_new_share * len(toks)) * (lines - 1):
            return None
        run, self._near_run, self._near_toks = self._near_run, [], []
        evidence = tuple(clip(t) for t in run[-3:])
        if copies:
            return (
                f"the same sentence {lines} times, blank lines between: {clip(run[-1], 80)!r}",
                evidence,
            )
        return f"{len(run)} near-identical lines in a row: {clip(run[-1], 80)!r}", evidence
