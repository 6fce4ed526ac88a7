"""`LogLine` -> events: the metrics, evaluations, samples and progress a training log prints.

Formats read (see tests/test_parse.py for a real line of each): JSON object lines (the ftmon
trainer protocol, LLaMA-Factory's trainer_log.jsonl), HF Trainer dict lines (`{'loss': nan, ...}`),
`key: value` / `key=value` / `key value` step lines (nanochat, nanoGPT, Megatron, fairseq,
mmengine/xtuner, torchtune, litgpt, Lightning bars), printed tensors, tqdm frames, and user
regexes with named groups. torchrun rank prefixes are stripped first.

Every line that is not a pure progress frame also yields a `Text`: the text rules (oom,
traceback, repetition) read those. Only values of metric keys count as numbers: "nanochat",
"information" or "step_avg:nanms" are words and a timing, never a NaN.

A parser reads one log, in order, and remembers a little of it (`_LogState`):

- an HF Trainer dict has no step of its own; it takes the counter of the tqdm bar printed on
  the same line (`5/200 [...]{'loss': ...}`), or, once the log has echoed `logging_steps`, the
  number of training dicts so far times it;
- the same values arriving again for the same step within a few lines are one point (a
  callback's JSON line and HF's own dict; TensorFlow printing each line through two loggers);
- a config echo is never a metric (nanoGPT's `Overriding: eval_iters = 20`, `tokens per
  iteration will be: 512`); a scaler's "setting loss scale to 64" is a measurement and stays;
- HF's `***** eval metrics *****` table gives one evaluation of its `eval_` quality keys (its
  runtime and per-second rates are not evaluations); a `***** train metrics *****` table is a
  summary, not a point;
- nanoGPT's `step 3000: train loss 4.04, val loss 4.04` is an evaluation of both splits: the
  train split's loss goes into it as `train_loss`, not as a second training point at that step;
- a validation summary line (demucs' `Valid Summary | Epoch 35 | Loss=0.1552 | ...`) is an
  evaluation: its names read as `val_` names;
- a training table printed as columns under a header row (HF's notebook table, fastai's,
  DeepXDE's) gives each row's values the header's names (columns.py);
- NVIDIA's WaveGlow prints a step as `iteration:<tab>loss` (nine decimals), and its Tacotron 2
  `Train loss <iteration> <loss>`: the integer is the step, the decimal number the value (kv.py).

Speed (a long run prints millions of lines): a prefilter (prefilter.py) lets only lines with a
metric word reach the key-value regexes (kv.py); JSON and HF dict lines go through `json.loads`;
and key-value lines, tqdm bars and whole lines of bar redraws are cached by shape (the line with
its digits read as 0), so their regexes run once per format rather than once per line
(`Parser(cache=False)` turns this off; the tests check that it changes nothing).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import replace

from supervisor.events import Eval, Event, LogLine, Metric, Progress, Sample, Text
from supervisor.parsing import columns, formats
from supervisor.parsing.kv import (
    CACHE_MAX,
    DIGITS_TO_ZERO,
    SHAPE_MAX,
    Template,
    metricish,
    name_cache,
    normalise_name,
    to_float,
)
from supervisor.parsing.prefilter import Prefilter

# --- line shapes ----------------------------------------------------------------------------------

_RANK_PREFIX = re.compile(r"^(?:\[(?:rank|default)(\d+)\]:[ ]?|rank:\s*(\d+)\s*\|\s?)")
_TENSOR = re.compile(r"tensor\(\s*([-+]?[\w.+\-]+)\s*(?:,[^()]*(?:\([^()]*\)[^()]*)*)?\)")
_BARE_TENSOR = re.compile(r"^\s*tensor\(\s*([-+]?[\w.+\-]+)\s*(?:,[^()]*)?\)\s*$")
_BAR = (
    r"(?P<desc>[^\r|%]{0,120}?)[ \t]*(?P<pct>\d{1,3})%\|[^|\r]*\|[ \t]*"
    r"(?P<n>\d+(?:\.\d+)?[kMG]?)/(?P<total>\d+(?:\.\d+)?[kMG]?|\?)"
    r"(?:[ \t]*\[(?P<info>[^\]\r]*)\])?"
)
_TQDM = re.compile(_BAR)
# Where a bar's numbers are: (n start, n end, total start, total end, info start or -1,
# info end or -1, end of the bar).
_Bar = tuple[int, int, int, int, int, int, int]
_MISSING = object()


def _match_bar(frame: str) -> _Bar | None:
    m = _TQDM.match(frame)
    if m is None:
        return None
    return (*m.span("n"), *m.span("total"), *m.span("info"), m.end())


def _only_bars(text: str) -> _Bar | None:
    """The last bar of a line whose `\\r` frames are all bars (nothing after them) or blank.

    None when a frame holds anything else, or when no frame is a bar; spans are in `text`.
    """
    last: _Bar | None = None
    start = 0
    for frame in text.split("\r"):
        at, start = start, start + len(frame) + 1
        if not frame or frame.isspace():
            continue
        bar = _match_bar(frame)
        if bar is None:
            return None
        rest = frame[bar[6] :]
        if rest and not rest.isspace():
            return None
        n0, n1, t0, t1, i0, i1, end = bar
        if i0 >= 0:
            i0, i1 = i0 + at, i1 + at
        last = (n0 + at, n1 + at, t0 + at, t1 + at, i0, i1, end + at)
    return last


_SCALE = {"k": 1e3, "M": 1e6, "G": 1e9}

_DICT_PAIR = re.compile(r"""['"]([^'"]+)['"]\s*:\s*([^,}\s][^,}]*)""")
_JSON_FIX = re.compile(r"([:\[,]\s*)([-+]?)(nan|inf(?:inity)?)(?=\s*[,}\]])", re.IGNORECASE)

# Lines without one of these (and not a `{...}` object) cannot yield a metric: skip the regexes.
METRIC_WORDS = (
    r"loss",
    r"norm",
    r"lr",
    r"learning",
    r"ppl",
    r"perp",
    r"step",
    r"iter",
    r"epoch",
    r"tok",
    r"acc",
    r"tensor\(",
)


def _with_rank(events: list[Event], rank: int) -> list[Event]:
    """A rank-prefixed line's metrics carry the rank (per-rank progress: rules/hang.py)."""
    return [
        Metric(e.lineno, e.ts, e.values, e.step, e.source, rank) if type(e) is Metric else e
        for e in events
    ]


