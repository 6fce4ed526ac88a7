"""Tail: bytes of a growing file -> lines with exact offsets, followed through truncation,
replacement and restarts, with bounded memory."""

from __future__ import annotations

import asyncio
import os
import select
import subprocess
import sys
import textwrap
import time
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.events import LogLine
from supervisor.reading import tail
from supervisor.reading.tail import (
    LineSplitter,
    Tail,
    _make_inotify,
    clean_text,
    follow,
    iter_file_lines,
)

# Pieces a real log is made of, including the awkward ones.
PIECES = [
    b"\n",
    b"\r\n",
    b"\r",
    b"loss: 1.23",
    b" 14%|\xe2\x96\x88\xe2\x96\x8d | 378/2724",
    b"\x1b[31m",
    b"\x1b[0m",
    b"\x1b]0;title\x07",
    b"\x00",
    b"\xff\xfe",  # invalid UTF-8
    b"\xe7\xa5\x9e",  # 神
    b"\xe7\xa5",  # a cut multi-byte character
    b"x" * 40,  # over the small cap below
]
CAP = 32


def split_all(data: bytes, cap: int = CAP) -> list[LogLine]:
    sp = LineSplitter(max_line=cap)
    return sp.feed(data, 0) + sp.flush()


def split_pieces(data: bytes, cuts: list[int], cap: int = CAP) -> list[LogLine]:
    sp = LineSplitter(max_line=cap)
    out: list[LogLine] = []
    prev = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out += sp.feed(data[prev:cut])
        prev = cut
    return out + sp.flush()


streams = st.lists(st.sampled_from(PIECES), max_size=60).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=streams, cuts=st.lists(st.integers(0, 2500), max_size=20))
def test_split_points_never_change_the_lines(data: bytes, cuts: list[int]) -> None:
    """Bytes arriving in any number of pieces give the same lines as the whole file at once."""
    cuts = [c for c in cuts if c <= len(data)]
    assert split_pieces(data, cuts) == split_all(data)


@settings(max_examples=200, deadline=None)
@given(data=streams)
def test_lines_cover_the_bytes_exactly(data: bytes) -> None:
    """Offsets tile the file with no gap or overlap, and each line's text comes from its bytes."""
    lines = split_all(data)
    pos = 0
    for i, line in enumerate(lines, 1):
        assert line.lineno == i
        assert line.offset == pos
        raw = data[line.offset : line.end]
        assert raw.endswith(b"\n") or line.end == len(data)
        assert "\x1b" not in line.text and "\x00" not in line.text
        if len(raw.rstrip(b"\n")) > CAP:
            assert line.truncated and "truncated" in line.text
        else:
            assert not line.truncated
        pos = line.end
    assert pos == len(data)


def reference(data: bytes, cap: int) -> list[tuple[int, int, str, bool]]:
    """The slow, obvious way: one line at a time."""
    out = []
    pos = 0
    parts = data.split(b"\n")
    for i, raw in enumerate(parts):
        if i == len(parts) - 1 and not raw:
            break
        end = pos + len(raw) + (1 if i < len(parts) - 1 else 0)
        cut = len(raw) > cap
        body = raw[:cap] if cut else raw.removesuffix(b"\r")
        text = clean_text(body) + (f" …[truncated {len(raw) - cap} B]" if cut else "")
        out.append((pos, end, text, cut))
        pos = end
    return out


plain = st.lists(st.sampled_from([p for p in PIECES if b"\x1b" not in p]), max_size=60)


@settings(max_examples=200, deadline=None)
@given(data=plain.map(b"".join), cap=st.sampled_from([CAP, 1 << 20]))
def test_bulk_and_line_by_line_agree(data: bytes, cap: int) -> None:
    """The bulk path for plain chunks gives what decoding each line alone gives."""
    got = [(ln.offset, ln.end, ln.text, ln.truncated) for ln in split_all(data, cap)]
    assert got == reference(data, cap)


