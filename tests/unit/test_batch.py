"""The batch path (monitoring/batch.py) gives exactly the answers of the per-line reference path.

`Monitor()` sends a batch of at least `BATCH_LINES` lines through `BatchFeeder` (the whole batch
parsed, then each rule fed its events in one loop, the gate words searched once over the whole
text, a long batch a slice at a time); here that threshold is 1, so every batch takes it, and
slices are 100 lines, so long batches are cut. The reference is `Monitor(reference=
True)`: every line through the uncached parser, every event to every rule, no gates. Both read
the same logs (a generated bench log, every corpus file, random logs) and must report the same
metrics, evaluations, samples and anomalies at the same lines, with the same counters and the
same state left for what comes next (ticks after the scan, more lines).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from supervisor.events import LogLine
from supervisor.monitoring import batch as batch_module
from supervisor.monitoring import monitor as monitor_module
from supervisor.monitoring.batch import LOWERS_TO_ASCII, BatchFeeder, GateSearch
from supervisor.monitoring.monitor import Monitor
from supervisor.parsing.prefilter import hyperscan_available
from supervisor.reading.tail import LineSplitter, iter_file_lines
from tests.conftest import CORPUS, ROOT, make_planted_log

# The tuning halves of tests/corpus only: the blind half (unseen4/, tests/corpus/README.md) is
# never listed or scanned outside its own aggregate tests in tests/integration/test_corpus.py.
CORPUS_LOGS = sorted(
    [
        *CORPUS.glob("*.log"),
        *(
            p
            for half in ("dev", "test", "holdout", "unseen", "unseen2", "unseen3")
            for p in (ROOT / "tests" / "corpus" / half).glob("*.log")
        ),
    ],
    key=lambda p: (p.parent.name, p.name),
)
ENGINES = ["auto", "re"] if hyperscan_available() else ["re"]
TS = 1_700_000_000.0


@pytest.fixture(autouse=True)
def every_batch_is_a_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every batch takes the batch path, and one of over 100 lines is fed in slices."""
    monkeypatch.setattr(monitor_module, "BATCH_LINES", 1)
    monkeypatch.setattr(batch_module, "SLICE_LINES", 100)


def batch_monitor(engine: str = "auto") -> Monitor:
    monitor = Monitor()
    monitor._batch = BatchFeeder(monitor, engine)
    return monitor


def answers(monitor: Monitor, batches: list[list[LogLine]]) -> list[str]:
    """Every event, the anomalies of later ticks, and the counters, as text (NaN != NaN, but
    its repr is stable)."""
    out: list[str] = []
    for lines in batches:
        out += map(repr, monitor.feed_lines(lines, TS))
    out += map(repr, monitor.tick(TS) + monitor.tick(TS + 100_000.0))
    out.append(
        f"lines={monitor.lines} metrics={monitor.metrics} evals={monitor.evals} "
        f"samples={monitor.samples} step={monitor.last_step} "
        f"values={sorted(monitor.last_values.items())!r} anomalies={dict(monitor.anomalies)} "
        f"recent={list(monitor._recent)!r}"
    )
    return out


def both(path: Path, chunk: int, engine: str = "auto") -> tuple[list[str], list[str]]:
    batches = list(iter_file_lines(path, chunk=chunk))
    return answers(batch_monitor(engine), batches), answers(Monitor(reference=True), batches)


@pytest.mark.parametrize("engine", ENGINES)
def test_bench_log_same_answers(tmp_path: Path, engine: str) -> None:
    """A make_log log with planted anomalies, in 1 MiB chunks: the same answers, every planted
    anomaly among them (not two empty reports)."""
    log, planted = make_planted_log(tmp_path, 20_000, 8)
    batch, reference = both(log, 1 << 20, engine)
    assert batch == reference
    found = [e for e in batch if e.startswith("Anomaly(")]
    assert len(found) >= len(planted)
    for lineno, kind in planted:
        assert any(f"lineno={lineno}," in e for e in found), (lineno, kind)
    assert "metrics=0 " not in batch[-1]


@pytest.mark.slow
def test_bench_log_200k_same_answers(tmp_path: Path) -> None:
    """The brief's size: 200,000 lines, 20 planted anomalies, 4 MiB chunks (as `ftmon scan`)."""
    log, planted = make_planted_log(tmp_path, 200_000, 20)
    batch, reference = both(log, 1 << 22)
    assert batch == reference
    assert sum(e.startswith("Anomaly(") for e in batch) >= len(planted)


@pytest.mark.skipif(not CORPUS_LOGS, reason="no corpus")
@pytest.mark.parametrize(
    "path", CORPUS_LOGS, ids=[f"{p.parent.name}/{p.name}" for p in CORPUS_LOGS]
)
def test_corpus_file_same_answers(path: Path) -> None:
    """Each real log, in 4 KiB chunks (batches of a few dozen lines, cut anywhere) and whole."""
    for chunk in (4096, 1 << 22):
        batch, reference = both(path, chunk)
        assert batch == reference, chunk


