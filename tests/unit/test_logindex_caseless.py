"""Log-view search ignores case for every script, not ASCII only: `/Über` finds `ÜBER`,
`σίσυφος` finds `ΣΊΣΥΦΟΣ` (final sigma too), with colour codes between the letters as well."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from supervisor.reading.logindex import LogIndex


def index_of(path: Path, lines: list[str]) -> LogIndex:
    path.write_bytes("".join(f"{line}\n" for line in lines).encode())
    index = LogIndex(path)
    index.refresh()
    return index


def test_non_ascii_letters_are_found_in_any_case(tmp_path: Path) -> None:
    index = index_of(
        tmp_path / "out.log",
        ["step 1", "über alles", "step 2", "ÜBER ALLES", "ΣΊΣΥΦΟΣ", "Straße", "STRAẞE", "end"],
    )
    assert index.find("Über", 2) == 3  # the capitals after the lower case one
    assert index.find("über", 4, backwards=True) == 3
    assert index.find("ÜBER alles", 0) == 1
    assert index.find("σίσυφος", 0) == 4 and index.find("ςίσυφος", 0) == 4
    assert index.find("strasse", 0) is None  # ASCII needle: ASCII case only (said in find)
    assert index.find("STRAßE", 6) == 6 and index.find("straße", 0) == 5
    assert index.find("ÜBERALL", 0) is None


def test_colour_codes_between_non_ascii_letters(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    log.write_bytes("plain\n\x1b[31mÜ\x1b[0mBER\x1b[0m done\n".encode())
    index = LogIndex(log)
    index.refresh()
    assert index.find("über", 0) == 1


ALPHABET = "aAüÜσΣςéÉ x"


@settings(max_examples=150, deadline=None)
@given(
    lines=st.lists(st.text(ALPHABET, max_size=12), min_size=1, max_size=20),
    needle=st.text(ALPHABET, min_size=1, max_size=4).filter(lambda n: not n.isascii()),
    start=st.integers(0, 19),
)
def test_find_is_the_first_line_whose_case_fold_holds_the_needle(
    tmp_path_factory, lines: list[str], needle: str, start: int
) -> None:
    """Against the plain definition: str.casefold on both sides, line by line."""
    index = index_of(tmp_path_factory.mktemp("q") / "out.log", lines)
    start = min(start, len(lines) - 1)
    want = next(
        (i for i in range(start, len(lines)) if needle.casefold() in lines[i].casefold()), None
    )
    assert index.find(needle, start) == want
    back = [i for i in range(start + 1) if needle.casefold() in lines[i].casefold()]
    assert index.find(needle, start, backwards=True) == (back[-1] if back else None)
