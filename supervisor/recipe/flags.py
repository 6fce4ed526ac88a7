"""How a recipe's `args` become argv, and the placeholders filled in on the way.

Trainers spell flags differently, so the recipe says how (`flags:`): `--lr` or `-lr`,
`--learning_rate` or `--learning-rate`, `--lr 0.1` or `--lr=0.1`, booleans as a bare `--flag`
or as `--flag true`, lists spread, repeated or joined, and which args are positional. A mapping
value is passed as one JSON argument (HF's `--lr_scheduler_kwargs '{"min_lr": 1e-06}'`).

Placeholders `{run_dir}`, `{run_id}`, `{base_weights}`, `{attempt}`, `{name}` are filled in
command, args, env and cwd; an unknown one is a recipe error; `{{` and `}}` are literal braces.
"""

from __future__ import annotations

import json
import string
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

PLACEHOLDERS = ("run_dir", "run_id", "base_weights", "attempt", "name")


class TemplateError(ValueError):
    """A bad placeholder or stray brace in `text`. `str()` quotes the text; `redacted` says
    the same without any of it, for a secret's value (recipe_problems uses it)."""

    def __init__(self, problem: str, text: str, redacted: str) -> None:
        super().__init__(problem)
        self.text = text
        self.redacted = redacted


_BRACES = "write a literal brace as '{{' or '}}'"


def placeholders_in(text: str) -> list[str]:
    """Names of the `{...}` fields in `text`; raises TemplateError on a stray brace."""
    try:
        return [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        # Formatter's own message ("Single '}' encountered ...") holds none of the text.
        raise TemplateError(
            f"{exc} in {text!r} ({_BRACES})", text, f"{exc} in <redacted> ({_BRACES})"
        ) from None


def check_template(text: str) -> str:
    for name in placeholders_in(text):
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise TemplateError(
                f"unknown placeholder {{{name}}} in {text!r} (known: {known}; {_BRACES})",
                text,
                f"unknown placeholder in <redacted> (known: {known}; {_BRACES})",
            )
    return text


def render_template(text: str, values: dict[str, str]) -> str:
    """Fill the placeholders of `text` (already checked at load)."""
    return text.format_map(values)


def check_arg_value(value: Any) -> Any:
    if isinstance(value, str):
        return check_template(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (list, dict)):
                raise ValueError("a list of flag values holds plain values, not lists or mappings")
            check_arg_value(item)
        return value
    if isinstance(value, dict):  # passed as one JSON argument (HF's `--lr_scheduler_kwargs`)
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"a mapping is passed as JSON, and this one cannot be: {exc}"
            ) from None
        return value
    raise ValueError(
        "a flag value is text, a number, true/false, null, a list or a mapping (passed as JSON), "
        f"not {type(value).__name__}"
    )


class FlagStyle(BaseModel):
    """How `args` become argv. Defaults suit argparse: `--micro_batch 8`, bare `--flag`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    prefix: Literal["--", "-"] = "--"
    dashes: bool = False  # turn `micro_batch` into `--micro-batch`
    equals: bool = False  # `--lr=0.1` instead of `--lr 0.1`
    bools: Literal["bare", "value"] = "bare"  # bare: `--flag` / omitted; value: `--flag true`
    true_value: str = "true"  # with bools: value
    false_value: str = "false"
    lists: Literal["spread", "repeat", "join"] = "spread"  # `--x a b` | `--x a --x b` | `--x a,b`
    sep: str = ","  # with lists: join
    positional: list[str] = []  # args rendered as bare values, in this order
    positional_first: bool = False  # put them before the flags (after `command`)


def render_args(args: dict[str, Any], style: FlagStyle, values: dict[str, str]) -> list[str]:
    """Render `args` as flags per `style`: None omitted, bools per style, lists per style."""

    def text(v: Any) -> str:
        if isinstance(v, bool):
            return style.true_value if v else style.false_value
        if isinstance(v, dict):  # as written: placeholders are not filled inside JSON
            return json.dumps(v)
        return render_template(v, values) if isinstance(v, str) else str(v)

    flags: list[str] = []
    for key, value in args.items():
        if key in style.positional or value is None:
            continue
        flag = style.prefix + (key.replace("_", "-") if style.dashes else key)
        if isinstance(value, bool) and style.bools == "bare":
            if value:
                flags.append(flag)
            continue
        if isinstance(value, list):
            items = [text(v) for v in value]
            if style.lists == "repeat":
                for item in items:
                    flags.extend([f"{flag}={item}"] if style.equals else [flag, item])
                continue
            if style.lists == "join":
                items = [style.sep.join(items)]
            if style.equals and len(items) == 1:
                flags.append(f"{flag}={items[0]}")
            else:
                flags.extend([flag, *items])
            continue
        flags.extend([f"{flag}={text(value)}"] if style.equals else [flag, text(value)])
    positional: list[str] = []
    for key in style.positional:
        value = args.get(key)
        if value is None:
            continue
        positional.extend(text(v) for v in value) if isinstance(value, list) else (
            positional.append(text(value))
        )
    return positional + flags if style.positional_first else flags + positional
