"""A recorded run in words, the same for the CLI and the TUI: its command as it can be pasted
into a shell, how it ended, and how two runs differ. Pure functions over history records.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

from supervisor.runs.plan import shell_command
from supervisor.runs.policy import flatten


def command_line(rec: Any) -> str:
    """The run's command as it can be pasted into a shell."""
    return shell_command(list(rec.argv), rec.env, rec.cwd)


def outcome(status: str, reason: str) -> str:
    """`finished`, `killed: killed by ftmon: rule nan`: the status, then the reason unless it
    only says the status again (`finished: finished`, `detached: detached: reattach ...`)."""
    if not reason or reason == status:
        return status
    return reason if reason.startswith(f"{status}:") else f"{status}: {reason}"


def _recipe_data(rec: Any) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(rec.recipe_yaml) or {}
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def _mapping_diff(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    missing = object()
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key, missing), b.get(key, missing)
        if va != vb:
            out.append({
                "key": key,
                "a": None if va is missing else va,
                "b": None if vb is missing else vb,
                "only": "b" if va is missing else ("a" if vb is missing else ""),
            })  # fmt: skip
    return out


def argv_diff(a: list[str], b: list[str]) -> list[str]:
    """Element-level differences of two argvs, as `- x`, `+ y` and `x -> y` lines."""
    out = []
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        context = " ".join(a[max(0, i1 - 1) : i1])  # the flag before a changed value
        where = f"after {context}: " if context else ""
        if op == "replace":
            out.append(f"{where}{' '.join(a[i1:i2])} -> {' '.join(b[j1:j2])}")
        elif op == "delete":
            out.append(f"- {where}{' '.join(a[i1:i2])}")
        elif op == "insert":
            out.append(f"+ {where}{' '.join(b[j1:j2])}")
    return out


@dataclass(frozen=True)
class RunDiff:
    """What differs between two runs: the one computation `ftmon diff` and the TUI's history
    screen both show, so that they cannot disagree."""

    a: str
    b: str
    recipe: list[dict[str, Any]]  # {"key", "a", "b", "only"} per flattened recipe key
    env: list[dict[str, Any]]
    argv: list[str]  # `argv_diff` lines
    cwd: list[str]  # [] or ["A -> B"]

    @property
    def empty(self) -> bool:
        return not (self.recipe or self.env or self.argv or self.cwd)

    def to_json(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "recipe": self.recipe, "argv": self.argv,
                "env": self.env, "cwd": self.cwd}  # fmt: skip

    def lines(self) -> list[str]:
        """The diff as `ftmon diff` prints it: section titles, then indented rows."""
        out = [f"a: {self.a}", f"b: {self.b}"]
        if self.empty:
            return [*out, "no differences in recipe, argv, cwd or environment"]
        for title, rows in (("recipe", self.recipe), ("environment", self.env)):
            if rows:
                out.append(title)
                for row in rows:
                    if row["only"]:
                        shown = row["a"] if row["only"] == "a" else row["b"]
                        out.append(f"    {row['key']}: only in {row['only']}: {shown!r}")
                    else:
                        out.append(f"    {row['key']}: {row['a']!r} -> {row['b']!r}")
        if self.argv:
            out += ["argv", *(f"    {line}" for line in self.argv)]
        if self.cwd:
            out += ["cwd", f"    {self.cwd[0]}"]
        return out


def diff_runs(a: Any, b: Any) -> RunDiff:
    """What differs between run records `a` and `b`: recipe (flattened keys), environment (as
    recorded, secrets redacted), argv element by element, and the working folder."""
    return RunDiff(
        a=a.id,
        b=b.id,
        recipe=_mapping_diff(flatten(_recipe_data(a)), flatten(_recipe_data(b))),
        env=_mapping_diff(a.env, b.env),
        argv=argv_diff(list(a.argv), list(b.argv)),
        cwd=[] if a.cwd == b.cwd else [f"{a.cwd} -> {b.cwd}"],
    )
