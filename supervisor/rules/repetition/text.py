"""Text helpers the repetition rule's judges share: tokens, what counts as prose or a log
record, what healthy logs repeat (filler, padding, printed values), and cheap measures of
repetition (a unit repeated back to back, a periodic tail, how alike two token lists are)."""

from __future__ import annotations

import re
from difflib import SequenceMatcher

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\s{_CJK}]+")
_LIST_MARKER = re.compile(r"^(?:\d{1,4}[.)]|[-*•]|\\item)\s+")
# Log records, exceptions and traceback frames: every rank prints the same one (torchrun's
# `[rankN]:` prefix is gone by the time the text reaches the rule), so repeats are expected.
_LOG_LIKE = re.compile(
    r"\b(?:INFO|WARN|WARNING|DEBUG|ERROR|CRITICAL|TRACE)\b|Warning:|\d\d:\d\d:\d\d"
    r"|^\s*\[[^\]\"',]{1,60}\]"
    r"|^\s*File \"|^[\w.]*(?:Error|Exception|Warning|Interrupt)\b"
    # A shell prompt and the command typed at it (`root@host:/work# python train.py`, with a
    # `(venv) ` before it): a person relaunching the same command is not a looping model.
    r"|^\s*(?:\([\w.-]+\)\s*)?[\w.-]+@[\w.-]+:[^\s#$]*[#$]\s"
    # Android's logcat (`I/nntrainer(21968): ...`, `E/tag( 123): ...`): level, tag, pid.
    r"|^[VDIWEF]/[\w.$-]+\(\s*\d+\):"
)
# Brackets standing alone between a phrase's copies (`Let me ( Let me ) Let me (`).
_BRACKETS = frozenset("()[]{}<>")
# Characters that healthy logs repeat: separators, table rules, bars, digits, spaces.
_FILLER = frozenset(
    " \t-=_*#~^.·:;,+|/\\<>[](){}'\"`0123456789"
    "─━│┃┄┅┆┇┈┉┊┋┌┐└┘├┤┬┴┼═║╔╗╚╝╠╣╦╩╬▀▁▂▃▄▅▆▇█▉▊▋▌▍▎▏▐░▒▓■▪▫"
)
# What a terminal shows for a token it cannot draw (tofu, the replacement character): a model
# stuck on one prints a run of them. Progress bars draw with `□` too, but beside `■`/`█`.
_UNDRAWN = frozenset("□▯\ufffd")
_BAR = re.compile("[■█▓▒░▉▊▋▌▍▎▏━]")


_FILLER_STR = "".join(sorted(_FILLER))
_MIN_SPAN = 32  # a repetition within a line must cover this many characters
_IN_LINE_CAP = 4096  # only the start of a very long line is searched