# A line that states a setting rather than a measurement.
_CONFIG_ECHO = re.compile(r"^\s*Overriding\b|\bwill be\s*:?\s*[-+]?\d")
_LOGGING_STEPS = re.compile(r"logging_steps\W{1,4}(\d+)")
_METRICS_TABLE = re.compile(r"^\s*\*{3,}\s*(\w+) metrics\s*\*{3,}\s*$")
_TABLE_ROW = re.compile(r"^\s+[\w/.\-]+\s*=\s*\S+\s*$")
# Rates and times that an evaluation reports about itself, not about the model.
_EVAL_STATS = ("runtime", "per_second", "samples", "steps", "flos", "mem")
_VALID_SUMMARY = re.compile(r"\b(?:Valid(?:ation)?|Eval(?:uation)?)(?:[ \t]+Summary)?[ \t]*\|")
_TRAIN_SPLIT_LOSS = re.compile(r"\btrain[ _]loss\b", re.I)
# A line that opens by naming an evaluation ("Test in epoch 3, Loss: 5.59, Acc: 0.35",
# "Validation epoch 2 loss=1.3", "Eval: loss 0.8"): its bare loss is the evaluation's.
# Keras' line at the end of an epoch: its progress bar with the count at its total and the time
# taken in place of the ETA (`10954/10954 [=====] - 659s - loss: 0.0475`, tf.keras `3260/3260
# [===] - 1011s 310ms/step - loss: ...`, Keras 3 `3260/3260 ━━━━ 1011s 310ms/step`), or with
# verbose=2 the time alone (` - 510s - loss: 4.0855`, tf.keras `1875/1875 - 3s - loss: ...`).
# Keras' Progbar averages every metric over the epoch's batches, so these are the epoch's
# averages, not one batch's: their metrics carry source "epoch" (rules/trend.py: epoch
# summaries). Only after an `Epoch k/N` line (Keras prints one as each epoch of `fit` starts;
# Keras 1 `Epoch k`):
# `evaluate`'s bar (`313/313 [===] - 0s - loss: 0.0786`) is a test loss, not a training one.
_KERAS_EPOCH_END = re.compile(
    r"[\s>]*(?:(\d+)/(\d+)\s+)?(?:\[[=>.]*\]\s+|\u2501+\s+)?-?\s*\d+(?:\.\d+)?m?s\b"
)
_KERAS_EPOCH_START = re.compile(r"\W*Epoch \d+(?:/\d+)?\s*$")
_EVAL_LINE = re.compile(r"^\W{0,3}(?:Test|Valid(?:ation)?|Eval(?:uation)?)\b(?![-_./])")
# NVIDIA's WaveGlow and nv-wavenet print each step as `"{}:\t{:.9f}".format(iteration,
# reduced_loss)` (train.py): an iteration, then the loss with exactly nine decimals, alone on
# its line (the tab becomes spaces when pasted).
_ITER_LOSS = re.compile(r"\s*(\d+):\s+([-+]?\d+\.\d{9})\s*")
_DUPLICATE_LINES = 5  # a value arriving again this close is the same point


