"""What ftmon never stores or shows: secret environment variables and secret args by name,
values that look like credentials by their shape (URL user info, `hf_...`, `sk-...`, `ghp_...`,
`AKIA...`, JWTs), and how their values are written instead (`<redacted>` in a recipe snapshot,
`<redacted:NAME>` in an argv, read back from the environment variable NAME when the command
runs again).

recipe.py re-exports all of it; plan.py turns `<redacted:NAME>` into "${NAME:?...}" for bash.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, TypeVar

REDACTED = "<redacted>"

# One rule for env variables and args alike: a name is a secret's when it ends in a credential's
# word after `_`, `-` or `.` (HF_TOKEN, hub_token, WANDB_API_KEY, AWS_SECRET, DB_PASS,
# GITHUB_PAT, GOOGLE_CREDENTIALS), ends in "apikey" or "secret", or holds a password's spelling
# anywhere (DB_PASSWORD, MYPASSWORDFILE, SMTP_PASSWD, SSH_PASSPHRASE). A word must end the name:
# PATH, PYTHONPATH, HF_HOME, KEYBOARD, TOKENIZERS_PARALLELISM and `secret_env` (which names
# where a secret is, and is worth seeing) are not secrets.
_SECRET = re.compile(
    r"(^|[_.-])(token|key|pass|pat|credentials?)$|apikey$|secret$|passw(or)?d|passphrase",
    re.IGNORECASE,
)


# Credentials recognised by their shape, whatever they are called: a password in a URL's user
# info (`postgres://u:PASS@host`), Hugging Face (`hf_`), OpenAI/Anthropic (`sk-`, `sk-proj-`,
# `sk-ant-`), GitHub (`ghp_`, `gho_`, `ghu_`, `ghs_`, `ghr_`, `github_pat_`), AWS access key ids
# (`AKIA`/`ASIA` + 16) and JWTs (`eyJ...` header and payload, then a signature). Each needs a
# length no word or path has, so "task-runner", "sk-learn" and "hf_home" stay as they are.
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s:/@'\"]+:)[^\s/@'\"]+(?=@)")
_TOKEN_SHAPES = re.compile(
    r"\bhf_[A-Za-z0-9]{20,}"
    r"|\bsk-(?:[A-Za-z0-9]+-){0,2}(?=[A-Za-z0-9_-]*[0-9])[A-Za-z0-9_-]{20,}"
    r"|\b(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"
)


def redact_text(text: str) -> str:
    """`text` with every credential found by its shape replaced by `<redacted>` (a URL keeps
    its scheme, user and host: `postgres://u:<redacted>@host/db`)."""
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)
    return _TOKEN_SHAPES.sub(REDACTED, text)


_A = TypeVar("_A")


def redact_anomaly(anomaly: _A) -> _A:
    """An anomaly (events.Anomaly) with its message and evidence lines passed through
    `redact_text`: what a child printed (a token in an exception) is never stored or shown."""
    return dataclasses.replace(  # type: ignore[type-var]
        anomaly,
        message=redact_text(anomaly.message),  # type: ignore[attr-defined]
        evidence=tuple(redact_text(e) for e in anomaly.evidence),  # type: ignore[attr-defined]
    )


def has_secret_shape(value: Any) -> bool:
    """A text (or a list holding one) with a credential in it by shape (see `redact_text`)."""
    if isinstance(value, list | tuple):
        return any(has_secret_shape(v) for v in value)
    return isinstance(value, str) and redact_text(value) != value


def is_secret_env(name: str, value: Any = "") -> bool:
    """An environment variable ftmon never stores or shows: a secret's name, or a value that
    holds a credential by shape (`DATABASE_URL=postgres://u:PASS@host/db`), or one already
    redacted (a snapshot replayed: its value comes from the environment)."""
    return is_secret(name) or value == REDACTED or has_secret_shape(value)


def is_secret(name: str) -> bool:
    """An environment variable whose value ftmon never stores (see `_SECRET`), in any case:
    `*_TOKEN`, `*_KEY`, `*SECRET`, `*PASSWORD*`, `*PASSWD*`, `*_PASS`, `*_CREDENTIALS`, `*_PAT`."""
    return bool(_SECRET.search(name))


# An arg is a secret by the same rule as an env variable (`hub_token`, `api_key`, `wandb_key`,
# `client_secret`, `db_password`). Tokenizer special tokens (`pad_token: "<|pad|>"`) are text
# the model reads, not credentials.
_SPECIAL_TOKEN = re.compile(r"^(pad|eos|bos|unk|sep|cls|mask)_token$", re.IGNORECASE)


def is_secret_arg(key: str, value: Any = "") -> bool:
    """A recipe arg whose value ftmon never stores or shows: a secret's name (see `_SECRET`) or
    a value with a credential's shape. A bool or null (`use_auth_token: true`) says whether to
    use a credential, not what it is: never secret."""
    if value is None or isinstance(value, bool):
        return False
    if value == REDACTED or has_secret_shape(value):  # by shape, whatever the name
        return True
    return bool(_SECRET.search(key)) and not _SPECIAL_TOKEN.match(key)


def secret_arg_env(key: str) -> str:
    """The environment variable a redacted secret arg is read from: `hub_token` -> HUB_TOKEN."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", key).upper()
    return name if re.match(r"^[A-Z_]", name) else f"_{name}"


# How a secret appears in a stored or shown argv or command: which variable it is read from
# when the command is run again (plan.shell_command and command.sh make it "${NAME:?...}").
SECRET_REF = re.compile(r"<redacted:([A-Za-z_][A-Za-z0-9_]*)>")
# A secret flag written into `command` itself rather than args: `--hub_token X`, `--api-key=X`.
_FLAG = re.compile(r"^(-{1,2}[A-Za-z0-9_.-]+)(=.*)?$")


def secret_ref(name: str) -> str:
    """`<redacted:NAME>`: a secret in an argv, to be read from the environment variable NAME."""
    return f"<redacted:{name}>"


def redact_command(command: list[str]) -> list[str]:
    """`command` with the values of secret flags written into it as `<redacted:NAME>`."""
    out = list(command)
    for i, arg in enumerate(out):
        if SECRET_REF.search(arg):
            continue
        m = _FLAG.match(arg)
        key = m.group(1).lstrip("-") if m else ""
        if has_secret_shape(arg) and not (m and m.group(2)):
            # A credential by its shape: a flag's value (`--db URL`) or a bare word.
            prev = _FLAG.match(out[i - 1]) if i else None
            name = prev.group(1).lstrip("-") if prev and not prev.group(2) else f"command_{i}"
            out[i] = secret_ref(secret_arg_env(name))
            continue
        if not m or not (is_secret_arg(key) or has_secret_shape(m.group(2) or "")):
            continue
        if m.group(2):
            out[i] = f"{m.group(1)}={secret_ref(secret_arg_env(key))}"
        elif i + 1 < len(out) and not out[i + 1].startswith("-"):
            out[i + 1] = secret_ref(secret_arg_env(key))
    return out
