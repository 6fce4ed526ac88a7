"""Secrets by shape: URL user info and well-known token shapes are hidden in text, env, args and
commands whatever they are called; words and paths that only look alike are left alone."""

from __future__ import annotations

import pytest

from supervisor.events import Anomaly, Severity
from supervisor.recipe.model import Recipe
from supervisor.redaction import (
    REDACTED,
    has_secret_shape,
    is_secret_arg,
    is_secret_env,
    redact_anomaly,
    redact_command,
    redact_text,
)
from supervisor.runs.plan import plan_run, redact_env

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9"
TOKENS = {
    "hf": "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7",
    "openai": "sk-" + "abc123DEF456ghi789JKL012mno345",
    "openai project": "sk-proj-" + "abc123DEF456ghi789JKL012mno345",
    "anthropic": "sk-ant-api03-" + "abc123DEF456ghi789JKL012mno345",
    "github": "ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789",
    "github fine-grained": "github_pat_" + "11ABCDEFG0123456789_abcdefghijklmnop",
    "aws": "AKIA" + "IOSFODNN7EXAMPLE",
    "jwt": JWT,
}


@pytest.mark.parametrize("kind", list(TOKENS))
def test_each_token_shape_is_redacted_inside_text(kind: str) -> None:
    """A token in the middle of a line (an exception message) is replaced, the rest kept."""
    token = TOKENS[kind]
    line = f"HTTPError: 401 for token {token} at step 4"
    assert redact_text(line) == f"HTTPError: 401 for token {REDACTED} at step 4"
    assert has_secret_shape(line) and not has_secret_shape(redact_text(line))


def test_url_user_info_keeps_scheme_user_and_host() -> None:
    """`scheme://user:pass@host` loses only the password: the URL stays readable."""
    text = "connecting to postgres://u:PASSWORD@db.example:5432/train failed"
    assert (
        redact_text(text) == f"connecting to postgres://u:{REDACTED}@db.example:5432/train failed"
    )
    assert redact_text("https://github.com/org/repo") == "https://github.com/org/repo"


@pytest.mark.parametrize(
    "text",
    [
        "sk-learn-something-long-name-here",  # no digit: a package name, not a key
        "task-runner-abcdefghijklmnop123456",  # `sk-` inside a word
        "hf_home",
        "/models/hf_cache/Qwen3-4B",
        "AKIAshort",
        "eyJ.not.a.jwt",
        "loss: 0.1234 step: 12 lr: 2e-05",
        "Qwen/Qwen3-4B",
    ],
)
def test_lookalikes_are_left_alone(text: str) -> None:
    assert redact_text(text) == text and not has_secret_shape(text)


def test_env_values_are_secret_by_name_or_by_shape() -> None:
    """DATABASE_URL is no secret's name, but a password in its value makes it one; so does a
    token under any name, and a value already redacted."""
    env = {
        "DATABASE_URL": "postgres://u:PASSWORD@host/db",
        "MY_SETTING": TOKENS["hf"],
        "HF_TOKEN": "short",
        "HF_HOME": "/data/hf",
        "REPLAYED": REDACTED,
    }
    shown = redact_env(env)
    assert shown == {**{k: REDACTED for k in env}, "HF_HOME": "/data/hf"}
    assert is_secret_env("PATH", "/usr/bin") is False


def test_recipe_snapshot_and_argv_hide_secrets_by_shape(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A token in env, in an arg and in `command`, under names that say nothing: the snapshot
    writes `<redacted>`, the stored argv `<redacted:NAME>`, the child gets the values."""
    recipe = Recipe(
        name="r",
        command=["python", "t.py", "--db", "postgres://u:PASS@h/d", f"--key={TOKENS['github']}"],
        args={"api": TOKENS["openai"], "steps": 3},
        env={"SETTING": TOKENS["aws"]},
    )
    snapshot = recipe.to_yaml()
    assert not any(t in snapshot for t in TOKENS.values()) and "PASS@" not in snapshot
    assert is_secret_arg("api", TOKENS["openai"]) and not is_secret_arg("steps", 3)
    plan = plan_run(recipe, "r1", 1, tmp_path / "logs", base_env={"PATH": "/bin"})
    assert TOKENS["openai"] in plan.argv and "postgres://u:PASS@h/d" in plan.argv
    shown = " ".join(plan.argv_shown)
    assert (
        "<redacted:API>" in shown and "<redacted:DB>" in shown and "--key=<redacted:KEY>" in shown
    )
    assert not any(t in shown for t in TOKENS.values()) and "PASS@" not in shown


def test_redact_command_names_where_a_bare_secret_comes_from() -> None:
    """A secret by shape as a bare word of `command` is read back from COMMAND_<i>."""
    assert redact_command(["run", TOKENS["hf"]]) == ["run", "<redacted:COMMAND_1>"]


def test_anomaly_message_and_evidence_are_redacted() -> None:
    """What a child printed (a token in its traceback) is hidden in the anomaly ftmon stores."""
    anomaly = Anomaly(
        rule="traceback",
        severity=Severity.ERROR,
        message=f"RuntimeError: bad token {TOKENS['hf']}",
        ts=1.0,
        lineno=3,
        evidence=("Traceback (most recent call last):", f"  token={JWT}"),
    )
    clean = redact_anomaly(anomaly)
    assert clean.message == f"RuntimeError: bad token {REDACTED}"
    assert clean.evidence == ("Traceback (most recent call last):", f"  token={REDACTED}")
    assert (clean.rule, clean.lineno, clean.severity) == ("traceback", 3, Severity.ERROR)


def test_a_change_list_never_shows_a_credential_by_shape() -> None:
    """What a relaunch changed is stored and shown: a password in a URL is hidden there too."""
    from supervisor.runs.policy import recipe_changes

    old = Recipe(name="r", command=["x"], env={"DATABASE_URL": "postgres://u:OLDPASS@h/d"})
    new = old.model_copy(update={"env": {"DATABASE_URL": "postgres://u:NEWPASS@h/d"}})
    (change,) = recipe_changes(old, new)
    assert "OLDPASS" not in change and "NEWPASS" not in change
    assert change.startswith("env.DATABASE_URL postgres://u:<redacted>@h/d")