@settings(max_examples=300, deadline=None)
@given(
    data=streams,
    cuts=st.lists(st.integers(0, 2500), max_size=20),
    cap=st.sampled_from([CAP, 1 << 20]),
)
def test_compiled_and_python_splitting_give_the_same_lines(
    data: bytes, cuts: list[int], cap: int
) -> None:
    """The C loop (reading/_lines.c) and the pure-Python one: the same lines, offsets, numbers
    and texts, whatever the bytes (ANSI, NUL, invalid UTF-8, \\r, overlong lines) and pieces."""
    cuts = sorted({c for c in cuts if c <= len(data)})
    got = []
    for native in (True, False):
        sp = LineSplitter(max_line=cap, native=native)
        out: list[LogLine] = []
        prev = 0
        for cut in [*cuts, len(data)]:
            out += sp.feed(data[prev:cut])
            prev = cut
        got.append(out + sp.flush())
    assert got[0] == got[1]
    assert all(type(line) is LogLine for line in got[0])


def test_the_splitter_is_compiled_where_there_is_a_compiler() -> None:
    """`make install` builds the C loop; without it every scan is ~2x slower to read."""
    assert tail._native is not None


def test_line_cleaning() -> None:
    """CRLF ends a line, inner \\r frames stay, ANSI and NUL vanish, bad UTF-8 is replaced."""
    data = b"a\r\n\r 10%|\r 20%|\x1b[1mok\x1b[0m\n\x00nul \xff\n"
    lines = split_all(data, cap=1 << 20)
    assert [ln.text for ln in lines] == ["a", "\r 10%|\r 20%|ok", "nul \ufffd"]
    assert lines[1].shown == " 20%|ok"


def test_overlong_line_is_cut_with_a_marker() -> None:
    """A 3 MiB line comes out as its first 1 MiB plus a note of how much was dropped."""
    data = b"start\n" + b"y" * (3 << 20) + b"\nend\n"
    lines = split_pieces(data, list(range(0, len(data), 100_000)), cap=1 << 20)
    assert [ln.lineno for ln in lines] == [1, 2, 3]
    assert lines[1].truncated
    assert lines[1].text.startswith("y" * 1000)
    assert lines[1].text.endswith(" …[truncated 2.0 MiB]")
    assert lines[2].text == "end" and lines[2].offset == 6 + (3 << 20) + 1


def test_tail_follows_a_file_written_by_a_subprocess(tmp_path: Path) -> None:
    """Reading while another process writes (with lines cut across writes) loses nothing."""
    log = tmp_path / "out.log"
    writer = textwrap.dedent(
        f"""
        import sys, time
        with open({str(log)!r}, "ab", buffering=0) as f:
            for i in range(300):
                line = ("step %d | loss: %f\\n" % (i, 1.0 / (i + 1))).encode()
                f.write(line[:5]); f.write(line[5:])
                if i % 50 == 0:
                    time.sleep(0.02)
        """
    )
    tail = Tail(log)
    proc = subprocess.Popen([sys.executable, "-c", writer])
    got: list[LogLine] = []
    while proc.poll() is None:
        got += tail.read()
        time.sleep(0.005)
    got += tail.read() + tail.flush_partial()
    assert [ln.text for ln in got] == [f"step {i} | loss: {1.0 / (i + 1):f}" for i in range(300)]
    assert tail.offset == log.stat().st_size


def test_resume_from_offset_reads_each_line_once(tmp_path: Path) -> None:
    """A new Tail started at `.offset`/`.lineno` continues exactly where the last one stopped."""
    log = tmp_path / "out.log"
    with open(log, "wb") as f:
        f.write(b"".join(b"line %d\n" % i for i in range(100)) + b"partial")
    first = Tail(log, chunk=64)
    a = first.read()
    assert first.pending and first.offset == a[-1].end
    with open(log, "ab") as f:
        f.write(b" done\n" + b"".join(b"more %d\n" % i for i in range(5)))
    second = Tail(log, offset=first.offset, lineno=first.lineno, chunk=64)
    b = second.read()
    whole = [ln for batch in iter_file_lines(log) for ln in batch]
    assert a + b == whole
    assert b[0].text == "partial done" and b[0].lineno == 101


