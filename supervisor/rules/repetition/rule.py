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

from collections import deque

from supervisor.events import Anomaly, Eval, Event, Metric, Sample, Severity, Text, show_step
from supervisor.rules.base import LineCooldown, Rule, clip
from supervisor.rules.repetition.across_lines import AcrossLines
from supervisor.rules.repetition.generated import GeneratedText
from supervisor.rules.repetition.one_line import LineJudge
from supervisor.rules.repetition.settings import RepetitionSettings
from supervisor.rules.repetition.text import (
    _IN_LINE_CAP,
    _LONG_STRING,
    _has_letter,
    _may_repeat,
    tokens,
)

# A sample that says this many different words (tokens with a letter) and does not loop is
# language: the model has learned to speak, so a later loop is a collapse. An untrained model's
# babble (`1111= = 1`, `#### 111`) is digits and marks.
_VARIED_WORDS = 3


class RepetitionRule(Rule):
    name = "repetition"
    Settings = RepetitionSettings
    handles = (Metric, Eval, Sample, Text)

    def __init__(self, settings: RepetitionSettings | None = None) -> None:
        super().__init__(settings)
        s: RepetitionSettings = self.settings  # type: ignore[assignment]
        self.settings: RepetitionSettings
        self._quiet = LineCooldown(s.quiet_lines)
        self._line = LineJudge(s)
        self._lines = AcrossLines(s, self._line)
        self._generated = GeneratedText(s, self._line)
        self._metric_line = 0
        self._sample_line = 0
        # Whether a sample of this run has been varied (judged fine, _VARIED_WORDS words), the last
        # training losses: a model that has said nothing varied yet while its loss still falls
        # steeply is still learning to speak (see untrained_fall).
        self._varied = False
        self._losses: deque[float] = deque(maxlen=2 * s.untrained_window)

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
            if not self._varied and self._still_learning() and not self._says_words(event.text):
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

    @staticmethod
    def _says_words(text: str) -> bool:
        """Whether a sample holds a word (a token with a letter). An untrained model's babble is
        digits and marks (`1111= = 1`, `#### 111`); a model that loops on a word (`F F F F`,
        `the the the`) has been taught something and collapsed: the story ftmon exists for,
        said even on a run's first sample while its loss still falls."""
        return any(_has_letter(t) for t in tokens(text))

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
        return self._line.judge_sample(text)

    def _judge_line(self, event: Text) -> tuple[str, tuple[str, ...]] | None:
        text = event.text
        s = self.settings
        if event.lineno == self._sample_line:
            return None
        metric_line = event.lineno == self._metric_line
        head = text if len(text) <= _IN_LINE_CAP else text[:_IN_LINE_CAP]
        if not metric_line:
            why = self._line.judge_in_line(head)
            if why is not None:
                if len(text) > _IN_LINE_CAP:  # the count is of the part searched
                    why += f" in its first {_IN_LINE_CAP} of {len(text):,} characters"
                return why, (clip(text),)
        elif len(head) >= s.tail_chars and _may_repeat(head, s.tail_repeats - 1):
            # A metric record may carry generated text (`'completion': '...'`): the text is
            # judged, never the numbers around it.
            for m in _LONG_STRING.finditer(head):
                why = self._line.judge_in_line(m.group(1) or m.group(2))
                if why is not None:
                    return why, (clip(text),)
        # Across lines.
        stripped = text.strip()
        generated = self._generated.judge_generated(text, stripped, metric_line)
        if generated is not None:
            return generated
        if not stripped:
            self._lines.blank()
            return None  # blank lines neither count nor break a run
        if metric_line:
            self._lines.reset()
            return None
        turn = self._generated.judge_turn(stripped, text[0] in " \t") or (
            self._generated.judge_segment(stripped)
        )
        if turn is not None:
            return turn
        return self._lines.judge(stripped)

    def _report(
        self, message: str, event: Sample | Text, evidence: tuple[str, ...]
    ) -> list[Anomaly]:
        if not self._quiet.ready(event.lineno):
            return []
        self._quiet.fire(event.lineno)
        return [self.anomaly(Severity.WARNING, message, event.ts, event.lineno, evidence)]
