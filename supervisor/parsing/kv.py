"""The `key: value` grammar of training logs, metric names and numbers, and the line-shape cache.

`normalise_name` gives one spelling per metric (`learning_rate` -> `lr`, `eval_loss` ->
`val_loss`); `to_float` reads a number from a JSON value or a token. One regex finds `key:
value`, `key=value` and `key value` pairs (nanochat, Megatron, fairseq, mmengine, Lightning),
and `Template` remembers where the values of one line *shape* sit (the line with every digit read as
0), so that the regex runs once per format rather than once per line. Used by parse.py.
"""

from __future__ import annotations

import math
import re

# --- metric names ---------------------------------------------------------------------------------

_ALIASES = {
    "loss": "loss",
    "lm_loss": "loss",
    "train_loss": "loss",
    "training_loss": "loss",
    "epoch_loss": "loss",
    "loss_step": "loss",  # Lightning: train_loss_step, val_loss_step
    "eval_loss": "val_loss",
    "val_loss": "val_loss",
    "valid_loss": "val_loss",
    "validation_loss": "val_loss",
    "lr": "lr",
    "learning_rate": "lr",
    "gnorm": "grad_norm",
    "grad_norm": "grad_norm",
    "gradient_norm": "grad_norm",
    "total_norm": "grad_norm",
    "tok_sec": "tok_s",
    "tok_s": "tok_s",
    "tokens_s": "tok_s",
    "tokens_sec": "tok_s",
    "tokens_per_sec": "tok_s",
    "tokens_per_second": "tok_s",
    "ppl": "ppl",
    "perp": "ppl",
    "perplexity": "ppl",
    "step": "step",
    "steps": "step",
    "global_step": "step",
    "current_steps": "step",
    "iter": "step",
    "iteration": "step",
    "num_updates": "step",
    "loss_scale": "loss_scale",
    "epoch": "epoch",
    "acc": "accuracy",
    "accuracy": "accuracy",
    "number_of_skipped_iterations": "skipped_iterations",
    "number_of_nan_iterations": "nan_iterations",
    "memory_gib": "mem_gb",
    "mem_gb": "mem_gb",
}
_EVAL_PREFIXES = ("eval_", "val_", "valid_", "validation_", "test_")
_TRAIN_PREFIXES = ("train_", "training_")
# Names a bare `key value` pair (no `:` or `=`) may have and still count as a metric.
KNOWN = frozenset(_ALIASES.values()) | {"val_ppl", "val_accuracy"}


def spellings_of(name: str) -> frozenset[str]:
    """Every spelling the parser reads as the metric `name` (`val_loss`: `eval_loss`,
    `valid_loss`, ...). The one metric vocabulary: rules/names.py and the TUI ask it."""
    return frozenset(k for k, v in _ALIASES.items() if v == name)


# A line yields a Metric only when one of its names has one of these parts (epoch alone: no).
_METRIC_PARTS = frozenset(
    ("loss", "norm", "lr", "ppl", "acc", "accuracy", "perplexity", "tokens", "tok", "scale")
)
_NON_ALNUM = re.compile(r"[^0-9a-z]+")
name_cache: dict[str, str] = {}


def normalise_name(name: str) -> str:
    """One spelling per metric: `learning_rate` -> `lr`, `eval_loss` -> `val_loss`, ..."""
    cached = name_cache.get(name)
    if cached is not None:
        return cached
    key = _NON_ALNUM.sub("_", name.strip().lower()).strip("_")
    out = _ALIASES.get(key)
    if out is None:
        out = key
        for prefix in _EVAL_PREFIXES:
            if key.startswith(prefix):
                rest = key[len(prefix) :]
                base = _ALIASES.get(rest, rest)
                out = base if base.startswith("val_") else "val_" + base
                break
        else:
            for prefix in _TRAIN_PREFIXES:
                if key.startswith(prefix) and key[len(prefix) :] in _ALIASES:
                    out = _ALIASES[key[len(prefix) :]]
                    break
    if len(name_cache) < 4096:
        name_cache[name] = out
    return out


_metricish_cache: dict[str, bool] = {}


def metricish(name: str) -> bool:
    known = _metricish_cache.get(name)
    if known is None:
        known = any(part in _METRIC_PARTS for part in name.split("_"))
        if len(_metricish_cache) < 4096:
            _metricish_cache[name] = known
    return known


# --- values -----------------------------------------------------------------------------------

