"""Recipes: what to run and how to watch it, as a validated pydantic model. YAML in, YAML out.

A bad recipe never gives a traceback: `load_recipe` collects every problem (invalid YAML, unknown
keys with the nearest known name, wrong types, unknown placeholders, policies for unknown rules)
into one `RecipeError`, each problem with the file, line and field path.

How args become flags is supervisor/flags.py; how problems are worded, recipe_problems.py; YAML
with line numbers, yaml_lines.py. This module holds the models, the checks across fields, and
`--set` overrides.
"""

from __future__ import annotations

import math
import re
import shlex
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

from supervisor.notify.config import NotifyTarget, redact_targets
from supervisor.recipe.bounds import MAX_BYTES, text_problem
from supervisor.recipe.flags import (
    PLACEHOLDERS,
    FlagStyle,
    check_arg_value,
    check_template,
    placeholders_in,
    render_args,
    render_template,
)
from supervisor.recipe.problems import Problem, RecipeError, did_you_mean, dotted, problems_from
from supervisor.recipe.scaleout import ExecutorSpec, Launcher
from supervisor.recipe.yaml_lines import YamlProblem, dump_yaml, load_scalar, load_with_lines
from supervisor.redaction import (
    REDACTED,
    SECRET_REF,
    is_secret,
    is_secret_arg,
    is_secret_env,
    redact_command,
    secret_arg_env,
    secret_ref,
)
from supervisor.rules import WatchSettings
from supervisor.sweep.spec import SweepSpec

__all__ = [
    "PLACEHOLDERS",
    "REDACTED",
    "SECRET_REF",
    "FlagStyle",
    "Policy",
    "Preflight",
    "Problem",
    "Recipe",
    "RecipeError",
    "apply_overrides",
    "is_secret",
    "is_secret_arg",
    "load_recipe",
    "recipe_from_yaml",
    "redact_command",
    "render_args",
    "resolve_key",
    "rule_names",
    "secret_arg_env",
    "secret_ref",
]

# The args names that mean "micro-batch" and "gradient accumulation", for `keep:
# [effective_batch]` (adjust.py) and its check here. The first one found in args is used.
MICRO_BATCH_KEYS = ("micro_batch", "per_device_train_batch_size", "micro_batch_size", "batch_size")
GRAD_ACCUM_KEYS = ("grad_accum", "gradient_accumulation_steps", "grad_accum_steps", "accum_steps")


def rule_names() -> tuple[str, ...]:
    """The rules a policy (`on:`) may name: one per field of WatchSettings."""
    return tuple(WatchSettings.model_fields)


Template = Annotated[str, AfterValidator(check_template)]
ArgValue = Annotated[Any, AfterValidator(check_arg_value)]

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
        hint = did_you_mean(name, known)
        raise ValueError(f"no rule is named {name!r}{hint} (rules: {', '.join(known)})")
    return name


RuleName = Annotated[str, AfterValidator(_check_rule_name)]