def test_truncated_file_is_read_again_from_the_start(tmp_path: Path) -> None:
    """`> log` (truncation in place) restarts reading at byte 0 with line numbers from 1."""
    log = tmp_path / "out.log"
    log.write_bytes(b"old 1\nold 2\nold 3\n")
    tail = Tail(log)
    assert len(tail.read()) == 3
    with open(log, "wb") as f:  # same inode, size 0, then new content
        f.write(b"new 1\n")
    lines = tail.read()
    assert [(ln.lineno, ln.offset, ln.text) for ln in lines] == [(1, 0, "new 1")]
    assert tail.offset == 6


def test_replaced_file_is_followed(tmp_path: Path) -> None:
    """A new file renamed over the log: the old one's last lines, then the new one from 0."""
    log = tmp_path / "out.log"
    log.write_bytes(b"a\n")
    tail = Tail(log)
    assert [ln.text for ln in tail.read()] == ["a"]
    with open(log, "ab") as f:
        f.write(b"b\n")  # written to the old file just before the rotation
    fresh = tmp_path / "next.log"
    fresh.write_bytes(b"c\nd\n")
    os.replace(fresh, log)
    lines = tail.read()
    assert [ln.text for ln in lines] == ["b", "c", "d"]
    assert [ln.lineno for ln in lines] == [2, 1, 2]
    assert tail.offset == 4 and tail.lineno == 2


def test_missing_file_is_waited_for(tmp_path: Path) -> None:
    """A log that does not exist yet reads as empty until it appears."""
    log = tmp_path / "later.log"
    tail = Tail(log)
    assert tail.read() == [] and tail.read() == []
    log.write_bytes(b"hello\n")
    assert [ln.text for ln in tail.read()] == ["hello"]


def test_a_50_mb_line_is_read_in_bounded_memory(tmp_path: Path) -> None:
    """One 50 MB line without a newline in sight never makes the reader hold 50 MB."""
    log = tmp_path / "huge.log"
    block = b"z" * (1 << 20)
    with open(log, "wb") as f:
        f.write(b"before\n")
        for _ in range(50):
            f.write(block)
        f.write(b"\nafter\n")
    tail = Tail(log)
    tracemalloc.start()
    try:
        lines = tail.read()
        while tail.behind:
            lines += tail.read()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [ln.text[:6] for ln in lines] == ["before", "zzzzzz", "after"]
    assert lines[1].truncated and lines[1].text.endswith("…[truncated 49.0 MiB]")
    assert peak < 8 << 20, f"peak {peak / 2**20:.1f} MiB"


async def collect(tail: Tail, want: int, timeout: float = 10.0, **kw: object) -> list[LogLine]:
    got: list[LogLine] = []
    stop = asyncio.Event()

    def on_lines(lines: list[LogLine]) -> None:
        got.extend(lines)
        if len(got) >= want:
            stop.set()

    task = asyncio.create_task(follow(tail, on_lines, stop, **kw))
    try:
        await asyncio.wait_for(asyncio.shield(stop.wait()), timeout)
    finally:
        stop.set()
        await task
    return got


async def test_follow_wakes_on_writes_from_a_subprocess(tmp_path: Path) -> None:
    """follow() delivers each line a child writes, through inotify, shortly after it is written."""
    log = tmp_path / "out.log"
    log.touch()
    writer = (
        "import sys, time\n"
        f"f = open({str(log)!r}, 'a', buffering=1)\n"
        "for i in range(20):\n"
        "    print('loss: %d' % i, file=f); time.sleep(0.01)\n"
    )
    tail = Tail(log)
    proc = subprocess.Popen([sys.executable, "-c", writer])
    try:
        got = await collect(tail, 20)
    finally:
        proc.wait()
    assert [ln.text for ln in got] == [f"loss: {i}" for i in range(20)]


