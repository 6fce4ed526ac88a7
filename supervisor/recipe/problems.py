"""What is wrong with a recipe, said where the user can find it: file, line, field path.

`problems_from(ValidationError, ...)` turns pydantic's errors into `Problem`s: pydantic's
internal location parts (union tags, `[key]`) are dropped, an unknown key gets the nearest known
name ("did you mean 'base_weights'?"), a wrong value is quoted back, and the line comes from the
YAML node marks that supervisor/yaml_lines.py recorded.
"""

from __future__ import annotations

import difflib
import types
import typing
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from supervisor.recipe.flags import TemplateError
from supervisor.recipe.yaml_lines import Loaded
from supervisor.redaction import REDACTED, is_secret, is_secret_arg, redact_command


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a recipe, where the user can find it."""

    file: str
    line: int
    field_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.field_path}: {self.message}"
            if self.field_path
            else (f"{where}: {self.message}")
        )


class RecipeError(Exception):
    """A recipe is bad. `str()` is one line per problem; `.problems` holds them all."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


def did_you_mean(name: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def dotted(path: typing.Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _clean_loc(loc: tuple[str | int, ...], data: Any, missing: bool) -> tuple[str | int, ...]:
    """Drop pydantic's internal loc parts (union tags, `[key]`) that are not in the user's data.
    The last part is kept when it is absent only for a missing field (it names the field)."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if part == "[key]":
            continue
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
            node = node[part]
        elif not (last and missing):
            continue  # e.g. the "map" tag of a discriminated union
        else:
            node = None
        out.append(part)
    return tuple(out)


def _unwrap(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else tp
    return tp


def _known_fields(root: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """Field names of the model at `loc` under `root`, stepping over free dict keys
    (`on.<rule>` -> Policy's fields)."""
    model: Any = root
    i = 0
    while i < len(loc):
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return []
        field = model.model_fields.get(str(loc[i]))
        if field is None:
            return []
        model = _unwrap(field.annotation)
        if typing.get_origin(model) is dict:
            model = typing.get_args(model)[1]
            i += 1  # skip the free key
        i += 1
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _holds_secret(loc: tuple[str | int, ...], data: Any) -> bool:
    """Whether the value at `loc` is a secret's: a secret env var, a secret arg (or an item of
    one), or the value of a secret flag written into `command`."""
    if len(loc) < 2:
        return False
    if loc[0] == "env":
        return is_secret(str(loc[1]))
    if loc[0] == "args":
        return is_secret_arg(str(loc[1]))
    if loc[0] == "command" and isinstance(loc[1], int) and isinstance(data, dict):
        command = data.get("command")
        if isinstance(command, list) and all(isinstance(w, str) for w in command):
            return redact_command(command)[loc[1]] != command[loc[1]]
    return False


def _without_secret(msg: str, err: Any) -> str:
    """`msg` with none of the secret value in it: a template error's own redacted wording, and
    the value scrubbed from any other message."""
    error = err.get("ctx", {}).get("error")
    if isinstance(error, TemplateError):
        return error.redacted
    value = err.get("input")
    if isinstance(value, str) and value:
        msg = msg.replace(repr(value), REDACTED).replace(value, REDACTED)
    return msg


def problems_from(
    exc: ValidationError, file: str, loaded: Loaded | None, data: Any, root: type[BaseModel]
) -> list[Problem]:
    """One Problem per pydantic error; `data` is what was validated, `root` the model."""
    problems = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]), data, err["type"] == "missing")
        msg = err["msg"].removeprefix("Value error, ")
        secret = _holds_secret(loc, data)
        if secret:
            msg = _without_secret(msg, err)
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + did_you_mean(str(loc[-1]), _known_fields(root, loc[:-1]))
        elif err["type"] == "missing":
            msg = "this field is required"
        elif (
            "input" in err
            and not isinstance(err["input"], (dict, list))
            and err["type"] not in ("value_error", "assertion_error")
        ):
            msg = f"{msg} (got {REDACTED if secret else repr(err['input'])})"
        line = loaded.line_of(loc) if loaded is not None else 0
        problems.append(Problem(file, line, dotted(loc), msg))
    return problems