_SPECIAL = {
    "nan": math.nan,
    "-nan": math.nan,
    "+nan": math.nan,
    "inf": math.inf,
    "+inf": math.inf,
    "infinity": math.inf,
    "+infinity": math.inf,
    "-inf": -math.inf,
    "-infinity": -math.inf,
}


def to_float(value: object) -> float | None:
    """A number from a JSON value or a token; None for anything else (booleans included)."""
    kind = type(value)
    if kind is float:
        return value  # type: ignore[return-value]
    if kind is int:
        try:
            return float(value)  # type: ignore[arg-type]
        except OverflowError:  # JSON integers have no size limit; as a float it is that big
            return math.inf if value > 0 else -math.inf  # type: ignore[operator]
    if kind is str:
        # float() itself reads nan, NaN, inf, -Infinity and surrounding spaces.
        try:
            return float(value)  # type: ignore[arg-type]
        except ValueError:
            try:
                return float(value.replace(",", ""))  # type: ignore[attr-defined]
            except ValueError:
                return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)  # subclasses (numpy scalars do not get here: JSON has none)
    return None


# --- line shapes ----------------------------------------------------------------------------------

# The shape of a line for the caches: its UTF-8 bytes with every digit read as 0 (bytes, as
# bytes.translate is many times faster than str.translate on non-ASCII text such as bars).
DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
CACHE_MAX = 4096  # shapes per cache; it is emptied when full
SHAPE_MAX = 2048  # chars; longer lines are parsed afresh, so the caches stay small
_MMENGINE_ITER = re.compile(r"Iter\(\w+\)\s*\[\s*(\d+)\s*/")
# mmengine / mmcv by epoch: `Epoch(train) [1][200/735]`, `Epoch [2][50/788]`: the step is
# (epoch - 1) x iterations per epoch + iteration.
_MMENGINE_EPOCH = re.compile(r"Epoch(?:\(train\))?\s*\[\s*(\d+)\s*\]\s*\[\s*(\d+)\s*/\s*(\d+)\s*\]")

# A number, then (for digits only) a unit such as ms, s or %. nan/inf only as whole tokens (or
# as a float's str with `.0` added, NeMo's bar: `reduced_train_loss=nan.0`; or padded with `x`
# to six characters, PaddleOCR's `'{}: {:x<6f}'.format(k, v)` in ppocr/utils/stats.py, which
# prints `loss: nanxxx`: a finite value always has six or more characters there), and after a
# bare space not when a key follows ("number of nan iterations: 0" holds no NaN).
# A number may end its sentence: TensorFlowTTS's trainers log each metric as
# `(Step: 1200) train_gen_loss = 4.0427.` (`f"(Step: {self.steps}) {name} = {value:.4f}."`); a
# period followed by a space or the line's end is punctuation, not part of a version or a path.
_END = r"(?:(?![\w.\-]|:[^\s])|(?=\.(?:\s|$)))"
_NUM = (
    r"(?:(?P<num>[-+]?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?))"
    rf"(?P<unit>%|[a-zA-Z]{{1,3}}(?![\w]))?{_END}"
    rf"|(?P<special>[-+]?(?i:nan|inf(?:inity)?)(?:\.0|(?<=[nN])x{{3}}|(?<=[fF])x{{2,3}})?){_END}"
    r"(?(colon)|(?![ \t]+[A-Za-z]\w*[ \t]*[:=])))"
)
# A word of a key; a word ending a sentence ("pass.") cannot be part of one.
_WORD = r"[A-Za-z](?:[\w./\-]*[\w/])?"
# key (one to six words), then `:` or `=` or plain spaces, then the value.
_KV = re.compile(
    rf"(?<![\w./\-])(?P<key>{_WORD}(?:[ \t]+(?:{_WORD}|\([A-Za-z]+\))){{0,5}}?)"
    rf"[ \t]*(?:(?P<colon>[:=])[ \t]*|[ \t]+)(?:{_NUM})"
)


