"""Text from runs (log lines, run names, reasons, commands) made safe to show.

Such text is data: it is never parsed as markup (callers build `rich.text.Text` from it, never
markup strings), and control characters are made visible here, because Rich passes ESC and
NUL through to the terminal as they are (it strips only BEL, BS, VT, FF and CR).
"""

from __future__ import annotations

import re

from rich.text import Text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # C0 and DEL, except tab and newline


def clean(text: str) -> str:
    """`text` with each control character (other than tab and newline) shown as `�`."""
    return _CONTROL.sub("\ufffd", text)


def plain(text: str, style: str = "") -> Text:
    """A Text of `text` as it is, cleaned; never markup."""
    return Text(clean(text), style=style)
