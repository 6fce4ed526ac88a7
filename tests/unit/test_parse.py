"""Parse: real log lines of each framework -> metrics, evaluations, samples, progress and text."""

from __future__ import annotations

import io
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.events import Eval, Event, LogLine, Metric, Progress, Sample, Text
from supervisor.parsing.parser import Parser, normalise_name
from supervisor.reading.tail import iter_file_lines
from tests.conftest import CORPUS, scan

PARSER = Parser()  # for single lines (each at line 7: no two are ever one record)
UNCACHED = Parser(cache=False)


def corpus_line(name: str, lineno: int) -> LogLine:
    """The line as Tail reads it from the real excerpt (the files are not ours to edit)."""
    for batch in iter_file_lines(CORPUS / name):
        for line in batch:
            if line.lineno == lineno:
                return line
    raise AssertionError(f"{name} has no line {lineno}")


def parse(text: str) -> list[Event]:
    return PARSER.parse(LogLine(7, 0, len(text), text), 1.0)


def only(events: list[Event], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def metric(events: list[Event]) -> Metric:
    found = only(events, Metric)
    assert len(found) == 1, events
    return found[0]


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


needs_corpus = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/corpus not present")


@needs_corpus
@pytest.mark.parametrize(
    ("name", "lineno", "step", "expected"),
    [
        ("001_nan_nanogpt.log", 12, 3010, {"loss": math.nan}),
        ("002_nan_xtuner.log", 5, 240, {"loss": 2.5128, "grad_norm": math.nan, "lr": 1.9813e-04}),
        ("003_nan_custom-loop.log", 2, None, {"loss": math.nan}),
        ("004_nan_fairseq.log", 1, 10198, {"loss": 6.343, "grad_norm": 0.39, "ppl": 31.65}),
        ("010_normal_torchtune.log", 4, 1, {"loss": 2.085338592529297, "lr": 2e-05}),
        ("018_nan_llamafactory.log", 1, None, {"loss": 344093.2, "grad_norm": math.nan}),
        ("022_normal_megatron.log", 11, 10, {"loss_scale": 8388608.0, "skipped_iterations": 10}),
        ("029_normal_litgpt.log", 1, 15, {"loss": 2.0372, "ppl": 7.6693}),
        ("037_nan_hf-trainer-tqdm.log", 1, None, {"grad_norm": math.nan, "loss": 1.7018}),
        ("040_spike_fairseq.log", 4, 700, {"loss": 9.44, "grad_norm": 156.036}),
        ("044_normal_llamafactory-jsonl.log", 1, 2, {"loss": 1.5467, "lr": 0.0}),
        ("050_normal_demucs.log", 2, None, {"loss": 0.1098, "epoch": 35}),
    ],
)
def test_metrics_from_real_logs(
    name: str, lineno: int, step: int | None, expected: dict[str, float]
) -> None:
    """A training line of each framework gives its loss, grad norm, lr... under one name each."""
    line = corpus_line(name, lineno)
    events = Parser().parse(line, 5.0)
    m = metric(events)
    assert m.lineno == lineno and m.ts == 5.0 and m.step == step
    for key, value in expected.items():
        assert key in m.values, (key, m.values)
        assert same(m.values[key], value), (key, m.values[key], value)
    assert only(events, Text), "every line that is not a pure progress frame also gives Text"


@needs_corpus
def test_evaluation_lines_from_real_logs() -> None:
    """Validation results become Eval events: JSONL eval_loss, fairseq valid, llama-recipes."""
    e = only(Parser().parse(corpus_line("044_normal_llamafactory-jsonl.log", 5), 0), Eval)
    assert e and e[0].values["val_loss"] == 1.633915901184082 and e[0].step == 5
    f = only(Parser().parse(corpus_line("004_nan_fairseq.log", 2), 0), Eval)
    assert f and f[0].values["val_loss"] == 8.30118 and f[0].step == 10198
    g = only(Parser().parse(corpus_line("007_nan_llama-recipes.log", 6), 0), Eval)
    assert g and math.isnan(g[0].values["val_loss"]) and math.isnan(g[0].values["val_ppl"])


def test_evaluation_with_and_without_a_training_loss() -> None:
    """Accuracy beside val_loss belongs to the Eval; so does nanoGPT's train-split loss (its
    `iter 3000: loss ...` line is the training point of that step, not this one)."""
    h = parse("  eval step 7: val_loss=2.1043 accuracy=0.551 format_accuracy=0.99")
    values = {"val_loss": 2.1043, "accuracy": 0.551, "format_accuracy": 0.99}
    assert only(h, Eval) == [Eval(7, 1.0, values, 7)]
    assert not only(h, Metric)
    both = parse("step 3000: train loss 4.0390, val loss 4.0427")
    assert only(both, Eval) == [Eval(7, 1.0, {"val_loss": 4.0427, "train_loss": 4.039}, 3000)]
    assert not only(both, Metric)
    keras = parse("9595/9595 [====] - 1s - loss: 0.6242 - acc: 0.6295 - val_loss: 0.5265")
    assert only(keras, Metric)[0].values["loss"] == 0.6242  # Keras' epoch loss is training


@needs_corpus
def test_tqdm_frame_with_text_after_the_bar() -> None:
    """A bar followed by a DeepSpeed message yields the progress and the message as Text."""
    events = Parser().parse(corpus_line("005_nan_deepspeed-hf-trainer.log", 2), 0)
    assert only(events, Progress) == [Progress(2, 0, 378, 2724)]
    (text,) = only(events, Text)
    assert text.text.startswith("[2023-06-07 22:16:00,018] [INFO]") and "OVERFLOW!" in text.text


@needs_corpus
def test_pure_progress_frames_give_no_text() -> None:
    """A plain tqdm bar is Progress only: the text rules never see bars of █."""
    events = Parser().parse(corpus_line("037_nan_hf-trainer-tqdm.log", 3), 0)
    assert events == [Progress(3, 0, 10, 1233)]


def test_carriage_return_frames_keep_the_last_bar() -> None:
    """Many redraws on one physical line give one Progress (the last) and Text for any message."""
    line = "\r  5%|▌  | 5/100 [00:01<00:19]\r  6%|▌  | 6/100 [00:01<00:18]OOM soon\r  7%|▋ | 7/100"
    events = parse(line)
    assert only(events, Progress) == [Progress(7, 1.0, 6, 100), Progress(7, 1.0, 7, 100)]
    assert [t.text for t in only(events, Text)] == ["OOM soon"]


def test_lightning_bar_postfix_metrics() -> None:
    """Lightning's `loss=` inside the bar's brackets is read as a metric."""
    events = parse("Epoch 1: 10%|█         | 10/100 [00:01<00:09,  9.50it/s, loss=1.23, v_num=0]")
    assert only(events, Progress) == [Progress(7, 1.0, 10, 100)]
    assert metric(events).values["loss"] == 1.23


@needs_corpus
@pytest.mark.parametrize(
    ("name", "lineno", "start"),
    [
        ("013_stall_llamafactory.log", 1, "[E1206 18:44:12"),
        ("024_oom_ms-swift.log", 1, "torch.OutOfMemoryError: CUDA out of memory"),
        ("028_oom_parlai.log", 1, "2022-04-03 18:44:26,615 CRITICAL | Traceback"),
    ],
)
def test_rank_prefixes_are_stripped(name: str, lineno: int, start: str) -> None:
    """torchrun `[rankN]:` and ParlAI `rank:  3 |` prefixes are removed before parsing."""
    (text,) = only(Parser().parse(corpus_line(name, lineno), 0), Text)
    assert text.text.startswith(start)


def test_nanochat_megatron_mmengine_and_tensor_lines() -> None:
    """The step-line formats of the issue, each with its step and normalised names."""
    nano = metric(
        parse(
            "step 00100/01953 (5.12%) | loss: 1.234000 | lrm: 1.00 | dt: 512.00ms | "
            "tok/sec: 12,000 | mfu: 41.00 | total time: 9.00m"
        )
    )
    assert nano.step == 100 and nano.values["loss"] == 1.234 and nano.values["tok_s"] == 12000
    mega = metric(
        parse(
            " iteration       10/     100 | lm loss: 1.2E+00 | grad norm: 3.1 | "
            "loss scale: 65536.0 | number of skipped iterations: 0 |"
        )
    )
    assert mega.step == 10
    assert mega.values == {
        "loss": 1.2,
        "grad_norm": 3.1,
        "loss_scale": 65536.0,
        "skipped_iterations": 0.0,
    }
    mm = metric(
        parse("Iter(train) [ 10/100]  lr: 2.0000e-05  eta: 0:01:00  loss: 1.2  grad_norm: nan")
    )
    assert mm.step == 10 and mm.values["lr"] == 2e-05 and math.isnan(mm.values["grad_norm"])
    assert "eta" not in mm.values  # 0:01:00 is a duration, not the number 0
    t = metric(parse("step 3 loss tensor(nan, device='cuda:0') grad_norm tensor(inf)"))
    assert math.isnan(t.values["loss"]) and t.values["grad_norm"] == math.inf


@pytest.mark.parametrize(
    "text",
    [
        "nanochat: loaded tokenizer with vocab 65536; information retained for finance splits",
        "INFO:torchtune.utils.logging:Running inference with INF and Infinity in prose",
        "step 00400/01953 | loss: 2.100000 | step_avg:nanms | train_time:12ms",
        "number of nan iterations:   0 |",
        "|------|----------------|------|",
    ],
)
def test_words_are_not_read_as_nan(text: str) -> None:
    """NaN/Inf only count as values of metric keys, never inside words or timings."""
    for event in parse(text):
        if isinstance(event, (Metric, Eval)):
            assert all(math.isfinite(v) for v in event.values.values()), event


def test_json_protocol_lines() -> None:
    """The trainer's JSON lines: metric (nan/NaN/Infinity accepted), sample, eval."""
    m = metric(parse('{"type": "metric", "step": 4, "loss": NaN, "grad_norm": Infinity}'))
    assert m.step == 4 and math.isnan(m.values["loss"]) and m.values["grad_norm"] == math.inf
    assert m.source == "json"
    bare = metric(parse('{"step": 5, "loss": nan, "learning_rate": 2e-5}'))
    assert bare.step == 5 and math.isnan(bare.values["loss"]) and bare.values["lr"] == 2e-5
    (s,) = only(
        parse('{"type": "sample", "step": 9, "prompt": "你是誰", "text": "F F F F"}'), Sample
    )
    assert s == Sample(7, 1.0, "F F F F", "你是誰", 9)
    (e,) = only(parse('{"type": "eval", "step": 10, "val_loss": 1.5, "mmlu": 0.31}'), Eval)
    assert e.values == {"val_loss": 1.5, "mmlu": 0.31} and e.step == 10
    assert not only(parse('{"type": "config", "lr": 0.1}'), Metric)


def test_the_trainers_summary_line_is_text_only() -> None:
    """The trainer's final summary (last loss, last evaluation) is shown as text but counts as
    no new metric or evaluation: the run's last points are not stored or counted twice."""
    from trainer import protocol

    out = io.StringIO()
    protocol.summary(
        steps=40, skipped=0, first_loss=4.1, last_loss=2.3, seconds=12.5, truncated=0,
        method="lora", val_loss=2.41, ppl=11.1, accuracy=0.25, format_accuracy=1.0,
        trunc_rate=0.0, avg_gen_len=9.0, out=out,
    )  # fmt: skip
    line = out.getvalue().rstrip("\n")
    assert line.startswith('{"type": "summary"') and '"val_loss": 2.41' in line
    events = parse(line)
    assert not only(events, Metric) and not only(events, Eval)
    (text,) = only(events, Text)
    assert text.text == line


def test_hf_dict_lines() -> None:
    """HF Trainer's printed dicts: nan/inf values, eval_* keys as an Eval."""
    m = metric(parse("{'loss': nan, 'grad_norm': inf, 'learning_rate': 2e-05, 'epoch': 0.1}"))
    assert m.source == "hf" and math.isnan(m.values["loss"]) and m.values["grad_norm"] == math.inf
    assert m.values["lr"] == 2e-05 and m.values["epoch"] == 0.1
    (e,) = only(parse("{'eval_loss': 1.52, 'eval_runtime': 3.2, 'epoch': 1.0}"), Eval)
    assert e.values["val_loss"] == 1.52
    assert not only(parse("{'eval_loss': 1.52}"), Metric)


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("learning_rate", "lr"),
        ("eval_loss", "val_loss"),
        ("val_loss", "val_loss"),
        ("validation loss", "val_loss"),
        ("lm loss", "loss"),
        ("train/loss", "loss"),
        ("gnorm", "grad_norm"),
        ("grad norm", "grad_norm"),
        ("total_norm", "grad_norm"),
        ("tok/sec", "tok_s"),
        ("tokens_per_sec", "tok_s"),
        ("perplexity", "ppl"),
        ("eval_ppl", "val_ppl"),
        ("global_step", "step"),
        ("iteration", "step"),
        ("Loss Scale", "loss_scale"),
        ("train_loss_step", "loss"),
        ("val_loss_step", "val_loss"),
        ("eval/loss", "val_loss"),
    ],
)
def test_normalise_name(raw: str, name: str) -> None:
    """One spelling per metric, whatever the framework printed."""
    assert normalise_name(raw) == name


