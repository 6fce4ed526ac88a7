"""The file side of the TUI's log view: line offsets, text on demand, growth, search."""

from __future__ import annotations

import os
import random
from array import array
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.reading import logindex
from supervisor.reading.logindex import LogIndex


def write(path: Path, data: bytes, mode: str = "wb") -> None:
    with open(path, mode) as f:
        f.write(data)


def test_lines_are_read_by_number(tmp_path: Path) -> None:
    """Each line of a log is found by its number, without its newline."""
    log = tmp_path / "out.log"
    write(log, b"first\nsecond line\n\nfourth\n")
    index = LogIndex(log)
    assert index.refresh() == 4
    assert [index.line(i) for i in range(len(index))] == ["first", "second line", "", "fourth"]
    assert index.line(4) == ""  # out of range is empty, not an error


def test_partial_last_line_is_shown_and_completed(tmp_path: Path) -> None:
    """A last line still being written is shown, and shows its full text once it grows."""
    log = tmp_path / "out.log"
    write(log, b"a\nstep 1 lo")
    index = LogIndex(log)
    index.refresh()
    assert len(index) == 2 and index.line(1) == "step 1 lo"
    write(log, b"ss 2.5\nb\n", "ab")
    assert index.refresh() == 1
    assert [index.line(i) for i in range(len(index))] == ["a", "step 1 loss 2.5", "b"]


def test_text_is_cleaned_like_the_tailer(tmp_path: Path) -> None:
    """ANSI colours, NUL bytes and bad UTF-8 are cleaned; a progress bar shows its last frame."""
    log = tmp_path / "out.log"
    write(log, b"\x1b[31mred\x1b[0m\x00 ok\n\r 10%|#  |\r 50%|##  |\r\nbad \xff byte\n")
    index = LogIndex(log)
    index.refresh()
    assert index.line(0) == "red ok"
    assert index.line(1) == " 50%|##  |"
    assert index.line(2) == "bad \ufffd byte"


def test_truncated_file_is_indexed_again(tmp_path: Path) -> None:
    """A log truncated and rewritten is read from its new start."""
    log = tmp_path / "out.log"
    write(log, b"old 1\nold 2\nold 3\n")
    index = LogIndex(log)
    index.refresh()
    write(log, b"new\n")
    index.refresh()
    assert len(index) == 1 and index.line(0) == "new"
    assert index.generation == 1


def test_replaced_file_is_followed(tmp_path: Path) -> None:
    """A log replaced by a new file of the same name (rotation) is read anew."""
    log = tmp_path / "out.log"
    write(log, b"one\ntwo\nthree\nfour\n")
    index = LogIndex(log)
    index.refresh()
    os.rename(log, tmp_path / "out.log.1")
    write(log, b"fresh\nlines here\n")
    index.refresh()
    assert [index.line(i) for i in range(len(index))] == ["fresh", "lines here"]


def test_missing_file_is_an_empty_log(tmp_path: Path) -> None:
    """A log that does not exist yet has no lines, and is picked up when it appears."""
    log = tmp_path / "later.log"
    index = LogIndex(log)
    assert index.refresh() == 0 and len(index) == 0
    write(log, b"hello\n")
    assert index.refresh() == 1 and index.line(0) == "hello"


def test_slices_give_the_same_index(tmp_path: Path, monkeypatch) -> None:
    """Indexing in small slices (as the view does) finds the same lines as one big read."""
    monkeypatch.setattr(logindex, "CHUNK", 7)
    log = tmp_path / "out.log"
    lines = [f"line {i} " + "x" * (i % 13) for i in range(200)]
    write(log, ("\n".join(lines) + "\n").encode())
    index = LogIndex(log)
    while index.size < log.stat().st_size:
        index.refresh(max_bytes=7)
    assert [index.line(i) for i in range(len(index))] == lines


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=30))
def test_offsets_match_splitlines(tmp_path_factory, parts: list[bytes]) -> None:
    """For any bytes, the spans the index finds are exactly the lines split on b"\\n"."""
    log = tmp_path_factory.mktemp("h") / "out.log"
    data = b"\n".join(parts)
    write(log, data)
    index = LogIndex(log)
    index.refresh()
    expected = data.split(b"\n")
    if expected and expected[-1] == b"" and data:
        expected = expected[:-1]
    if not data:
        expected = []
    assert [index.raw(i) for i in range(len(index))] == expected


def test_search_forwards_and_backwards(tmp_path: Path, monkeypatch) -> None:
    """Search finds the next and previous line holding the text, ignoring case, across slices."""
    monkeypatch.setattr(logindex, "CHUNK", 16)
    log = tmp_path / "out.log"
    lines = [f"step {i} loss 1.0" for i in range(50)]
    lines[10] = "step 10 loss NaN"
    lines[40] = "step 40 loss nan (skipped)"
    write(log, ("\n".join(lines) + "\n").encode())
    index = LogIndex(log)
    index.refresh()
    assert index.find("nan", 0) == 10
    assert index.find("NAN", 11) == 40
    assert index.find("nan", 41) is None
    assert index.find("nan", 39, backwards=True) == 10
    assert index.find("nan", 49, backwards=True) == 40
    assert index.find("absent", 0) is None


