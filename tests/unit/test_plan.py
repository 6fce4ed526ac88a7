"""Launch plans: run ids, the run folder's files, the environment, secrets and base weights."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from datetime import datetime
from pathlib import Path

import pytest

from supervisor.recipe.model import (
    Recipe,
    RecipeError,
    is_secret,
    is_secret_arg,
    load_recipe,
    recipe_from_yaml,
)
from supervisor.runs.plan import (
    base_weights_fingerprint,
    check_base_weights,
    new_run_id,
    plan_run,
    redact_env,
    shell_command,
    write_run_files,
)

# A small real program: prints its argv, an env var, and whether the secret reached it.
SCRIPT = (
    "import os, sys; print('argv', sys.argv[1:]); print('greeting', os.environ['GREETING']); "
    "print('token-len', len(os.environ.get('HF_TOKEN', ''))); "
    "print('unbuffered', os.environ.get('PYTHONUNBUFFERED')); print('cwd', os.getcwd())"
)


def recipe_text(tmp_path: Path) -> str:
    return textwrap.dedent(f"""\
        name: echo
        base_weights: {tmp_path / "weights"}
        command: [{sys.executable}, -c, "{SCRIPT}"]
        args:
          model: "{{base_weights}}"
          out: "{{run_dir}}/ckpt"
          note: "it's a {{name}} run, attempt {{attempt}}"
          lr: 1.0e-4
        env:
          GREETING: "hello from {{run_id}}"
          HF_TOKEN: hf_s3cret
        cwd: "{tmp_path}"
    """)


def test_run_ids_read_well_and_sort_by_time(tmp_path: Path) -> None:
    """Ids look like 20261122-2054-sft-tiny, carry -a2 for attempt 2, and sort by start time."""
    t = datetime(2026, 11, 22, 20, 54, 7)
    first = new_run_id("sft-tiny", now=t, logs_dir=tmp_path)
    assert first == "20261122-2054-sft-tiny"
    assert new_run_id("sft-tiny", attempt=2, now=t, logs_dir=tmp_path) == (
        "20261122-2054-sft-tiny-a2"
    )
    same_minute = new_run_id("sft-tiny", now=t, logs_dir=tmp_path)
    assert same_minute == "20261122-205407-sft-tiny"
    third = new_run_id("sft-tiny", now=t, logs_dir=tmp_path)
    later = new_run_id("sft-tiny", now=datetime(2026, 11, 22, 20, 55), logs_dir=tmp_path)
    ids = [first, same_minute, third, later]
    assert len(set(ids)) == 4 and sorted(ids) == ids


def test_run_id_avoids_an_existing_folder(tmp_path: Path) -> None:
    """An id whose folder already exists in logs/ (another ftmon made it) is not reused."""
    t = datetime(2030, 1, 2, 3, 4, 5)
    (tmp_path / "20300102-0304-x").mkdir()
    assert new_run_id("x", now=t, logs_dir=tmp_path) == "20300102-030405-x"


def test_plan_renders_argv_env_and_cwd(tmp_path: Path) -> None:
    """The plan fills placeholders, adds PYTHONUNBUFFERED=1 and keeps the recipe's env apart."""
    recipe = recipe_from_yaml(recipe_text(tmp_path))
    plan = plan_run(recipe, "r1", 2, tmp_path / "logs", base_env={"PATH": "/bin", "A": "1"})
    run_dir = (tmp_path / "logs" / "r1").absolute()
    assert plan.run_dir == run_dir and plan.log_path == run_dir / "output.log"
    assert plan.argv[3:] == [
        *("--model", str(tmp_path / "weights"), "--out", f"{run_dir}/ckpt"),
        *("--note", "it's a echo run, attempt 2", "--lr", "0.0001"),
    ]
    assert plan.recipe_env == {"GREETING": "hello from r1", "HF_TOKEN": "hf_s3cret"}
    assert plan.env == {**plan.recipe_env, "PATH": "/bin", "A": "1", "PYTHONUNBUFFERED": "1"}
    assert plan.cwd == tmp_path
    assert not run_dir.exists()  # planning writes nothing


