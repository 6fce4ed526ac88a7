"""`repetition`: the model collapsed into repeating itself.

Generated samples (`Sample` events) are judged on tokens: words split on whitespace, and each
CJK character a token of its own (Chinese and Japanese have no spaces, so `神神 F神神神` is six
tokens, five of them the same). A sample has collapsed when

- a unit of 1 to 8 tokens repeats back to back over at least `min_tokens` tokens
  (`F F F F ...`, `13, 13, 13, ...`, a sentence said again and again), or
- a unit of 1 to 10 characters repeats `min_tokens` times (`!!!!!!!!`, `<|im_start|>` x 20), or
- with at least `min_tokens` tokens, one token makes up more than `dominant_share` of them.

A blank sample (spaces and newlines only) is not a loop: it has no words to repeat. A tiny or
barely trained model's most frequent token is the space or the newline, and a decoder that
skips special tokens turns an answer of only `</s>` or padding into blank text; neither is the
model repeating itself (the demo's relaunched run prints such samples).

In a foreign log nothing marks a line as generated text, so ordinary text lines are judged on
looser, stricter-to-fire signs:

- the same list item, or a block of up to `max_block` of them, repeated `lines` times in a
  row, once the list marker (`1.`, `-`, `\\item`) is taken off (generated lists carry one,
  and numbered copies differ in it); any other line or block `plain_lines` times: transformers
  and DeepSpeed print the same plain sentence once per rank, eight times on one node; the
  items of a JSON list printed one a line (`["Math",`, ` "Math",`) by their content;
- a block of at least `block_lines` distinct lines (code, a paragraph), none a log record and
  mostly words, repeated `block_copies` times in a row (blank lines ignored); a block of
  one-word items (a generated list) one copy more; a paragraph of two lines or more said
  again word for word with blank lines between, `blank_copies` times;
- within one line, a unit of 1 to 40 characters repeated `in_line_repeats` times in a row
  over at least half the line (a looping model fills its output); or a line that ends in runs
  of one character each (`eachhh.......!!!!!!!!`), together over half the line, one of them
  not filler; or a phrase of 2 to 8 words said `phrase_copies` times back to back anywhere in
  the line (`of the state of the state ...`, `Thank you. Thank you. ...`), a loop too short to
  fill half of it (prose does not say a phrase five times in a row);
- a periodic tail: the end of a line is a unit of 4 to `max_tail_unit` characters repeated at
  least `tail_repeats` times over `tail_chars` or more (normal text, then the loop that ran to
  the length limit; the last copy may be cut off);
- a long line whose words are mostly one or two units (`It It ItIt It ...`, `神神 F神神神 F`):
  with `dominant_tokens` tokens or more, one token over `dominant_share` of them or two over
  `pair_share`; or a long line (or the second half of one) of `few_words_min` words or more,
  mostly words, that repeats `few_words_share` of its word trigrams: a sentence said again and
  again, even when its copies drift a little (prose rarely says a trigram twice);
- a line made mostly (`mostly_share`) of units of 3 to 40 characters each repeated at least
  `tail_repeats` times (`jump, jump,jump,jump,jump, final,final,final,final`);
- a printed list of token ids that is one id repeated `id_repeats` times (`151643, 151643,
  ...`), unless the line names what it prints as data (`input_ids`, `labels`, padding);
- a run of 64 characters or more without a space, mostly letters, that says few distinct
  4-character pieces (`zorazorazazorazorzara...`: a loop whose copies drift); text,
  identifiers, paths, hashes and base64 say a new piece almost every character;
- a metric record's quoted strings of 64 characters or more (a completion printed beside the
  loss) are judged by the checks above, never the numbers around them;
- near-duplicate prose lines: `near_lines` lines in a row (blank lines between them ignored)
  whose words mostly agree (`near_similarity`, on tokens) but are not the same line printed
  again (`I looked at the third one ...`, `... the fourth one ...`), and that bring few new
  words (`near_new_share` of a line, or one word, per line: a list of facts in one template,
  `Paris is the capital of France.`, `Rome is ...`, brings new ones on every line); copies of
  one sentence count when blank lines separate them, as a model's paragraphs are
  (`blank_copies` of them), or back to back once the run came back to an earlier line (`A B A
  A`: a sampler collapsing onto one sentence). Lines that differ only in numbers and
  punctuation (`- 0.017 MB of 0.069 MB uploaded`, `\\ 0.069 MB ...`) are a status line counting
  up, not text, and never count;
- a block that drifts: at least `block_lines` lines (blank lines ignored, not all the same)
  followed by a second copy in which every line is the same or a near-duplicate of the line
  one block back, most of them the same (a chat template looping with its answer reworded and
  `</s>` growing); rows of a printed table (`│ ... │`) are alike by construction and never
  count; a block of two unlike lines (a question and its answer) that drifted and then
  repeats word for word (copies printed per rank never drift first);
- a passage: consecutive text lines (a reply hard-wrapped over lines too short to judge alone)
  read together, each shape of line once (per-rank copies and counting status lines collapse;
  crash output, which every process prints, never counts), that repeats `few_words_share` of
  its word trigrams over `few_words_min` words or more; its last two lines are judged alone
  too (a loop that starts inside the passage, the next line saying the last one again).

What healthy logs repeat must not fire, so these never count: lines with no letters (`-----`,
`=====`, `|------|` tables, `████` bars, numbers), lines that look like log records (a level
word such as INFO or WARNING, a time of day, a `[...]` prefix, an exception or a traceback
frame: the same message from eight ranks is not a collapsed model; a shell prompt and the
command typed at it: a person relaunching a run), lines the parser read as
metrics (a loop printing `tensor(nan)` every step), and within a line, units made only of
separator, bar, digit and space characters, or padding tokens (`<pad>`, `<|endoftext|>`,
`</s>`: a data preview padded to length; not `<unk>`, a word the model said). A run of tofu
boxes or replacement characters (`□`, U+FFFD: tokens the terminal cannot draw) counts, except
beside a progress bar's `■`/`█`. Progress bars reach the rules as `Progress`.

A chat transcript whose assistant gives the same reply, word for word, to `turn_copies` turns in
a row (`gpt: Anything else I can help with?` after every user line) has looped, though no line
repeats back to back; replies under 4 tokens (`OK.`) never count. A speaker named other than by
a chat role (`DialoGPT:`, `Bob:`) counts when the name is capitalised and opens the line, and
one other speaker had the turns between, saying something new each time. Transcript segments
(`[2105.04-2106.44s] text`, whisper's `[00:01.000 --> 00:03.000]`) that say the same words
`segment_copies` times in a row have looped: the time spans move on, so these are new output,
not one line printed per rank. In the phrase check, brackets standing alone between the copies
are layout. Android's logcat lines (`I/tag(pid): ...`) are log records.

Generated text that a foreign log marks the way its tool prints it is judged as a sample (the
checks above on the text so far) instead of only as log lines: the text after vLLM's
`Generated text:`, after a transformers pipeline's `[{'generated_text':`, after Whisper's
`<|startoftranscript|>` tokens, and the lines that continue it until a blank line, a log
record or a metric line; the lines between mlx_lm.generate's two `==========` frames (not a
heading's underline). Two lines of such a text that agree on most words without being the same
(a sentence said again with its nouns changed) have looped too. In ChatML (`<|im_start|>role`
... `<|im_end|>`), an assistant turn right after an assistant turn that says the same has
looped: roles alternate in a chat. Healthy logs print the same shapes outside these marks, so
there the looser rules above hold back as before.

When a recipe says how samples are printed (`patterns` with a `sample` group, and `prompt` and
`step` groups if it likes), those lines reach the rule as `Sample`s and are judged as samples.

De-duplication: after a report the rule is quiet for `quiet_lines` lines.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter, deque
from difflib import SequenceMatcher

from pydantic import Field

from supervisor.events import Anomaly, Eval, Event, Metric, Sample, Severity, Text, show_step
from supervisor.rules.base import LineCooldown, Rule, RuleSettings, clip

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
# A chat turn: the speaker, then what it said (`gpt: ...`, `Assistant：...`); a chat loop's
# `>> User:` prompt marker and a named bot (`DialoGPT: ...`, llama.cpp's `Bob: ...`) too.
_TURN = re.compile(r"^(?:>+\s*)?([A-Za-z][\w.-]{0,20}|用户|助手|人类)\s*[:：]\s*(\S.*)$")
_CHAT_ROLES = frozenset(
    {"user", "human", "assistant", "gpt", "bot", "ai", "model", "用户", "助手", "人类"}
)
# A transcript segment: its time span, then the words heard (whisper's `[00:01.000 --> 00:03.000]
# text`, `[2105.04-2106.44s] text`). The span makes the line look like a log record, but each
# segment is new output: the same words on segment after segment are the decoder looping.
_SEGMENT = re.compile(r"^\[\s*\d[\d:.,]*\s*s?\s*(?:-->|->|-|–)\s*\d[\d:.,]*\s*s?\s*\]\s*(\S.*)$")
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
_PASSAGE_TOKENS = 300  # tokens of consecutive text lines judged together (the latest ones)
_SAMPLE_CACHE = 256  # samples judged and remembered (the cache is emptied when full)
_SAMPLE_CACHE_CHARS = 4096  # longer samples are judged afresh: the cache stays small
_UNKNOWN = object()
_SPEAKERS_MAX = 64  # speakers remembered (`Name:` line labels); emptied when full

# Generated text in a foreign log, marked the way the tools that print it mark it (no recipe
# says so there). Same-line markers, the text after them is the sample:
# - vLLM's examples (examples/offline_inference/basic.py and the copies in issues):
#   `print(f"Prompt: {prompt!r}, Generated text: {generated_text!r}")`;
# - a transformers pipeline's result printed as is: `[{'generated_text': '...'}]`;
# - Whisper's ids decoded with `skip_special_tokens=False` (transformers' model card and
#   examples: `['<|startoftranscript|><|en|><|transcribe|><|notimestamps|> Mr. Quilter is ...']`):
#   what follows the start-of-transcript tokens is what the decoder wrote.
_GEN_INLINE = re.compile(
    r"\bGenerated text:\s*(?P<a>.*)"
    r"|\[\{\s*['\"]generated_text['\"]:\s*(?P<b>.*)"
    r"|<\|startoftranscript\|>(?:<\|[\w.]{1,20}\|>)*\s*(?P<c>.*)"
)
# mlx_lm.generate with verbose output (mlx_lm/generate.py: `print("=" * 10)` before the text
# streams and again after it, then `Prompt: N tokens, ... tokens-per-sec`; the older
# mlx-examples script printed `Prompt: <the prompt>` right after the first frame): the lines
# between the two frames are the generated text.
_GEN_FRAME = "=" * 10
# ChatML, as chat templates write it (Qwen's and others' `chat_template`: `<|im_start|>{role}\n
# {content}<|im_end|>\n`) and as llama.cpp prints it when special tokens are shown: a role
# header alone on its line (llama.cpp's stream may glue the next token to it:
# `<|im_start|>assistant57`), the turn's text, `<|im_end|>`. Roles alternate in a chat; an
# assistant turn right after an assistant turn, saying the same, is the model that wrote its
# own next header and answered again.
_CHATML_HEAD = re.compile(r"^<\|im_start\|>\s*(assistant|user|system|tool)\w*$")
_CHATML_END = "<|im_end|>"
_GEN_CHARS = 4096  # a generated text is judged on its first this many characters
_GEN_LINES = 200  # ...and a framed one closes after this many lines without its frame
_GEN_NEAR = 0.8  # two generated lines this alike (tokens), not the same: one sentence re-said
_GEN_NEAR_TOKENS = 16  # ...each this long at least (short lines agree by chance)


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


# Settings that size a buffer (`max_block`: a run counter per period, deques of 2x that; the
# copies kept per paragraph and chat speaker) or a regex's repeat count stay below this: at
# 1e9 `max_block` allocated gigabytes for 15 s before the rule judged a line. A loop longer than
# a thousand lines or copies is no longer one a person reads as a loop.
_MAX_SIZE = 1000


# A sample that says this many different words (tokens with a letter) and does not loop is
# language: the model has learned to speak, so a later loop is a collapse. An untrained model's
# babble (`1111= = 1`, `#### 111`) is digits and marks.
_VARIED_WORDS = 3


def _has_letter(tok: str) -> bool:
    return any(c.isalpha() for c in tok)


class RepetitionSettings(RuleSettings):
    min_tokens: int = Field(
        12,
        ge=3,
        le=_MAX_SIZE,
        description="A sample repeating a unit over this many tokens has collapsed.",
    )
    dominant_share: float = Field(
        0.5, gt=0, le=1, description="A sample where one token is more than this share."
    )
    lines: int = Field(
        4, ge=2, description="List items (`1.`, `-`, `\\item`) repeated this many times in a row."
    )
    plain_lines: int = Field(
        12, ge=2, description="Other log lines (or blocks) repeated this many times in a row."
    )
    max_block: int = Field(
        12, ge=1, le=_MAX_SIZE, description="Longest block of lines checked for repeats."
    )
    block_lines: int = Field(
        3,
        ge=2,
        le=_MAX_SIZE,
        description="A block of this many distinct lines or more (code, paragraphs)...",
    )
    block_copies: int = Field(2, ge=2, description="...repeated this many times in a row.")
    phrase_copies: int = Field(
        5, ge=3, description="A phrase of 2-8 words said this many times in a row in a line."
    )
    in_line_repeats: int = Field(
        8, ge=3, le=_MAX_SIZE, description="A unit repeated this many times within one log line."
    )
    tail_repeats: int = Field(
        4, ge=2, le=_MAX_SIZE, description="A unit repeated this many times at the end of a line."
    )
    tail_chars: int = Field(
        100, ge=16, description="...covering at least this many characters of the line's end."
    )
    max_tail_unit: int = Field(80, ge=4, description="Longest unit of a periodic tail.")
    mostly_share: float = Field(
        0.7, gt=0, le=1, description="A line this much made of repeated units (each 3+ times)."
    )
    dominant_tokens: int = Field(
        20, ge=4, description="Tokens a line needs before its token shares are judged."
    )
    pair_share: float = Field(
        0.8, gt=0, le=1, description="A line where two tokens make up this share of its tokens."
    )
    few_words_min: int = Field(
        30, ge=8, description="Words a line, its second half or a passage needs before..."
    )
    few_words_share: float = Field(
        0.5, gt=0, le=1, description="...it loops when this share of its word trigrams repeat."
    )
    id_repeats: int = Field(
        16, ge=4, description="One number repeated this many times in a printed list of ids."
    )
    near_lines: int = Field(
        4, ge=2, description="Near-duplicate prose lines in a row that count as repetition."
    )
    near_similarity: float = Field(
        0.6, gt=0, le=1, description="Token agreement for two lines to be near-duplicates."
    )
    near_new_share: float = Field(
        0.15, ge=0, le=1, description="...each bringing at most this share of new words (or one)."
    )
    blank_copies: int = Field(
        3,
        ge=2,
        le=_MAX_SIZE,
        description="Copies of one prose line with blank lines between that count.",
    )
    near_min_tokens: int = Field(
        6, ge=2, description="Tokens a line needs before it is compared with the one before."
    )
    turn_copies: int = Field(
        3,
        ge=2,
        le=_MAX_SIZE,
        description="One speaker's same reply in this many turns in a row (a chat).",
    )
    segment_copies: int = Field(
        3, ge=2, description="Transcript segments in a row that say the same words."
    )
    quiet_lines: int = Field(200, ge=0, description="Lines of quiet after a report.")
    untrained_fall: float = Field(
        0.05,
        ge=0,
        description="A looping sample is held back while no sample of the run has been varied "
        "(said 3 different words, not looped) and the lowest training loss of the last "
        "`untrained_window` records is this share below the lowest of the ones before: an "
        "untrained model's babble, not a collapse (0: off).",
    )
    untrained_window: int = Field(
        5, ge=1, le=_MAX_SIZE, description="Training-loss records per half of that comparison."
    )


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
        self._mostly = re.compile(rf"(.{{3,40}}?)\1{{{s.tail_repeats - 1},}}", re.S)
        self._recent: deque[tuple[str, str, bool]] = deque(maxlen=s.max_block)
        self._runs = [0] * (s.max_block + 1)
        self._metric_line = 0
        self._sample_line = 0
        # Whether a sample of this run has been varied (judged fine, _VARIED_WORDS words), the last
        # training losses: a model that has said nothing varied yet while its loss still falls
        # steeply is still learning to speak (see untrained_fall).
        self._varied = False
        self._losses: deque[float] = deque(maxlen=2 * s.untrained_window)
        self._judged: dict[str, str | None] = {}
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
        # Chat turns: per speaker, its last replies (and whether another spoke between).
        self._turns: dict[str, deque[str]] = {}
        self._last_speaker = ""
        self._speakers: deque[str] = deque(maxlen=2 * s.turn_copies - 1)  # the last turns'
        # Transcript segments: the words of the last one, and how many in a row said them.
        self._segment = ""
        self._segment_run = 0
        # Generated text a foreign log marks (module constants above): its kind ("" when none,
        # "inline" after a same-line marker, "framed" between mlx_lm's frames), its lines so
        # far, the last line's tokens, how many lines, and whether it was reported.
        self._gen_kind = ""
        self._gen_parts: list[str] = []
        self._gen_chars = 0
        self._gen_prev: list[str] = []
        self._gen_lines = 0
        self._gen_said = False
        self._gen_before = ""  # the line before (stripped): a heading the frame underlines
        # ChatML turns: the open turn's role and text, and the last closed turn (role, text).
        self._chatml_role = ""
        self._chatml_text: list[str] = []
        self._chatml_last = ("", "")

    def on_event(self, event: Event) -> list[Anomaly]:
        if isinstance(event, (Metric, Eval)):
            # The parser sends a line's metrics before its text: a metric line printed again
            # and again ("tensor(nan)" every step) is a training loop, not a looping model.
            self._metric_line = event.lineno
            if isinstance(event, Metric):
                loss = event.values.get("loss")
                if loss is not None:
                    self._losses.append(loss)
            return []
        if isinstance(event, Sample):
            # A line the recipe's `sample` pattern matched is judged as a sample, not again
            # as a log line (the parser sends the Sample before the line's Text).
            self._sample_line = event.lineno
            found = self.judge_sample(event.text)
            if found is None:
                if not self._varied:
                    words = {t.lower() for t in tokens(event.text) if _has_letter(t)}
                    self._varied = len(words) >= _VARIED_WORDS
                return []
            if not self._varied and self._still_learning():
                return []
            prompt = f" for {event.prompt!r}" if event.prompt else ""
            step = f" at step {show_step(event.step)}" if event.step is not None else ""
            return self._report(f"sample{prompt}{step} {found}", event, (clip(event.text),))
        assert isinstance(event, Text)
        seen = self._judge_line(event)
        if seen is None:
            return []
        message, evidence = seen
        return self._report(message, event, evidence)

    def _still_learning(self) -> bool:
        """The lowest training loss of the last `untrained_window` records is `untrained_fall`
        or more below the lowest of the window before them (new lows: the lowest, not the
        mean, so that an early bump does not hide them): the first steps of a run, when a
        model that has not yet said anything varied answers every prompt with one token."""
        s = self.settings
        losses = list(self._losses)
        n = min(s.untrained_window, len(losses) // 2)  # a run's first records: shorter halves
        if not s.untrained_fall or n < 2:
            return False
        old = min(losses[-2 * n : -n])
        new = min(losses[-n:])
        return old > 0 and new <= old * (1 - s.untrained_fall)

    def judge_sample(self, text: str) -> str | None:
        """Why `text` looks collapsed, or None. Pure; also used by tests and the TUI."""
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

    def _judge_line(self, event: Text) -> tuple[str, tuple[str, ...]] | None:
        text = event.text
        s = self.settings
        if event.lineno == self._sample_line:
            return None
        metric_line = event.lineno == self._metric_line
        head = text if len(text) <= _IN_LINE_CAP else text[:_IN_LINE_CAP]
        if not metric_line:
            why = self._judge_in_line(head)
            if why is not None:
                if len(text) > _IN_LINE_CAP:  # the count is of the part searched
                    why += f" in its first {_IN_LINE_CAP} of {len(text):,} characters"
                return why, (clip(text),)
        elif len(head) >= s.tail_chars and _may_repeat(head, s.tail_repeats - 1):
            # A metric record may carry generated text (`'completion': '...'`): the text is
            # judged, never the numbers around it.
            for m in _LONG_STRING.finditer(head):
                why = self._judge_in_line(m.group(1) or m.group(2))
                if why is not None:
                    return why, (clip(text),)
        # Across lines.
        stripped = text.strip()
        generated = self._judge_generated(text, stripped, metric_line)
        if generated is not None:
            return generated
        if not stripped:
            self._near_blank = self._near_prev is not None
            if self._para:
                self._paras.append(tuple(self._para))
                self._para = []
            return None  # blank lines neither count nor break a run
        if metric_line:
            self._para = []
            self._paras.clear()
            self._recent.clear()
            self._runs = [0] * (s.max_block + 1)
            self._near_prev = None
            self._near_run, self._near_toks = [], []
            self._fuzzy.clear()
            self._fuzzy_runs = [0] * (s.max_block + 1)
            self._end_passage()
            return None
        turn = self._judge_turn(stripped, text[0] in " \t") or self._judge_segment(stripped)
        if turn is not None:
            return turn
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

    def _judge_generated(
        self, text: str, stripped: str, metric_line: bool
    ) -> tuple[str, tuple[str, ...]] | None:
        """Generated text the log marks the way its tool prints it (`_GEN_INLINE`, mlx_lm's
        `==========` frames) is judged as a sample is: the text after the marker and the lines
        that continue it, until a blank line, a log record, a metric line or the next marker
        (a framed text until its closing frame: blank lines are its paragraphs). Everything
        else is judged as before."""
        kind = self._gen_kind
        before, self._gen_before = self._gen_before, stripped
        if kind == "framed":
            if stripped == _GEN_FRAME or metric_line or self._gen_lines >= _GEN_LINES:
                self._gen_kind = ""
                return None
            if not stripped or (self._gen_lines == 0 and stripped.startswith("Prompt:")):
                return None  # a paragraph break; the older script's echo of the prompt
            return self._add_generated(stripped)
        if stripped == _GEN_FRAME:
            # Under a heading of up to 10 characters it is the heading's underline (reST,
            # Markdown's setext, plain-text docs: `DISCUSSION` / `==========`), not a frame.
            if not 0 < len(before) <= len(_GEN_FRAME):
                self._gen_open("framed")
            return None
        special = "<|" in text  # cheap gates: every marker holds one of these two
        if (special or "enerated" in text) and (m := _GEN_INLINE.search(text)) is not None:
            self._gen_open("inline")
            said = (m.group("a") or m.group("b") or m.group("c") or "").strip()
            return self._add_generated(said) if said else None
        if kind == "inline":
            if not stripped or metric_line or _LOG_LIKE.search(stripped) is not None:
                self._gen_kind = ""
                return None
            return self._add_generated(stripped)
        if self._chatml_role or (special and "<|im_" in stripped):
            return self._judge_chatml(stripped)
        return None

    def _judge_chatml(self, stripped: str) -> tuple[str, tuple[str, ...]] | None:
        """ChatML turns (`_CHATML_HEAD`): an assistant turn that says, word for word, what the
        assistant turn just before it said, with no other turn between (roles alternate in a
        chat; the model wrote its own next header and answered again). Replies under 4 tokens
        (`OK.`) never count."""
        head = _CHATML_HEAD.match(stripped)
        if head is not None:
            self._chatml_role, self._chatml_text = head.group(1), []
            return None
        if not self._chatml_role:
            return None
        before, end, _ = stripped.partition(_CHATML_END)
        if before:
            self._chatml_text.append(before.strip())
        if len(self._chatml_text) > self.settings.max_block:
            self._chatml_role = ""  # no turn is this long: the header was not ChatML's
            return None
        if not end:
            return None
        turn = (self._chatml_role, " ".join(self._chatml_text))
        last, self._chatml_last = self._chatml_last, turn
        self._chatml_role = ""
        if turn != last or turn[0] != "assistant":
            return None
        if len(tokens(turn[1])) < 4 or not _is_prose(turn[1]):
            return None
        return (
            f"two assistant turns in a row say the same: {clip(turn[1], 80)!r}",
            (clip(stripped),),
        )

    def _gen_open(self, kind: str) -> None:
        self._gen_kind = kind
        self._gen_parts, self._gen_chars, self._gen_prev = [], 0, []
        self._gen_lines = 0
        self._gen_said = False

    def _add_generated(self, line: str) -> tuple[str, tuple[str, ...]] | None:
        """One more line of a marked generated text: the text so far judged as a sample, and
        the line against the one before (a sentence said again with a few words changed:
        mlx_lm's `The same is true for the question _X_ and _Y_ ...` twice)."""
        self._gen_lines += 1
        if self._gen_said or self._gen_chars >= _GEN_CHARS:
            return None
        if not any(c.isalpha() for c in line):
            return None  # a rule or a row of numbers between the paragraphs: layout, no words
        self._gen_parts.append(line)
        self._gen_chars += len(line) + 1
        toks = tokens(line)
        prev, self._gen_prev = self._gen_prev, toks
        why = self.judge_sample(" ".join(self._gen_parts)[:_GEN_CHARS])
        if (
            why is None
            and len(toks) >= _GEN_NEAR_TOKENS
            and len(prev) >= _GEN_NEAR_TOKENS
            and toks != prev
            and not counters_only(prev, toks)
            and similar_at_least(prev, toks, _GEN_NEAR)
        ):
            why = "says its last sentence again with a few words changed"
        if why is None:
            return None
        self._gen_said = True
        shown = self._gen_parts[-2:]
        return f"a generated text {why}", tuple(clip(t) for t in shown)

    def _judge_turn(self, stripped: str, indented: bool) -> tuple[str, tuple[str, ...]] | None:
        """A chat whose assistant gives the same reply, word for word, to `turn_copies`
        different turns in a row (`gpt: Anything else I can help with?` after every user
        line): a fine-tuned model stuck on one answer. The turns between are the other
        speaker's, so no line repeats back to back and the line checks never see it."""
        m = _TURN.match(stripped)
        if m is None:
            return None
        speaker, said = m.group(1).lower(), m.group(2).strip()
        if speaker == self._last_speaker:
            return None  # a reply wrapped over lines, or the same speaker again: not a turn
        self._last_speaker = speaker
        self._speakers.append(speaker)
        if speaker not in self._turns and len(self._turns) >= _SPEAKERS_MAX:
            self._turns.clear()  # a log's `Name:` labels are many; a chat has a few speakers
        replies = self._turns.setdefault(speaker, deque(maxlen=self.settings.turn_copies))
        replies.append(said)
        copies = self.settings.turn_copies
        if len(replies) < copies or len(set(replies)) != 1:
            return None
        if len(tokens(said)) < 4 or not _is_prose(said):
            return None  # `ok`, `yes`: short answers repeat in healthy chats
        if speaker not in _CHAT_ROLES and (
            indented
            or not m.group(1)[0].isupper()
            or "_" in speaker
            or not _is_prose(stripped)
            or not self._other_speaker_varies(speaker)
        ):
            # A name that is no chat role (`Note:`, `Loading:`) may be a log's own label, an
            # indented `params:` a docstring's or a signature's: a chat is a capitalised name
            # at the line's start, and only when someone else spoke between, saying something
            # new each time (the user's lines change, the bot's answer does not).
            return None
        replies.clear()
        return (
            f"{m.group(1)} gave the same reply {copies} turns in a row: {clip(said, 80)!r}",
            (clip(stripped),),
        )

    def _other_speaker_varies(self, speaker: str) -> bool:
        """One other speaker had all the turns between, each saying something else, in words
        (two parties alternating: not `Files:`, `Copyright:`, `License:` records in turn)."""
        others = set(self._speakers) - {speaker}
        if len(self._speakers) < 2 * self.settings.turn_copies - 1 or len(others) != 1:
            return False
        need = self.settings.turn_copies - 1
        last = list(self._turns[others.pop()])[-need:]
        varied = len(last) == need and len(set(last)) == need
        return varied and all(_is_prose(t) for t in last)

    def _judge_segment(self, stripped: str) -> tuple[str, tuple[str, ...]] | None:
        """Transcript segments whose words are the same `segment_copies` times in a row under
        time spans that move on (Whisper's hallucination loop): not a log printed per rank."""
        m = _SEGMENT.match(stripped)
        if m is None:
            self._segment, self._segment_run = "", 0
            return None
        said = m.group(1).strip()
        self._segment_run = self._segment_run + 1 if said == self._segment else 1
        self._segment = said
        if self._segment_run != self.settings.segment_copies or not any(c.isalpha() for c in said):
            return None
        return (
            f"{self._segment_run} transcript segments in a row say {clip(said, 80)!r}",
            (clip(stripped),),
        )

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

    def _judge_in_line(self, head: str) -> str | None:
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

    def _few_words(self, toks: list[str]) -> tuple[int, int] | None:
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
            few = self._few_words(part)
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
        few = self._few_words([t for line in passage for t in line])
        lines = len(passage)
        if few is None and lines > 2:
            # A loop that starts inside the passage (the next line says the last one again,
            # shifted) is diluted by the healthy text before it: the last two lines alone.
            few = self._few_words(
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

    def _report(
        self, message: str, event: Sample | Text, evidence: tuple[str, ...]
    ) -> list[Anomaly]:
        if not self._quiet.ready(event.lineno):
            return []
        self._quiet.fire(event.lineno)
        return [self.anomaly(Severity.WARNING, message, event.ts, event.lineno, evidence)]
