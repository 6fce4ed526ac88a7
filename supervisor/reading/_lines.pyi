# Types of the compiled module built from _lines.c (see that file for what each does).
from collections.abc import Callable

from supervisor.events import LogLine

def split_lines(
    region: bytes,
    pos: int,
    first: int,
    line_type: type[LogLine],
    max_line: int,
    slow: Callable[[int, bytes, int, int], LogLine],
    /,
) -> list[LogLine]: ...
def line_starts(data: bytes, base: int, index: int, every: int, /) -> tuple[bytes, int]: ...
