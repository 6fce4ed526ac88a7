"""Text from runs (log lines, run names, reasons, commands) made safe to show.

Such text is data: it is never parsed as markup (callers build `rich.text.Text` from it, never
markup strings), and control characters are made visible here, because Rich passes ESC and
NUL through to the terminal as they are (it strips only BEL, BS, VT, FF and CR). C1 controls
(U+0080-U+009F) count too: U+009B is a one-character CSI on some terminals.

A run's own log is written by the run, not through ftmon, so a token it printed is in the file;
what ftmon shows of it passes through `redact_text` here (credentials by shape), the same
function that guards what ftmon stores.
"""

from __future__ import annotations

import re

from rich.text import Text

from supervisor.redaction import redact_text

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # C0, DEL, C1; not tab or newline


def clean(text: str) -> str:
    """`text` with credentials (by shape) hidden and each control character (other than tab
    and newline) shown as `�`."""
    return _CONTROL.sub("\ufffd", redact_text(text))


def plain(text: str, style: str = "") -> Text:
    """A Text of `text` as it is, cleaned; never markup."""
    return Text(clean(text), style=style)
