"""The fast monitor path gives exactly the answers of the straightforward per-line path.

`Monitor(reference=True)` parses every line with the uncached parser and hands every event to
every rule that handles its type, with no keyword gates; `Monitor()` takes the shortcuts (shape
caches, gates, bulk line splitting). Both read the same files here and must report the same
metrics, evaluations, samples and anomalies, at the same lines, with the same counters.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.events import LogLine
from supervisor.monitoring.monitor import Monitor
from supervisor.parsing.parser import Parser
from supervisor.reading.tail import iter_file_lines
from tests.conftest import CORPUS, make_planted_log

CORPUS_LOGS = sorted(CORPUS.glob("*.log"))


def run(monitor: Monitor, path: Path, chunk: int) -> list[str]:
    """Every event and the final counters, as text (NaN != NaN, but its repr is stable)."""
    out: list[str] = []
    for lines in iter_file_lines(path, chunk=chunk):
        out += map(repr, monitor.feed_lines(lines, 1_700_000_000.0))
    out += map(repr, monitor.tick(1_700_000_000.0) + monitor.tick(1_700_100_000.0))
    out.append(
        f"lines={monitor.lines} metrics={monitor.metrics} evals={monitor.evals} "
        f"samples={monitor.samples} step={monitor.last_step} "
        f"values={sorted(monitor.last_values.items())!r} anomalies={dict(monitor.anomalies)}"
    )
    return out


@pytest.fixture(scope="module")
def planted_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[tuple[int, str]]]:
    return make_planted_log(tmp_path_factory.mktemp("fast"), 30000, 8)


@pytest.mark.parametrize("engine", ["auto", "re"])
def test_planted_log_same_answers(
    planted_log: tuple[Path, list[tuple[int, str]]], engine: str
) -> None:
    """On a generated log with planted anomalies, the fast path reports what the slow one does
    (with hyperscan when installed, and with the pure-`re` prefilter)."""
    log, planted = planted_log
    monitor = Monitor()
    monitor.parser = Parser(prefilter_engine=engine)
    fast = run(monitor, log, 1 << 20)
    slow = run(Monitor(reference=True), log, 1 << 20)
    assert fast == slow
    # Not two empty reports: every planted anomaly is there, and thousands of metrics.
    anomalies = [e for e in fast if e.startswith("Anomaly(")]
    assert len(anomalies) >= len(planted)
    assert "metrics=0 " not in fast[-1]


@pytest.mark.skipif(not CORPUS_LOGS, reason="no corpus")
@pytest.mark.parametrize("path", CORPUS_LOGS, ids=[p.name for p in CORPUS_LOGS])
def test_corpus_file_same_answers(path: Path) -> None:
    """On each real log of the corpus, read in small chunks, both paths say the same."""
    assert run(Monitor(), path, 4096) == run(Monitor(reference=True), path, 4096)


def test_reference_counts_every_line(tmp_path: Path) -> None:
    """The reference path is a real monitor: a NaN loss line is reported by both paths."""
    log = tmp_path / "nan.log"
    log.write_text(
        "".join(f"step {i} | loss: {1.0 / (i + 1):.4f}\n" for i in range(50))
        + "step 50 | loss: nan\n"
    )
    for monitor in (Monitor(), Monitor(reference=True)):
        events = run(monitor, log, 64)
        assert any("rule='nan'" in e and "lineno=51" in e for e in events)


BAR_FRAMES = [
    " ##%|█▍        | ###/#### [##:##:##<##:##:##, ###.##s/it]",
    "Epoch #:  ##%|█         | ##/### [##:##<##:##,  #.##it/s, loss=#.##, v_num=#]",
    "###%|██████████| ##/##",
    " ##%|█████     | #/## [##:##<##:##]INFO oom soon",
    "loss: #.## step ##",
    "   ",
    "",
]


def fill(shape: str, digits: list[int]) -> str:
    it = iter(digits * (shape.count("#") // len(digits) + 1))
    return "".join(str(next(it)) if ch == "#" else ch for ch in shape)


@settings(max_examples=200, deadline=None)
@given(
    frames=st.lists(st.sampled_from(BAR_FRAMES), min_size=1, max_size=6),
    fills=st.lists(st.lists(st.integers(0, 9), min_size=1, max_size=5), min_size=2, max_size=4),
)
def test_bar_line_cache_changes_nothing(frames: list[str], fills: list[list[int]]) -> None:
    """Lines of tqdm redraws that differ only in digits parse, through the cache, as afresh."""
    cached = Parser()
    for digits in fills:
        line = LogLine(1, 0, 0, fill("\r".join(frames), digits))
        assert repr(cached.parse(line, 0.0)) == repr(Parser(cache=False).parse(line, 0.0))
