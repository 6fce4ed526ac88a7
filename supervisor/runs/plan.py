"""A recipe -> what to launch: run id, run folder, argv, environment, working directory.

Also the files a run folder starts with (`recipe.yaml`, `command.sh`), secret redaction, the
pasteable one-line command that `ftmon history` prints, and the base-weights fingerprint the
supervisor checks before a relaunch (a relaunch must start from the same weights as the first
launch, never from something that changed under it).

Everything ftmon writes here is private to the user: run folders 0700, files 0600 (`private`).
Nothing here starts a process: supervisor/process.py does that with a `LaunchPlan`; before it
does, `check_launchable` says whether the program and the folder it starts in exist.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from supervisor.recipe.model import (
    REDACTED,
    SECRET_REF,
    Problem,
    Recipe,
    RecipeError,
    is_secret_arg,
    redact_command,
    secret_arg_env,
    secret_ref,
)
from supervisor.redaction import is_secret_env

PRIVATE_DIR = 0o700  # run folders and the logs folder: nobody else reads a run's files
PRIVATE_FILE = 0o600  # recipe.yaml, command.sh (run as `bash command.sh`), output.log
_HASH_CHUNK = 1 << 22  # the full-content hash reads 4 MiB at a time

# Ids handed out by this process, so that two runs started in the same second still differ
# before either has made its folder.
_issued: set[str] = set()


def secret_refs(argv: list[str] | tuple[str, ...]) -> list[str]:
    """The environment variables a redacted argv reads its secrets from, in order, once each."""
    return list(dict.fromkeys(n for a in argv for n in SECRET_REF.findall(a)))


def shell_word(arg: str) -> str:
    """One argv element quoted for bash; a `<redacted:NAME>` inside it becomes "${NAME:?}",
    so the pasted command takes the secret from the environment and stops if it is unset."""
    parts = SECRET_REF.split(arg)
    if len(parts) == 1:
        return shlex.quote(arg)
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f'"${{{part}:?set {part} in the environment}}"')
        elif part:
            out.append(shlex.quote(part))
    return "".join(out)


def shell_join(argv: list[str] | tuple[str, ...]) -> str:
    """`shlex.join` that turns redacted secrets into environment references (`shell_word`)."""
    return " ".join(shell_word(a) for a in argv)


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` with secret values replaced by `<redacted>`: by the variable's name
    (HF_TOKEN) and by the value's shape (`DATABASE_URL=postgres://u:PASS@host/db`)."""
    return {k: (REDACTED if is_secret_env(k, v) else v) for k, v in env.items()}


def new_run_id(
    name: str, attempt: int = 1, now: datetime | None = None, logs_dir: Path | None = None
) -> str:
    """`20261122-2054-sft-tiny`, `...-a2` for attempt 2; sortable by start time.

    When the minute's id is taken (issued by this process or a folder in `logs_dir`), the
    seconds are added (`20261122-205407-...`, which still sorts after the plain minute), then a
    counter.
    """
    now = now or datetime.now()
    suffix = f"-a{attempt}" if attempt > 1 else ""
    candidates = [
        f"{now:%Y%m%d-%H%M}-{name}{suffix}",
        f"{now:%Y%m%d-%H%M%S}-{name}{suffix}",
    ]
    n = 2
    while True:
        for run_id in candidates:
            if run_id not in _issued and not (logs_dir and (logs_dir / run_id).exists()):
                _issued.add(run_id)
                return run_id
        candidates = [f"{now:%Y%m%d-%H%M%S}-{name}{suffix}-{n}"]
        n += 1