def _same_values(a: dict[str, float], b: dict[str, float]) -> bool:
    """Whether every value of `a` is in `b` and the same number (NaN equal to NaN; equal to
    0.1%, as Trainer prints its dict rounded to 4 digits: '5.27' for 5.2703)."""
    for key, value in a.items():
        if key not in b:
            return False
        other = b[key]
        if value == other or (value != value and other != other):
            continue
        if not (math.isfinite(value) and math.isfinite(other)):
            return False  # nan against a number, inf against anything else
        if abs(value - other) > 1e-3 * max(abs(value), abs(other)):
            return False
    return True


class _LogState:
    """What the parser remembers of the log it reads (see the module docstring)."""

    __slots__ = (
        "bar_step", "columns", "guessed", "hf_dicts", "keras_epoch", "last", "logging_steps",
        "rank", "sb3", "table",
    )  # fmt: skip

    def __init__(self) -> None:
        self.logging_steps: int | None = None
        self.hf_dicts = 0  # training dicts seen (for steps counted from logging_steps)
        self.bar_step: int | None = None  # the counter of a bar printed before this text
        self.guessed = False  # the step just given was counted, not printed
        self.table: str | None = None  # inside `***** <kind> metrics *****`
        self.columns: tuple[str, ...] | None = None  # a column table's names (columns.py)
        # The last Metric / Eval per rank: line, step, values, source, whether the step was
        # counted. Two ranks printing the same values are two points, not a copy.
        self.last: dict[
            tuple[type, int | None], tuple[int, int | None, dict[str, float], str, bool]
        ] = {}
        self.rank: int | None = None  # the `[rankN]:` prefix of the line being parsed
        self.keras_epoch = False  # an `Epoch k/N` line came, its end line not yet
        self.sb3 = formats.Sb3Table()  # a Stable-Baselines3 logger table (formats.py)