def test_user_patterns() -> None:
    """A user regex with named groups adds a parser: `loss` becomes a metric, `step` the step."""
    p = Parser([r"it=(?P<step>\d+) L=(?P<loss>\S+) gn=(?P<gnorm>\S+)"])
    events = p.parse(LogLine(3, 0, 0, "my trainer it=42 L=nan gn=7.5"), 2.0)
    m = [e for e in only(events, Metric) if e.source == "pattern"]
    assert len(m) == 1 and m[0].step == 42 and math.isnan(m[0].values["loss"])
    assert m[0].values["grad_norm"] == 7.5


@pytest.mark.parametrize("bad", ["(?P<loss>[0-9", "loss: ([0-9.]+)"])
def test_bad_user_pattern_is_a_clear_error(bad: str) -> None:
    """An invalid regex, or one with nothing named, is refused with a message naming it."""
    with pytest.raises(ValueError, match="pattern"):
        Parser([bad])


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_any_text_parses_without_error(text: str) -> None:
    """Arbitrary text never crashes the parser and always yields Text or Progress."""
    events = parse(text)
    assert events
    assert all(isinstance(e, (Metric, Eval, Sample, Progress, Text)) for e in events)


@needs_corpus
def test_every_corpus_line_parses() -> None:
    """Every line of every real excerpt parses, and nothing in a normal log reads as NaN."""
    for path in sorted(CORPUS.glob("*.log")):
        parser = Parser()  # one parser per log, as a monitor has
        for batch in iter_file_lines(path):
            for line in batch:
                events = parser.parse(line, 0)
                if "_normal_" in path.name:
                    for e in events:
                        if isinstance(e, (Metric, Eval)):
                            assert all(not math.isnan(v) for v in e.values.values()), (path, e)


