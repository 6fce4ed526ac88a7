"""Recipes: what to run and how to watch it, as a validated pydantic model. YAML in, YAML out.

A bad recipe never gives a traceback: `load_recipe` collects every problem (invalid YAML, unknown
keys with the nearest known name, wrong types, unknown placeholders, policies for unknown rules)
into one `RecipeError`, each problem with the file, line and field path.

Flag rendering lives here too (`Recipe.render_argv`): trainers spell flags differently, so the
recipe says how (`flags:`): `--lr` or `-lr`, `--learning_rate` or `--learning-rate`, booleans as a
bare `--flag` or as `--flag true`, lists repeated, joined or spread, and which args are positional.
"""

from __future__ import annotations

import difflib
import json
import re
import shlex
import string
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from supervisor.yaml_lines import Loaded, YamlProblem, dump_yaml, load_scalar, load_with_lines

try:
    from supervisor.rules import WatchSettings
except ImportError:  # the rules package lands in parallel; until then any mapping is accepted
    WatchSettings = None  # type: ignore[assignment,misc]

PLACEHOLDERS = ("run_dir", "run_id", "base_weights", "attempt", "name")
# Rule names a policy may name, when WatchSettings is not importable (see ARCHITECTURE.md).
_FALLBACK_RULES = (
    "nan", "oom", "repetition", "spike", "grad_norm", "divergence", "skipped_steps", "stall",
    "traceback", "vram", "host_mem", "exit",
)  # fmt: skip
REDACTED = "<redacted>"
# The args names that mean "micro-batch" and "gradient accumulation", for `keep:
# [effective_batch]` (adjust.py) and its check here. The first one found in args is used.
MICRO_BATCH_KEYS = ("micro_batch", "per_device_train_batch_size", "micro_batch_size", "batch_size")
GRAD_ACCUM_KEYS = ("grad_accum", "gradient_accumulation_steps", "grad_accum_steps", "accum_steps")
_SECRET = re.compile(r"(_TOKEN|_KEY|_SECRET)$|PASSWORD", re.IGNORECASE)


def is_secret(name: str) -> bool:
    """An environment variable whose value ftmon never stores: `*_TOKEN`, `*_KEY`, `*_SECRET`,
    `*PASSWORD*`, in any case."""
    return bool(_SECRET.search(name))


def rule_names() -> tuple[str, ...]:
    """The rules a policy (`on:`) may name: one per field of WatchSettings."""
    if WatchSettings is None:
        return _FALLBACK_RULES
    return tuple(WatchSettings.model_fields)


# ---------------------------------------------------------------- problems and errors


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


# ---------------------------------------------------------------- placeholder checks