class Parser:
    """Turn lines into events. One parser reads one log, in order (it keeps `_LogState`)."""

    def __init__(
        self, patterns: Sequence[str] = (), prefilter_engine: str = "auto", cache: bool = True
    ) -> None:
        compiled: list[re.Pattern[str]] = []
        for p in patterns:
            try:
                rx = re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid pattern {p!r}: {exc}") from None
            if not rx.groupindex:
                raise ValueError(
                    f"pattern {p!r} has no named group: name what it captures, "
                    "e.g. (?P<loss>[0-9.]+) or (?P<step>\\d+)"
                )
            compiled.append(rx)
        self.patterns = tuple(compiled)
        self.prefilter = Prefilter(METRIC_WORDS, engine=prefilter_engine)
        self.cache = cache  # off only to test that the template cache changes nothing
        self._templates: dict[bytes, Template] = {}
        self._kv_lines: dict[bytes, Template | None] = {}
        self._bars: dict[bytes, _Bar | None] = {}
        self._bar_lines: dict[bytes, _Bar | None] = {}
        self._state = _LogState()

    # -- entry point --

    def parse(self, line: LogLine, ts: float) -> list[Event]:
        """Events of one line, in the order they appear in it."""
        text = line.text
        if text.startswith(("[", "rank:")):
            prefix = _RANK_PREFIX.match(text)
            if prefix is not None:
                text = text[prefix.end() :]
                state, rank = self._state, int(prefix.group(1) or prefix.group(2))
                before, state.rank = state.rank, rank
                try:
                    return _with_rank(self.parse(line._replace(text=text), ts), rank)
                finally:
                    state.rank = before
        if "\r" not in text and "%|" not in text:
            out: list[Event] = []
            self._parse_text(text, line.lineno, ts, out)
            return out
        return self._parse_frames(text, line.lineno, ts)

    # -- tqdm frames --

    def _parse_frames(self, text: str, lineno: int, ts: float) -> list[Event]:
        out: list[Event] = []
        if self.cache and len(text) <= SHAPE_MAX:
            # Most such lines are bar redraws and nothing else: one lookup by the shape of the
            # whole line says where its last bar's numbers are (None: it holds something else).
            shape = text.encode("utf-8", "surrogatepass").translate(DIGITS_TO_ZERO)
            bar = self._bar_lines.get(shape, _MISSING)
            if bar is _MISSING:
                bar = _only_bars(text)
                if len(self._bar_lines) >= CACHE_MAX:
                    self._bar_lines.clear()
                self._bar_lines[shape] = bar
            if bar is not None:
                self._emit_progress(text, bar, lineno, ts, out)  # type: ignore[arg-type]
                return out
        last: tuple[str, _Bar] | None = None
        bar_of = self._bar_of
        for frame in text.split("\r"):
            if not frame or frame.isspace():
                continue
            bar = bar_of(frame)
            if bar is None:
                self._parse_text(frame, lineno, ts, out)
                continue
            rest = frame[bar[6] :]
            if rest and not rest.isspace():
                # Text printed after the bar without a newline: a log line of its own (an HF
                # dict there is logged at the bar's step).
                self._emit_progress(frame, bar, lineno, ts, out)
                self._state.bar_step = _scaled(frame[bar[0] : bar[1]])
                self._parse_text(rest, lineno, ts, out)
                self._state.bar_step = None
                last = None
            else:
                last = (frame, bar)  # only the last redraw counts: the terminal shows it
        if last is not None:
            self._emit_progress(last[0], last[1], lineno, ts, out)
        elif not out:
            out.append(Text(lineno, ts, ""))  # only blank redraws: a blank line
        return out

    def _bar_of(self, frame: str) -> _Bar | None:
        """Where a tqdm bar's numbers sit in `frame`, or None if it does not start with a bar.

        Cached by shape (digits read as 0), as for key-value lines: a bar line redraws the same
        few shapes thousands of times, and the regex costs more than the lookup.
        """
        if not self.cache or len(frame) > SHAPE_MAX:
            return _match_bar(frame)
        shape = frame.encode("utf-8", "surrogatepass").translate(DIGITS_TO_ZERO)
        bar = self._bars.get(shape, _MISSING)
        if bar is _MISSING:
            bar = _match_bar(frame)
            if len(self._bars) >= CACHE_MAX:
                self._bars.clear()
            self._bars[shape] = bar
        return bar  # type: ignore[return-value]

    def _emit_progress(
        self, frame: str, bar: _Bar, lineno: int, ts: float, out: list[Event]
    ) -> None:
        n0, n1, t0, t1, i0, i1, _ = bar
        total = frame[t0:t1]
        out.append(
            Progress(lineno, ts, _scaled(frame[n0:n1]), None if total == "?" else _scaled(total))
        )
        columns_of = self._state.columns
        if columns_of is not None:  # a column table's row with its bar after it (ultralytics)
            found = columns.row(frame[:n0], columns_of)
            if found is not None and found[0]:
                _emit_values(found[0], found[1], lineno, ts, "table", out)
        if i0 >= 0:
            info = frame[i0:i1]
            if "=" in info:  # Lightning / tqdm postfix: `[00:01<00:09, loss=1.23, v_num=0]`
                values, step = self._values(info)
                if values and any(metricish(k) for k in values):
                    out.append(Metric(lineno, ts, values, step, "tqdm"))

    # -- one line of text --

    def _parse_text(self, text: str, lineno: int, ts: float, out: list[Event]) -> None:
        start = len(out)
        self._parse_line(text, lineno, ts, out)
        if len(out) == start and (self._state.columns is not None or columns.may_be_header(text)):
            self._column_table(text, lineno, ts, out)
        if len(out) == start:
            self._trainer_format(text, lineno, ts, out)
        if (
            len(out) > start
            or self._state.table is not None
            or "*****" in text
            or "logging_steps" in text
        ):
            self._settle(text, lineno, out, start)
        out.append(Text(lineno, ts, text))

    def _column_table(self, text: str, lineno: int, ts: float, out: list[Event]) -> None:
        """A row of the column table being read, or its header (columns.py)."""
        state = self._state
        if state.columns is not None:
            found = columns.row(text, state.columns)
            if found is not None:
                values, step = found
                if values:
                    _emit_values(values, step, lineno, ts, "table", out)
                return
            if not text.strip():
                return  # blank lines inside a table
            state.columns = None
        if columns.may_be_header(text):
            state.columns = columns.header(text)

    def _trainer_format(self, text: str, lineno: int, ts: float, out: list[Event]) -> None:
        """A line of SB3's logger table or BasicSR's MessageLogger (formats.py); substring
        gates first, as most lines are neither."""
        head = text[:1]
        sb3 = self._state.sb3
        if head == "-" or (sb3.open and head == "|"):
            record = sb3.feed(text)
            if record is not None and record[0]:
                _emit_values(record[0], record[1], lineno, ts, "table", out)
        elif "iter:" in text and "lr:(" in text:
            found = formats.basicsr_record(text)
            if found is not None:
                _emit_values(found[0], found[1], lineno, ts, "kv", out)

    def _settle(self, text: str, lineno: int, out: list[Event], start: int) -> None:
        """What the log so far says about this line's events (steps, echoes, tables, copies)."""
        state = self._state
        if "logging_steps" in text:
            m = _LOGGING_STEPS.search(text)
            if m is not None and int(m.group(1)) > 0:
                state.logging_steps = int(m.group(1))
        table = _METRICS_TABLE.match(text) if "*****" in text else None
        if table is not None:
            state.table = table.group(1).lower()
            return
        events = out[start:]
        del out[start:]
        if state.table is not None:
            if _TABLE_ROW.match(text) is None:
                state.table = None
            else:
                events = self._table_row(events, state.table)
        # Substring gates first: these regexes would otherwise run on every metric line.
        if events and ("Overriding" in text or "will be" in text) and _CONFIG_ECHO.search(text):
            return  # a setting, not a measurement
        if events and (
            (("Valid" in text or "Eval" in text) and _VALID_SUMMARY.search(text))
            or _EVAL_LINE.match(text)
        ):
            events = [_as_eval(e) for e in events]
        if len(events) == 2 and "rain" in text and _TRAIN_SPLIT_LOSS.search(text):
            events = _train_split_in_eval(events)
        head = text.lstrip()[:2]
        source = "json" if head == '{"' else "hf" if head == "{'" else ""
        for event in events:
            kind = type(event)
            if kind is Metric and event.source == "hf":  # type: ignore[union-attr]
                event = self._hf_step(event)  # type: ignore[arg-type]
            elif isinstance(event, Eval) and event.step is None and state.bar_step is not None:
                event = replace(event, step=state.bar_step)
            if kind in (Metric, Eval):
                event = self._once(event, lineno, source)  # type: ignore[arg-type,assignment]
                if event is None:
                    continue
            out.append(event)

    def _table_row(self, events: list[Event], table: str) -> list[Event]:
        """A row of HF's metrics table: eval quality keys as an evaluation, nothing else."""
        if table not in ("eval", "test", "predict"):
            return []
        kept: list[Event] = []
        for e in events:
            if not isinstance(e, (Metric, Eval)):
                continue
            values = {
                k: v
                for k, v in e.values.items()
                if k.startswith("val_") and not any(w in k for w in _EVAL_STATS)
            }
            if values:
                kept.append(Eval(e.lineno, e.ts, values, e.step))
        return kept

    def _hf_step(self, event: Metric) -> Metric:
        state = self._state
        if "loss" in event.values:
            state.hf_dicts += 1
        if event.step is not None:
            return event
        if state.bar_step is not None:
            return replace(event, step=state.bar_step)
        if state.logging_steps is not None and state.hf_dicts:
            state.guessed = True
            return replace(event, step=state.hf_dicts * state.logging_steps)
        return event

    def _once(self, event: Metric | Eval, lineno: int, source: str) -> Metric | Eval | None:
        """One point per metric per step: None (or fewer values) when it arrived just before.

        The same values again for the same step a few lines later are a copy (a logger that
        prints every line twice). A JSON line next to an HF dict with the same values is one
        log record in two encodings (FtmonCallback's line and Trainer's own print): the later
        line keeps only the values the first did not have.
        """
        state = self._state
        kind = type(event)
        guessed, state.guessed = state.guessed, False
        key = (kind, state.rank)
        last = state.last.get(key)
        state.last[key] = (lineno, event.step, event.values, source, guessed)
        if last is None:
            return event
        at, step, values, last_source, last_guessed = last
        if not 0 < lineno - at <= _DUPLICATE_LINES:
            return event
        known = event.step is not None and step is not None and not last_guessed and not guessed
        if known and event.step != step:
            return event
        if _same_values(event.values, values):
            state.last[key] = last  # the first copy stays the point
            return None
        if {source, last_source} == {"json", "hf"}:
            shared = [k for k in event.values if k in values]
            enough = len(shared) >= 2 or any("loss" in k for k in shared)
            if enough and _same_values({k: event.values[k] for k in shared}, values):
                rest = {k: v for k, v in event.values.items() if k not in values}
                return replace(event, values=rest) if rest else None
        return event

    def _parse_line(self, text: str, lineno: int, ts: float, out: list[Event]) -> None:
        first = text[:1]
        is_object = False
        if first == "{" or (first.isspace() and text.lstrip().startswith("{")):
            stripped = text.strip()
            if not stripped.endswith("}"):
                # A dict with something printed after it (`{'loss': 1.14, ...}    <-- here`,
                # a message glued on without a newline): the object is up to its last brace.
                stripped = stripped[: stripped.rfind("}") + 1]
            is_object = bool(stripped) and self._parse_object(stripped, lineno, ts, out)
        if not is_object and first.isdigit() and (m := _ITER_LOSS.fullmatch(text)):
            out.append(Metric(lineno, ts, {"loss": float(m.group(2))}, int(m.group(1)), "kv"))
        elif not is_object:
            start = len(out)
            if self.cache and len(text) <= SHAPE_MAX and "tensor(" not in text:
                self._parse_kv_shape(text, lineno, ts, out)
            elif self.prefilter.search(text):
                self._parse_kv_line(text, lineno, ts, out)
            if self._state.keras_epoch and len(out) > start and type(out[-1]) is Metric:
                self._epoch_end(text, out)
            elif "poch " in text and _KERAS_EPOCH_START.match(text):
                self._state.keras_epoch = True
        if self.patterns:
            self._parse_patterns(text, lineno, ts, out)

    def _epoch_end(self, text: str, out: list[Event]) -> None:
        """Keras' line at an epoch's end: its metrics become the epoch's summary."""
        m = _KERAS_EPOCH_END.match(text)
        if m is None or m.group(1) != m.group(2):
            return
        self._state.keras_epoch = False
        last = out[-1]
        assert isinstance(last, Metric)
        out[-1] = replace(last, source="epoch")

    def _parse_kv_shape(self, text: str, lineno: int, ts: float, out: list[Event]) -> None:
        """`_parse_kv_line` for a line without a tensor, by one lookup of the line's shape.

        The prefilter's answer is the same for every line of a shape (its words have no
        digits), so it is asked once per shape too: None marks a shape without a metric word.
        """
        shape = text.encode("utf-8", "surrogatepass").translate(DIGITS_TO_ZERO)
        template = self._kv_lines.get(shape, _MISSING)
        if template is _MISSING:
            template = Template.of(text) if self.prefilter.search(text) else None
            if len(self._kv_lines) >= CACHE_MAX:
                self._kv_lines.clear()
            self._kv_lines[shape] = template
        if not isinstance(template, Template):
            return
        values, step = template.read(text) if template.cacheable else self._kv(text)
        if values:
            _emit_values(values, step, lineno, ts, "kv", out)

    def _parse_kv_line(self, text: str, lineno: int, ts: float, out: list[Event]) -> None:
        if "tensor(" in text:
            bare = _BARE_TENSOR.match(text)
            if bare is not None:
                # A training loop that prints its loss tensor and nothing else.
                v = to_float(bare.group(1))
                if v is not None:
                    out.append(Metric(lineno, ts, {"loss": v}, None, "tensor"))
                return
            text = _TENSOR.sub(r"\1", text)
            values, step = self._kv(text)
        else:
            values, step = self._values(text)
        if values:
            _emit_values(values, step, lineno, ts, "kv", out)

    def _values(self, text: str) -> tuple[dict[str, float], int | None]:
        """`key: value` pairs of `text`, through the shape cache."""
        if not self.cache or len(text) > SHAPE_MAX:
            return self._kv(text)
        # Lines of one format differ only in their digits: find where the values sit once
        # per shape, then read them by position (see Template).
        shape = text.encode("utf-8", "surrogatepass").translate(DIGITS_TO_ZERO)
        template = self._templates.get(shape)
        if template is None:
            template = Template.of(text)
            if len(self._templates) >= CACHE_MAX:
                self._templates.clear()
            self._templates[shape] = template
        return template.read(text) if template.cacheable else self._kv(text)

    def _kv(self, text: str) -> tuple[dict[str, float], int | None]:
        return Template.of(text).read(text)

    # -- JSON and Python dict lines --

    def _parse_object(self, text: str, lineno: int, ts: float, out: list[Event]) -> bool:
        """Events of a JSON / Python dict line; False when `text` is no such object."""
        obj = _load_object(text)
        if obj is None:
            return False
        kind = obj.get("type")
        if "step" in obj:
            step = _int_or_none(obj["step"])
        else:
            step = _int_or_none(obj.get("global_step", obj.get("current_steps")))
        if kind == "sample":
            sample = obj.get("text", obj.get("sample", obj.get("output", obj.get("completion"))))
            if isinstance(sample, str):
                prompt = obj.get("prompt", "")
                out.append(
                    Sample(lineno, ts, sample, prompt if isinstance(prompt, str) else "", step)
                )
            return True
        values = _numeric_values(obj)
        step_value = values.pop("step", None)
        if step is None:
            step = _int_or_none(step_value)
        if kind == "eval":
            if values:
                out.append(Eval(lineno, ts, values, step))
            return True
        if kind == "metric":
            if values:
                out.append(Metric(lineno, ts, values, step, "json"))
            return True
        if kind is not None or "train_runtime" in obj:
            # Some other protocol's record, or the trainer's final summary (Trainer's own dict
            # of it has `train_runtime` and the mean `train_loss`): its Text is enough.
            # A summary repeats the last loss and evaluation; as events it would count one
            # evaluation twice (the divergence rule) and store a point twice (the history).
            return True
        if values:
            source = "json" if text.startswith('{"') else "hf"
            _emit_values(values, step, lineno, ts, source, out)
        return True

    # -- user patterns --

    def _parse_patterns(self, text: str, lineno: int, ts: float, out: list[Event]) -> None:
        for rx in self.patterns:
            m = rx.search(text)
            if m is None:
                continue
            values: dict[str, float] = {}
            step = None
            groups = m.groupdict()
            if groups.get("step") is not None:
                step = _int_or_none(to_float(groups["step"]))
            if groups.get("sample") is not None:
                # The recipe says how this run prints its generated text: a sample, judged as
                # one (the repetition rule's sample tests, not its looser log-line ones).
                prompt = groups.get("prompt") or ""
                out.append(Sample(lineno, ts, groups["sample"], prompt, step))
            for name, raw in groups.items():
                if raw is None or name in ("sample", "prompt"):
                    continue
                if name == "step":
                    continue
                v = to_float(raw)
                if v is not None:
                    values[normalise_name(name)] = v
            if values:
                out.append(Metric(lineno, ts, values, step, "pattern"))