KV_PIECES = [
    "step ",
    "iter ",
    "loss: ",
    "loss ",
    "lm loss: ",
    "grad norm: ",
    "tok/sec: ",
    "eval_loss=",
    "v2: ",
    "| ",
    " | ",
    ", ",
    " ",
    "nan",
    "inf",
    "ms",
    "%",
    "/",
    ":",
    ".",
    "e-",
    ",",
    "Iter(train) [ ",
    "#",
    "##",
    "###",
]


def fill(shape: str, digits: list[int]) -> str:
    out = []
    i = 0
    for ch in shape:
        if ch == "#":
            out.append(str(digits[i % len(digits)]))
            i += 1
        else:
            out.append(ch)
    return "".join(out)


@settings(max_examples=250, deadline=None)
@given(
    shape=st.lists(st.sampled_from(KV_PIECES), min_size=1, max_size=14).map("".join),
    first=st.lists(st.integers(0, 9), min_size=1, max_size=8),
    second=st.lists(st.integers(0, 9), min_size=1, max_size=8),
)
def test_template_cache_changes_nothing(shape: str, first: list[int], second: list[int]) -> None:
    """Reading values by position from a cached line shape gives what a full parse gives."""
    cached = Parser()
    plain = Parser(cache=False)
    for digits in (first, second, first):
        text = fill(shape, digits)
        got, want = parse_with(cached, text), parse_with(plain, text)
        assert repr(got) == repr(want), text  # repr: nan == nan


