"""The file side of the TUI's log view: where each line of a log starts, and its text on demand.

Nothing here knows about Textual. A log of millions of lines must open at once and stay cheap
to hold while it grows to tens of millions, so the index keeps the byte offset of every
`EVERY`-th line start only (8 bytes per 64 lines: 1.25 MB for 10M lines, where every start
would take 80 MB), found by scanning big reads (8 MiB slices) for b"\\n" in C (`_lines.c`,
`re.finditer` without a compiler). The starts of the lines between two marks are found when
one of them is wanted, by reading that stretch again, and kept for a few blocks. A line's text
is read when it is drawn, with `os.pread`, sanitised exactly as `tail.py` does it (invalid
UTF-8 replaced, ANSI and NUL removed, the last `\\r` frame shown) and kept in a small LRU.
The index grows as the file grows (`refresh()`), and starts over if the file is truncated or
replaced (a new inode), as `tail.py` does.
"""

from __future__ import annotations

import functools
import os
import re
import sys
import threading
from array import array
from bisect import bisect_right
from collections import OrderedDict
from pathlib import Path

from supervisor.events import LogLine
from supervisor.reading.tail import clean_text

try:  # built by setup.py where there is a compiler; `_py_line_starts` is its twin
    from supervisor.reading._lines import line_starts as _c_line_starts
except ImportError:  # pragma: no cover - depends on the machine
    _c_line_starts = None  # type: ignore[assignment]

EVERY = 64  # one line start kept per this many lines
BLOCKS = 64  # blocks of EVERY lines whose starts are kept once found (what a screen shows)
CHUNK = 8 << 20  # bytes per read while indexing: big enough that the per-call cost vanishes
_NEWLINE = re.compile(b"\n")
SHOW_CAP = 64 << 10  # bytes of one line read for display; a 1 GB line must not stall a frame