_names_kind: dict[tuple[str, ...], tuple[bool, bool]] = {}  # (any val_* name, any metric name)


def _emit_values(
    values: dict[str, float], step: int | None, lineno: int, ts: float, source: str, out: list
) -> None:
    """Metric, or Eval when `val_*` names are there (both when a training loss is too)."""
    # What the names say, looked up once per set of names: a log repeats a few sets.
    names = tuple(values)
    kind = _names_kind.get(names)
    if kind is None:
        kind = _names_kind[names] = (
            any(k.startswith("val_") for k in names),
            any(metricish(k) for k in names),
        )
        if len(_names_kind) > CACHE_MAX:
            _names_kind.clear()
    if not kind[0]:  # the common case: no evaluation
        if kind[1]:
            out.append(Metric(lineno, ts, values, step, source))
        return
    evals = {k: v for k, v in values.items() if k.startswith("val_")}
    rest = {k: v for k, v in values.items() if not k.startswith("val_")}
    if "loss" in rest:  # "train loss 4.03, val loss 4.04": a training metric and an evaluation
        out.append(Eval(lineno, ts, evals, step))
        out.append(Metric(lineno, ts, rest, step, source))
    else:  # accuracy, epoch, runtime next to val_loss: all part of the evaluation
        evals.update(rest)
        out.append(Eval(lineno, ts, evals, step))