def parse_with(parser: Parser, text: str) -> list[Event]:
    return parser.parse(LogLine(1, 0, 0, text), 0.0)


FRAMES = [
    " 14%|█▍        | 378/2724 [13:55:57<86:19:20, 132.41s/it]",
    "Epoch 1:  10%|█         | 10/100 [00:01<00:09,  9.50it/s, loss=1.23, v_num=0]",
    "Train:   0%|          | 5/148500 [04:11<2164:04:35, 52.46s/it]",
    "100%|██████████| 10/10",
    " 50%|█████     | 5/10 [00:01<00:01]INFO oom soon",
    "[2023-06-07 22:16:00,018] [INFO] OVERFLOW!",
    "   ",
    "",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(FRAMES), min_size=1, max_size=8))
def test_bar_shape_cache_changes_nothing(frames: list[str]) -> None:
    """Bars read through the shape cache give what matching every frame's regex gives."""
    text = "\r".join(frames)
    if "\r" not in text and "%|" not in text:
        return
    line = LogLine(1, 0, 0, text)
    assert PARSER.parse(line, 0.0) == UNCACHED.parse(line, 0.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{'loss': -inf, 'grad_norm': +inf, 'lr': 1e-05}",
            {"loss": -math.inf, "grad_norm": math.inf},
        ),
        ("{'loss': 1.5, 'note': 'it's fine', 'ok': True}", {"loss": 1.5}),
        ('{"loss": -Infinity, "grad_norm": +inf}', {"loss": -math.inf, "grad_norm": math.inf}),
        (
            "{'loss': 2.0, 'memory(GiB)': 28.63, 'global_step/max_steps': '5/148500'}",
            {"mem_gb": 28.63},
        ),
    ],
)
def test_awkward_dict_lines(text: str, expected: dict[str, float]) -> None:
    """Signed infinities, quotes inside strings and Python literals still give the numbers."""
    values = metric(parse(text)).values
    for key, value in expected.items():
        assert values[key] == value, values