@dataclass(frozen=True)
class LaunchPlan:
    """Everything process.spawn needs, and what history stores about the launch."""

    run_id: str
    run_dir: Path
    log_path: Path
    argv: list[str]
    env: dict[str, str]  # the child's whole environment
    recipe_env: dict[str, str]  # only what the recipe adds (rendered; secrets as given)
    cwd: Path
    recipe: Recipe
    attempt: int = 1
    values: dict[str, str] | None = None  # what each placeholder rendered to
    # argv with each secret arg's value as `<redacted:NAME>`: what history stores and ftmon
    # shows; `argv` itself, with the values, goes only to the child. None: same as argv.
    argv_redacted: list[str] | None = None

    @property
    def argv_shown(self) -> list[str]:
        """The argv to store and show: secret values replaced by `<redacted:NAME>`."""
        return self.argv if self.argv_redacted is None else self.argv_redacted

    @property
    def env_shown(self) -> dict[str, str]:
        """What ftmon adds to the inherited environment (to show and store; redact first)."""
        return {**self.recipe_env, "PYTHONUNBUFFERED": "1"}


def recipe_yaml_redacted(recipe: Recipe) -> str:
    """The recipe snapshot for history and `recipe.yaml`: secret env values `<redacted>`."""
    return recipe.to_yaml(redact_secrets=True)


def plan_run(
    recipe: Recipe,
    run_id: str,
    attempt: int,
    logs_dir: Path,
    base_env: Mapping[str, str] | None = None,
) -> LaunchPlan:
    """Render the recipe for one run. `base_env` defaults to this process's environment.

    An env value of `<redacted>` (a snapshot replayed) is taken from `base_env`, and so is a
    secret arg's (`hub_token` from HUB_TOKEN); if it is not there, a RecipeError says which
    variable to set.
    """
    base = dict(os.environ if base_env is None else base_env)
    run_dir = (Path(logs_dir) / run_id).absolute()
    values = {
        "run_dir": str(run_dir),
        "run_id": run_id,
        "base_weights": recipe.base_weights or "",
        "attempt": str(attempt),
        "name": recipe.name,
    }
    recipe_env: dict[str, str] = {}
    missing: list[Problem] = []
    for key, value in recipe.env.items():
        if value == REDACTED:
            if key not in base:
                msg = f"the recipe's value was redacted; set {key} in the environment"
                missing.append(Problem("recipe", 0, f"env.{key}", msg))
                continue
            recipe_env[key] = base[key]
        else:
            recipe_env[key] = value.format_map(values)
    # A secret read back from the environment is put in only after the argv is rendered:
    # a token holding `{` or `}` is passed as it is, never filled in as a template.
    secrets: dict[str, str] = {}
    for i, word in enumerate(recipe.command):  # a secret flag in `command`, redacted in a snapshot
        for name in SECRET_REF.findall(word):
            if name not in base:
                msg = f"the recipe's value was redacted; set {name} in the environment"
                missing.append(Problem("recipe", 0, f"command.{i}", msg))
            else:
                secrets[name] = base[name]
    args = dict(recipe.args)
    shown = dict(recipe.args)
    for key, value in recipe.args.items():
        if not is_secret_arg(key, value):
            continue
        name = secret_arg_env(key)
        shown[key] = secret_ref(name)
        if value == REDACTED:
            if name not in base:
                msg = f"the recipe's value was redacted; set {name} in the environment"
                missing.append(Problem("recipe", 0, f"args.{key}", msg))
                continue
            args[key] = secret_ref(name)
            secrets[name] = base[name]
    if missing:
        raise RecipeError(missing)
    cwd = run_cwd(recipe, values)
    env = {**base, **recipe_env, "PYTHONUNBUFFERED": "1"}
    argv = [
        _fill_secrets(word, secrets)
        for word in recipe.model_copy(update={"args": args}).render_argv(values)
    ]
    argv_redacted = recipe.model_copy(update={"args": shown}).render_argv(values)
    n = len(recipe.command)
    argv_redacted[:n] = redact_command(argv_redacted[:n])
    return LaunchPlan(
        run_id=run_id,
        run_dir=run_dir,
        log_path=run_dir / "output.log",
        argv=argv,
        env=env,
        recipe_env=recipe_env,
        cwd=cwd,
        recipe=recipe,
        attempt=attempt,
        values=values,
        argv_redacted=argv_redacted,
    )