# ---------------------------------------------------------------- the models


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Policy(_Model):
    """What to do when a rule fires: `do`, and for relaunches what to change, how often and
    where from: the base weights (the default), or `from: last_good_checkpoint`, the newest
    checkpoint written before the rule first fired (`checkpoints:` says where they are),
    skipping the next `skip_batches` batches, the way large runs roll back past a loss spike."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, validate_by_name=True, serialize_by_alias=True
    )

    do: Literal["alert", "pause", "kill", "relaunch"]
    adjust: Annotated[
        Annotated[dict[str, AdjustValue], Tag("map")] | Annotated[Literal["auto"], Tag("auto")],
        Discriminator(_adjust_kind),
    ] = {}
    keep: list[Literal["effective_batch"]] = []
    max: int = Field(3, ge=0)
    from_: Literal["base_weights", "last_good_checkpoint"] = Field("base_weights", alias="from")
    skip_batches: int = Field(0, ge=0, le=10**9)


class Checkpoints(_Model):
    """Where a run writes checkpoints that ftmon can date by step, and how the trainer is told
    to resume from one (for `from: last_good_checkpoint`). The HF Trainer's shape is the
    default: `checkpoint-N` folders, resumed with `--resume_from_checkpoint PATH`."""

    dir: Template  # rendered per run: "{run_dir}/out"
    pattern: str = r"checkpoint-(\d+)"  # a file or folder name in `dir`; group 1 is the step
    resume: dict[str, Any] = {"resume_from_checkpoint": "{checkpoint}"}  # args set on resume
    skip_arg: str | None = None  # the arg that gets `skip_batches`, if the trainer has one

    @field_validator("pattern")
    @classmethod
    def _step_group(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"{value!r} is not a valid regex: {exc}") from None
        if compiled.groups < 1:
            raise ValueError(f"{value!r} needs a group that captures the step: checkpoint-(\\d+)")
        return value

    @field_validator("resume")
    @classmethod
    def _names_the_checkpoint(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not any(isinstance(v, str) and "{checkpoint}" in v for v in value.values()):
            raise ValueError("one of its values must be '{checkpoint}' (the checkpoint's path)")
        return value


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
    watch: WatchSettings = WatchSettings()
    patterns: list[str] = []
    on: dict[RuleName, Policy] = {}
    kill_grace_secs: float = Field(10.0, ge=0, le=3600, allow_inf_nan=False)
    kill_save_wait_secs: float = Field(60.0, ge=0, le=3600, allow_inf_nan=False)
    checkpoints: Checkpoints | None = None
    preflight: Preflight = Preflight()
    notify: list[NotifyTarget] = []  # where to tell the person (supervisor/notify/)
    sweep: SweepSpec | None = None  # expanded by supervisor/sweep/expand.py (`ftmon sweep`)
    launcher: Launcher | None = None  # torchrun ranks (recipe/scaleout.py)
    executor: ExecutorSpec | None = None  # where: local (default) or slurm

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

        Secret env values and secret args (`is_secret_arg`) are written as `<redacted>` unless
        `redact_secrets=False`, so a snapshot can go anywhere; `plan_run` takes a redacted
        value from the environment (an arg `hub_token` from HUB_TOKEN, see `secret_arg_env`).
        """
        data = self.model_dump(mode="json", exclude_defaults=True)
        if redact_secrets and "env" in data:
            data["env"] = {
                k: REDACTED if is_secret_env(k, v) else v for k, v in data["env"].items()
            }
        if redact_secrets:
            data["command"] = redact_command(data["command"])
        if redact_secrets and "args" in data:
            data["args"] = {
                k: REDACTED if is_secret_arg(k, v) else v for k, v in data["args"].items()
            }
        if redact_secrets and "notify" in data:
            data["notify"] = redact_targets(data["notify"])
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


def cross_problems(recipe: Recipe) -> list[tuple[tuple[str | int, ...], str]]:
    """Checks across fields: placeholders that need a value, adjust keys, positional names."""
    out: list[tuple[tuple[str | int, ...], str]] = []
    if recipe.base_weights is None and "base_weights" in recipe.placeholders_used():
        out.append((("base_weights",), "{base_weights} is used but base_weights is not set"))
    if recipe.sweep is not None:  # imported here: expand.py imports this module
        from supervisor.sweep.expand import sweep_problems

        out += sweep_problems(recipe)
    out += duration_problems(recipe.watch.model_dump(), ("watch",))
    out += duration_problems(recipe.preflight.model_dump(), ("preflight",))
    for rule, policy in recipe.on.items():
        if policy.from_ == "last_good_checkpoint" and checkpoints_of(recipe) is None:
            why = (
                "needs `checkpoints: {dir: ...}` (where this run writes them) or an output_dir arg"
            )
            out.append((("on", rule, "from"), why))
        settings = checkpoints_of(recipe)
        if policy.skip_batches and (settings is None or not settings.skip_arg):
            why = "needs `checkpoints: {skip_arg: FLAG}`: the trainer's flag that skips batches"
            out.append((("on", rule, "skip_batches"), why))
        elif policy.skip_batches and policy.from_ != "last_good_checkpoint":
            why = "skips batches only after a resume: add `from: last_good_checkpoint`"
            out.append((("on", rule, "skip_batches"), why))
    for i, key in enumerate(recipe.flags.positional):
        if key not in recipe.args:
            out.append((("flags", "positional", i), f"{key!r} is not in args"))
    for rule, policy in recipe.on.items():
        if rule == "exit" and policy.do in ("pause", "kill"):
            why = "the run has already ended when `exit` fires: use alert or relaunch"
            out.append((("on", rule, "do"), f"{policy.do}: {why}"))
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


