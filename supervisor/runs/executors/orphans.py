"""Processes that left a run's tree, and how ftmon still finds, kills and reaps them.

A daemon made the classic way (fork, setsid, fork, the middle one exits) is re-parented away
from the run: walking down from the run's pid no longer finds it and, in a session of its own,
a signal to the run's group misses it. It is found anyway:

- ftmon makes itself a child subreaper (Linux `prctl(PR_SET_CHILD_SUBREAPER)`) when it launches
  a run, so the run's orphans re-parent to ftmon instead of init, and their zombies are ftmon's
  to reap (`reap_adopted`, and a small thread that does it while runs live);
- every run launched here carries `FTMON_RUN_TOKEN` in its environment; every descendant that
  does not scrub its environment inherits it, so a process holding the run's token belongs to
  the run wherever it now hangs (this also works after a restarted ftmon reattached);
- for a process ftmon did not start (`--watch --pid`): a fork of a tree member that daemonized
  (same executable, command line and environment, byte for byte; in a session whose leader is
  gone; started after the run) belongs to it too, as do the members of the run's own process
  group and session when the run (or one of its descendants) leads them.

Nothing here ever touches ftmon itself, its ancestors, init, or a group or session that one of
them belongs to. Linux only: elsewhere the functions find nothing and change nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import threading
import time
from collections.abc import Container, Iterable
from dataclasses import dataclass

TOKEN_VAR = "FTMON_RUN_TOKEN"
PR_SET_CHILD_SUBREAPER = 36
REAP_SECS = 0.5  # how often the reaper thread looks for adopted zombies

_subreaper: bool | None = None
_lock = threading.Lock()
_tokens: set[bytes] = set()  # tokens of the runs launched by this process
_adopted: set[int] = set()  # orphans of those runs seen alive as our children
_reaper: threading.Thread | None = None


def become_subreaper() -> bool:
    """Make this process the child subreaper of everything it starts from now on (idempotent).
    False where the kernel has no such thing."""
    global _subreaper
    if _subreaper is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            _subreaper = False
    return _subreaper


def new_token() -> str:
    return secrets.token_hex(8)


def adopt_run(token: str, skip: Container[int]) -> None:
    """Remember a run launched here (its token) and make sure its orphans are reaped;
    `skip` holds the pids whose exit status a Popen collects (never reaped here)."""
    global _reaper
    with _lock:
        _tokens.add(token.encode())
        if _reaper is None and os.path.isdir("/proc/self/task"):
            _reaper = threading.Thread(
                target=_reap_forever, args=(skip,), name="ftmon-reaper", daemon=True
            )
            _reaper.start()


# ------------------------------------------------------------------ /proc


@dataclass(frozen=True)
class ProcStat:
    """The fields of /proc/PID/stat used here."""

    pid: int
    state: str
    ppid: int
    pgrp: int
    session: int
    start: int  # clock ticks after boot


def read_stat(pid: int) -> ProcStat | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        return ProcStat(
            pid, fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3]),
            int(fields[19]),
        )  # fmt: skip
    except (OSError, IndexError, ValueError):
        return None


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError:
        return None


def token_of(pid: int) -> str | None:
    """The FTMON_RUN_TOKEN in the environment `pid` was started with, if any."""
    env = _read(f"/proc/{pid}/environ")
    token = _token_in(env) if env else None
    return token.decode() if token else None


def _token_in(env: bytes) -> bytes | None:
    key = TOKEN_VAR.encode() + b"="
    for item in env.split(b"\0"):
        if item.startswith(key):
            return item[len(key) :]
    return None


Fingerprint = tuple[str, bytes, bytes]  # executable, command line, environment


def fingerprint(pid: int) -> Fingerprint | None:
    """What a plain fork keeps of its parent: the executable, argv and environment."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return None
    cmdline, env = _read(f"/proc/{pid}/cmdline"), _read(f"/proc/{pid}/environ")
    if not cmdline or env is None:
        return None
    return exe, cmdline, env


def protected_pids() -> set[int]:
    """ftmon, its ancestors and init: never signalled, nor their groups and sessions."""
    out = {0, 1, os.getpid()}
    pid = os.getpid()
    while pid > 1:
        stat = read_stat(pid)
        if stat is None:
            break
        pid = stat.ppid
        out.add(pid)
    return out