def _fill_secrets(word: str, secrets: Mapping[str, str]) -> str:
    """`word` with each `<redacted:NAME>` of `secrets` replaced by its value, verbatim."""
    return SECRET_REF.sub(lambda m: secrets.get(m.group(1), m.group(0)), word)


def run_cwd(recipe: Recipe, values: Mapping[str, str]) -> Path:
    """The folder the child starts in: the recipe's `cwd` (rendered), else ftmon's own."""
    return Path(recipe.cwd.format_map(values)).expanduser().absolute() if recipe.cwd else Path.cwd()


def check_launchable(plan: LaunchPlan) -> None:
    """Raise RecipeError when the program or the folder it starts in does not exist, before
    anything is written or recorded (a missing program is the user's input, not a run).

    A program with a `/` is looked up from the run's cwd, a bare name on the child's PATH.
    The cwd may be the run folder itself, which ftmon creates.
    """
    problems: list[Problem] = []
    # A NUL byte cannot be passed to a process (exec raised "embedded null byte" after the run
    # was set up): an argument, an environment value or the cwd holding one is refused here.
    for i, arg in enumerate(plan.argv):
        if "\0" in arg:
            problems.append(Problem("recipe", 0, f"argv.{i}", f"{arg!r} holds a NUL byte"))
    for name, value in plan.env.items():
        if "\0" in value:
            problems.append(Problem("recipe", 0, f"env.{name}", "the value holds a NUL byte"))
    if "\0" in str(plan.cwd):
        problems.append(Problem("recipe", 0, "cwd", f"{str(plan.cwd)!r} holds a NUL byte"))
    if problems:
        raise RecipeError(problems)
    cwd = plan.cwd
    if cwd != plan.run_dir and not cwd.is_dir():
        what = "is not a folder" if cwd.exists() else "does not exist"
        problems.append(Problem("recipe", 0, "cwd", f"{cwd} {what}: create it or fix cwd"))
    program = plan.argv[0]
    if "/" in program:
        path = Path(program).expanduser()
        path = path if path.is_absolute() or not cwd.is_dir() else cwd / path
        if not (path.is_file() and os.access(path, os.X_OK)):
            what = "is not executable" if path.is_file() else "does not exist"
            problems.append(Problem("recipe", 0, "command.0", f"{program} {what}"))
    elif shutil.which(program, path=plan.env.get("PATH", os.defpath)) is None:
        msg = f"{program!r} is not a program on PATH: install it or give its full path"
        problems.append(Problem("recipe", 0, "command.0", msg))
    if problems:
        raise RecipeError(problems)


def private_dir(path: Path) -> None:
    """Create `path` (and its parents) with the last folder private (0700) when ftmon makes it;
    a folder that exists is left as the user made it."""
    if not path.is_dir():
        path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
        path.chmod(PRIVATE_DIR)  # mkdir's mode passes through the umask


