"""What a run will write, checked before it is launched: a relaunch must start clean.

A relaunch promises a fresh start from the untouched base weights. Trainers break that promise
quietly when an attempt writes where the next one reads: nanoGPT with a fixed `out_dir` and
`init_from=resume` resumes every attempt from the checkpoint the failed one saved (NaN and all);
an `output_dir` that is the base weights folder overwrites them. This module finds, from the
recipe and its rendered command line:

- the paths a run writes: args named like output/checkpoint/save/log folders, and any path
  argument that is not an existing input (a name that means an input, `data`, `model`,
  `tokenizer`, ..., or a glob, is read even where it does not exist on this machine);
- the resume switches (`init_from=resume`, `resume_from_checkpoint`, `--resume`, ...).

With a relaunch policy, `launch_problems` names each argument that is shared by every attempt,
points inside `base_weights`, or would make a relaunch resume from the failed run, and what to
write instead. `ftmon run --force` launches anyway; the run's history says it was forced.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.recipe.flags import render_template
from supervisor.recipe.model import Problem, Recipe, RecipeError
from supervisor.runs.plan import LaunchPlan

# Arg names of folders and files a run writes: output_dir, out_dir, save_dir, checkpoint_dir,
# ckpt_path, logging_dir, log_dir, output_file, tensorboard_dir ... (`-` read as `_`).
_OUTPUT_NAME = re.compile(
    r"^(?:\w*_)?(?:out|output|outputs|save|saves|checkpoint|checkpoints|ckpt|ckpts|log|logs"
    r"|logging|tensorboard|tb)(?:_(?:dir|path|folder|root|file|to|prefix))?$"
)
# Arg names of resume switches, and the values that switch them on. A path given to one of
# them is a checkpoint to start from, checked like an output (it must not be a run's own).
_RESUME_NAME = re.compile(r"^(?:\w*_)?(?:resume|resume_from|resume_from_checkpoint|init_from)$")
# Arg names of inputs: a path under one of these names is read even when it does not exist here
# (a data file on another machine, a glob), so it is never counted as written.
_INPUT_NAME = re.compile(
    r"^(?:\w*_)?(?:data|dataset|datasets|train|val|valid|validation|eval|test|input|inputs|in|src"
    r"|source|model|models|tokenizer|config|prompts?|teacher|student|weights|vocab|[a-z])"
    r"(?:_(?:dir|path|paths|file|files|name|glob|pattern))?$"
)
_ON = {"true", "1", "yes", "resume", "latest", "auto", "last"}

INSTEAD = "{run_dir}/out"


@dataclass(frozen=True)
class Arg:
    """One argument as the user wrote it and as this attempt renders it."""

    where: str  # `args.out_dir` or `command.3`
    key: str  # the flag's name, `-` as `_`
    written: Any  # as in the recipe (a template)
    rendered: str  # this attempt's value ("" for a bare switch)


def _flag_name(word: str) -> str:
    return word.lstrip("-").replace("-", "_").lower()


# A Python script's own module-level default, as nanoGPT's train.py and its config files set
# them (`out_dir = 'out'`, `init_from = 'resume'`) for `--key=value` to override.
_ASSIGN = re.compile(r"""^([A-Za-z_]\w*)\s*=\s*(?:(['"])([^'"]*)\2|(True|False))\s*(?:#.*)?$""")
_MAX_SCRIPT = 256 * 1024


def script_defaults(recipe: Recipe, values: Mapping[str, str], cwd: Path) -> list[Arg]:
    """Output and resume settings a Python script (the first `.py` in `command`) and its
    config files (later `.py` words) assign at module level, where the recipe does not set
    them: nanoGPT writes to the `out_dir` of train.py or of its config unless told otherwise."""
    given = {a.key for a in arguments(recipe, values)}
    found: dict[str, Arg] = {}
    for word in recipe.command[1:]:
        text = render_template(word, dict(values))
        if not text.endswith(".py") or text.startswith("-"):
            continue
        path = _resolved(text, cwd)
        try:
            with path.open("rb") as f:
                source = f.read(_MAX_SCRIPT).decode("utf-8", "replace")
        except OSError:
            continue
        for lineno, line in enumerate(source.splitlines(), 1):
            m = _ASSIGN.match(line)
            if not m or m.group(1).lower() in given:
                continue
            key = m.group(1).lower()
            if _OUTPUT_NAME.match(key) or _RESUME_NAME.match(key):
                value = m.group(3) if m.group(2) else m.group(4).lower()
                found[key] = Arg(f"{Path(text).name}:{lineno}", key, value, value)
    return list(found.values())


def arguments(recipe: Recipe, values: Mapping[str, str]) -> Iterator[Arg]:
    """Every named argument of the run: `args` (rendered), then `--key=value` / `--key value`
    / bare `--key` words written into `command`."""
    for key, value in recipe.args.items():
        items = value if isinstance(value, list) else [value]
        for item in items:
            shown = render_template(item, dict(values)) if isinstance(item, str) else item
            text = str(shown).lower() if isinstance(shown, bool) else str(shown)
            yield Arg(f"args.{key}", key.replace("-", "_").lower(), item, text)
    command = recipe.command
    for i, word in enumerate(command):
        if not word.startswith("-") or word in ("-", "--") or i == 0:
            continue
        name, eq, value = word.partition("=")
        if eq:
            yield Arg(f"command.{i}", _flag_name(name), word, render_template(value, dict(values)))
        elif i + 1 < len(command) and not command[i + 1].startswith("-"):
            nxt = command[i + 1]
            yield Arg(f"command.{i + 1}", _flag_name(name), nxt, render_template(nxt, dict(values)))
        else:
            yield Arg(f"command.{i}", _flag_name(name), word, "true")


def _resolved(text: str, cwd: Path) -> Path:
    p = Path(text).expanduser()
    return p if p.is_absolute() else cwd / p


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a name too long to be a file, a folder we may not read
        return False


def _looks_like_path(text: str) -> bool:
    """A value that names a file or folder: `/x`, `./x`, `~/x`, `a/b.txt`; not a hub name
    (`Qwen/Qwen3-4B`: one slash, no dot in its last part), a URL, a number, or prose (a
    prompt with spaces in it)."""
    if not text or "://" in text or len(text) > 4096 or any(c.isspace() for c in text):
        return False
    if text.startswith(("/", "./", "../", "~")):
        return True
    if "/" not in text:
        return False
    parts = text.split("/")
    return not (len(parts) == 2 and "." not in parts[1])


def output_args(recipe: Recipe, values: Mapping[str, str], cwd: Path) -> list[Arg]:
    """The arguments naming paths the run writes: output-like names, and path values that do
    not exist yet (an existing path under any other name is an input)."""
    base = values.get("base_weights", "")
    out = []
    for arg in [*arguments(recipe, values), *script_defaults(recipe, values, cwd)]:
        if not isinstance(arg.written, str) or _RESUME_NAME.match(arg.key) or not arg.rendered:
            continue
        named = _OUTPUT_NAME.match(arg.key) and arg.rendered.lower() not in _ON | {"false", "no"}
        if base and arg.rendered == base and not named:
            continue  # the base weights themselves, under an input's name: read
        new_path = (
            _looks_like_path(arg.rendered)
            and not _INPUT_NAME.match(arg.key)
            and not any(c in arg.rendered for c in "*?[")
            and not _exists(_resolved(arg.rendered, cwd))
        )
        if named or new_path:
            out.append(arg)
    return out


def output_paths(recipe: Recipe, values: Mapping[str, str], cwd: Path) -> list[Path]:
    """Where the run writes (see `output_args`), as absolute paths."""
    return [_resolved(a.rendered, cwd) for a in output_args(recipe, values, cwd)]


def _other_attempt(values: Mapping[str, str]) -> dict[str, str]:
    """The placeholder values a relaunch of this run would render with."""
    other = dict(values)
    run_id = f"{values.get('run_id', 'run')}-next"
    other["run_id"] = run_id
    other["attempt"] = str(int(values.get("attempt", "1") or 1) + 1)
    run_dir = values.get("run_dir", "")
    other["run_dir"] = str(Path(run_dir).parent / run_id) if run_dir else run_id
    return other


def _inside(a: Path, b: Path) -> bool:
    """`a` is `b` or inside it (by path, after resolving links)."""
    try:
        a.resolve().relative_to(b.resolve())
        return True
    except ValueError:
        return False


def _quote(text: Any) -> str:
    return f'"{text}"'


def launch_problems(plan: LaunchPlan) -> list[Problem]:
    """What makes this run unsafe to relaunch (empty without a relaunch policy). Each problem
    names the argument, why, and what to write instead."""
    recipe = plan.recipe
    if not any(p.do == "relaunch" for p in recipe.on.values()):
        return []
    values = dict(plan.values or {})
    cwd = plan.cwd
    other = _other_attempt(values)
    base = recipe.base_weights
    base_path = _resolved(values.get("base_weights", ""), cwd) if base else None
    if base_path is not None and not base_path.exists():
        base_path = None  # a hub name or `tiny`: nothing on disk to overwrite
    problems: list[Problem] = []
    shared: list[Arg] = []
    for arg in output_args(recipe, values, cwd):
        path = _resolved(arg.rendered, cwd)
        if base_path is not None and (_inside(path, base_path) or _inside(base_path, path)):
            why = (
                f"{_quote(arg.written)} points into base_weights ({base}): the run would write "
                f"over the weights every relaunch starts from; {_instead(arg)}"
            )
            problems.append(Problem("recipe", 0, arg.where, why))
            continue
        if _rendered_again(recipe, arg, other) == arg.rendered:
            shared.append(arg)
            why = (
                f"{_quote(arg.written)} is written by every attempt, so a relaunch finds the "
                f"failed attempt's files there; {_instead(arg)}"
            )
            problems.append(Problem("recipe", 0, arg.where, why))
    for arg in [*arguments(recipe, values), *script_defaults(recipe, values, cwd)]:
        if not _RESUME_NAME.match(arg.key):
            continue
        value = arg.rendered.strip()
        if value.lower() in _ON:
            if shared or not output_args(recipe, values, cwd):
                from_where = (
                    ", ".join(_quote(a.rendered) for a in shared) or "a folder ftmon cannot see"
                )
                why = (
                    f"{arg.key}={value} resumes from {from_where}, so a relaunch would start from "
                    f"the failed attempt's checkpoint; {_drop(arg)} (a relaunch starts from "
                    "base_weights) or use `from: last_good_checkpoint` in the policy"
                )
                problems.append(Problem("recipe", 0, arg.where, why))
        elif _looks_like_path(value):
            path = _resolved(value, cwd)
            if any(_inside(path, _resolved(a.rendered, cwd)) for a in shared):
                why = (
                    f"{_quote(value)} is inside a folder every attempt writes, so a relaunch "
                    "would resume from what the failed attempt saved there; point it at a "
                    "checkpoint outside the run's outputs, or use `from: last_good_checkpoint`"
                )
                problems.append(Problem("recipe", 0, arg.where, why))
    return problems


def _in_recipe(arg: Arg) -> bool:
    return arg.where.startswith(("args.", "command."))


def _instead(arg: Arg) -> str:
    """What to write instead of an output path, where the user can write it."""
    if _in_recipe(arg):
        return f"write {_quote(INSTEAD)} instead"
    return f'set it in the recipe instead: args: {{{arg.key}: "{INSTEAD}"}}'


def _drop(arg: Arg) -> str:
    if _in_recipe(arg):
        return "remove it"
    off = "scratch" if arg.key == "init_from" else "false"
    return f"override it in the recipe (args: {{{arg.key}: {off}}})"


def _rendered_again(recipe: Recipe, arg: Arg, other: Mapping[str, str]) -> str:
    """`arg`'s value as a relaunch would render it (a script's own default never changes)."""
    if not _in_recipe(arg):
        return arg.rendered
    if isinstance(arg.written, str) and arg.where.startswith("command.") and "=" in arg.written:
        return render_template(arg.written.partition("=")[2], dict(other))
    return (
        render_template(arg.written, dict(other)) if isinstance(arg.written, str) else arg.rendered
    )


def check_launch(plan: LaunchPlan, force: bool) -> list[Problem]:
    """Raise RecipeError listing `launch_problems` unless `force`; return them (what a forced
    launch records)."""
    problems = launch_problems(plan)
    if problems and not force:
        raise RecipeError(
            [
                Problem(p.file, p.line, p.field_path, f"{p.message} (--force launches anyway)")
                for p in problems
            ]
        )
    return problems


def forced_note(problems: list[Problem]) -> str:
    """What the history records about a launch forced past `launch_problems`."""
    return "launched with --force although: " + "; ".join(
        f"{p.field_path}: {p.message}" for p in problems
    )


# ---------------------------------------------------------------- a kill during a save

# A last line that announces a save: nanoGPT's "saving checkpoint to out", HF's "Saving model
# checkpoint to ...", "writing checkpoint", "save_pretrained".
_SAVE_LINE = re.compile(
    r"\b(?:sav(?:e|es|ing)|writ(?:e|es|ing)|checkpointing|save_pretrained)\b"
    r".*\b(?:checkpoint|ckpt|model|weights|state|adapter)|\bcheckpointing\b",
    re.IGNORECASE,
)
SAVE_QUIET_SECS = 1.0  # no byte written for this long: the write has finished
# Files a run appends to all the time (its logs, metrics, TensorBoard events): not checkpoints,
# and never quiet while it trains, so they neither start nor prolong the wait before a kill.
_NOT_A_CHECKPOINT = re.compile(r"\.(?:log|txt|jsonl|csv|out|err)$|^events\.out\.tfevents")
_MAX_ENTRIES = 20_000  # files looked at under a run's outputs


def run_outputs(recipe: Recipe, run_id: str, attempt: int, run_dir: Path) -> list[Path]:
    """The paths a live run writes (its output args and its `checkpoints.dir`)."""
    from supervisor.recipe.model import checkpoints_of
    from supervisor.runs.plan import run_cwd

    values = {
        "run_dir": str(run_dir),
        "run_id": run_id,
        "base_weights": recipe.base_weights or "",
        "attempt": str(attempt),
        "name": recipe.name,
    }
    cwd = run_cwd(recipe, values)
    paths = output_paths(recipe, values, cwd)
    settings = checkpoints_of(recipe)
    if settings is not None:
        paths.append(_resolved(render_template(settings.dir, values), cwd))
    return list(dict.fromkeys(paths))


def _state(paths: list[Path], skip: Path) -> dict[Path, tuple[int, int]]:
    """Size and mtime of every file under `paths` (but `skip`, the run's own log)."""
    out: dict[Path, tuple[int, int]] = {}
    for root in paths:
        try:
            files = [root] if root.is_file() else root.rglob("*")
            for f in files:
                if len(out) >= _MAX_ENTRIES:
                    return out
                if f == skip or _NOT_A_CHECKPOINT.search(f.name):
                    continue
                st = f.stat()
                out[f] = (st.st_size, st.st_mtime_ns)
        except OSError:  # a file renamed or removed while we looked
            continue
    return out


def last_line(log_path: Path, tail: int = 4096) -> str:
    """The last non-empty line of the log (read from its last `tail` bytes)."""
    try:
        with log_path.open("rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - tail))
            data = f.read()
    except OSError:
        return ""
    lines = [x for x in data.decode("utf-8", "replace").splitlines() if x.strip()]
    return lines[-1] if lines else ""


def announces_save(line: str) -> bool:
    return bool(_SAVE_LINE.search(line))


async def wait_for_save(
    paths: list[Path],
    log_path: Path,
    bound: float,
    *,
    quiet: float = SAVE_QUIET_SECS,
    poll: float = 0.1,
    now: Any = None,
) -> float:
    """Before a kill: when the run is writing a checkpoint (a file under `paths` changed in
    the last `quiet` seconds, or its last line announces a save), wait until nothing under
    `paths` has changed for `quiet` seconds, at most `bound` seconds. Returns the seconds
    waited (0.0 when no write was under way)."""
    import asyncio
    import time

    if bound <= 0:
        return 0.0
    clock = now or time.time
    start = clock()
    state = _state(paths, log_path)
    recent = any(start - mtime / 1e9 < quiet for _, mtime in state.values())
    if not (recent or announces_save(last_line(log_path))):
        return 0.0
    still_since = clock()
    while clock() - start < bound:
        await asyncio.sleep(poll)
        now_state = _state(paths, log_path)
        if now_state != state:
            state, still_since = now_state, clock()
        elif clock() - still_since >= quiet:
            break
    return clock() - start


async def wait_before_kill(recipe: Recipe, run_id: str, attempt: int, log_path: Path) -> str:
    """Wait for a checkpoint write under way to finish (`wait_for_save`, bounded by the
    recipe's `kill_save_wait_secs`) before a kill; what the kill report says about it."""
    paths = run_outputs(recipe, run_id, attempt, log_path.parent)
    waited = await wait_for_save(paths, log_path, recipe.kill_save_wait_secs)
    if not waited:
        return ""
    return f"waited {waited:.1f} s for a checkpoint write to finish before the signal; "
