"""Bytes of a growing log -> `LogLine`s, with exact byte offsets so that reading can resume.

`LineSplitter` is pure (bytes in, lines out); `Tail` adds the file: chunked reads, truncation and
replacement (a new inode at the path) noticed and followed, a missing file waited for. `follow`
is the asyncio loop around a `Tail`, woken by inotify where Linux has it, polling otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import os
import re
import stat
from collections.abc import Callable, Iterator
from functools import partial
from itertools import accumulate, repeat

from supervisor.events import LogLine
from supervisor.reading.inotify import make_inotify

try:  # the compiled twin of `_whole_lines`' loop (setup.py builds it where there is a compiler)
    from supervisor.reading import _lines as _native
except ImportError:  # pragma: no cover - depends on the machine
    _native = None  # type: ignore[assignment]

# LogLine is a named tuple: building it from a ready tuple of its fields stays in C.
_new_line = partial(tuple.__new__, LogLine)

_make_inotify = make_inotify  # the old name, for its tests

DEFAULT_MAX_LINE = 1 << 20
READ_CHUNK = 1 << 20
MAX_READ = 32 << 20
POLL_SECS = 0.05  # without inotify
SAFETY_POLL_SECS = 1.0  # with inotify: a missed event (NFS, overlayfs) costs at most this

# CSI (colours, cursor moves), OSC (titles, hyperlinks; ended by BEL or ST, or cut off by the
# end of the line), charset selection, and the other two-byte escapes. A lone ESC goes too.
_ANSI = re.compile(
    rb"\x1b\[[0-?]*[ -/]*[@-~]"
    rb"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\|$)"
    rb"|\x1b[()*+][0-9A-Za-z]"
    rb"|\x1b[@-Z\\-_]"
    rb"|\x1b"
)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for a bulk step that makes no reference cycles.

    Building a chunk's hundred thousand lines (or their events) would otherwise run the collector
    over and over across every object alive, which costs more than building them; without cycles,
    reference counting frees all of it anyway. Left as found when it was already off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    if n < 1 << 20:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1 << 20):.1f} MiB"


def clean_text(raw: bytes) -> str:
    """Decode one line's bytes: invalid UTF-8 replaced, ANSI escapes and NUL bytes removed."""
    if b"\x1b" in raw:
        raw = _ANSI.sub(b"", raw)
    if b"\x00" in raw:
        raw = raw.replace(b"\x00", b"")
    return raw.decode("utf-8", "replace")


def _line(lineno: int, raw: bytes, start: int, end: int, skipped: int) -> LogLine:
    """One line's `LogLine`: cleaned, one trailing `\\r` dropped, or marked as cut."""
    if skipped:
        text = clean_text(raw) + f" …[truncated {_size(skipped)}]"
        return LogLine(lineno, start, end, text, True)
    if raw.endswith(b"\r"):
        raw = raw[:-1]
    return LogLine(lineno, start, end, clean_text(raw))


def _capped_line(cap: int, lineno: int, raw: bytes, start: int, end: int) -> LogLine:
    """`_line` for a whole raw line that may be longer than `cap` (what C hands back)."""
    if len(raw) > cap:
        return _line(lineno, raw[:cap], start, end, len(raw) - cap)
    return _line(lineno, raw, start, end, 0)


