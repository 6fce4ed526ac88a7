"""A cheap multi-pattern test: "may this line matter?", asked before any Python parsing.

Most lines of a training log are boring (progress bars, INFO chatter). The parser and the rules
look at a line in Python only when one of a few patterns occurs in it. Two engines give the same
answers: hyperscan (one pass over a whole chunk of the file, in C) when it is importable, and a
single alternation of Python `re` patterns otherwise. Patterns are case-insensitive and must keep
to the subset both engines read the same way: literals, classes, `\\b`, `?`, `*`, `+`, `{m,n}`,
groups and alternation (no look-arounds or back-references), and never match a line break (write
`[ \\t]`, not `\\s`), so that a match always lies inside one line.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence

try:  # optional extra `ftmon[fast]`
    import hyperscan as _hs
except ImportError:  # pragma: no cover - depends on the machine
    _hs = None  # type: ignore[assignment]


_UPPER_ESCAPE = re.compile(r"\\[A-Z]")
# The only non-ASCII characters whose lower case holds an ASCII letter (İ -> i̇, Kelvin -> k):
# with them, lowering the line could make a match that ASCII-caseless matching would not.
_LOWERS_TO_ASCII = frozenset("\u0130\u212a")


def hyperscan_available() -> bool:
    return _hs is not None


class Prefilter:
    """Which lines contain at least one of `patterns` (case-insensitive)."""

    def __init__(self, patterns: Sequence[str], engine: str = "auto") -> None:
        if engine not in ("auto", "hyperscan", "re"):
            raise ValueError(f"engine must be auto, hyperscan or re, not {engine!r}")
        if engine == "hyperscan" and _hs is None:
            raise ValueError("engine 'hyperscan' asked for, but the hyperscan module is absent")
        self.patterns = tuple(patterns)
        if not self.patterns:
            raise ValueError("a prefilter needs at least one pattern")
        for p in self.patterns:
            try:
                re.compile(p)
            except re.error as exc:
                raise ValueError(f"invalid prefilter pattern {p!r}: {exc}") from None
        joined = "|".join(f"(?:{p})" for p in self.patterns)
        # ASCII semantics on str as on bytes and in hyperscan: `\b` and case are ASCII-only.
        self._re = re.compile(joined, re.IGNORECASE | re.ASCII)
        self._rb = re.compile(joined.encode(), re.IGNORECASE)
        # Python's IGNORECASE search is slow (no literal-prefix tricks); lowering the line's
        # ASCII letters and searching case-sensitively for lowered patterns is several times
        # faster. Only safe when no pattern has an escape that lowering would change (\S, \W).
        self._lowered = None
        if not any(_UPPER_ESCAPE.search(p) for p in self.patterns):
            self._lowered = re.compile(joined.lower(), re.ASCII)
        self.engine = "hyperscan" if engine != "re" and _hs is not None else "re"
        self._db = None
        if self.engine == "hyperscan":
            db = _hs.Database(mode=_hs.HS_MODE_BLOCK)
            flags = _hs.HS_FLAG_CASELESS
            db.compile(
                expressions=[p.encode() for p in self.patterns],
                ids=list(range(len(self.patterns))),
                elements=len(self.patterns),
                flags=[flags] * len(self.patterns),
            )
            self._db = db

    def search(self, text: str) -> bool:
        """True when any pattern occurs in `text` (one line)."""
        if self._db is not None:  # one C call, faster than any `re` search of a long line
            return self.search_bytes(text.encode("utf-8", "surrogatepass"))
        if self._lowered is not None and not _LOWERS_TO_ASCII.intersection(text):
            return self._lowered.search(text.lower()) is not None
        return self._re.search(text) is not None

    def search_bytes(self, data: bytes) -> bool:
        if self._db is not None:
            found: list[int] = []

            def on_match(_id: int, _start: int, _end: int, _flags: int, _ctx: object) -> bool:
                found.append(_id)
                return True  # stop at the first match

            try:
                self._db.scan(data, match_event_handler=on_match)
            except _hs.ScanTerminated:
                pass  # our handler stopped it at the first match
            return bool(found)
        return self._rb.search(data) is not None

    def matching_lines(self, data: bytes) -> set[int]:
        """0-based indices of the `\\n`-separated lines of `data` where a pattern occurs.

        A match never spans a line break: the patterns are matched within single lines.
        """
        starts = [0]
        find = data.find
        i = find(b"\n")
        while i >= 0:
            starts.append(i + 1)
            i = find(b"\n", i + 1)
        return self.matching_lines_at(data, starts)

    def matching_lines_at(self, data: bytes, starts: Sequence[int]) -> set[int]:
        """As `matching_lines`, with the line start offsets already known (sorted)."""
        hits: set[int] = set()
        if self._db is not None:
            ends: list[int] = []

            def on_match(_id: int, _start: int, end: int, _flags: int, _ctx: object) -> None:
                ends.append(end)

            # Without start-of-match tracking hyperscan reports where a match ends; since no
            # pattern matches a line break, the match lies in the line of its last byte.
            self._db.scan(data, match_event_handler=on_match)
            right = bisect.bisect_right
            for end in ends:
                hits.add(right(starts, end - 1) - 1)
            return hits
        search = self._rb.search
        n = len(data)
        pos = 0
        right = bisect.bisect_right
        while pos <= n:
            m = search(data, pos)
            if m is None:
                break
            line = right(starts, m.start()) - 1
            hits.add(line)
            # Skip to the next line: one hit per line is all we need.
            pos = starts[line + 1] if line + 1 < len(starts) else n + 1
        return hits