def _as_eval(event: Event) -> Event:
    """A validation summary's metric as an evaluation: `loss` -> `val_loss`, epoch kept."""
    if type(event) is not Metric:
        return event
    values = {
        (k if k.startswith("val_") or k in ("epoch", "step") else "val_" + k): v
        for k, v in event.values.items()
    }
    return Eval(event.lineno, event.ts, values, event.step)


def _train_split_in_eval(events: list[Event]) -> list[Event]:
    """nanoGPT's eval line: the train split's loss joins the evaluation, not the training."""
    metrics = [e for e in events if type(e) is Metric]
    evals = [e for e in events if type(e) is Eval]
    if len(metrics) != 1 or len(evals) != 1:
        return events
    train = {("train_" + k if k == "loss" else k): v for k, v in metrics[0].values.items()}
    e = evals[0]
    return [Eval(e.lineno, e.ts, {**e.values, **train}, e.step)]


_raw_decode = json.JSONDecoder().raw_decode


def _loads(text: str) -> object:
    """`json.loads(text)` for a text that starts with `{`, without its Python layers."""
    obj, end = _raw_decode(text)
    if end != len(text) and text[end:].strip(" \t\n\r"):
        raise ValueError(f"extra data at {end}")  # as json.loads says
    return obj


def _load_object(text: str) -> dict | None:
    """A JSON object, a JSON object with bare nan/inf, or a Python dict repr; None otherwise."""
    if text.startswith('{"'):
        try:
            obj = _loads(text)
        except (ValueError, RecursionError):  # RecursionError: absurdly deep nesting
            try:
                obj = _loads(_fix_json(text))
            except (ValueError, RecursionError):
                obj = None
        if isinstance(obj, dict):
            return obj
    # HF Trainer prints a Python dict: quote style and nan/inf are not JSON. Most such lines
    # become JSON by swapping the quotes (fast, in C); the rest are read pair by pair.
    if text.startswith("{'"):
        swapped = text.replace("'", '"')
        for attempt in (swapped, None):
            try:
                obj = _loads(attempt if attempt is not None else _fix_json(swapped))
            except (ValueError, RecursionError):
                continue
            if isinstance(obj, dict):
                return obj
    pairs = _DICT_PAIR.findall(text)
    if not pairs:
        return None
    found: dict[str, object] = {}
    for key, raw in pairs:
        raw = raw.strip()
        if raw[:1] in "'\"":
            found[key] = raw.strip("'\"")
        else:
            v = to_float(raw)
            if v is not None:
                found[key] = v
    return found