def write_private(path: Path, text: str) -> None:
    """Write a new file readable by the user only (created 0600, never briefly wider)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def write_run_files(plan: LaunchPlan) -> None:
    """Create the run folder (0700) with `recipe.yaml`, `command.sh` (no secrets in either)
    and an empty `output.log`, all 0600: the child appends to the log, which keeps its mode.

    Raises FileExistsError if the folder already holds anything: ftmon never writes into
    another run's folder (a relaunch is a new run with a new folder).
    """
    private_dir(plan.run_dir.parent)
    private_dir(plan.run_dir)
    if any(plan.run_dir.iterdir()):
        raise FileExistsError(f"{plan.run_dir} already holds a run; not writing into it")
    lines = [
        f"ftmon run {plan.run_id}, attempt {plan.attempt}: the recipe as launched.",
        "Placeholders are kept as written; this run rendered them as:",
        *(f"  {{{k}}} = {v}" for k, v in (plan.values or {}).items()),
        f"argv: {shell_join(plan.argv_shown)}",
    ]
    # A value may hold newlines (a `python -c` script): every line of it must stay a comment.
    header = "".join(f"# {line}\n" for text in lines for line in text.splitlines())
    write_private(plan.run_dir / "recipe.yaml", header + plan.recipe.to_yaml())
    write_private(plan.run_dir / "command.sh", command_script(plan))
    os.chmod(plan.run_dir / "command.sh", 0o700)  # runnable by its owner as ./command.sh
    if plan.log_path.parent == plan.run_dir:
        write_private(plan.log_path, "")


def command_script(plan: LaunchPlan) -> str:
    """A bash script that runs the command as ftmon did; secrets come from the environment."""
    lines = [
        "#!/usr/bin/env bash",
        f"# ftmon run {plan.run_id}, attempt {plan.attempt}. Runs the exact command ftmon ran.",
        "# To write the log as ftmon did, append:  >> output.log 2>&1",
        "set -euo pipefail",
        f"cd {shlex.quote(str(plan.cwd))}",
        "export PYTHONUNBUFFERED=1",
    ]
    for key, value in plan.recipe_env.items():
        if is_secret_env(key, value):
            lines.append(f': "${{{key}:?set {key} in the environment (ftmon stores no secrets)}}"')
            lines.append(f"export {key}")
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    # A secret arg is not written here either: the script reads it from a variable named
    # after the arg (`hub_token` -> HUB_TOKEN), checked up front so that a missing one stops
    # the script with its name before anything starts, and the script stays runnable as is.
    for name in secret_refs(plan.argv_shown):
        lines.append(f': "${{{name}:?set {name} in the environment (ftmon stores no secrets)}}"')
    lines.append(f"exec {shell_join(plan.argv_shown)}")
    return "\n".join(lines) + "\n"


def shell_command(argv: list[str], env: Mapping[str, str], cwd: str | Path) -> str:
    """A one-liner to paste into a shell: `cd DIR && K=V ... argv`; secrets read as `"$K"`
    (a secret arg stored as `<redacted:NAME>` as `"${NAME:?...}"`, see `shell_word`)."""
    assigns = []
    for key, value in env.items():
        if is_secret_env(key, value):
            assigns.append(f'{key}="${key}"')
        else:
            assigns.append(f"{key}={shlex.quote(value)}")
    return " ".join([f"cd {shlex.quote(str(cwd))} &&", *assigns, shell_join(argv)])


# ---------------------------------------------------------------- base weights


# The full-content hash of a file, by what `stat` says of it: a file whose device, inode, size,
# mtime and ctime are all unchanged has not been written (ctime cannot be set back by a user), so
# its hash is computed once per process, not at every relaunch of a lineage.
_hashes: dict[tuple[int, int, int, int, int], str] = {}


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int, int]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def file_sha256(path: Path, st: os.stat_result | None = None) -> str:
    """sha256 of the whole file, cached by its stat (see `_hashes`). Opened read-only."""
    st = st or path.stat()
    key = _stat_key(st)
    if key not in _hashes:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def _file_print(path: Path) -> dict[str, object]:
    st = path.stat()
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "ctime_ns": st.st_ctime_ns,
        "inode": st.st_ino,
        "sha256": file_sha256(path, st),
    }


def _file_change(where: object, old: Mapping[str, object], path: Path) -> str | None:
    """Why the file at `path` differs from its fingerprint `old`, or None. Its content is
    hashed again only when its stat changed (a cached hash otherwise)."""
    st = path.stat()
    if old["size"] != st.st_size:
        return f"{where} changed size ({old['size']} -> {st.st_size} bytes)"
    stats = {"mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns, "inode": st.st_ino}
    changed = [k for k, v in stats.items() if k in old and old[k] != v]
    if "sha256" in old and changed and old["sha256"] != file_sha256(path, st):
        return f"{where} changed content"
    if "mtime_ns" in changed:
        return f"{where} was modified (mtime changed)"
    if "inode" in changed:
        return f"{where} was replaced by another file (inode changed)"
    if "ctime_ns" in changed:
        return f"{where} was written or its metadata changed (ctime changed)"
    return None


def _weights_path(what: Recipe | str | Path | None) -> str | Path | None:
    return what.base_weights if isinstance(what, Recipe) else what


def _resolved(path: str | Path, cwd: str | Path | None) -> Path:
    """`path` as the child sees it: a relative path is relative to the run's cwd."""
    p = Path(path).expanduser()
    return p if cwd is None or p.is_absolute() else Path(cwd) / p


