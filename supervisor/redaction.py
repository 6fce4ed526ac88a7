"""What ftmon never stores or shows: secret environment variables and secret args by name, and
how their values are written instead (`<redacted>` in a recipe snapshot, `<redacted:NAME>` in an
argv, read back from the environment variable NAME when the command runs again).

recipe.py re-exports all of it; plan.py turns `<redacted:NAME>` into "${NAME:?...}" for bash.
"""

from __future__ import annotations

import re
from typing import Any

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


def is_secret(name: str) -> bool:
    """An environment variable whose value ftmon never stores (see `_SECRET`), in any case:
    `*_TOKEN`, `*_KEY`, `*SECRET`, `*PASSWORD*`, `*PASSWD*`, `*_PASS`, `*_CREDENTIALS`, `*_PAT`."""
    return bool(_SECRET.search(name))


# An arg is a secret by the same rule as an env variable (`hub_token`, `api_key`, `wandb_key`,
# `client_secret`, `db_password`). Tokenizer special tokens (`pad_token: "<|pad|>"`) are text
# the model reads, not credentials.
_SPECIAL_TOKEN = re.compile(r"^(pad|eos|bos|unk|sep|cls|mask)_token$", re.IGNORECASE)


def is_secret_arg(key: str, value: Any = "") -> bool:
    """A recipe arg whose value ftmon never stores or shows (see `_SECRET`). A bool or null
    (`use_auth_token: true`) says whether to use a credential, not what it is: never secret."""
    if value is None or isinstance(value, bool):
        return False
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
        m = _FLAG.match(arg)
        key = m.group(1).lstrip("-") if m else ""
        if not m or not is_secret_arg(key) or SECRET_REF.search(arg):
            continue
        if m.group(2):
            out[i] = f"{m.group(1)}={secret_ref(secret_arg_env(key))}"
        elif i + 1 < len(out) and not out[i + 1].startswith("-"):
            out[i + 1] = secret_ref(secret_arg_env(key))
    return out