MAX_SECS = 7 * 24 * 3600  # no wait, poll or grace in a recipe is longer than a week


def duration_problems(
    value: Any, path: tuple[str | int, ...]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Every number in ftmon's own settings is finite, and every `*secs` at most a week: an
    infinite grace never sends SIGKILL, an infinite poll never samples."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in duration_problems(v, (*path, k))]
    if isinstance(value, float) and not math.isfinite(value):
        return [(path, f"{value} is not a finite number")]
    name = str(path[-1]) if path else ""
    if name.endswith("secs") and isinstance(value, int | float) and value > MAX_SECS:
        return [(path, f"{value:g} seconds is over {MAX_SECS} (a week)")]
    return []


OUTPUT_DIR_ARGS = ("output_dir", "out_dir", "save_dir", "checkpoint_dir")


def checkpoints_of(recipe: Recipe) -> Checkpoints | None:
    """The recipe's `checkpoints:`, else the HF shape under its output folder arg (`output_dir`
    holding `checkpoint-N` folders, resumed with `resume_from_checkpoint`), else None."""
    if recipe.checkpoints is not None:
        return recipe.checkpoints
    for key in OUTPUT_DIR_ARGS:
        if isinstance(recipe.args.get(key), str):
            return Checkpoints(dir=recipe.args[key])
    return None


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
        close = did_you_mean(key, [*recipe.args, *_TOP_FIELDS])
        has = ", ".join(recipe.args) or "nothing"
        raise KeyError(f"unknown key {key!r}{close} (args has: {has})")
    if parts[0] not in _TOP_FIELDS:
        close = did_you_mean(parts[0], _TOP_FIELDS)
        raise KeyError(f"unknown key {key!r}: no field {parts[0]!r}{close}")
    return parts


def _kept_type(old: Any, new: Any, raw: str) -> tuple[Any, str]:
    """`new` as the type of the arg value `old` it replaces (`--set lr=abc` must not turn a
    number into text): (value, "") or (None, why). null always passes: it drops the flag."""
    if old is None or new is None:
        return new, ""
    if isinstance(old, bool):
        return (new, "") if isinstance(new, bool) else (None, f"expects true or false, got {raw!r}")
    if isinstance(old, int):
        if isinstance(new, int) and not isinstance(new, bool):
            return new, ""
        return None, f"expects a whole number (int, like {old}), got {raw!r}"
    if isinstance(old, float):
        if isinstance(new, int | float) and not isinstance(new, bool):
            return float(new), ""
        return None, f"expects a number (float, like {old:g}), got {raw!r}"
    if isinstance(old, str):
        return (new if isinstance(new, str) else raw), ""  # `--set model=123` stays text
    if isinstance(old, list):
        return (
            (new, "")
            if isinstance(new, list)
            else (None, f"expects a list, like [a, b], got {raw!r}")
        )
    if isinstance(old, dict):
        return (
            (new, "")
            if isinstance(new, dict)
            else (None, f"expects a mapping, like {{a: 1}}, got {raw!r}")
        )
    return new, ""


def apply_overrides(recipe: Recipe, sets: list[str]) -> Recipe:
    """Apply `--set key=value` overrides, typed by YAML scalar rules, validated by the model.

    An arg keeps the type of the value it replaces (`--set lr=abc` on a float is an error
    naming the type). An arg the recipe does not have is an error with "did you mean"
    unless written `+args.foo=1` or `+foo=1` (Hydra's convention): a typo must not become a
    flag the trainer rejects. Raises RecipeError with one problem per bad override, each named
    `--set KEY=VALUE`.
    """
    data = recipe.model_dump(mode="python")
    problems: list[Problem] = []
    paths: list[tuple[tuple[str, ...], str]] = []  # to name the --set behind a model error
    for item in sets:
        key, eq, raw = item.partition("=")
        key = key.strip()
        add = key.startswith("+")
        key = key.removeprefix("+").strip()
        last = key.rsplit(".", 1)[-1]
        # A problem names its --set, but never with a secret's value in it.
        secret = is_secret_env(last, raw) if key.startswith("env.") else is_secret_arg(last, raw)
        shown = f"{key}={REDACTED if secret else raw}"  # the override as a problem quotes it
        where = f"--set {key}={REDACTED}" if secret and eq else f"--set {item}"
        if not eq or not key:
            problems.append(Problem(where, 0, "", "write it as key=value"))
            continue
        try:
            if add and "." not in key and key not in recipe.args and key not in _TOP_FIELDS:
                path: tuple[str, ...] = ("args", key)
            else:
                path = resolve_key(recipe, key)
        except KeyError as exc:
            problems.append(
                Problem(where, 0, "", f"{exc.args[0]}; to add it to args write +{shown}")
            )
            continue
        if path[0] == "args" and len(path) == 2 and path[1] not in data["args"] and not add:
            close = did_you_mean(path[1], list(data["args"]))
            has = ", ".join(data["args"]) or "nothing"
            why = f"args has no {path[1]!r}{close} (args has: {has}); to add it write +{shown}"
            problems.append(Problem(where, 0, "", why))
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
            # env values are text, always: `--set env.X=1:2` is not YAML to be typed
            value = raw if path[0] == "env" else load_scalar(raw)
            if path[0] == "args" and len(path) == 2:
                value, why = _kept_type(node.get(path[-1]), value, REDACTED if secret else raw)
                if why:
                    problems.append(Problem(where, 0, ".".join(path), why))
                    continue
            node[path[-1]] = value
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
        found = problems_from(exc, "--set", None, data, Recipe)
        raise RecipeError(
            [
                Problem(origin(tuple(p.field_path.split("."))), 0, p.field_path, p.message)
                for p in found
            ]
        ) from None
    cross = [Problem(origin(loc), 0, dotted(loc), msg) for loc, msg in cross_problems(new)]
    if cross:
        raise RecipeError(cross)
    return new


# ---------------------------------------------------------------- loading


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; raise RecipeError with every problem found."""
    file = str(path)
    try:
        with Path(path).open("rb") as f:  # never more than the bound into memory
            data = f.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            why = f"the recipe is over {MAX_BYTES} bytes; a recipe is at most {MAX_BYTES} bytes"
            raise RecipeError([Problem(file, 0, "", f"{why}; is this the recipe you meant?")])
        text = data.decode("utf-8")
    except OSError as exc:
        raise RecipeError([Problem(file, 0, "", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise RecipeError([Problem(file, 0, "", f"not UTF-8 text: {exc.reason}")]) from None
    return recipe_from_yaml(text, file)


def recipe_from_yaml(text: str, source: str = "<recipe>") -> Recipe:
    """Validate recipe YAML `text` (a file's, or a history snapshot); `source` names it."""
    file = source
    bad = text_problem(text)  # size and nesting, before any parser sees the text
    if bad:
        line, why = bad
        raise RecipeError([Problem(file, line, "", f"{why}; is this the recipe you meant?")])
    try:
        loaded = load_with_lines(text)
    except YamlProblem as exc:
        raise RecipeError([Problem(file, exc.line, "", exc.message)]) from None
    if not isinstance(loaded.value, dict):
        got = "nothing" if loaded.value is None else type(loaded.value).__name__
        raise RecipeError([Problem(file, 1, "", f"a recipe is a mapping of key: value, got {got}")])
    problems = [
        Problem(file, line, dotted(p), "this key is given twice; the last one would win")
        for p, line in loaded.duplicates
    ]
    try:
        recipe = Recipe.model_validate(loaded.value, context={"defer_cross_checks": True})
    except ValidationError as exc:
        problems += problems_from(exc, file, loaded, loaded.value, Recipe)
        raise RecipeError(sorted(problems, key=lambda p: p.line)) from None
    problems += [Problem(file, loaded.line_of(p), dotted(p), m) for p, m in cross_problems(recipe)]
    if problems:
        raise RecipeError(problems)
    return recipe
