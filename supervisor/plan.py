"""A recipe -> what to launch: run id, run folder, argv, environment, working directory.

Also the files a run folder starts with (`recipe.yaml`, `command.sh`), secret redaction, the
pasteable one-line command that `ftmon history` prints, and the base-weights fingerprint the
supervisor checks before a relaunch (a relaunch must start from the same weights as the first
launch, never from something that changed under it).

Nothing here starts a process: supervisor/process.py does that with a `LaunchPlan`.
"""

from __future__ import annotations

import hashlib
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from supervisor.recipe import REDACTED, Problem, Recipe, RecipeError, is_secret

_CHUNK = 1 << 20  # the fingerprint hashes the first and last MiB of each file

# Ids handed out by this process, so that two runs started in the same second still differ
# before either has made its folder.
_issued: set[str] = set()


def redact_env(env: Mapping[str, str]) -> dict[str, str]:
    """A copy of `env` with the values of secret-named variables replaced by `<redacted>`."""
    return {k: (REDACTED if is_secret(k) else v) for k, v in env.items()}


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

    An env value of `<redacted>` (a snapshot replayed) is taken from `base_env`; if it is not
    there, a RecipeError says which variable to set.
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
    if missing:
        raise RecipeError(missing)
    cwd = Path(recipe.cwd.format_map(values)).expanduser().absolute() if recipe.cwd else Path.cwd()
    env = {**base, **recipe_env, "PYTHONUNBUFFERED": "1"}
    return LaunchPlan(
        run_id=run_id,
        run_dir=run_dir,
        log_path=run_dir / "output.log",
        argv=recipe.render_argv(values),
        env=env,
        recipe_env=recipe_env,
        cwd=cwd,
        recipe=recipe,
        attempt=attempt,
        values=values,
    )


def write_run_files(plan: LaunchPlan) -> None:
    """Create the run folder with `recipe.yaml` and `command.sh` (no secrets in either).

    Raises FileExistsError if the folder already holds anything: ftmon never writes into
    another run's folder (a relaunch is a new run with a new folder).
    """
    plan.run_dir.mkdir(parents=True, exist_ok=True)
    if any(plan.run_dir.iterdir()):
        raise FileExistsError(f"{plan.run_dir} already holds a run; not writing into it")
    lines = [
        f"ftmon run {plan.run_id}, attempt {plan.attempt}: the recipe as launched.",
        "Placeholders are kept as written; this run rendered them as:",
        *(f"  {{{k}}} = {v}" for k, v in (plan.values or {}).items()),
        f"argv: {shlex.join(plan.argv)}",
    ]
    # A value may hold newlines (a `python -c` script): every line of it must stay a comment.
    header = "".join(f"# {line}\n" for text in lines for line in text.splitlines())
    (plan.run_dir / "recipe.yaml").write_text(header + plan.recipe.to_yaml())
    script = plan.run_dir / "command.sh"
    script.write_text(command_script(plan))
    script.chmod(0o755)


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
        if is_secret(key):
            lines.append(f': "${{{key}:?set {key} in the environment (ftmon stores no secrets)}}"')
            lines.append(f"export {key}")
        else:
            lines.append(f"export {key}={shlex.quote(value)}")
    lines.append(f"exec {shlex.join(plan.argv)}")
    return "\n".join(lines) + "\n"


def shell_command(argv: list[str], env: Mapping[str, str], cwd: str | Path) -> str:
    """A one-liner to paste into a shell: `cd DIR && K=V ... argv`; secrets read as `"$K"`."""
    assigns = []
    for key, value in env.items():
        if is_secret(key):
            assigns.append(f'{key}="${key}"')
        else:
            assigns.append(f"{key}={shlex.quote(value)}")
    return " ".join([f"cd {shlex.quote(str(cwd))} &&", *assigns, shlex.join(argv)])


# ---------------------------------------------------------------- base weights


def _file_print(path: Path) -> dict[str, object]:
    st = path.stat()
    head = hashlib.sha256()
    tail = hashlib.sha256()
    with path.open("rb") as f:
        head.update(f.read(_CHUNK))
        if st.st_size > _CHUNK:
            f.seek(max(st.st_size - _CHUNK, _CHUNK))
            tail.update(f.read(_CHUNK))
    return {
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
        "head": head.hexdigest(),
        "tail": tail.hexdigest(),
    }


def _weights_path(what: Recipe | str | Path | None) -> str | Path | None:
    return what.base_weights if isinstance(what, Recipe) else what


def base_weights_fingerprint(what: Recipe | str | Path | None) -> dict[str, object]:
    """Size, mtime and sha256 of the first and last MiB of each file (a folder: every file).

    A path that does not exist (a hub name such as `Qwen/Qwen3-4B`, or `tiny`) gives
    `{"exists": False}`, which stays unchanged as long as it still does not exist. Takes a
    path or a recipe (its `base_weights`).
    """
    path = _weights_path(what)
    if path is None:
        return {"path": None, "exists": False}
    p = Path(path).expanduser()
    if not p.exists():
        return {"path": str(path), "exists": False}
    if p.is_file():
        return {"path": str(path), "exists": True, "files": {".": _file_print(p)}}
    files = {}
    for f in sorted(p.rglob("*")):
        if f.is_file():
            files[f.relative_to(p).as_posix()] = _file_print(f)
    return {"path": str(path), "exists": True, "files": files}


def check_base_weights(
    what: Recipe | str | Path | None, fingerprint: Mapping[str, object]
) -> str | None:
    """None if the base weights (a path, or a recipe's) are as fingerprinted, else the reason."""
    path = _weights_path(what)
    before = fingerprint.get("path")
    if before != (None if path is None else str(path)):
        return f"base_weights is {path} now, it was {before} at the first launch"
    now = base_weights_fingerprint(path)
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
        old, new = old_files[name], new_files[name]
        if old["size"] != new["size"]:
            return f"{where} changed size ({old['size']} -> {new['size']} bytes)"
        if old["head"] != new["head"] or old["tail"] != new["tail"]:
            return f"{where} changed content"
        if old["mtime_ns"] != new["mtime_ns"]:
            return f"{where} was modified (mtime changed)"
    return None