def test_hostile_objects_do_not_crash() -> None:
    """Absurd nesting, huge exponents, odd types: no crash; a NaN written as a string counts."""
    deep = '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}"
    assert only(parse(deep), Text)
    assert metric(parse('{"loss": 1e999999}')).values["loss"] == math.inf
    assert not only(parse('{"step": true, "loss": false}'), Metric)
    assert math.isnan(metric(parse('{"step": 3, "loss": "NaN"}')).values["loss"])
    assert not only(parse('{"step": 3, "run": "1.5"}'), Metric)  # a string that is no metric


def test_braces_that_are_no_object_are_read_as_text() -> None:
    """A line in braces that is not a dict is still searched for `key: value` metrics."""
    m = metric(parse("{rank 0} step 12 | loss: 0.75 {fp16}"))
    assert m.values == {"loss": 0.75} and m.step == 12


# --- parse gaps of issue 11, each from a real line --------------------------------------------


def parse_log(text: str) -> list[Event]:
    """Events of a whole log read by one parser, as a monitor reads a file (line numbers 1..)."""
    parser = Parser()
    out: list[Event] = []
    for i, line in enumerate(text.splitlines(), start=1):
        out += parser.parse(LogLine(i, 0, len(line), line), 1.0)
    return out


def test_hf_dict_takes_the_step_of_the_bar_on_its_line() -> None:
    """ChatGLM-Efficient-Tuning: `1/13000 [...]{'loss': nan, ...}`: the dict is at step 1."""
    line = (
        "  0%|                                                   | 1/13000 [00:10<36:34:36, "
        "10.13s/it]{'loss': nan, 'reward': 5.7646, 'learning_rate': 5e-05}"
    )
    (m,) = only(parse_log(line), Metric)
    assert m.step == 1 and math.isnan(m.values["loss"]) and m.values["lr"] == 5e-05


def test_hf_dicts_counted_from_logging_steps() -> None:
    """LLaMA-Factory's yaml echo `logging_steps: 10`, then stanford_alpaca's dicts: 10, 20."""
    log = (
        "logging_steps: 10\n"
        "{'loss': 1.2607, 'learning_rate': 6.31578947368421e-06, 'epoch': 0.03}\n"
        "{'loss': 1.2007, 'learning_rate': 7.368421052631579e-06, 'epoch': 0.03}\n"
    )
    assert [m.step for m in only(parse_log(log), Metric)] == [10, 20]
    no_echo = "{'loss': 1.2607, 'learning_rate': 6.31578947368421e-06, 'epoch': 0.03}\n"
    assert [m.step for m in only(parse_log(no_echo), Metric)] == [None]