def safe_leader(leader: int, members: Iterable[int], protected: set[int]) -> int | None:
    """`leader` (a group or session id) if the run or its tree leads it and it holds nothing
    protected: signalling it cannot hit ftmon, its shell or an unrelated job."""
    members = set(members)
    if leader <= 1 or leader not in members or leader in protected:
        return None
    for pid in protected:
        stat = read_stat(pid) if pid > 1 else None
        if stat is not None and leader in (stat.pgrp, stat.session):
            return None
    return leader


@dataclass(frozen=True)
class RunIdentity:
    """How the members of one run are recognised outside its tree."""

    token: bytes | None = None
    group: int | None = None  # a group to sweep (the run's own, when safe)
    session: int | None = None
    forks: frozenset[Fingerprint] = frozenset()  # for a foreign run without a token
    since: int = 0  # start (clock ticks) of the run: a fork is never older


def identify(pid: int, tree: Iterable[int], pgid: int | None) -> RunIdentity:
    """Read, before any signal, what lets the run's strays be found later. `pgid` is given for
    a run launched here; a foreign one's group and session count only where the run leads them."""
    tree = set(tree) | {pid}
    protected = protected_pids()
    stat = read_stat(pid)
    if stat is None:
        return RunIdentity()
    env = _read(f"/proc/{pid}/environ")
    token = _token_in(env) if env else None
    group = pgid if pgid is not None else safe_leader(stat.pgrp, tree, protected)
    session = safe_leader(stat.session, tree, protected)
    forks: frozenset[Fingerprint] = frozenset()
    if token is None:  # not launched by ftmon: recognise forks of the tree's processes
        forks = frozenset(fp for p in tree if (fp := fingerprint(p)) is not None)
    return RunIdentity(token, group, session, forks, stat.start)


def strays(ident: RunIdentity, known: Container[int]) -> list[int]:
    """Live processes outside `known` that belong to the run: in its group or session, holding
    its token, or a daemonized fork of one of its processes."""
    if ident == RunIdentity():
        return []
    protected = protected_pids()
    out: list[int] = []
    try:
        pids = [int(n) for n in os.listdir("/proc") if n.isdigit()]
    except OSError:
        return []
    for pid in pids:
        if pid in known or pid in protected:
            continue
        stat = read_stat(pid)
        if stat is None or stat.state in ("Z", "X"):
            continue
        if stat.pgrp == ident.group or stat.session == ident.session:
            out.append(pid)
            continue
        if ident.token is None and not ident.forks:
            continue
        env = _read(f"/proc/{pid}/environ")
        if not env:
            continue
        holds_token = ident.token is not None and _token_in(env) == ident.token
        if holds_token or (
            ident.forks and _daemonized_fork(stat, ident) and fingerprint(pid) in ident.forks
        ):
            out.append(pid)
    return out


def _daemonized_fork(stat: ProcStat, ident: RunIdentity) -> bool:
    """Started after the run, not a session leader, in a session whose leader is gone."""
    if stat.start < ident.since or stat.session == stat.pid:
        return False
    leader = read_stat(stat.session)
    return leader is None or leader.session != stat.session


# ------------------------------------------------------------------ reaping


def reap_adopted(skip: Container[int], only: Iterable[int] | None = None) -> list[int]:
    """Collect the zombies of orphans re-parented to this process (the subreaper), never a child
    that a Popen of ftmon's waits for (`skip`), nor any child ftmon forked itself.

    A child that ftmon forked starts in ftmon's session and can leave it only by leading a new
    one; so a child in another session that it does not lead was adopted. An adopted child that
    leads its own session is known by the run token it was seen alive with."""
    me, my_session = os.getpid(), os.getsid(0)
    children = _children(me) if only is None else list(only)
    reaped = []
    for pid in children:
        if pid in skip:
            continue
        stat = read_stat(pid)
        if stat is None or stat.ppid != me:
            continue
        with _lock:
            ours = pid in _adopted or stat.session not in (my_session, pid)
            if not ours and stat.state not in ("Z", "X"):
                env = _read(f"/proc/{pid}/environ")
                if env and _token_in(env) in _tokens:
                    _adopted.add(pid)
        if ours and stat.state == "Z":
            with contextlib.suppress(ChildProcessError):
                if os.waitpid(pid, os.WNOHANG)[0] == pid:
                    reaped.append(pid)
            with _lock:
                _adopted.discard(pid)
    return reaped


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        data = _read(f"/proc/{pid}/task/{tid}/children")
        if data:
            out += [int(x) for x in data.split()]
    return out


def _reap_forever(skip: Container[int]) -> None:
    while True:
        time.sleep(REAP_SECS)
        with contextlib.suppress(Exception):  # a vanished pid mid-scan must not end the thread
            reap_adopted(skip)