def test_command_sh_runs_as_is_and_holds_no_secret(tmp_path: Path) -> None:
    """command.sh, run by bash with output appended to output.log, runs the same command."""
    recipe = recipe_from_yaml(recipe_text(tmp_path))
    plan = plan_run(recipe, "r1", 1, tmp_path / "logs")
    write_run_files(plan)
    script = plan.run_dir / "command.sh"
    assert os.access(script, os.X_OK)
    assert "hf_s3cret" not in script.read_text()
    assert "hf_s3cret" not in (plan.run_dir / "recipe.yaml").read_text()
    env = {"PATH": os.environ["PATH"], "HF_TOKEN": "hf_s3cret"}
    log = plan.run_dir / "output.log"
    subprocess.run(
        ["bash", "-c", f"{script} >> {log} 2>&1"], env=env, cwd="/", check=True, timeout=60
    )
    out = log.read_text().splitlines()
    assert out == [
        f"argv {plan.argv[3:]!r}",
        "greeting hello from r1",
        "token-len 9",
        "unbuffered 1",
        f"cwd {tmp_path}",
    ]


def test_command_sh_asks_for_a_missing_secret(tmp_path: Path) -> None:
    """Without HF_TOKEN in the environment command.sh stops and says which variable to set."""
    plan = plan_run(recipe_from_yaml(recipe_text(tmp_path)), "r1", 1, tmp_path / "logs")
    write_run_files(plan)
    proc = subprocess.run(
        ["bash", str(plan.run_dir / "command.sh")],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "set HF_TOKEN in the environment" in proc.stderr
    assert "argv" not in proc.stdout


def test_recipe_snapshot_reloads_and_replays_with_env_secret(tmp_path: Path) -> None:
    """recipe.yaml loads back as the recipe (secret redacted), and a plan of it takes the
    secret from the environment, or says which variable is missing."""
    recipe = recipe_from_yaml(recipe_text(tmp_path))
    plan = plan_run(recipe, "r1", 1, tmp_path / "logs")
    write_run_files(plan)
    snapshot = load_recipe(plan.run_dir / "recipe.yaml")
    assert snapshot.env["HF_TOKEN"] == "<redacted>"
    assert snapshot.model_copy(update={"env": recipe.env}) == recipe
    replay = plan_run(snapshot, "r2", 1, tmp_path / "logs", base_env={"HF_TOKEN": "hf_s3cret"})
    assert replay.env["HF_TOKEN"] == "hf_s3cret"
    with pytest.raises(RecipeError, match=r"env\.HF_TOKEN: the recipe's value was redacted"):
        plan_run(snapshot, "r3", 1, tmp_path / "logs", base_env={})


def test_an_existing_run_folder_is_never_written_into(tmp_path: Path) -> None:
    """Planning a run whose folder already holds files refuses, and leaves the files as they are."""
    plan = plan_run(recipe_from_yaml(recipe_text(tmp_path)), "r1", 1, tmp_path / "logs")
    plan.run_dir.mkdir(parents=True)
    (plan.run_dir / "output.log").write_text("the first run's log\n")
    with pytest.raises(FileExistsError, match="already holds a run"):
        write_run_files(plan)
    assert [p.name for p in plan.run_dir.iterdir()] == ["output.log"]
    assert (plan.run_dir / "output.log").read_text() == "the first run's log\n"


def test_recipe_snapshot_keeps_placeholders_and_notes_their_values(tmp_path: Path) -> None:
    """recipe.yaml keeps `{run_dir}` as written and says in a comment what it was for this run."""
    plan = plan_run(recipe_from_yaml(recipe_text(tmp_path)), "r1", 1, tmp_path / "logs")
    write_run_files(plan)
    text = (plan.run_dir / "recipe.yaml").read_text()
    assert "out: '{run_dir}/ckpt'" in text
    assert f"#   {{run_dir}} = {plan.run_dir}" in text


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("HF_TOKEN", True),
        ("hf_token", True),
        ("WANDB_API_KEY", True),
        ("AWS_SECRET", True),
        ("DB_PASSWORD", True),
        ("MYPASSWORDFILE", True),
        ("TOKENIZERS_PARALLELISM", False),
        ("KEYBOARD", False),
        ("HF_HOME", False),
    ],
)
def test_redact_env(name: str, secret: bool) -> None:
    """*_TOKEN, *_KEY, *_SECRET and *PASSWORD* are redacted, in any case; nothing else is."""
    out = redact_env({name: "value"})
    assert out[name] == ("<redacted>" if secret else "value")


