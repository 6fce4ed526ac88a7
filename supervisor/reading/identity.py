"""Is this still the log ftmon was reading? Checked when a run is reattached.

While no ftmon watches, a log can be truncated (`> log`, copytruncate) or replaced and then grow
past the byte offset stored in the history. Reading on from that offset would skip the new
file's first lines without a word. So the history also keeps the head of the log: the length
and SHA-256 of its first bytes (up to `HEAD_BYTES`, never past what was read). At attach,
`check_resume` compares: a file shorter than the stored offset, or whose first bytes differ, is
read again from the start, and the reason says so.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass

HEAD_BYTES = 4096


@dataclass(frozen=True)
class LogHead:
    """The first `length` bytes of a log, by their SHA-256."""

    length: int
    sha256: str


@dataclass(frozen=True)
class Resume:
    """Where to read on from, and why from the start when the log is not the one read."""

    offset: int
    lineno: int
    reason: str = ""  # empty when reading on from the stored offset

    @property
    def restarted(self) -> bool:
        return bool(self.reason)


def head_of(path: str | os.PathLike[str], upto: int = HEAD_BYTES) -> LogHead | None:
    """The head of `path`: its first min(upto, size) bytes. None if it cannot be read."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(max(0, min(upto, HEAD_BYTES)))
    except OSError:
        return None
    return LogHead(len(data), hashlib.sha256(data).hexdigest())


def check_resume(
    path: str | os.PathLike[str], offset: int, lineno: int, head: LogHead | None
) -> Resume:
    """Read on from `offset` if the file still is the one read up to there, else from 0."""
    try:
        size = os.stat(path).st_size
    except OSError:
        return Resume(offset, lineno)  # not there (yet): the reader waits for it
    if offset > size:
        return Resume(
            0, 0,
            f"{path} is shorter ({size} bytes) than where reading stopped ({offset} bytes): it "
            "was truncated or replaced while no ftmon watched; reading it again from the start",
        )  # fmt: skip
    if head is not None and head.length > 0:
        now = head_of(path, head.length)
        if now is None or now != head:
            return Resume(
                0, 0,
                f"the first {head.length} bytes of {path} changed while no ftmon watched (the log "
                "was replaced or rewritten); reading it again from the start",
            )  # fmt: skip
    return Resume(offset, lineno)


class HeadTracker:
    """The head to store with each batch while a log grows: a new `LogHead` when more of the
    first `HEAD_BYTES` has been read than the stored head covers, else None (nothing to store)."""

    def __init__(self, path: str | os.PathLike[str], known: LogHead | None = None) -> None:
        self.path = path
        self.known = known

    def advance(self, offset: int) -> LogHead | None:
        """`offset`: just past the last line read. An offset below the stored head means the
        log was truncated under the reader (which followed it): the head is taken again."""
        covered = self.known.length if self.known is not None else 0
        if offset == covered or (offset > covered and covered >= HEAD_BYTES):
            return None
        head = head_of(self.path, min(offset, HEAD_BYTES))
        if head is None or head == self.known:
            return None
        self.known = head
        return head