def placeholders_in(text: str) -> list[str]:
    """Names of the `{...}` fields in `text`; raises ValueError on a stray brace."""
    try:
        return [f for _, f, _, _ in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise ValueError(f"{exc} in {text!r} (write a literal brace as '{{{{' or '}}}}')") from None


def _check_template(text: str) -> str:
    for name in placeholders_in(text):
        if name not in PLACEHOLDERS:
            known = ", ".join("{" + p + "}" for p in PLACEHOLDERS)
            raise ValueError(
                f"unknown placeholder {{{name}}} in {text!r} (known: {known}; "
                "write a literal brace as '{{' or '}}')"
            )
    return text


def render_template(text: str, values: dict[str, str]) -> str:
    """Fill the placeholders of `text` (already checked at load)."""
    return text.format_map(values)


def _check_arg_value(value: Any) -> Any:
    if isinstance(value, str):
        return _check_template(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, list):
        for item in value:
            if isinstance(item, (list, dict)):
                raise ValueError("a list of flag values holds plain values, not lists or mappings")
            _check_arg_value(item)
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


Template = Annotated[str, AfterValidator(_check_template)]
ArgValue = Annotated[Any, AfterValidator(_check_arg_value)]

_OP = re.compile(r"^([*/+-])\s*(\S+)$")


def parse_op(value: Any) -> tuple[str, float] | None:
    """`"*0.5"` -> ("*", 0.5); a plain value -> None. Raises ValueError on a malformed op."""
    if not isinstance(value, str):
        return None
    m = _OP.match(value.strip())
    if not m:
        return None
    try:
        k = float(m.group(2))
    except ValueError:
        raise ValueError(
            f"{value!r} is not an adjustment: use '*k', '/k', '+k' or '-k' with a number k, "
            "or a plain value"
        ) from None
    if m.group(1) in "*/" and k <= 0:
        raise ValueError(f"{value!r}: the factor must be above 0")
    return m.group(1), k


def _check_adjust_value(value: Any) -> Any:
    parse_op(value)
    return value


AdjustValue = Annotated[Any, AfterValidator(_check_adjust_value)]


def _adjust_kind(value: Any) -> str:
    return "auto" if isinstance(value, str) else "map"


def _check_rule_name(name: str) -> str:
    known = rule_names()
    if name not in known:
        hint = _did_you_mean(name, known)
        raise ValueError(f"no rule is named {name!r}{hint} (rules: {', '.join(known)})")
    return name


def _did_you_mean(name: str, known: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(name), list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


RuleName = Annotated[str, AfterValidator(_check_rule_name)]

# ---------------------------------------------------------------- the models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FlagStyle(_Model):
    """How `args` become argv. Defaults suit argparse: `--micro_batch 8`, bare `--flag`."""

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


class Policy(_Model):
    """What to do when a rule fires: `do`, and for relaunches what to change and how often."""

    do: Literal["alert", "pause", "kill", "relaunch"]
    adjust: Annotated[
        Annotated[dict[str, AdjustValue], Tag("map")] | Annotated[Literal["auto"], Tag("auto")],
        Discriminator(_adjust_kind),
    ] = {}
    keep: list[Literal["effective_batch"]] = []
    max: int = Field(3, ge=0)


class Preflight(_Model):
    """Settings for the memory estimate before launch (read by supervisor/estimate.py)."""

    enabled: bool = True
    gpu_gb: float | None = Field(None, gt=0)
    model: str | None = None  # config.json path or "tiny"; default: args.model
    dtype: str | None = None
    optimizer: str | None = None
    attention: str | None = None
    gradient_checkpointing: bool | None = None
    warn_ratio: float = Field(0.9, gt=0)


if WatchSettings is not None:
    _WatchType: Any = WatchSettings
    _watch_default: Any = WatchSettings()
else:  # pragma: no cover - only before supervisor/rules lands
    _WatchType = dict[str, dict[str, Any]]
    _watch_default = {}

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class Recipe(_Model):
    """One training run: command, flags, environment, what to watch and what to do about it."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    base_weights: str | None = None
    command: list[Template] = Field(min_length=1)
    args: dict[str, ArgValue] = {}
    flags: FlagStyle = FlagStyle()
    env: dict[str, Template] = {}
    cwd: Template | None = None
    watch: _WatchType = _watch_default
    patterns: list[str] = []
    on: dict[RuleName, Policy] = {}
    kill_grace_secs: float = Field(10.0, ge=0)
    preflight: Preflight = Preflight()

    @field_validator("command", mode="before")
    @classmethod
    def _argv_not_shell(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                argv = yaml.safe_dump(shlex.split(value), default_flow_style=True).strip()
                hint = f"; write it as {argv}"
            except ValueError:
                hint = ""
            raise ValueError(f"must be an argv list, not a shell string{hint}")
        return value

    @field_validator("name", mode="before")
    @classmethod
    def _name_hint(cls, value: Any) -> Any:
        if isinstance(value, str) and not re.match(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", value):
            raise ValueError(
                f"{value!r}: a name is 1-64 letters, digits, '.', '_' or '-' (it goes in run ids)"
            )
        return value

    @field_validator("env")
    @classmethod
    def _env_names(cls, value: dict[str, str]) -> dict[str, str]:
        for key in value:
            if not _ENV_NAME.match(key):
                raise ValueError(f"{key!r} is not a valid environment variable name")
        return value

    @field_validator("patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for i, pat in enumerate(value):
            try:
                re.compile(pat)
            except re.error as exc:
                raise ValueError(f"pattern {i} ({pat!r}) is not a valid regex: {exc}") from None
        return value

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo) -> Recipe:
        if info.context and info.context.get("defer_cross_checks"):
            return self  # load_recipe reports these itself, with lines
        problems = cross_problems(self)
        if problems:
            raise ValueError("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))
        return self

    # ------------------------------------------------------------ behaviour

    def to_yaml(self, redact_secrets: bool = True) -> str:
        """The recipe as YAML; `load_recipe` of it gives an equal recipe.

        Secret env values are written as `<redacted>` unless `redact_secrets=False`, so a
        snapshot can go anywhere; `plan_run` takes a redacted value from the environment.
        """
        data = self.model_dump(mode="json", exclude_defaults=True)
        if redact_secrets and "env" in data:
            data["env"] = {k: REDACTED if is_secret(k) else v for k, v in data["env"].items()}
        return dump_yaml(data)

    def with_overrides(self, sets: list[str]) -> Recipe:
        """The recipe with `--set key=value` overrides applied (see `apply_overrides`)."""
        return apply_overrides(self, sets)

    def placeholders_used(self) -> set[str]:
        """Every placeholder name used in command, args, env and cwd."""
        texts: list[str] = [*self.command, *self.env.values()]
        if self.cwd:
            texts.append(self.cwd)
        for v in self.args.values():
            texts.extend(x for x in (v if isinstance(v, list) else [v]) if isinstance(x, str))
        return {name for t in texts for name in placeholders_in(t)}

    def render_argv(self, values: dict[str, str]) -> list[str]:
        """`command` + `args` as flags (in order), placeholders filled from `values`."""
        argv = [render_template(c, values) for c in self.command]
        return argv + render_args(self.args, self.flags, values)


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


def cross_problems(recipe: Recipe) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks across fields: placeholders that need a value, adjust keys, positional names."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    if recipe.base_weights is None and "base_weights" in recipe.placeholders_used():
        out.append((("base_weights",), "{base_weights} is used but base_weights is not set"))
    for i, key in enumerate(recipe.flags.positional):
        if key not in recipe.args:
            out.append((("flags", "positional", i), f"{key!r} is not in args"))
    for rule, policy in recipe.on.items():
        if "effective_batch" in policy.keep:
            for what, keys in (
                ("a micro-batch", MICRO_BATCH_KEYS),
                ("a gradient accumulation", GRAD_ACCUM_KEYS),
            ):
                if not any(k in recipe.args for k in keys):
                    out.append((("on", rule, "keep"), f"needs {what} in args ({', '.join(keys)})"))
        if isinstance(policy.adjust, dict):
            for key in policy.adjust:
                try:
                    resolve_key(recipe, key)
                except KeyError as exc:
                    out.append((("on", rule, "adjust", key), str(exc.args[0])))
    return out


# ---------------------------------------------------------------- keys and overrides

_TOP_FIELDS = tuple(Recipe.model_fields)


def resolve_key(recipe: Recipe, key: str) -> tuple[str, ...]:
    """A user's key -> a path into the recipe's data.

    The rule: a bare key is `args.<key>` when `args` has it, else a top-level field (`name`,
    `cwd`, `kill_grace_secs`, ...). A dotted key starts with a top-level field:
    `args.micro_batch`, `env.HF_HOME`, `watch.stall.secs`, `on.nan.max`. Raises KeyError with
    a message naming the key and what exists.
    """
    parts = tuple(key.split("."))
    if len(parts) == 1:
        if key in recipe.args:
            return ("args", key)
        if key in _TOP_FIELDS:
            return (key,)
        close = _did_you_mean(key, [*recipe.args, *_TOP_FIELDS])
        has = ", ".join(recipe.args) or "nothing"
        raise KeyError(f"unknown key {key!r}{close} (args has: {has})")
    if parts[0] not in _TOP_FIELDS:
        close = _did_you_mean(parts[0], _TOP_FIELDS)
        raise KeyError(f"unknown key {key!r}: no field {parts[0]!r}{close}")
    return parts


def apply_overrides(recipe: Recipe, sets: list[str]) -> Recipe:
    """Apply `--set key=value` overrides, typed by YAML scalar rules, validated by the model.

    Raises RecipeError with one problem per bad override, each named `--set KEY=VALUE`.
    """
    data = recipe.model_dump(mode="python")
    problems: list[Problem] = []
    paths: list[tuple[tuple[str, ...], str]] = []  # to name the --set behind a model error
    for item in sets:
        key, eq, raw = item.partition("=")
        key = key.strip()
        where = f"--set {item}"
        if not eq or not key:
            problems.append(Problem(where, 0, "", "write it as key=value"))
            continue
        try:
            path = resolve_key(recipe, key)
        except KeyError as exc:
            problems.append(Problem(where, 0, "", str(exc.args[0])))
            continue
        node: Any = data
        for part in path[:-1]:
            child = node.get(part)
            if child is None:  # e.g. `watch.vram.limit_gb` where vram was not set
                child = node[part] = {}
            if not isinstance(child, dict):
                problems.append(Problem(where, 0, "", f"{key!r} does not name a mapping key"))
                break
            node = child
        else:
            node[path[-1]] = load_scalar(raw)
            paths.append((path, where))
    if problems:
        raise RecipeError(problems)

    def origin(loc: tuple[str | int, ...]) -> str:
        for path, where in reversed(paths):
            n = min(len(path), len(loc))
            if tuple(map(str, path[:n])) == tuple(map(str, loc[:n])):
                return where
        return "--set"

    try:
        new = Recipe.model_validate(data, context={"defer_cross_checks": True})
    except ValidationError as exc:
        found = _problems_from(exc, "--set", None, data)
        raise RecipeError(
            [
                Problem(origin(tuple(p.field_path.split("."))), 0, p.field_path, p.message)
                for p in found
            ]
        ) from None
    cross = [Problem(origin(loc), 0, _dotted(loc), msg) for loc, msg in cross_problems(new)]
    if cross:
        raise RecipeError(cross)
    return new


# ---------------------------------------------------------------- loading


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; raise RecipeError with every problem found."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise RecipeError([Problem(file, 0, "", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise RecipeError([Problem(file, 0, "", f"not UTF-8 text: {exc.reason}")]) from None
    return recipe_from_yaml(text, file)


def recipe_from_yaml(text: str, source: str = "<recipe>") -> Recipe:
    """Validate recipe YAML `text` (a file's, or a history snapshot); `source` names it."""
    file = source
    try:
        loaded = load_with_lines(text)
    except YamlProblem as exc:
        raise RecipeError([Problem(file, exc.line, "", exc.message)]) from None
    if not isinstance(loaded.value, dict):
        got = "nothing" if loaded.value is None else type(loaded.value).__name__
        raise RecipeError([Problem(file, 1, "", f"a recipe is a mapping of key: value, got {got}")])
    problems = [
        Problem(file, line, _dotted(p), "this key is given twice; the last one would win")
        for p, line in loaded.duplicates
    ]
    try:
        recipe = Recipe.model_validate(loaded.value, context={"defer_cross_checks": True})
    except ValidationError as exc:
        problems += _problems_from(exc, file, loaded, loaded.value)
        raise RecipeError(sorted(problems, key=lambda p: p.line)) from None
    problems += [Problem(file, loaded.line_of(p), _dotted(p), m) for p, m in cross_problems(recipe)]
    if problems:
        raise RecipeError(problems)
    return recipe


def _dotted(path: typing.Sequence[str | int]) -> str:
    return ".".join(str(p) for p in path)


def _clean_loc(loc: tuple[str | int, ...], data: Any) -> tuple[str | int, ...]:
    """Drop pydantic's internal loc parts (union tags, `[key]`) that are not in the user's data."""
    out: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if part == "[key]":
            continue
        in_dict = isinstance(node, dict) and part in node
        if in_dict or (isinstance(node, list) and isinstance(part, int) and part < len(node)):
            node = node[part]
        elif not last:
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


def _known_fields_dict_aware(loc: tuple[str | int, ...]) -> list[str]:
    """Like `_known_fields`, but steps over free dict keys (`on.<rule>` -> Policy fields)."""
    model: Any = Recipe
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


def _problems_from(
    exc: ValidationError, file: str, loaded: Loaded | None, data: Any
) -> list[Problem]:
    problems = []
    for err in exc.errors(include_url=False):
        loc = _clean_loc(tuple(err["loc"]), data)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(str(loc[-1]), _known_fields_dict_aware(loc[:-1]))
        elif err["type"] == "missing":
            msg = "this field is required"
        elif (
            "input" in err
            and not isinstance(err["input"], (dict, list))
            and err["type"] not in ("value_error", "assertion_error")
        ):
            msg = f"{msg} (got {err['input']!r})"
        line = loaded.line_of(loc) if loaded is not None else 0
        problems.append(Problem(file, line, _dotted(loc), msg))
    return problems