def _may_repeat(text: str, copies: int, at_end: bool = False) -> bool:
    """Whether a unit may repeat `copies` + 1 times over at least half of `text`.

    A repeated span that long contains a 4-character window starting at a quarter, half or
    three quarters of the line, and that window then recurs `copies` times, or (a unit shorter
    than the window: `!` or `□` 25 times) often enough to cover half the line: three `str.count`
    calls in C instead of the backtracking regex on every line. Filler windows never count.
    `at_end`: also the last window of words in the line's last 40 characters (a short loop
    the length limit cut, under a quarter of the line).
    """
    n = len(text)
    for j in (n // 4, n // 2, 3 * n // 4 - 4):
        window = text[j : j + 4]
        if window.strip(_FILLER_STR):
            count = text.count(window)
            if count >= copies or count * 8 >= n:
                return True
    if at_end:
        for j in range(n - 6, max(n - 40, 0), -3):
            window = text[j : j + 4]
            if window.strip(_FILLER_STR):
                return text.count(window) >= copies
    return False


# Special tokens that fill sequences to length: `<pad>`, `[PAD]`, `<|endoftext|>`, `</s>`.
_PADDING = re.compile(r"pad|endoftext|</s>|<eos>|<\|eot_id\|>", re.I)
# Words that printed tensors and tables repeat: `nan, nan, nan`, `True True False`.
_PUNCT = "\"'`.,;:!?()[]{}<>«»“”‘’-—…*"
_VALUE_WORDS = frozenset({"nan", "inf", "-inf", "none", "null", "true", "false", "yes", "no"})
# A list of numbers that is one number repeated, and what names a list as data, not output.
_ID_RUN = re.compile(r"(\d{1,7})(?:[,\s]+\1\b){15,}")
_LAST_NUMBER = re.compile(r"(\d+)\D{0,8}$")
_DATA_LIST = re.compile(r"input_ids|labels|attention_mask|position_ids|pad|mask|prompt", re.I)
_MARKER_START = frozenset("0123456789-*•\\")
# A quoted string of 64 characters or more inside a record: generated text a metric line carries.
_LONG_STRING = re.compile(r"'((?:[^'\\]|\\.){64,})'|\"((?:[^\"\\]|\\.){64,})\"")
# An item of a JSON list printed one per line: `["Math",`, ` "Science",`, ` "Reading"]`.
_JSON_ITEM = re.compile(r'^\[?\s*"([^"]*)"\s*[,\]]?\s*$')
# Crash output: every process of a job prints the same exception, interleaved mid-line.
_CRASH = re.compile(
    r"\w(?:Error|Exception)\b|Traceback|terminate called|what\(\)|core dumped|Segmentation fault"
)
# A row of a printed table (`│ cell │ cell │`): its rows look alike by construction.
_TABLE_ROW = re.compile(r"^\s*[│┃║|].*[│┃║|]\s*$")
_DIGITS = re.compile(r"\d+")


def _is_prose(line: str) -> bool:
    """A line that could be generated text: it has letters and is not a log record."""
    return any(c.isalpha() for c in line) and _LOG_LIKE.search(line) is None


def tokens(text: str) -> list[str]:
    """Words, with every CJK character a token of its own."""
    return _TOKEN.findall(text)


def _wordish(tok: str) -> bool:
    """A token that generated text repeats: it has letters and is not a printed value."""
    return any(c.isalpha() for c in tok) and tok.lower().strip(",.;:") not in _VALUE_WORDS


def _printed_values(unit: str) -> bool:
    """A unit made of printed values only (`nan, `, `True `): tensors and tables repeat them."""
    toks = tokens(unit)
    return bool(toks) and all(t.lower().strip(_PUNCT) in _VALUE_WORDS for t in toks)


_UNSPACED = 64  # characters without a space that are judged as a run of their own
_UNSPACED_SHARE = 0.2  # ...a loop when its distinct 4-character pieces are this share or fewer


def _unspaced_loop(head: str) -> str | None:
    """A long run of letters without a space that says few distinct 4-character pieces: a
    loop whose copies drift (`zorazorazazorazorzara...`). Text, identifiers, paths, hashes and
    base64 say a new piece almost every character; a loop says the same few again and again."""
    for tok in head.split():
        if len(tok) < _UNSPACED:
            continue
        if sum(c.isalpha() for c in tok) * 2 <= len(tok) or _PADDING.search(tok):
            continue
        pieces = len({tok[i : i + 4] for i in range(len(tok) - 3)})
        if pieces <= _UNSPACED_SHARE * (len(tok) - 3):
            return f"a run of {len(tok)} characters without a space says only {pieces} pieces"
    return None


def _trailing_char_runs(head: str, min_run: int) -> str | None:
    """A line that ends in runs of single characters, each `min_run` long or more, together
    over half the line, one of them punctuation that is not filler (`eachhh.......!!!!!!!!`):
    a model stuck on one token after another. Bars and rules end in filler runs only
    (`====>.....`), tracebacks' markers too (`~~~~^^^^`)."""
    body = head.rstrip()
    end = len(body)
    if end < 2 * min_run or len(set(body[-min_run:])) != 1:
        return None  # cheap gate: the line ends in a run
    runs: list[tuple[str, int]] = []
    i = end
    while i > 0:
        c = body[i - 1]
        j = i - 1
        while j > 0 and body[j - 1] == c:
            j -= 1
        if i - j < min_run or c.isspace():
            break
        runs.append((c, i - j))
        i = j
    covered = sum(n for _, n in runs)
    # A loud run is punctuation a model emits (`!`, `?`): runs of letters and digits at a
    # line's end are hex masks and ids (`0xffffffff00000000`).
    loud = [(c, n) for c, n in runs if not (c in _FILLER or c in _UNDRAWN or c.isalnum())]
    if len(runs) < 2 or covered * 2 < end or not loud:
        return None
    c, n = loud[0]
    return f"a log line ends in runs of one character ({c!r} {n} times)"


def periodic_tail(text: str, max_unit: int = 80) -> tuple[str, int, int]:
    """The repetition that ends the line: (unit, copies, characters covered).

    For each period p the tail is compared with itself shifted by p; the run of agreeing
    characters, plus one period, is the repeated span. The last copy may be cut off (a loop
    stopped by the length limit), which the shifted comparison allows. ("", 0, 0) if none.
    """
    end = len(text.rstrip())
    best = ("", 0, 0)
    for p in range(4, min(max_unit, end // 2) + 1):
        j = end - 1
        while j - p >= 0 and text[j] == text[j - p]:
            j -= 1
        span = end - 1 - j  # characters equal to the one p before them
        if span < p:
            continue
        covered = span + p
        copies = covered // p
        if covered > best[2] and copies >= 2:
            start = end - covered
            best = (text[start : start + p], copies, covered)
    return best


def similar(a: list[str], b: list[str]) -> float:
    """How much two token lists agree (difflib's ratio: 2 * matches / total)."""
    return SequenceMatcher(None, a, b, autojunk=False).ratio()


def similar_at_least(a: list[str], b: list[str], threshold: float) -> bool:
    """`similar(a, b) >= threshold`, with difflib's cheap upper bounds checked first."""
    sm = SequenceMatcher(None, a, b, autojunk=False)
    return (
        sm.real_quick_ratio() >= threshold
        and sm.quick_ratio() >= threshold
        and sm.ratio() >= threshold
    )


def counters_only(a: list[str], b: list[str]) -> bool:
    """Whether two token lists differ only in tokens without letters (numbers, spinners)."""
    sm = SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag != "equal" and any(any(c.isalpha() for c in t) for t in a[i1:i2] + b[j1:j2]):
            return False
    return True


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


def _has_letter(tok: str) -> bool:
    return any(c.isalpha() for c in tok)