class LineSplitter:
    """Split a byte stream into `LogLine`s. Pure: no I/O, no clock.

    A line longer than `max_line` bytes keeps its first `max_line` bytes plus a marker saying
    how much was cut; the rest is skipped without being held, so memory stays bounded by one cap.
    A partial line emitted by `flush` (the writer paused mid-line, e.g. a line over 1 MiB
    written in chunks) keeps its number: what completes it later is given the same number, so
    the lines after it are numbered as in the file.
    """

    def __init__(
        self,
        max_line: int = DEFAULT_MAX_LINE,
        offset: int = 0,
        lineno: int = 0,
        native: bool = True,
    ) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be at least 1, got {max_line}")
        self.max_line = max_line
        # False: the pure-Python loop even where the C one is built (the tests' reference).
        self.native = native
        self._capped = partial(_capped_line, max_line)
        self._pos = offset  # file offset just past the last byte fed
        self._lineno = lineno  # number of the last line emitted
        self._held = bytearray()  # start of an unfinished line (at most max_line bytes)
        self._held_start = offset  # file offset where the held line starts
        self._skipped = 0  # bytes of the held line dropped past the cap
        self._continues = False  # the next bytes continue a line `flush` already emitted

    @property
    def pending(self) -> bool:
        """True while an unfinished line is held."""
        return bool(self._held) or self._skipped > 0

    @property
    def position(self) -> int:
        """File offset just past the last byte fed."""
        return self._pos

    def reset(self, offset: int = 0, lineno: int = 0) -> None:
        """Forget any held partial line and start again at `offset` (a truncated file)."""
        self._pos = offset
        self._lineno = lineno
        self._held = bytearray()
        self._held_start = offset
        self._skipped = 0
        self._continues = False

    def _make(self, raw: bytes, start: int, end: int, skipped: int) -> LogLine:
        self._lineno += 1
        return _line(self._lineno, raw, start, end, skipped)

    def feed(self, data: bytes, base_offset: int | None = None) -> list[LogLine]:
        """Take the next bytes of the stream; return the lines they complete.

        `base_offset` is the file offset of `data[0]`; when omitted the bytes are taken to follow
        the previous ones.
        """
        if base_offset is not None and base_offset != self._pos:
            if self.pending:
                raise ValueError(
                    f"feed at offset {base_offset} while a line from {self._held_start} is held"
                )
            self._pos = self._held_start = base_offset
        if self._continues and data:
            self._continues = False
            self._lineno -= 1  # the rest of the flushed line keeps that line's number
        base = self._pos
        self._pos += len(data)
        out: list[LogLine] = []
        start = 0
        n = len(data)
        if self.pending:
            nl = data.find(b"\n")
            if nl < 0:
                self._hold(data)
                return out
            self._hold(data[:nl])
            raw, skipped = bytes(self._held), self._skipped
            out.append(self._make(raw, self._held_start, base + nl + 1, skipped))
            self._held = bytearray()
            self._skipped = 0
            start = nl + 1
        # Whole lines inside this chunk: one split, then offsets by running sum.
        last_nl = data.rfind(b"\n", start)
        if last_nl >= start:
            out += self._whole_lines(data[start : last_nl + 1], base + start)
            start = last_nl + 1
        if start < n:
            self._held_start = base + start
            self._hold(data[start:])
        else:
            self._held_start = self._pos
        return out

    def _whole_lines(self, region: bytes, pos: int) -> list[LogLine]:
        """The complete lines of `region`, which ends with a newline."""
        if _native is not None and self.native:
            # The same lines, built in C (a line to clean or cut goes through `_capped_line`).
            with gc_paused():
                out: list[LogLine] = _native.split_lines(
                    region, pos, self._lineno + 1, LogLine, self.max_line, self._capped
                )
            self._lineno += len(out)
            return out
        return self._whole_lines_py(region, pos)

    def _whole_lines_py(self, region: bytes, pos: int) -> list[LogLine]:
        raws = region[:-1].split(b"\n")
        lens = list(map(len, raws))
        first = self._lineno + 1
        if max(lens) <= self.max_line and b"\x1b" not in region and b"\x00" not in region:
            # The common case, in bulk: one decode for the whole region (a `\n` byte is never
            # part of a UTF-8 sequence, so this equals decoding line by line), offsets by
            # running sum, and no per-line Python besides building the LogLine.
            text = region.decode("utf-8", "replace")
            if "\r" in text:
                text = text.replace("\r\n", "\n")
            texts = text.split("\n")
            texts.pop()  # the empty string after the final newline
            ends = list(accumulate([n + 1 for n in lens], initial=pos))
            self._lineno += len(raws)
            fields = zip(range(first, self._lineno + 1), ends, ends[1:], texts, repeat(False))
            with gc_paused():
                return list(map(_new_line, fields))
        out = []
        for raw in raws:  # a line to clean or to cut: one at a time, as C hands them back
            end = pos + len(raw) + 1
            self._lineno += 1
            out.append(self._capped(self._lineno, raw, pos, end))
            pos = end
        return out

    def _hold(self, piece: bytes) -> None:
        room = self.max_line - len(self._held)
        if len(piece) <= room:
            self._held += piece
        else:
            if room > 0:
                self._held += piece[:room]
            self._skipped += len(piece) - max(room, 0)

    def flush(self) -> list[LogLine]:
        """Emit the held partial line, if any (the writer went quiet without a newline)."""
        if not self.pending:
            return []
        line = self._make(bytes(self._held), self._held_start, self._pos, self._skipped)
        self._held = bytearray()
        self._skipped = 0
        self._held_start = self._pos
        self._continues = True
        return [line]


