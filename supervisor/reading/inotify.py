"""inotify (Linux) through ctypes: no dependency, and absent elsewhere (`make_inotify` -> None).

`Inotify` watches a log file and its directory, so that a write, a file renamed over it, or the
file appearing wakes the follower (`supervisor.reading.tail.follow`) at once instead of at the
next poll.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import struct

_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_IN_MODIFY = 0x002
_IN_ATTRIB = 0x004
_IN_CLOSE_WRITE = 0x008
_IN_MOVED_FROM = 0x040
_IN_MOVED_TO = 0x080
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_FILE_MASK = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_DELETE_SELF | _IN_MOVE_SELF
_DIR_MASK = _IN_CREATE | _IN_MOVED_TO | _IN_MOVED_FROM | _IN_DELETE
_EVENT = struct.Struct("iIII")


def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.inotify_init1  # noqa: B018 - raises AttributeError where inotify is absent
        return libc
    except (OSError, AttributeError):
        return None


class Inotify:
    """Watches the file and its directory (so a file renamed over it, or created, wakes us)."""

    def __init__(self, libc: ctypes.CDLL, path: str) -> None:
        self._libc = libc
        self.path = path
        self.name = os.fsencode(os.path.basename(path))
        fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1 failed")
        self.fd = fd
        self._file_wd = -1
        self.watched: tuple[int, int] | None = None
        directory = os.path.dirname(os.path.abspath(path))
        self._dir_wd = libc.inotify_add_watch(fd, os.fsencode(directory), _DIR_MASK)

    def watch_file(self, inode: tuple[int, int] | None) -> None:
        """(Re)attach the file watch to what is at the path now, when it changed."""
        if inode == self.watched:
            return
        if self._file_wd >= 0:
            self._libc.inotify_rm_watch(self.fd, self._file_wd)  # may fail: file gone; fine
            self._file_wd = -1
        self.watched = None
        if inode is not None:
            wd = self._libc.inotify_add_watch(self.fd, os.fsencode(self.path), _FILE_MASK)
            if wd >= 0:
                self._file_wd = wd
                self.watched = inode

    def drain(self) -> bool:
        """Read pending events; True if any concerns our file."""
        relevant = False
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except (BlockingIOError, InterruptedError):
                return relevant
            if not buf:
                return relevant
            i = 0
            while i + _EVENT.size <= len(buf):
                wd, _mask, _cookie, length = _EVENT.unpack_from(buf, i)
                name = buf[i + _EVENT.size : i + _EVENT.size + length].rstrip(b"\0")
                if wd != self._dir_wd or name == self.name:
                    relevant = True
                i += _EVENT.size + length

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def make_inotify(path: str) -> Inotify | None:
    libc = _libc()
    if libc is None:
        return None
    try:
        watcher = Inotify(libc, path)
    except OSError:
        return None
    if watcher._dir_wd < 0:  # directory missing: we could not notice the file appear
        watcher.close()
        return None
    return watcher
