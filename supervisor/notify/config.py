"""Where notifications go and which events each target wants: the `notify:` list of a recipe
and of the user's config file (`$XDG_CONFIG_HOME/ftmon/config.yaml`, else
`~/.config/ftmon/config.yaml`), the same keys in both.

    notify:
      - webhook_env: SLACK_WEBHOOK_URL   # or `webhook: https://...`; a Slack URL is a secret
        preset: slack                    # json (default) | slack | discord | ntfy
        events: [action, relaunch, chain_stopped, run_failed]
        severity: error                  # anomalies at or above this
      - command: [notify-me, --json]     # argv list; the event as JSON on stdin
      - desktop: true                    # notify-send where present, else the terminal bell

A bad file gives one problem per mistake, with file, line and field, as a bad recipe does.
"""

from __future__ import annotations

import os
import typing
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from supervisor.events import Severity
from supervisor.recipe.problems import Problem, RecipeError, problems_from
from supervisor.recipe.yaml_lines import YamlProblem, load_with_lines
from supervisor.redaction import REDACTED

EventKind = Literal[
    "anomaly", "action", "relaunch", "chain_stopped", "run_finished", "run_failed",
    "sweep_finished",
]  # fmt: skip
EVENT_KINDS: tuple[EventKind, ...] = typing.get_args(EventKind)
Preset = Literal["json", "slack", "discord", "ntfy"]
SeverityName = Literal["info", "warning", "error", "critical"]


class NotifyTarget(BaseModel):
    """One place to send notifications to; exactly one of webhook / webhook_env / command /
    desktop says what it is."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = ""  # how `ftmon notify test`, `show` and failures name it; default: derived
    webhook: str | None = None
    webhook_env: str | None = None  # the environment variable holding the URL
    preset: Preset = "json"
    headers: dict[str, str] = {}
    command: list[str] | None = None
    desktop: bool = False
    events: list[EventKind] = list(EVENT_KINDS)
    severity: SeverityName = "error"
    timeout_secs: float = Field(default=5.0, gt=0)
    retries: int = Field(default=3, ge=0)
    backoff_secs: float = Field(default=1.0, ge=0)  # before retry k: backoff_secs * 2**(k-1)
    dedup_secs: float = Field(default=300.0, ge=0)  # one message per (run, event, rule) in it
    max_per_minute: int = Field(default=10, ge=1)  # beyond it, one summary when the minute is over

    @field_validator("webhook")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if (
            value is not None
            and value != REDACTED
            and not value.startswith(("http://", "https://"))
        ):
            raise ValueError("a webhook is an http:// or https:// URL")
        return value

    @field_validator("command", mode="before")
    @classmethod
    def _not_shell(cls, value: object) -> object:
        if isinstance(value, str):
            raise ValueError(
                f"must be an argv list, not a shell string; write it as {value.split()}"
            )
        return value

    @field_validator("command")
    @classmethod
    def _argv(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("a command is a non-empty argv list")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> NotifyTarget:
        kinds = [k for k in ("webhook", "webhook_env", "command") if getattr(self, k) is not None]
        kinds += ["desktop"] if self.desktop else []
        if len(kinds) != 1:
            got = ", ".join(kinds) or "none"
            raise ValueError(
                f"a target is exactly one of webhook, webhook_env, command, desktop (got {got})"
            )
        if (self.preset != "json" or self.headers) and kinds[0] not in ("webhook", "webhook_env"):
            raise ValueError("preset and headers are for webhooks")
        return self

    @property
    def kind(self) -> str:
        if self.command is not None:
            return "command"
        return "desktop" if self.desktop else "webhook"

    @property
    def label(self) -> str:
        """The target's name, or one made of what it is (never the URL: it may hold a token)."""
        if self.name:
            return self.name
        if self.command is not None:
            return f"command {Path(self.command[0]).name}"
        if self.desktop:
            return "desktop"
        if self.webhook_env:
            return f"{self.preset} webhook ${self.webhook_env}"
        host = (self.webhook or "").split("://", 1)[-1].split("/", 1)[0]
        return f"{self.preset} webhook {host}"

    @property
    def min_severity(self) -> Severity:
        return Severity[self.severity.upper()]

    def url(self) -> str:
        """The webhook URL (from the environment for `webhook_env`); "" when unset there."""
        if self.webhook_env:
            return os.environ.get(self.webhook_env, "").strip()
        return self.webhook or ""


def redact_targets(targets: list[dict[str, object]]) -> list[dict[str, object]]:
    """`notify:` as a recipe snapshot stores it: a webhook's URL (a Slack or Discord URL is
    itself the credential) and header values (`Authorization`) as `<redacted>`. A run
    reattached from the history then cannot reach such a target (the failure says so);
    `webhook_env` keeps working."""
    out = []
    for t in targets:
        t = dict(t)
        if t.get("webhook"):
            t["webhook"] = REDACTED
        headers = t.get("headers")
        if isinstance(headers, dict):
            t["headers"] = dict.fromkeys(headers, REDACTED)
        out.append(t)
    return out


class UserConfig(BaseModel):
    """The user's config file. Only `notify` is read here; other features own their keys."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    notify: list[NotifyTarget] = []


def user_config_path() -> Path:
    """`$XDG_CONFIG_HOME/ftmon/config.yaml`, else `~/.config/ftmon/config.yaml`."""
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    root = Path(base) if base else Path.home() / ".config"
    return root / "ftmon" / "config.yaml"


def load_user_targets(path: Path | None = None) -> list[NotifyTarget]:
    """The `notify:` targets of the user's config file; none when there is no file. Raises
    RecipeError (one problem per mistake, with file, line and field) for a bad one."""
    path = path or user_config_path()
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise RecipeError([Problem(file, 0, "", f"cannot read: {exc}")]) from None
    try:
        loaded = load_with_lines(text)
    except YamlProblem as exc:
        raise RecipeError([Problem(file, exc.line, "", exc.message)]) from None
    if loaded.value is None:
        return []
    if not isinstance(loaded.value, dict):
        raise RecipeError([Problem(file, 1, "", "the config file is a mapping of key: value")])
    try:
        return list(UserConfig.model_validate(loaded.value).notify)
    except ValidationError as exc:
        raise RecipeError(problems_from(exc, file, loaded, loaded.value, UserConfig)) from None