class Tail:
    """Read the new lines of a file that may grow, be truncated, be replaced or not exist yet.

    `offset` / `lineno` are the resume point: just past the last line returned. A new `Tail`
    started there reads no line twice and skips none.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        offset: int = 0,
        lineno: int = 0,
        max_line: int = DEFAULT_MAX_LINE,
        chunk: int = READ_CHUNK,
        max_read: int = MAX_READ,
    ) -> None:
        self.path = os.fspath(path)
        self.chunk = chunk
        self.offset = offset
        self.lineno = lineno
        self._splitter = LineSplitter(max_line, offset, lineno)
        self._fd: int | None = None
        self._ino: tuple[int, int] | None = None
        self.reopened = 0  # how many times a replacement or truncation was followed
        # One read() returns after this many bytes, so that a caller on an event loop stays
        # responsive while a huge backlog is read; `behind` then says to call again at once.
        self.max_read = max_read
        self.behind = False

    @property
    def pending(self) -> bool:
        """True while a partial last line is held (see `flush_partial`)."""
        return self._splitter.pending

    @property
    def inode(self) -> tuple[int, int] | None:
        """(device, inode) of the open file, None when none is open."""
        return self._ino

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            self._ino = None

    def __enter__(self) -> Tail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> bool:
        try:
            # O_NONBLOCK: opening a FIFO must not hang waiting for a writer.
            flags = os.O_RDONLY | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NONBLOCK", 0)
            fd = os.open(self.path, flags)
        except (FileNotFoundError, NotADirectoryError):
            return False  # not there (yet): wait for it
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise IsADirectoryError(errno.EISDIR, "is a directory, not a log file", self.path)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            # Offsets, truncation and resuming need a file; a pipe has none of them.
            raise OSError(errno.EINVAL, "not a regular file (a pipe or a device?)", self.path)
        self._fd = fd
        self._ino = (st.st_dev, st.st_ino)
        return True

    def _take(self, lines: list[LogLine]) -> list[LogLine]:
        if lines:
            self.offset = lines[-1].end
            self.lineno = lines[-1].lineno
        return lines

    def _drain(self, limit: int | None = None) -> list[LogLine]:
        assert self._fd is not None
        out: list[LogLine] = []
        done = 0
        self.behind = False
        while True:
            data = os.pread(self._fd, self.chunk, self._splitter.position)
            if not data:
                return out
            out += self._splitter.feed(data)
            done += len(data)
            if limit is not None and done >= limit:
                self.behind = True  # more may be there: the caller reads again at once
                return out

    def read(self) -> list[LogLine]:
        """What is new since the last call (whole lines only; see `flush_partial`).

        At most about `max_read` bytes per call; `behind` is then True. Raises OSError when the
        path exists but cannot be read (a directory, no permission); a missing file reads as
        empty until it appears.
        """
        out: list[LogLine] = []
        if self._fd is None and not self._open():
            return out
        assert self._fd is not None
        try:
            st = os.stat(self.path)
            current = (st.st_dev, st.st_ino)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            current = None  # deleted or moved away: keep reading what we have open
        if current is not None and current != self._ino:
            # Replaced: finish the old file, then start the new one from its beginning.
            out += self._drain()
            out += self._splitter.flush()
            self.close()
            self._splitter.reset(0, 0)
            self.reopened += 1
            self._take(out)
            self.offset, self.lineno = 0, 0
            if not self._open():
                return out
        assert self._fd is not None
        if os.fstat(self._fd).st_size < self._splitter.position:
            # Truncated in place (`> log`, copytruncate): the held partial is gone; restart.
            self._splitter.reset(0, 0)
            self.offset, self.lineno = 0, 0
            self.reopened += 1
        return out + self._take(self._drain(self.max_read))

    def flush_partial(self) -> list[LogLine]:
        """Emit a held partial last line; call after the writer has been quiet a moment."""
        return self._take(self._splitter.flush())


def iter_file_lines(
    path: str | os.PathLike[str], chunk: int = 1 << 22, max_line: int = DEFAULT_MAX_LINE
) -> Iterator[list[LogLine]]:
    """Whole-file scan: yield the lines of `path` a chunk at a time (the last partial included)."""
    splitter = LineSplitter(max_line)
    with open(path, "rb", buffering=0) as f:
        while data := f.read(chunk):
            lines = splitter.feed(data)
            if lines:
                yield lines
    rest = splitter.flush()
    if rest:
        yield rest


async def follow(
    tail: Tail,
    on_lines: Callable[[list[LogLine]], None],
    stop: asyncio.Event,
    idle_flush: float = 0.5,
    use_inotify: bool = True,
) -> None:
    """Call `on_lines` with each batch of new lines until `stop` is set.

    Woken by inotify on the file and its directory where available (else a 50 ms poll). A partial
    last line is emitted once the file has been quiet for `idle_flush` seconds.
    """
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    watcher = make_inotify(tail.path) if use_inotify else None
    if watcher is not None:

        def _on_readable() -> None:
            if watcher.drain():
                wake.set()

        loop.add_reader(watcher.fd, _on_readable)

    async def _stop_wakes() -> None:
        await stop.wait()
        wake.set()

    stopper = asyncio.create_task(_stop_wakes())
    last_data = loop.time()
    try:
        while True:
            lines = tail.read()
            now = loop.time()
            if lines:
                last_data = now
                on_lines(lines)
            elif tail.pending and now - last_data >= idle_flush:
                flushed = tail.flush_partial()
                if flushed:
                    on_lines(flushed)
            if stop.is_set():
                return
            if tail.behind:
                await asyncio.sleep(0)  # a backlog: let others run, then read on
                continue
            if watcher is not None:
                watcher.watch_file(tail.inode)
                timeout = SAFETY_POLL_SECS
            else:
                timeout = POLL_SECS
            if tail.pending:
                timeout = min(timeout, max(0.0, last_data + idle_flush - now) + 0.001)
            wake.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout)
    finally:
        stopper.cancel()
        if watcher is not None:
            loop.remove_reader(watcher.fd)
            watcher.close()