@pytest.mark.parametrize(
    "line",
    [
        "Overriding: eval_iters = 20",
        "Overriding: max_iters = 5000",
        "tokens per iteration will be: 512",
        "tokens per iteration will be: 491,520",
        "found vocab_size = 65 (inside data/shakespeare_char/meta.pkl)",
    ],
)
def test_config_echoes_are_never_metrics(line: str) -> None:
    """nanoGPT's configurator and start-up echoes state settings, not measurements (a loss
    scaler's new scale is one: the skipped_steps rule reads it)."""
    events = parse_log(line)
    assert not only(events, Metric) and not only(events, Eval), events
    assert only(events, Text)
    scaler = "| WARNING | fairseq.trainer | NOTE: overflow detected, setting loss scale to: 64.0"
    assert metric(parse_log(scaler)).values == {"loss_scale": 64.0}


def test_hf_eval_metrics_table_is_one_evaluation_of_its_eval_keys() -> None:
    """HF's `***** eval metrics *****`: eval_loss is an evaluation; runtime and rates are not;
    `***** train metrics *****` is a summary, not a training point."""
    log = (
        "***** train metrics *****\n"
        "  epoch                    =        3.0\n"
        "  train_loss               =     0.5187\n"
        "  train_runtime            = 0:01:12.33\n"
        "  train_samples_per_second =     41.402\n"
        "***** eval metrics *****\n"
        "  epoch                   =        3.0\n"
        "  eval_loss               =     0.4951\n"
        "  eval_runtime            = 0:00:02.48\n"
        "  eval_samples_per_second =     80.469\n"
        "  eval_steps_per_second   =     10.059\n"
        "{'loss': 0.41, 'learning_rate': 1e-05, 'epoch': 3.0}\n"
    )
    events = parse_log(log)
    assert only(events, Eval) == [Eval(8, 1.0, {"val_loss": 0.4951}, None)]
    assert [m.values for m in only(events, Metric)] == [{"loss": 0.41, "lr": 1e-05, "epoch": 3.0}]


def test_same_values_twice_are_one_point() -> None:
    """TensorFlow's two loggers print each line twice; FtmonCallback's JSON line follows
    Trainer's own dict with the same values: one point per metric per step."""
    doubled = (
        "INFO:tensorflow:global step 1: loss = 79.3501 (57.126 sec/step)\n"
        "INFO:tensorflow:global step 1: loss = 79.3501 (57.126 sec/step)\n"
        "INFO:tensorflow:global step 2: loss = 72.8609 (17.053 sec/step)\n"
        "INFO:tensorflow:global step 2: loss = 72.8609 (17.053 sec/step)\n"
    )
    assert [(m.lineno, m.step) for m in only(parse_log(doubled), Metric)] == [(1, 1), (3, 2)]
    callback = (
        '{"type": "config", "logging_steps": 1, "max_steps": 3}\n'
        "{'loss': 3.9121, 'grad_norm': 1.532, 'learning_rate': 0.001, 'epoch': 0.17}\n"
        '{"type": "metric", "step": 1, "loss": 3.9121, "grad_norm": 1.532, "lr": 0.001, '
        '"epoch": 0.17, "tok_s": 812.5}\n'
        "{'loss': 3.7003, 'grad_norm': 1.498, 'learning_rate': 0.001, 'epoch': 0.33}\n"
        '{"type": "metric", "step": 2, "loss": 3.7003, "grad_norm": 1.498, "lr": 0.001, '
        '"epoch": 0.33, "tok_s": 830.1}\n'
    )
    points = [(m.step, k) for m in only(parse_log(callback), Metric) for k in m.values]
    assert sorted(points) == sorted(
        (s, k) for s in (1, 2) for k in ("loss", "grad_norm", "lr", "epoch", "tok_s")
    )


def test_mmengine_epoch_lines_get_global_steps() -> None:
    """xtuner `Epoch(train) [1][200/735]` is step 200; MMDetection `Epoch(train)  [2][ 50/788]`
    is step 838 (788 iterations per epoch)."""
    x = metric(
        parse(
            "10/30 22:18:02 - mmengine - INFO - Epoch(train) [1][200/735]  lr: 1.9870e-04"
            "  eta: 2:46:39  time: 2.8906  data_time: 0.0042  memory: 10762  loss: 2.7522"
        )
    )
    assert x.step == 200 and x.values["loss"] == 2.7522
    d = metric(
        parse(
            "2024/05/10 15:46:31 - mmengine - INFO - Epoch(train)  [2][ 50/788]  lr: "
            "2.0000e-03  eta: 4:14:00  time: 0.8167  grad_norm: 3.4572  loss: 1.5043"
        )
    )
    assert d.step == 838