# Lines that reach every rule: metrics of each format (with nan / inf / spikes), evaluations,
# samples (collapsed or not), bars, rank prefixes, tracebacks, OOM and stall wordings, loss
# scale messages, HF tables, case tricks for the gate words, ANSI colour, blank lines.
SHAPES = [
    "step {i} | loss: {x} | lr: 2e-5 | grad_norm: {y}",
    "{{'loss': {x}, 'grad_norm': {y}, 'learning_rate': 1e-05, 'epoch': 0.{i}}}",
    '{{"step": {i}, "loss": {x}, "grad_norm": {y}}}',
    '{{"type": "eval", "step": {i}, "values": {{"val_loss": {x}}}}}',
    '{{"type": "sample", "step": {i}, "text": "{w} {w} {w} {w} {w} {w} {w} {w} {w} {w} {w} {w}"}}',
    '{{"type": "sample", "step": {i}, "text": "The answer is {i}."}}',
    "  eval step {i}: val_loss={x} accuracy=0.5",
    "step {i}: train loss {x}, val loss {y}",
    "iter {i}: loss {x}, time 12.3ms",
    "\r {i}%|██        | {i}/100 [00:01<00:09, 3.2it/s]\r {i}%|███       | {i}/100 [00:02<00:08]",
    "Epoch 1:  {i}%|█         | {i}/100 [00:01<00:09,  1.2it/s, loss={x}, v_num=0]",
    "[rank{i}]:step {i} | loss: {x}",
    "[rank1]: dataloader worker {i} prefetched {i} sequences",
    "Traceback (most recent call last):",
    '  File "train.py", line {i}, in <module>',
    "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate {i}.00 GiB",
    "RuntimeError: CUDA error: an illegal memory access",
    "NCCL watchdog thread terminated: Timed out after {i} ms",
    "[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: {i}, reducing to 1",
    "Gradient overflow. Skipping step, loss scale reduced to {y}",
    "skip non-finite loss at step {i}",
    "tensor({x}, device='cuda:0', grad_fn=<NllLossBackward0>)",
    "found NaN in local grad norm for bucket {i}",
    "***** eval metrics *****",
    "  eval_loss               =     {x}",
    "  epoch                   =        1.0",
    "logging_steps: {i}",
    "\u0130NFO: K\u212aILLED by the oom killer, S\u0130GKILL",
    "\x1b[31mNa\x1b[0mN detected in loss",
    "进程已杀死 (exit 137)",
    "I looked at the {w} one and it was fine, really fine today.",
    "I looked at the {w} one and it was fine, really fine today.",
    "{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}{w}",
    "- the same item again",
    "",
    "   ",
]
VALUES = ["0.5", "1.25", "2.0", "48.9", "nan", "inf", "-inf", "1e9", "0.001", "NaN"]
WORDS = ["F", "jump", "third", "神", "nan", "Hang", "OOM"]


@st.composite
def logs(draw: st.DrawFn) -> bytes:
    rows = []
    for _ in range(draw(st.integers(1, 120))):
        shape = draw(st.sampled_from(SHAPES))
        rows.append(
            shape.format(
                i=draw(st.integers(0, 300)),
                x=draw(st.sampled_from(VALUES)),
                y=draw(st.sampled_from(VALUES)),
                w=draw(st.sampled_from(WORDS)),
            )
        )
    return ("\n".join(rows) + "\n").encode()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=logs(), cuts=st.lists(st.integers(1, 4000), max_size=6), engine=st.sampled_from(ENGINES)
)
def test_random_logs_same_answers(data: bytes, cuts: list[int], engine: str) -> None:
    """Random mixes of every kind of line, cut into batches anywhere."""
    splitter = LineSplitter()
    batches: list[list[LogLine]] = []
    at = 0
    for cut in [*sorted(cuts), len(data)]:
        lines = splitter.feed(data[at:cut]) if cut > at else []
        at = max(at, cut)
        if lines:
            batches.append(lines)
    rest = splitter.flush()
    if rest:
        batches.append(rest)
    assert answers(batch_monitor(engine), batches) == answers(Monitor(reference=True), batches)


def test_lowering_to_ascii_is_known() -> None:
    """The characters outside ASCII whose lower case holds ASCII are the ones GateSearch marks
    (a caseless ASCII search cannot see `K` written as the Kelvin sign)."""
    found = [chr(c) for c in range(0x80, 0x110000) if any(ord(x) < 0x80 for x in chr(c).lower())]
    assert sorted(found) == sorted(LOWERS_TO_ASCII)


@settings(max_examples=150, deadline=None)
@given(
    texts=st.lists(
        st.text(alphabet=st.sampled_from(list("nNaAmMoOkK \u0130\u212a杀死é\r\t-x1")), max_size=12),
        min_size=1,
        max_size=8,
    ),
    engine=st.sampled_from(ENGINES),
)
def test_gate_search_finds_every_line_with_a_word(texts: list[str], engine: str) -> None:
    """Every line whose lowered text holds a gate word is among the lines found."""
    words = ["nan", "oom", "killed", "杀死", "mmk"]
    hits = GateSearch(words, engine).lines_with_words(texts)
    truth = {i for i, t in enumerate(texts) if any(w in t.lower() for w in words)}
    assert hits is None or truth <= hits