class Template:
    """Where the metric values of a `key: value` line sit, by character position.

    Two lines that differ only in their digits (every digit read as 0) parse alike: the regex
    decisions depend on digit-or-not, never on which digit, so the names found on the first line
    and the spans of its values hold for the next. Not cacheable when a name itself has digits.
    Step candidates are all kept, because whether `1.0` or `1.5` is a valid step depends on the
    digits: `read` picks the first valid one as the full parse would.
    """

    __slots__ = ("by_epoch", "cacheable", "steps", "values")

    def __init__(
        self,
        values: list[tuple[str, int, int, float | None]],
        steps: list[tuple[int, int, float | None]],
        cacheable: bool,
        by_epoch: bool = False,
    ) -> None:
        self.values = values  # (name, start, end, constant or None to read text[start:end])
        self.steps = steps
        self.cacheable = cacheable
        self.by_epoch = by_epoch  # the step is computed from mmengine's `[epoch][i/n]`

    @classmethod
    def of(cls, text: str) -> Template:
        values: list[tuple[str, int, int, float | None]] = []
        steps: list[tuple[int, int, float | None]] = []
        seen: set[str] = set()
        cacheable = True
        for m in _KV.finditer(text):
            name = _pick_name(m.group("key"), bare=m.group("colon") is None, text=text, m=m)
            if name is None:
                continue
            if any(c.isdigit() for c in m.group("key")):
                cacheable = False
            if m.group("num") is not None:
                start, end, const = m.start("num"), m.end("num"), None
                if (
                    m.group("colon") is None
                    and m.group("unit") is None
                    and m.group("num").isdigit()
                    and name != "step"
                    and (then := _THEN_DECIMAL.match(text, end)) is not None
                ):
                    steps.append((start, end, None))
                    start, end = then.start(1), then.end(1)
            else:
                special = m.group("special").lower().removesuffix(".0").rstrip("x")
                start, end, const = m.start("special"), m.end("special"), _SPECIAL[special]
            if name == "step":
                steps.append((start, end, const))
            elif name not in seen:
                seen.add(name)
                values.append((name, start, end, const))
        if "Iter(" in text:
            mm = _MMENGINE_ITER.search(text)  # mmengine: `Iter(train) [ 10/100]`
            if mm is not None:
                steps.append((mm.start(1), mm.end(1), None))
        by_epoch = "Epoch" in text and _MMENGINE_EPOCH.search(text) is not None
        return cls(values, steps, cacheable, by_epoch)

    def read(self, text: str) -> tuple[dict[str, float], int | None]:
        values = {
            name: const if const is not None else _number(text[start:end])
            for name, start, end, const in self.values
        }
        if self.by_epoch:
            me = _MMENGINE_EPOCH.search(text)
            if me is not None:
                epoch, i, n = (int(g) for g in me.groups())
                return values, max(epoch - 1, 0) * n + i
        for start, end, const in self.steps:
            v = const if const is not None else _number(text[start:end])
            if v == v and v >= 0 and v.is_integer() and v != math.inf:
                return values, int(v)
        return values, None


# NVIDIA's Tacotron 2 and WaveGlow print the iteration between the name and its value:
# `Train loss {} {:.6f} Grad Norm {:.6f} {:.2f}s/it`.format(iteration, loss, ...) and
# `Validation loss {}: {:9f}`.format(iteration, val_loss) (train.py). After a bare key, an
# integer followed by a decimal number is that counter, and the decimal number is the value.
_THEN_DECIMAL = re.compile(r":?[ \t]+([-+]?(?:\d+\.\d*|\.\d+)(?:[eE][-+]?\d+)?)(?![\w.\-])")


def _number(token: str) -> float:
    return float(token.replace(",", "")) if "," in token else float(token)


_TRAILING_WORDS = frozenset(("to", "is", "of", "at", "was", "now", "becomes", "from"))


def _pick_name(key: str, bare: bool, text: str, m: re.Match[str]) -> str | None:
    """The metric name for a matched key, or None when the pair is not a metric.

    Keys can have several words ("lm loss", "number of skipped iterations") but the match may
    also have swallowed words before the name ("Attempted loss scale"): the longest known tail
    wins. A bare `key value` pair (no `:`/`=`) counts only when its name is known or the pair
    fills a whole `|`-separated cell (fairseq).
    """
    words = key.split()
    while len(words) > 1 and words[-1].lower() in _TRAILING_WORDS:
        words.pop()  # "setting loss scale to: 0.25"
    name = normalise_name(" ".join(words))
    if len(words) > 1 and name not in KNOWN:
        for i in range(1, len(words)):
            tail = normalise_name(" ".join(words[i:]))
            if tail in KNOWN:
                return tail
    if not bare or name in KNOWN:
        return name
    before = text[: m.start()].rstrip()
    after = text[m.end() :].lstrip()
    if (not before or before.endswith("|")) and (not after or after.startswith("|")):
        return name
    return None