class LogIndex:
    """Line offsets of one log file, and the text of any line by number (0-based)."""

    def __init__(self, path: str | Path, cache_lines: int = 2048) -> None:
        self.path = Path(path)
        self._marks = array("Q")  # offset of the first byte of line 0, EVERY, 2 * EVERY, ...
        self._count = 0  # line starts found so far (line 0 and one after each b"\\n")
        self._blocks: OrderedDict[int, list[int]] = OrderedDict()  # block -> its line starts
        self._scanned = 0  # bytes indexed so far
        self._ends_with_newline = True
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._cache: OrderedDict[int, str] = OrderedDict()
        self._cache_lines = cache_lines
        self.generation = 0  # bumped when the file was truncated or replaced
        # The view indexes in a worker thread and reads lines on the UI thread: every read and
        # every change of the offsets holds this lock (changes are committed in one step).
        self._lock = threading.RLock()

    def __len__(self) -> int:
        """Lines so far, counting a last line that has no newline yet."""
        with self._lock:
            if self._scanned == 0:
                return 0
            return self._count - (1 if self._ends_with_newline else 0)

    @property
    def size(self) -> int:
        """Bytes indexed so far."""
        return self._scanned

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _open(self) -> int | None:
        """(Re)open the file; a missing file is an empty log, not an error."""
        with self._lock:
            try:
                st = os.stat(self.path)
            except OSError:
                return self._fd
            inode = (st.st_dev, st.st_ino)
            if self._fd is not None and inode == self._inode:
                return self._fd
            if self._fd is not None:  # replaced (log rotation): start over on the new file
                self._clear()
                self.close()
            try:
                self._fd = os.open(self.path, os.O_RDONLY)
            except OSError:
                return None
            self._inode = inode
            return self._fd

    def _reset(self) -> None:
        with self._lock:
            self._clear()

    def _clear(self) -> None:
        self._marks = array("Q")
        self._count = 0
        self._blocks.clear()
        self._scanned = 0
        self._ends_with_newline = True
        self._cache.clear()
        self.generation += 1

    def refresh(self, max_bytes: int | None = None) -> int:
        """Index what the file gained since the last call; returns how many lines were added.

        `max_bytes` bounds the work of one call, so a caller can index a huge file in slices
        (and draw the first screen before the last slice is done).
        """
        fd = self._open()
        if fd is None:
            return 0
        size = os.fstat(fd).st_size
        if size < self._scanned:  # truncated: the old offsets mean nothing any more
            self._reset()
        before = len(self)
        budget = size - self._scanned if max_bytes is None else max_bytes
        while budget > 0 and self._scanned < size:
            want = min(CHUNK, budget, size - self._scanned)
            data = os.pread(fd, want, self._scanned)
            if not data:
                break
            self._add_chunk(data)
            budget -= len(data)
        return len(self) - before

    def _add_chunk(self, data: bytes) -> None:
        base = self._scanned  # only the indexing caller writes it, so reading it here is safe
        count = self._count if base else 1  # line 0 starts at offset 0
        marks, newlines = line_starts(data, base, count, EVERY)
        with self._lock:
            if base == 0:
                self._marks.append(0)
                self._count = 1
            # The line that was last may have been partial: it grows now, so read it again
            # (and its block, which may gain lines).
            self._cache.pop(self._count - 1, None)
            self._blocks.pop((self._count - 1) // EVERY, None)
            self._marks.frombytes(marks)
            self._count += newlines
            self._scanned = base + len(data)
            self._ends_with_newline = data.endswith(b"\n")

    def _block(self, block: int) -> list[int]:
        """The starts of lines block * EVERY ... (at most EVERY of them), read from the file."""
        with self._lock:
            known = self._blocks.get(block)
            if known is not None:
                self._blocks.move_to_end(block)
                return known
            first = self._marks[block]
            want = min(EVERY, self._count - block * EVERY)
            stop = self._marks[block + 1] if block + 1 < len(self._marks) else self._scanned
            starts = [first]
            pos = first
            while len(starts) < want and pos < stop and self._fd is not None:
                data = os.pread(self._fd, min(CHUNK, stop - pos), pos)
                if not data:
                    break
                found, _ = line_starts(data, pos, 0, 1)
                starts.extend(array("Q", found)[: want - len(starts)])
                pos += len(data)
            if len(starts) < want:
                # The file changed under the index (truncated, not yet refreshed): those lines
                # read as empty until `refresh` starts over; nothing wrong is kept.
                return starts + [stop] * (want - len(starts))
            self._blocks[block] = starts
            if len(self._blocks) > BLOCKS:
                self._blocks.popitem(last=False)
            return starts

    def _start(self, lineno: int) -> int:
        if lineno % EVERY == 0:
            return self._marks[lineno // EVERY]
        return self._block(lineno // EVERY)[lineno % EVERY]

    def span(self, lineno: int) -> tuple[int, int]:
        """Byte range of line `lineno` (0-based), without its newline."""
        with self._lock:
            start = self._start(lineno)
            last = lineno + 1 >= self._count
            end = self._scanned if last else self._start(lineno + 1) - 1
            return start, max(start, end)  # empty, not negative, for a file changed under us

    def raw(self, lineno: int, cap: int = SHOW_CAP) -> bytes:
        """The line's bytes as written (up to `cap`)."""
        with self._lock:
            fd = self._fd
            if fd is None or not 0 <= lineno < len(self):
                return b""
            start, end = self.span(lineno)
            return os.pread(fd, min(end - start, cap), start)

    def line(self, lineno: int) -> str:
        """Line `lineno` (0-based) as a terminal would show it: decoded, no ANSI or NUL, the
        last non-empty `\\r` frame of a progress bar. Out of range gives ""."""
        with self._lock:
            cached = self._cache.get(lineno)
            if cached is not None:
                self._cache.move_to_end(lineno)
                return cached
            if not 0 <= lineno < len(self):
                return ""
            data = self.raw(lineno)
            start, end = self.span(lineno)
            text = _shown(data)
            if end - start > SHOW_CAP:
                text += f" … [{end - start:,} bytes, cut for display]"
            self._cache[lineno] = text
            if len(self._cache) > self._cache_lines:
                self._cache.popitem(last=False)
            return text

    def line_at(self, offset: int) -> int:
        """The line (0-based) that holds byte `offset`."""
        with self._lock:
            if not self._marks:
                return 0
            block = max(0, bisect_right(self._marks, offset) - 1)
            starts = self._block(block)
            return block * EVERY + max(0, bisect_right(starts, offset) - 1)

    def find(self, needle: str, start: int, backwards: bool = False) -> int | None:
        """First line at or after `start` (at or before it, when `backwards`) whose shown text
        contains `needle`, ignoring case; None when there is none.

        The bytes are searched in big slices (a 2-million-line log is searched in about a second),
        and each hit is confirmed on the line as shown, so a match inside an ANSI code or an
        overdrawn progress frame is not reported. An ASCII needle is found by a plain byte search
        of the slices lowered; one with other letters (`Über`, `σίσυφος`) by a regex in which
        each of its characters may be any of the same case fold (`ü|Ü`, `σ|Σ|ς`, `ß|ẞ|ss`), and
        confirmed on the line case-folded. (A fold across several characters of the needle, `ss`
        for a `ß` in the log, is not found.)
        """
        fd = self._fd
        if not needle or fd is None or len(self) == 0:
            return None
        pattern: bytes | None
        if needle.isascii():
            folded, fold = needle.lower(), str.lower
            pattern = folded.encode("ascii")
            plain = None  # bytes.find
            coded = _with_codes_between(pattern)
        else:
            folded, fold = needle.casefold(), str.casefold
            units = [_any_case(ch) for ch in needle]
            pattern = None
            plain = re.compile(b"".join(units))
            coded = re.compile(_CODE.join(units))
        start = max(0, min(start, len(self) - 1))
        # So that a match across two slices is still seen, colour codes between its bytes too.
        overlap = min(16 * len(needle.encode("utf-8", "surrogatepass")), CHUNK // 2)
        if backwards:
            hi = self.span(start)[1]
            while hi > 0:
                lo = max(0, hi - CHUNK)
                data = os.pread(fd, hi - lo, lo).lower()
                search = coded if _coded(data) else plain  # asked once per slice, not per hit
                at = _last(data, pattern, search, len(data))
                while at >= 0:
                    lineno = self.line_at(lo + at)
                    if folded in fold(self._read_uncached(lineno)):
                        return lineno
                    at = _last(data, pattern, search, max(0, self.span(lineno)[0] - lo))
                hi = lo + overlap if lo > 0 else 0
            return None
        pos = self.span(start)[0]
        while pos < self._scanned:
            data = os.pread(fd, min(CHUNK + overlap, self._scanned - pos), pos).lower()
            search = coded if _coded(data) else plain
            at = _first(data, pattern, search, 0)
            while at >= 0:
                lineno = self.line_at(pos + at)
                if folded in fold(self._read_uncached(lineno)):
                    return lineno
                at = _first(data, pattern, search, self.span(lineno)[1] + 1 - pos)
            pos += CHUNK
        return None

    def tail(self, count: int) -> list[str]:
        """The file's last `count` lines as shown, read backwards from its end without the
        index: what a view shows at once while a big log is still being indexed."""
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return []
        try:
            end = os.fstat(fd).st_size
            data, pos, block = b"", end, 64 << 10
            while pos > 0 and data.count(b"\n") <= count + 1 and len(data) < SHOW_CAP * 4:
                step = min(block, pos)
                pos -= step
                data = os.pread(fd, step, pos) + data
        finally:
            os.close(fd)
        lines = data.split(b"\n")
        if lines and lines[-1] == b"":
            lines.pop()  # the file ends with a newline: no line after it
        if pos > 0 and len(lines) > count:
            lines = lines[1:]  # the first piece may be the end of a longer line
        return [_shown(raw[:SHOW_CAP]) for raw in lines[-count:]]

    def _read_uncached(self, lineno: int) -> str:
        """Text for search: the cache is for what is on screen, a search must not flush it."""
        with self._lock:
            cached = self._cache.get(lineno)
        if cached is not None:
            return cached
        return _shown(self.raw(lineno))


# What `clean_text` removes from inside a line (colour codes, NULs): a coloured log's bytes hold
# `step\x1b[0m 5` where the screen shows `step 5`, so a search lets these sit between the
# needle's bytes. The bytes searched are lowered, so a two-byte escape may end in a-z too; a
# match too many is dropped by the check on the shown line. Only slices that hold an ESC or a
# NUL pay for the regex.
_CODE = rb"(?:\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-z]|\x1b|\x00)*"


def _with_codes_between(pattern: bytes) -> re.Pattern[bytes]:
    return re.compile(_CODE.join(re.escape(pattern[i : i + 1]) for i in range(len(pattern))))


def _coded(data: bytes) -> bool:
    return b"\x1b" in data or b"\x00" in data


@functools.cache
def _folds() -> dict[str, tuple[str, ...]]:
    """Case fold -> the characters that fold to it (other than itself): `σ` -> `Σ`, `ς`. Built
    once, on the first search for a non-ASCII needle (about 0.2 s over all of Unicode)."""
    out: dict[str, list[str]] = {}
    for code in range(sys.maxunicode + 1):
        ch = chr(code)
        folded = ch.casefold()
        if folded != ch:
            out.setdefault(folded, []).append(ch)
    return {k: tuple(v) for k, v in out.items()}


def _any_case(ch: str) -> bytes:
    """A regex (bytes, for a slice lowered by `bytes.lower`) for any character, or string, of
    `ch`'s case fold."""
    folded = ch.casefold()
    forms = {
        f.encode("utf-8", "surrogatepass").lower() for f in (folded, *_folds().get(folded, ()))
    }
    escaped = sorted((re.escape(f) for f in forms), key=lambda f: (-len(f), f))
    return escaped[0] if len(escaped) == 1 else b"(?:" + b"|".join(escaped) + b")"


def _first(data: bytes, pattern: bytes | None, coded: re.Pattern[bytes] | None, start: int) -> int:
    """Where the first match at or after `start` begins in `data` (-1: none); `coded` is the
    regex to search with, None to find `pattern` as it is (a plain slice, an ASCII needle)."""
    if coded is None:
        assert pattern is not None
        return data.find(pattern, start)
    m = coded.search(data, start)
    return m.start() if m else -1


def _last(data: bytes, pattern: bytes | None, coded: re.Pattern[bytes] | None, end: int) -> int:
    """Where the last match that ends by `end` begins in `data` (-1: none)."""
    if coded is None:
        assert pattern is not None
        return data.rfind(pattern, 0, end)
    at = -1
    for m in coded.finditer(data, 0, end):
        at = m.start()
    return at


def _shown(raw: bytes) -> str:
    """What a terminal shows of one line's bytes, cleaned as tail.py cleans them."""
    return LogLine(0, 0, 0, clean_text(raw)).shown


def line_starts(data: bytes, base: int, index: int, every: int) -> tuple[bytes, int]:
    """The starts of the lines that begin in `data` (just past each b"\\n"; `data` starts at
    byte `base` of the file), keeping only line numbers that are multiples of `every` (the
    line after the k-th newline is number `index + k`), as native uint64 bytes; and how many
    newlines there were. In C where built, else `_py_line_starts` (the same answers)."""
    if _c_line_starts is not None:
        found: tuple[bytes, int] = _c_line_starts(data, base, index, every)
        return found
    return _py_line_starts(data, base, index, every)


def _py_line_starts(data: bytes, base: int, index: int, every: int) -> tuple[bytes, int]:
    ends = [m.end() + base for m in _NEWLINE.finditer(data)]
    skip = (-index) % every
    return array("Q", ends[skip::every]).tobytes(), len(ends)
