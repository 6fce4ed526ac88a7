"""Prefilter: the cheap "may this line matter?" test gives the same answers with either engine."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.parsing.parser import METRIC_WORDS
from supervisor.parsing.prefilter import Prefilter, hyperscan_available

ANOMALY_WORDS = (
    r"\bnan\b",
    r"\binf\b",
    r"out of memory",
    r"OutOfMemoryError",
    r"Traceback \(most recent call last\)",
    r"F F F F",
    r"loss[: =]+[0-9]",
)
ENGINES = [
    "re",
    pytest.param(
        "hyperscan",
        marks=pytest.mark.skipif(
            not hyperscan_available(), reason="hyperscan not installed (optional extra ftmon[fast])"
        ),
    ),
]
WORDS = [
    "loss",
    "LOSS",
    "nan",
    "NaN",
    "inf",
    "F F F F",
    "Traceback (most recent call last)",
    "out of memory",
    "step",
    "x",
    " ",
    "\n",
    "\r",
    "神",
    "█",
    "\t",
    "banana",
    "TOK",
    "LoSs",
    "\u212a",
    "İ",
    "Step\\S",
    "info",
    "1",
]
texts = st.lists(st.sampled_from(WORDS), max_size=80).map("".join)


def per_line(pf: Prefilter, data: bytes) -> set[int]:
    """The oracle: Python's own case-insensitive search, line by line."""
    rx = re.compile("|".join(f"(?:{p})" for p in pf.patterns), re.IGNORECASE | re.ASCII)
    return {i for i, line in enumerate(data.split(b"\n")) if rx.search(line.decode())}


@pytest.mark.parametrize("engine", ENGINES)
def test_lines_found_on_a_real_log_excerpt(engine: str) -> None:
    """The chunk scan names exactly the lines that hold an anomaly word."""
    data = (
        b"{'loss': 1.2, 'epoch': 0.1}\n"
        b" 14%|\xe2\x96\x88 | 378/2724 [13:55<86:19, 132.41s/it]\n"
        b"nanochat: information for finance\n"
        b"torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB\n"
        b"{'loss': nan, 'grad_norm': nan}\n"
        b"F F F F F F"
    )
    pf = Prefilter(ANOMALY_WORDS, engine=engine)
    assert pf.engine == engine
    assert pf.matching_lines(data) == {3, 4, 5}
    assert pf.search("{'loss': nan}") and not pf.search("nanochat information")
    assert pf.search_bytes(data) and not pf.search_bytes(b"nothing to see here\n")


PAIRS = [
    (Prefilter(p, engine="re"), Prefilter(p, engine="hyperscan") if hyperscan_available() else None)
    for p in (ANOMALY_WORDS, METRIC_WORDS, (r"step\S", r"\bLoss\b"))
]


@settings(max_examples=200, deadline=None)
@given(text=texts)
def test_engines_agree(text: str) -> None:
    """hyperscan and Python `re` find the same lines, and agree with a line-by-line search."""
    data = text.encode()
    for slow, fast in PAIRS:
        expected = per_line(slow, data)
        lines = data.decode().split("\n")
        assert {i for i, line in enumerate(lines) if slow.search(line)} == expected
        assert slow.matching_lines(data) == expected
        assert slow.search_bytes(data) == bool(expected)
        if fast is not None:
            assert {i for i, line in enumerate(lines) if fast.search(line)} == expected
            assert fast.matching_lines(data) == expected
            assert fast.search_bytes(data) == bool(expected)


def test_bad_patterns_are_refused() -> None:
    """An invalid pattern, no pattern, or an unknown engine is a clear ValueError."""
    with pytest.raises(ValueError, match="invalid prefilter pattern"):
        Prefilter(["(unclosed"])
    with pytest.raises(ValueError, match="at least one"):
        Prefilter([])
    with pytest.raises(ValueError, match="engine"):
        Prefilter(["x"], engine="grep")