def base_weights_fingerprint(
    what: Recipe | str | Path | None, cwd: str | Path | None = None
) -> dict[str, object]:
    """Size, mtime, ctime, inode and full sha256 of each file (a folder: every file in it).

    A path that does not exist (a hub name such as `Qwen/Qwen3-4B`, or `tiny`) gives
    `{"exists": False}`, which stays unchanged as long as it still does not exist. Takes a
    path or a recipe (its `base_weights`). A relative path is read in `cwd`, the folder the
    run starts in (the child opens it there, not in ftmon's folder); the fingerprint keeps
    that folder so that a later check reads the same files.
    """
    path = _weights_path(what)
    if path is None:
        return {"path": None, "exists": False}
    p = _resolved(path, cwd)
    where: dict[str, object] = {"path": str(path)}
    if cwd is not None and not Path(path).expanduser().is_absolute():
        where["cwd"] = str(cwd)
    listing = _listing(path, cwd)
    names: dict[str, None] = listing.get("files") or {}  # type: ignore[assignment]
    files = {name: _file_print(p if name == "." else p / name) for name in names}
    return {**where, **listing, **({"files": files} if listing["exists"] else {})}


def _listing(path: str | Path | None, cwd: str | Path | None) -> dict[str, object]:
    """Whether the weights exist and the names of their files (`.` for a single file)."""
    if path is None:
        return {"exists": False}
    p = _resolved(path, cwd)
    if not p.exists():
        return {"exists": False}
    if p.is_file():
        return {"exists": True, "files": {".": None}}
    names = sorted(f.relative_to(p).as_posix() for f in p.rglob("*") if f.is_file())
    return {"exists": True, "files": dict.fromkeys(names)}


def check_base_weights(
    what: Recipe | str | Path | None,
    fingerprint: Mapping[str, object],
    cwd: str | Path | None = None,
) -> str | None:
    """None if the base weights (a path, or a recipe's) are as fingerprinted, else the reason.

    A relative path is read in `cwd` (default: the folder recorded in the fingerprint)."""
    path = _weights_path(what)
    before = fingerprint.get("path")
    if before != (None if path is None else str(path)):
        return f"base_weights is {path} now, it was {before} at the first launch"
    then = fingerprint.get("cwd")
    cwd = cwd if cwd is not None else (str(then) if then is not None else None)
    if then is not None and str(cwd) != str(then):
        return f"{path} is read in {cwd} now, it was read in {then} at the first launch"
    now = _listing(path, cwd)
    p = _resolved(path, cwd) if path is not None else Path()
    if now.get("exists") != fingerprint.get("exists"):
        if now.get("exists"):
            return f"{path} did not exist at the first launch and exists now"
        return f"{path} existed at the first launch and is gone"
    old_files: Mapping[str, Mapping[str, object]] = fingerprint.get("files") or {}  # type: ignore[assignment]
    new_files: Mapping[str, Mapping[str, object]] = now.get("files") or {}  # type: ignore[assignment]
    for name in sorted(set(old_files) | set(new_files)):
        where = path if name == "." else f"{path}/{name}"
        if name not in new_files:
            return f"{where} was removed"
        if name not in old_files:
            return f"{where} was added"
        change = _file_change(where, old_files[name], p if name == "." else p / name)
        if change:
            return change
    return None