def _fix_json(text: str) -> str:
    """Bare nan / inf (as Python and some loggers print them) -> JSON's NaN / Infinity."""
    return _JSON_FIX.sub(_fix_special, text)


def _fix_special(m: re.Match[str]) -> str:
    word = m.group(3).lower()
    if word == "nan":
        return m.group(1) + "NaN"
    return m.group(1) + ("-" if m.group(2) == "-" else "") + "Infinity"


def _numeric_values(obj: dict) -> dict[str, float]:
    values: dict[str, float] = {}
    for key, raw in obj.items():
        kind = type(raw)
        if kind is float or kind is int:  # the common case first (bool is not int here)
            name = name_cache.get(key) or normalise_name(key)
            if name not in values:  # an int too big for a float is inf (to_float), no error
                values[name] = raw if kind is float else to_float(raw)  # type: ignore[assignment]
        elif kind is dict:  # {"type": "eval", "values": {...}}
            for k2, r2 in raw.items():
                v2 = to_float(r2) if not isinstance(r2, str) else None
                if v2 is not None:
                    values.setdefault(normalise_name(k2), v2)
        elif kind is str and key != "type":
            # Strict JSON cannot hold NaN, so some loggers write "NaN" or "inf" as strings.
            name = normalise_name(key)
            v = to_float(raw) if metricish(name) else None
            if v is not None:
                values.setdefault(name, v)
    return values


def _int_or_none(value: object) -> int | None:
    v = to_float(value) if not isinstance(value, float) else value
    if v is None or v != v or v in (math.inf, -math.inf) or not float(v).is_integer():
        return None
    return int(v)


def _scaled(token: str) -> int:
    if token.isdigit():
        return int(token)
    mult = _SCALE.get(token[-1:], 1.0)
    return int(float(token.rstrip("kMG")) * mult)