def test_demucs_valid_summary_is_an_evaluation() -> None:
    """demucs: `Valid Summary | Epoch 35 | Loss=0.1552 ...` is validation, not training loss."""
    line = (
        "[04-04 22:58:46][demucs.solver][INFO] - Valid Summary | Epoch 35 | Loss=0.1552 | "
        "Reco=0.1552 | Nsdr=6.484 | Best=0.1501 | Bname=main"
    )
    events = parse_log(line)
    assert not only(events, Metric)
    (e,) = only(events, Eval)
    assert e.values["val_loss"] == 0.1552 and e.values["epoch"] == 35
    train = "[04-04 22:58:45][demucs.solver][INFO] - Train Summary | Epoch 35 | Loss=0.1127"
    assert metric(parse_log(train)).values["loss"] == 0.1127


def test_line_numbers_exact_after_a_long_line_written_in_chunks() -> None:
    """A 1.5 MiB line written in chunks, flushed while the writer paused (as `follow` does),
    then `loss nan`: the NaN line is line 3, as in the file and as `ftmon scan` says."""
    from supervisor.reading.tail import LineSplitter

    sp = LineSplitter()
    got = sp.feed(b"step 1 loss 2.5\n")
    chunk = b"x" * (512 * 1024)
    for _ in range(3):  # 1.5 MiB in three writes, the reader flushing after each pause
        got += sp.feed(chunk)
        got += sp.flush()
    got += sp.feed(b"\nstep 2 loss nan\nstep 3 loss 2.4\n")
    numbered = {line.lineno for line in got}
    assert numbered == {1, 2, 3, 4}
    nan_line = [line for line in got if "nan" in line.text]
    assert [line.lineno for line in nan_line] == [3]
    with_file = LineSplitter()
    whole = b"step 1 loss 2.5\n" + chunk * 3 + b"\nstep 2 loss nan\nstep 3 loss 2.4\n"
    assert [line.lineno for line in with_file.feed(whole) if "nan" in line.text] == [3]


def test_callback_line_then_trainer_rounded_dict_is_one_record() -> None:
    """A real run with FtmonCallback (transformers 4.5x): the JSON line comes first, then
    Trainer's dict with values printed as rounded strings; the summary dict is no point."""
    log = (
        '{"type": "config", "logging_steps": 2, "max_steps": 4}\n'
        '{"type": "metric", "step": 2, "loss": 5.2703, "grad_norm": 5.17291, "lr": 0.00075, '
        '"epoch": 0.333333}\n'
        "{'loss': '5.27', 'grad_norm': '5.173', 'learning_rate': '0.00075', 'epoch': '0.3333'}\n"
        '{"type": "eval", "step": 4, "runtime": 0.0423, "val_loss": 4.49429, "ppl": 89.5044}\n'
        "{'eval_loss': '4.494', 'eval_runtime': '0.0423', 'eval_samples_per_second': '189', "
        "'eval_steps_per_second': '23.62', 'epoch': '0.6667'}\n"
        "{'train_runtime': '0.3285', 'train_samples_per_second': '48.7', "
        "'train_steps_per_second': '12.18', 'train_loss': '4.964', 'epoch': '0.6667'}\n"
    )
    events = parse_log(log)
    assert [(m.step, m.values["loss"]) for m in only(events, Metric)] == [(2, 5.2703)]
    assert [(e.step, e.values["val_loss"]) for e in only(events, Eval)] == [(4, 4.49429)]


def test_a_value_after_nan_is_a_new_point() -> None:
    """`loss: nan` then `loss: 1.5`: a finite value is never a copy of a NaN (nor of an inf)."""
    log = "loss: nan\nloss: nan\nloss: 1.5\nloss: inf\nloss: -inf\nloss: 1.4\n"
    values = [m.values["loss"] for m in only(parse_log(log), Metric)]
    assert len(values) == 5 and values[1:] == [1.5, math.inf, -math.inf, 1.4]


def lines_of(text: str) -> list[Event]:
    """Every event of `text` read line by line by one fresh parser, as a log is read."""
    parser = Parser()
    lines = text.splitlines()
    return [e for n, t in enumerate(lines, 1) for e in parser.parse(LogLine(n, 0, len(t), t), 1.0)]