def test_shell_command_pastes_into_bash(tmp_path: Path) -> None:
    """The history one-liner, pasted into bash, runs the same command in the same folder."""
    plan = plan_run(recipe_from_yaml(recipe_text(tmp_path)), "r1", 1, tmp_path / "logs")
    line = shell_command(plan.argv, redact_env(plan.recipe_env), plan.cwd)
    assert "hf_s3cret" not in line and 'HF_TOKEN="$HF_TOKEN"' in line
    proc = subprocess.run(
        ["bash", "-c", line],
        env={"PATH": os.environ["PATH"], "HF_TOKEN": "hf_s3cret"},
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert "greeting hello from r1" in proc.stdout and "token-len 9" in proc.stdout


# ---------------------------------------------------------------- base weights


def make_weights(root: Path) -> Path:
    root.mkdir()
    (root / "config.json").write_text('{"hidden_size": 8}')
    (root / "model.safetensors").write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    return root


def test_unchanged_weights_pass(tmp_path: Path) -> None:
    """A folder and a single file fingerprinted twice, untouched, are unchanged."""
    weights = make_weights(tmp_path / "w")
    assert check_base_weights(weights, base_weights_fingerprint(weights)) is None
    single = weights / "model.safetensors"
    assert check_base_weights(single, base_weights_fingerprint(single)) is None


def _rewrite_middle_and_tail(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same mtime: only the hash tells


def _flip_middle_byte(path: Path) -> None:
    """The issue's edit: one byte in the middle (beyond the first and last MiB), in place,
    size and mtime kept."""
    st = path.stat()
    with path.open("r+b") as f:
        f.seek(st.st_size // 2)
        byte = f.read(1)
        f.seek(st.st_size // 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _replace_with_a_copy(path: Path) -> None:
    """Same bytes, same mtime, another file (inode): a copy swapped in."""
    st = path.stat()
    copy = path.with_suffix(".copy")
    copy.write_bytes(path.read_bytes())
    os.utime(copy, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(copy, path)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda w: _rewrite_middle_and_tail(w / "model.safetensors"), "changed content"),
        (lambda w: _flip_middle_byte(w / "model.safetensors"), "model.safetensors changed content"),
        (lambda w: (w / "config.json").chmod(0o600), "config.json was written or its metadata"),
        (lambda w: _replace_with_a_copy(w / "model.safetensors"), "replaced by another file"),
        (lambda w: (w / "config.json").write_text('{"hidden_size": 16}'), "changed size (18 -> 19"),
        (lambda w: (w / "extra.bin").write_bytes(b"x"), "extra.bin was added"),
        (lambda w: (w / "config.json").unlink(), "config.json was removed"),
        (lambda w: os.utime(w / "config.json", (1, 1)), "modified (mtime changed)"),
    ],
)
def test_changed_weights_are_caught(tmp_path: Path, change: object, reason: str) -> None:
    """A relaunch is refused when the base weights changed: content, size, files or mtime."""
    weights = make_weights(tmp_path / "w")
    fingerprint = base_weights_fingerprint(weights)
    change(weights)  # type: ignore[operator]
    found = check_base_weights(weights, fingerprint)
    assert found is not None and reason in found


def test_the_full_hash_is_computed_once_while_the_files_stat_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fingerprint hashes every byte of every file once; a later check of files whose
    device, inode, size, mtime and ctime are unchanged reads none of them again."""
    weights = make_weights(tmp_path / "w")
    fingerprint = base_weights_fingerprint(weights)
    whole = hashlib.sha256((weights / "model.safetensors").read_bytes()).hexdigest()
    assert fingerprint["files"]["model.safetensors"]["sha256"] == whole  # type: ignore[index]

    def no_reading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the weights were read again")

    monkeypatch.setattr(Path, "open", no_reading)
    assert check_base_weights(weights, fingerprint) is None


def test_weights_by_recipe_and_hub_names(tmp_path: Path) -> None:
    """A recipe's base_weights is checked; a hub name (not a path) stays unchanged; a changed
    base_weights path is a change."""
    weights = make_weights(tmp_path / "w")
    recipe = recipe_from_yaml(f"name: r\nbase_weights: {weights}\ncommand: [x]\n")
    fingerprint = base_weights_fingerprint(recipe)
    assert check_base_weights(recipe, fingerprint) is None
    hub = base_weights_fingerprint("Qwen/Qwen3-4B")
    assert check_base_weights("Qwen/Qwen3-4B", hub) is None
    assert "it was Qwen/Qwen3-4B" in (check_base_weights(weights, hub) or "")


def test_relative_weights_are_read_in_the_runs_cwd(tmp_path: Path) -> None:
    """A relative base_weights is fingerprinted in the folder the run starts in (where the
    child opens it), not in ftmon's folder, and a change there is caught."""
    work = tmp_path / "work"
    work.mkdir()
    weights = make_weights(work / "w")
    fingerprint = base_weights_fingerprint("w", cwd=work)
    files = fingerprint["files"]
    assert fingerprint["exists"] is True and "config.json" in files  # type: ignore[operator]
    assert check_base_weights("w", fingerprint) is None
    (weights / "config.json").write_text('{"hidden_size": 1600}')
    assert "w/config.json changed size" in (check_base_weights("w", fingerprint) or "")
    moved = check_base_weights("w", fingerprint, cwd=tmp_path)
    assert moved is not None and f"read in {tmp_path} now" in moved


@pytest.mark.parametrize(
    ("key", "value", "secret"),
    [
        ("hub_token", "hf_x", True),
        ("api_key", "k", True),
        ("WANDB_KEY", "k", True),
        ("client_secret", "s", True),
        ("db_password", 1234, True),
        ("use_auth_token", True, False),
        ("hub_token", None, False),
        ("pad_token", "<|pad|>", False),
        ("secret_env", "HF_TOKEN", False),
        ("tokenizer", "gpt2", False),
        ("max_new_tokens", 64, False),
    ],
)
def test_secret_args(key: str, value: object, secret: bool) -> None:
    """Args named like secrets are redacted in the snapshot; booleans, special tokens and
    names that only point at a secret are not."""
    recipe = Recipe(name="r", command=["x"], args={key: value})
    assert is_secret_arg(key, value) is secret
    shown = recipe.to_yaml()
    assert ("<redacted>" in shown) is secret


def test_secret_args_in_the_run_folder_and_argv(tmp_path: Path) -> None:
    """A secret arg reaches the child's argv, but recipe.yaml, command.sh and the stored argv
    hold `<redacted:HUB_TOKEN>` / "$HUB_TOKEN"; a secret flag written into `command` too."""
    recipe = Recipe(
        name="r",
        command=[sys.executable, "-c", "import sys; print(sys.argv[1:])", "--api-key=k1"],
        args={"hub_token": "hf_abc", "lr": 0.1},
    )
    plan = plan_run(recipe, "r1", 1, tmp_path / "logs")
    assert plan.argv[-4:] == ["--hub_token", "hf_abc", "--lr", "0.1"]
    assert plan.argv_shown[3:] == [
        "--api-key=<redacted:API_KEY>", "--hub_token", "<redacted:HUB_TOKEN>", "--lr", "0.1",
    ]  # fmt: skip
    write_run_files(plan)
    for name in ("recipe.yaml", "command.sh"):
        text = (plan.run_dir / name).read_text()
        assert "hf_abc" not in text and "k1" not in text
    proc = subprocess.run(
        ["bash", str(plan.run_dir / "command.sh")],
        env={"PATH": os.environ["PATH"], "HUB_TOKEN": "hf_abc", "API_KEY": "k1"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.stdout.strip() == repr(["--api-key=k1", "--hub_token", "hf_abc", "--lr", "0.1"])
    snapshot = recipe_from_yaml((plan.run_dir / "recipe.yaml").read_text())
    env = {"HUB_TOKEN": "hf_new", "API_KEY": "k2"}
    replay = plan_run(snapshot, "r2", 1, tmp_path / "logs", base_env=env)
    assert replay.argv[3:] == ["--api-key=k2", "--hub_token", "hf_new", "--lr", "0.1"]
    with pytest.raises(RecipeError, match=r"args\.hub_token: .*set HUB_TOKEN in the environment"):
        plan_run(snapshot, "r3", 1, tmp_path / "logs", base_env={})


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("HF_TOKEN", True),
        ("WANDB_API_KEY", True),
        ("OPENAI_APIKEY", True),
        ("AWS_SECRET", True),
        ("DB_PASSWORD", True),
        ("SMTP_PASSWD", True),
        ("MYPASSWDFILE", True),
        ("DB_PASS", True),
        ("GOOGLE_CREDENTIALS", True),
        ("GITHUB_PAT", True),
        ("gh_pat", True),
        ("SSH_PASSPHRASE", True),
        ("PATH", False),
        ("PYTHONPATH", False),
        ("DATA_PATH", False),
        ("PATIENCE", False),
        ("KEYBOARD", False),
        ("KEYBOARD_LAYOUT", False),
        ("BYPASS", False),
        ("COMPASS", False),
        ("HF_HOME", False),
        ("TOKENIZERS_PARALLELISM", False),
        ("max_new_tokens", False),
        ("secret_env", False),
    ],
)
def test_one_rule_names_secret_env_vars_and_args(name: str, secret: bool) -> None:
    """An env variable and an arg of the same name are both secret or both not: tokens, keys,
    secrets, passwords however spelt, *_PASS, *_CREDENTIALS and *_PAT are; PATH-like names not."""
    assert is_secret(name) is secret
    assert is_secret_arg(name, "value") is secret
    assert is_secret_arg(name.lower(), "value") is secret


@pytest.mark.parametrize(
    ("yaml_text", "secret"),
    [
        ('env: {HF_TOKEN: "tok{en"}', "tok{en"),
        ('env: {DB_PASSWORD: "pw}x"}', "pw}x"),
        ('env: {HF_TOKEN: "hf_{abc}"}', "abc"),
        ("env: {DB_PASSWORD: true}", "True"),
        ('args: {hub_token: "tok}en"}', "tok}en"),
        ('args: {api_key: ["k{ey"]}', "k{ey"),
        ('command: [x, --hub_token, "tok{en"]', "tok{en"),
        ('command: [x, "--api-key=k{zz}"]', "zz"),
    ],
)
def test_a_bad_secret_value_is_never_quoted_back(yaml_text: str, secret: str) -> None:
    """A recipe error in a secret env var or arg says where and why, with the value shown as
    <redacted>; the same error in a plain field still quotes the value."""
    with pytest.raises(RecipeError) as info:
        recipe_from_yaml(f"name: r\ncommand: [x]\n{yaml_text}\n")
    text = str(info.value)
    assert secret not in text and "<redacted>" in text and ":3: " in text
    plain = yaml_text.replace("HF_TOKEN", "HF_HOME").replace("DB_PASSWORD", "DB_HOST")
    plain = plain.replace("hub_token", "hub_model").replace("api_key", "api_url")
    plain = plain.replace("--hub_token", "--hub_model").replace("--api-key", "--api-url")
    with pytest.raises(RecipeError) as info:
        recipe_from_yaml(f"name: r\ncommand: [x]\n{plain}\n")
    assert secret in str(info.value) and "<redacted>" not in str(info.value)


def test_a_bad_set_of_a_secret_with_braces_is_never_quoted_back() -> None:
    """`--set env.HF_TOKEN=...` with a stray brace or an unknown placeholder names the override
    and the problem, never the value or the placeholder's name."""
    recipe = Recipe(name="r", command=["x"], args={"hub_token": "t"})
    for value, hidden in (("hf_{zz}", "zz"), ("hf_}q", "hf_}q")):
        with pytest.raises(RecipeError) as info:
            recipe.with_overrides([f"env.HF_TOKEN={value}", f"hub_token={value}"])
        text = str(info.value)
        assert hidden not in text and "--set env.HF_TOKEN=<redacted>: env.HF_TOKEN: " in text
        assert "--set hub_token=<redacted>: args.hub_token: " in text


def test_a_secret_with_braces_from_the_environment_reaches_the_child_verbatim(
    tmp_path: Path,
) -> None:
    """A replayed recipe whose token (arg, env, or flag in `command`) holds `{` and `}` runs,
    and the child gets exactly the token, not a template filled in."""
    program = "import json, os, sys; print(json.dumps([sys.argv[1:], os.environ['HF_TOKEN']]))"
    recipe = Recipe(
        name="r",
        command=[sys.executable, "-c", program, "--api-key={run_id}:k1"],
        args={"hub_token": "hf_abc", "out": "{run_dir}"},
        env={"HF_TOKEN": "hf_abc"},
    )
    write_run_files(plan_run(recipe, "r1", 1, tmp_path / "logs"))
    snapshot = recipe_from_yaml((tmp_path / "logs" / "r1" / "recipe.yaml").read_text())
    token = "ab{c}d}"
    base = {**os.environ, "HUB_TOKEN": token, "HF_TOKEN": "{x}" + token, "API_KEY": "{{y}"}
    plan = plan_run(snapshot, "r2", 1, tmp_path / "logs", base_env=base)
    proc = subprocess.run(plan.argv, env=plan.env, capture_output=True, text=True, timeout=60)
    argv, env_token = json.loads(proc.stdout)
    assert argv == ["--api-key={{y}", "--hub_token", token, "--out", str(plan.run_dir)]
    assert env_token == "{x}" + token
    assert token not in " ".join(plan.argv_shown)