def test_search_ignores_text_hidden_in_escape_codes(tmp_path: Path) -> None:
    """A match inside an ANSI code (not shown on screen) is not a search hit."""
    log = tmp_path / "out.log"
    write(log, b"\x1b[31mplain\x1b[0m\nthe 31m line\n")
    index = LogIndex(log)
    index.refresh()
    assert index.find("31m", 0) == 1


def test_search_finds_text_that_escape_codes_split(tmp_path: Path) -> None:
    """A coloured log shows `step 5 loss` where its bytes hold `step<ESC>[0m 5 loss`: a search
    for what is on screen finds it, forwards and backwards (and a NUL between letters too)."""
    log = tmp_path / "out.log"
    write(
        log,
        b"noise\n\x1b[32mstep\x1b[0m 5 \x1b[1mloss\x1b[0m 2.0\nmore\nst\x00ep 7 loss 1.0\nend\n",
    )
    index = LogIndex(log)
    index.refresh()
    assert index.line(1) == "step 5 loss 2.0"
    assert index.find("step 5 loss", 0) == 1
    assert index.find("STEP 5", 4, backwards=True) == 1
    assert index.find("step 7", 0) == 3
    assert index.find("step 7", 4, backwards=True) == 3
    assert index.find("step 6", 0) is None


def test_huge_line_is_cut_for_display(tmp_path: Path) -> None:
    """A line longer than the display cap shows its start and says how long it is."""
    log = tmp_path / "out.log"
    write(log, b"a" * (logindex.SHOW_CAP + 10) + b"\nnext\n")
    index = LogIndex(log)
    index.refresh()
    assert index.line(0).startswith("a" * 100) and "cut for display" in index.line(0)
    assert index.line(1) == "next"


@pytest.mark.parametrize("every", [1, 3, 64])
@pytest.mark.parametrize("index", [0, 1, 5, 63, 64, 1000])
def test_compiled_and_plain_line_starts_agree(every: int, index: int) -> None:
    """The C scan and its pure-Python twin keep the same starts and count the same newlines."""
    data = b"a\n\nbb\nccc" * 50 + b"\n\xff\r\n"
    c = logindex.line_starts(data, 100, index, every)
    py = logindex._py_line_starts(data, 100, index, every)
    assert c == py
    starts = array("Q", c[0])
    assert c[1] == data.count(b"\n")
    if every == 1:
        assert list(starts[:3]) == [102, 103, 106]


def test_the_line_scan_is_compiled_where_there_is_a_compiler() -> None:
    """`make install` builds supervisor/reading/_lines.c (gcc is on every machine we run on):
    without it, reading history silently falls back to the 3x slower Python loop."""
    assert logindex._c_line_starts is not None


def test_sparse_index_gives_every_line_as_a_full_index_would(tmp_path: Path) -> None:
    """Only every 64th line start is held; every line, span and offset lookup is still exact,
    across chunks that end mid-line, blank lines, a long line and a last line without \\n."""
    rng = random.Random(7)
    lines = [
        ("x" * rng.choice([0, 1, 5, 80, 3000])) + f" {i}" if i % 97 else "" for i in range(1000)
    ]
    body = "\n".join(lines).encode()
    log = tmp_path / "out.log"
    log.write_bytes(b"")
    index = LogIndex(log)
    pos = 0
    while pos < len(body):  # the file grows in odd-sized pieces, refreshed as it grows
        step = rng.randint(1, 20000)
        with log.open("ab") as f:
            f.write(body[pos : pos + step])
        pos += step
        index.refresh(max_bytes=rng.randint(1, 50000))
    index.refresh()
    assert len(index) == len(lines)
    assert len(index._marks) == (len(lines) + logindex.EVERY - 1) // logindex.EVERY
    offsets = [0]
    for text in lines[:-1]:
        offsets.append(offsets[-1] + len(text.encode()) + 1)
    for n in [*rng.sample(range(len(lines)), 300), 0, 63, 64, 65, len(lines) - 1]:
        assert index.line(n) == lines[n]
        assert index.span(n) == (offsets[n], offsets[n] + len(lines[n].encode()))
        assert index.line_at(offsets[n]) == n
        assert index.line_at(offsets[n] + len(lines[n]) // 2) == n


def test_tail_reads_the_last_lines_without_the_index(tmp_path: Path) -> None:
    """The last lines of a log are read from its end before any indexing."""
    log = tmp_path / "out.log"
    write(log, b"".join(b"line %d\n" % i for i in range(100_000)) + b"\x1b[1mlast\x1b[0m")
    index = LogIndex(log)
    assert index.tail(3) == ["line 99998", "line 99999", "last"]
    assert len(index) == 0  # nothing was indexed for it
    assert LogIndex(tmp_path / "none.log").tail(3) == []


def test_a_file_truncated_before_the_next_refresh_reads_as_empty_lines(tmp_path: Path) -> None:
    """Between a truncation and the refresh that notices it, lines read as empty, never an
    error (the view draws from another thread than the one that refreshes)."""
    log = tmp_path / "out.log"
    write(log, b"".join(b"line %d\n" % i for i in range(500)))
    index = LogIndex(log)
    index.refresh()
    assert index.line(300) == "line 300"
    write(log, b"fresh start\n")
    assert all(isinstance(index.line(n), str) for n in range(0, 500, 7))
    assert index.span(300)[0] <= index.span(300)[1]
    index.refresh()
    assert len(index) == 1 and index.line(0) == "fresh start"