def test_training_tables_printed_as_columns() -> None:
    """HF's notebook table, fastai's and DeepXDE's (bracketed cells): each row's values take
    the header's names, the step column is the step, times and `No log` say nothing; a nan
    row is a non-finite loss. A results table without a step column is not a series."""
    hf = "Step\tTraining Loss\tValidation Loss\n500\tNo log\t2.123400\n1000\t1.834500\tnan\n"
    events = [e for e in lines_of(hf) if isinstance(e, (Metric, Eval))]
    assert [(type(e).__name__, e.step, e.values) for e in events[:1]] == [
        ("Eval", 500, {"val_loss": 2.1234})
    ]
    assert [e.step for e in events[1:]] == [1000, 1000]
    assert math.isnan(events[1].values["val_loss"]) and events[2].values == {"loss": 1.8345}
    fastai = (
        "epoch     train_loss  valid_loss  accuracy  time    \n"
        "0         0.987654    0.876543    0.712345  00:12     \n"
    )
    metrics = [e for e in lines_of(fastai) if isinstance(e, (Metric, Eval))]
    assert {k: v for e in metrics for k, v in e.values.items()} == {
        "loss": 0.987654, "val_loss": 0.876543, "accuracy": 0.712345, "epoch": 0.0,
    }  # fmt: skip
    deepxde = "Step      Train loss    Test loss     Test metric\n2000      [nan]   [nan]   [nan]\n"
    row = [e for e in lines_of(deepxde) if isinstance(e, Metric)]
    assert [e.step for e in row] == [2000] and math.isnan(row[0].values["loss"])
    results = (
        "model        loss    accuracy\nllama-7b     1.92    0.61\nmistral-7b   1.85    0.64\n"
    )
    assert not [e for e in lines_of(results) if isinstance(e, (Metric, Eval))]
    # the table ends at the first line that is not a row: later numbers are not its cells
    ended = hf + "Saving model checkpoint to out\n2000\t9.0\t9.0\n"
    assert len([e for e in lines_of(ended) if isinstance(e, (Metric, Eval))]) == 3


def test_ultralytics_rows_with_their_epoch_bar() -> None:
    """ultralytics prints each epoch's row with its progress bar after it: the row's losses
    are read (the nan losses of an AMP run on a GTX 16xx), the epoch from `1/99`, sizes say
    nothing; the validation header that follows is not a training table."""
    log = (
        "      Epoch    GPU_mem   box_loss   obj_loss   cls_loss  Instances       Size\n"
        "       0/99      3.86G     0.1193    0.07038    0.04149        245        640: 100%|"
        "██████████| 8/8 [00:03<00:00,  2.12it/s]\n"
        "       1/99      3.86G        nan        nan        nan        245        640: 100%|"
        "██████████| 8/8 [00:03<00:00,  2.12it/s]\n"
        "                 Class     Images  Instances          P          R      mAP50   "
        "mAP50-95: 100%|██████████| 4/4 [00:01<00:00,  3.05it/s]\n"
        "                   all        128        929      0.577       0.52      0.559      0.339\n"
    )
    rows = [e for e in lines_of(log) if isinstance(e, Metric)]
    assert [e.lineno for e in rows] == [2, 3]
    assert rows[0].values["box_loss"] == 0.1193 and rows[1].values["epoch"] == 1.0
    assert math.isnan(rows[1].values["cls_loss"]) and "gpu_mem" not in rows[0].values


def test_a_json_integer_too_big_for_a_float_is_no_crash() -> None:
    """A JSON record can hold an integer of any size (a seed, a hash as a number): reading it
    as a float must not raise, or the Monitor's whole chunk of lines, the OOM report after it
    included, would be lost."""
    big = "9" * 400
    text = (
        f'{{"loss": 2.0, "step": {big}}}\n'
        f'{{"loss": 1.5, "step": 2, "grad_norm": {big}}}\n'
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
    )
    first, second = (metric(parse(line)) for line in text.splitlines()[:2])
    assert first.values == {"loss": 2.0} and first.step is None
    assert second.values == {"loss": 1.5, "grad_norm": math.inf} and second.step == 2
    assert [a.rule for a in scan(text)] == ["oom"]
