"""Judging lines in their generated-text context: text a foreign log marks the way its tool
prints it (vLLM's `Generated text:`, a pipeline's `generated_text`, Whisper's special tokens,
mlx_lm's `==========` frames), ChatML turns, chat turns (`gpt: ...`) and transcript segments."""

from __future__ import annotations

import re
from collections import deque

from supervisor.rules.base import clip
from supervisor.rules.repetition.one_line import LineJudge
from supervisor.rules.repetition.settings import RepetitionSettings
from supervisor.rules.repetition.text import (
    _LOG_LIKE,
    _is_prose,
    counters_only,
    similar_at_least,
    tokens,
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


class GeneratedText:
    """Judges lines in their generated-text context: text a foreign log marks or frames, ChatML
    turns, a chat's turns (`Name: ...`) and a transcript's segments."""

    def __init__(self, settings: RepetitionSettings, line: LineJudge) -> None:
        s = self.settings = settings
        self._line = line
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

    def judge_generated(
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
        why = self._line.judge_sample(" ".join(self._gen_parts)[:_GEN_CHARS])
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

    def judge_turn(self, stripped: str, indented: bool) -> tuple[str, tuple[str, ...]] | None:
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

    def judge_segment(self, stripped: str) -> tuple[str, tuple[str, ...]] | None:
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