async def test_follow_by_polling_and_idle_flush(tmp_path: Path) -> None:
    """Without inotify, polling still follows, and a line left unfinished is flushed when idle."""
    log = tmp_path / "out.log"
    log.write_bytes(b"one\ntwo (no newline yet)")
    tail = Tail(log)
    got = await collect(tail, 2, use_inotify=False, idle_flush=0.1)
    assert [ln.text for ln in got] == ["one", "two (no newline yet)"]
    assert tail.offset == log.stat().st_size


async def test_follow_notices_a_file_created_and_replaced(tmp_path: Path) -> None:
    """follow() on a missing path picks the file up when created, and again when replaced."""
    log = tmp_path / "run.log"
    tail = Tail(log)
    got: list[LogLine] = []
    stop = asyncio.Event()
    task = asyncio.create_task(follow(tail, got.extend, stop))
    await asyncio.sleep(0.05)
    log.write_bytes(b"first\n")
    for _ in range(200):
        if got:
            break
        await asyncio.sleep(0.01)
    new = tmp_path / "run.log.new"
    new.write_bytes(b"second\n")
    os.replace(new, log)
    for _ in range(300):
        if len(got) >= 2:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await task
    assert [ln.text for ln in got] == ["first", "second"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux only")
def test_inotify_reports_writes_and_replacement(tmp_path: Path) -> None:
    """On Linux the watcher sees a write to the file and a file renamed over it."""
    log = tmp_path / "run.log"
    log.write_bytes(b"")
    watcher = _make_inotify(str(log))
    assert watcher is not None
    try:
        watcher.watch_file((log.stat().st_dev, log.stat().st_ino))
        watcher.drain()
        with open(log, "ab") as f:
            f.write(b"x\n")
        assert select.select([watcher.fd], [], [], 5)[0] and watcher.drain()
        other = tmp_path / "other.log"
        other.write_bytes(b"")
        assert select.select([watcher.fd], [], [], 5)[0]
        assert not watcher.drain()  # another file in the directory: not ours
        os.replace(other, log)
        assert select.select([watcher.fd], [], [], 5)[0] and watcher.drain()
    finally:
        watcher.close()


def test_a_directory_or_a_pipe_is_refused_clearly(tmp_path: Path) -> None:
    """A directory or a FIFO is an OSError naming the path at once, not a hang or a crash."""
    with pytest.raises(IsADirectoryError, match="is a directory"):
        Tail(tmp_path).read()
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file") as err:
        Tail(fifo).read()
    assert str(fifo) in str(err.value)


async def test_a_backlog_is_read_in_slices(tmp_path: Path) -> None:
    """A large backlog comes in several reads (the event loop keeps running) and loses nothing."""
    log = tmp_path / "big.log"
    log.write_bytes(b"".join(b"line %05d\n" % i for i in range(5000)))
    tail = Tail(log, chunk=4096, max_read=8192)
    first = tail.read()
    assert tail.behind and 0 < len(first) < 5000
    rest = await collect(
        Tail(log, offset=tail.offset, lineno=tail.lineno, chunk=4096, max_read=8192),
        5000 - len(first),
    )
    assert [ln.text for ln in first + rest] == [f"line {i:05d}" for i in range(5000)]


@settings(max_examples=100, deadline=None)
@given(
    data=streams,
    chunk=st.integers(1, 64),
    max_read=st.integers(1, 256),
    cut=st.integers(0, 2500),
)
def test_tail_reads_any_file_like_the_splitter(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, chunk: int, max_read: int, cut: int
) -> None:
    """Tail with any chunk size, read limit and restart point gives the whole-file lines."""
    log = tmp_path_factory.mktemp("tail") / "run.log"
    cut = min(cut, len(data))
    log.write_bytes(data[:cut])
    first = Tail(log, max_line=CAP, chunk=chunk, max_read=max_read)
    got = first.read()
    while first.behind:
        got += first.read()
    with open(log, "ab") as f:
        f.write(data[cut:])
    # A restart from the first reader's resume point, then the rest of the file.
    second = Tail(log, offset=first.offset, lineno=first.lineno, max_line=CAP, chunk=chunk)
    got += second.read()
    while second.behind:
        got += second.read()
    got += second.flush_partial()
    assert got == split_all(data)
