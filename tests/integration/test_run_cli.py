"""`ftmon run --headless`, `history`, `show`, `diff`, `replay` through the real console script."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ROOT
from tests.programs.recipes import base_weights, write_recipe

SECRET = "hf_SuperSecretValue123"
PASSWORD = "pw_AnotherSecret456"


def ftmon_argv() -> list[str]:
    script = Path(sys.executable).parent / "ftmon"
    return [str(script)] if script.exists() else [sys.executable, "-m", "supervisor"]


def ftmon(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The console script in a fresh process, with the test's secrets only where given."""
    base = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "DB_PASSWORD")}
    return subprocess.run(
        [*ftmon_argv(), *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
        env={**base, **(env or {})},
    )  # fmt: skip


def ftmon_here(*args: str) -> tuple[int, str, str]:
    """The console script's `main` in this process: (exit code, stdout, stderr). For commands
    that only read (history, show, diff) or fail early, where a fresh interpreter adds nothing."""
    from tui.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return code, out.getvalue(), err.getvalue()


def read(*args: str) -> str:
    code, out, err = ftmon_here(*args)
    assert code == 0, err
    return out


def nan_recipe(tmp_path: Path) -> Path:
    weights = base_weights(tmp_path)
    return write_recipe(
        tmp_path, "train_nan.py", name="nan-demo", base_weights=str(weights),
        args={"model": "{base_weights}", "output_dir": "{run_dir}", "lr": 2e-4},
        on={"nan": {"do": "relaunch", "adjust": {"lr": "*0.5"}, "max": 3}},
    )  # fmt: skip


def test_nan_run_is_killed_relaunched_and_recorded(tmp_path: Path) -> None:
    """The nan run is killed and relaunched with lr halved from the base weights; history
    shows both commands (the second runs as pasted) in 100 columns but for the commands, the
    first folder is untouched, diff shows lr, and the exit code is 0 because the last attempt
    finished."""
    logs = tmp_path / "logs"
    recipe = nan_recipe(tmp_path)
    res = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs))
    assert res.returncode == 0, res.stdout + res.stderr
    assert "anomaly error" in res.stdout and " nan " in res.stdout
    assert "action  kill [nan]" in res.stdout and "relaunched as" in res.stdout
    assert "lr 0.0002 -> 0.0001" in res.stdout

    runs = json.loads(read("history", "--json", "--logs-dir", str(logs)))
    second, first = runs  # newest first
    assert (first["status"], first["end_reason"]) == ("killed", "killed by ftmon: rule nan")
    assert second["parent_id"] == first["id"] and second["status"] == "finished"
    weights = str(tmp_path / "base" / "model.safetensors")
    for run, lr in ((first, "0.0002"), (second, "0.0001")):
        argv = run["argv"]
        assert argv[argv.index("--lr") + 1] == lr
        assert argv[argv.index("--model") + 1] == weights  # never the failed run's output

    table = read("history", "--logs-dir", str(logs))
    assert first["command"] in table and second["command"] in table
    assert "started: relaunch after nan: lr 0.0002 -> 0.0001" in table
    assert f"(parent {first['id']})" in table
    # Every line but the pasteable commands fits a 100-column terminal.
    assert all(len(x) <= 100 for x in table.splitlines() if not x.startswith("    $ "))
    pasted = subprocess.run(
        ["bash", "-c", second["command"]], capture_output=True, text=True, timeout=60
    )
    assert pasted.returncode == 0 and "training finished" in pasted.stdout

    first_dir = Path(first["run_dir"])
    assert sorted(p.name for p in first_dir.iterdir()) == [
        "checkpoint.bin", "command.sh", "output.log", "recipe.yaml",
    ]  # fmt: skip
    assert all(p.stat().st_mtime <= first["ended_at"] for p in first_dir.iterdir())
    assert (first_dir / "checkpoint.bin").read_bytes().endswith(b"0.0002")

    diff = read("diff", first["id"], second["id"], "--logs-dir", str(logs))
    assert "args.lr: 0.0002 -> 0.0001" in diff
    assert "after --lr: 0.0002 -> 0.0001" in diff

    show = read("show", second["id"], "--logs-dir", str(logs))
    assert f"parent: {first['id']}" in show and "lr 0.0002 -> 0.0001" in show
    assert "killed by ftmon: rule nan" in read("show", first["id"], "--logs-dir", str(logs))


@pytest.mark.parametrize(
    ("text", "line", "field"),
    [
        ("name: x\ncommand: [python]\nkil_grace_secs: 1\n", 3, "kil_grace_secs"),
        ("name: x\ncommand: [python]\nkill_grace_secs: soon\n", 3, "kill_grace_secs"),
        ("name: x\ncommand: [python\nargs: {}\n", 0, ""),
    ],
    ids=["misspelt", "wrong-type", "invalid-yaml"],
)
def test_bad_recipe_exits_2_with_file_line_and_field(
    tmp_path: Path, text: str, line: int, field: str
) -> None:
    """A bad recipe gives exit code 2 and one line naming the file, the line and the field."""
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    code, _, stderr = ftmon_here(
        "run", str(path), "--headless", "--logs-dir", str(tmp_path / "logs")
    )
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr
    assert lines[0].startswith(f"{path}:")
    if line:
        assert lines[0].startswith(f"{path}:{line}: {field}: ")
    assert not (tmp_path / "logs" / "ftmon.db").exists() or not json.loads(
        read("history", "--json", "--logs-dir", str(tmp_path / "logs"))
    )


def test_unknown_set_key_exits_2(tmp_path: Path) -> None:
    """`--set` of a key the recipe does not have: exit 2, one line naming the override."""
    recipe = write_recipe(tmp_path, "count_steps.py", args={"steps": 3})
    code, _, stderr = ftmon_here(
        "run", str(recipe), "--headless", "--set", "stpes=4", "--logs-dir", str(tmp_path)
    )
    assert code == 2
    (line,) = stderr.strip().splitlines()
    assert "--set stpes=4" in line and "unknown key 'stpes'" in line and "steps" in line


def test_secrets_never_stored_or_shown(tmp_path: Path) -> None:
    """Secret env values reach the run but never the database, history, show or command.sh;
    a replay reads them from the environment again."""
    logs = tmp_path / "logs"
    recipe = write_recipe(
        tmp_path, "count_steps.py", name="secretive",
        args={"steps": 3, "interval": 0.01, "secret_env": "HF_TOKEN"},
        env={"HF_TOKEN": SECRET, "DB_PASSWORD": PASSWORD, "PLAIN_SETTING": "visible"},
    )  # fmt: skip
    res = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs))
    assert res.returncode == 0, res.stdout + res.stderr
    (run,) = json.loads(read("history", "--json", "--logs-dir", str(logs)))
    run_dir = Path(run["run_dir"])
    assert "HF_TOKEN set: True" in (run_dir / "output.log").read_text()

    replay = ftmon("replay", "last", "--set", "steps=2", "--logs-dir", str(logs),
                   env={"HF_TOKEN": SECRET, "DB_PASSWORD": PASSWORD})  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr
    missing = ftmon("replay", run["id"], "--logs-dir", str(logs))
    assert missing.returncode == 2 and "set HF_TOKEN in the environment" in missing.stderr

    shown = [
        read("history", "--logs-dir", str(logs)),
        read("history", "--json", "--logs-dir", str(logs)),
        read("show", run["id"], "--logs-dir", str(logs)),
        read("show", "last", "--json", "--logs-dir", str(logs)),
        read("diff", run["id"], "last", "--logs-dir", str(logs)),
    ]
    stored = [p.read_bytes().decode("latin-1") for p in logs.rglob("*") if p.is_file()
              and p.name != "output.log"]  # fmt: skip
    for text in shown + stored:
        assert SECRET not in text and PASSWORD not in text
    assert "PLAIN_SETTING=visible" in shown[0] and 'HF_TOKEN="$HF_TOKEN"' in shown[0]
    script = (run_dir / "command.sh").read_text()
    assert "HF_TOKEN" in script and SECRET not in script
    newest = json.loads(shown[1])[0]
    assert newest["parent_id"] == run["id"] and newest["reason_started"] == f"replay of {run['id']}"
    assert newest["argv"][newest["argv"].index("--steps") + 1] == "2"
    assert newest["changes"] == ["args.steps 3 -> 2"]
    assert f"started: replay of {run['id']}: args.steps 3 -> 2" in shown[0]


def wait_for_metrics(db: Path, at_least: int, timeout: float = 30) -> None:
    """Poll the database (a test guard against hanging, not a timing claim)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if db.exists():
            try:
                con = sqlite3.connect(db)
                (n,) = con.execute("SELECT COUNT(*) FROM metrics WHERE name='loss'").fetchone()
                con.close()
                if n >= at_least:
                    return
            except sqlite3.OperationalError:
                pass  # table not created yet
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} metrics in {db}")


@pytest.mark.parametrize("kill_on_exit", [False, True], ids=["detach", "kill-on-exit"])
def test_ctrl_c_detaches_or_kills(tmp_path: Path, kill_on_exit: bool) -> None:
    """Ctrl-C exits 130 without asking: the run keeps running and `ftmon attach ID` is
    printed, or with --kill-on-exit the run is killed."""
    logs = tmp_path / "logs"
    recipe = write_recipe(tmp_path, "count_steps.py", args={"steps": 2000, "interval": 0.02})
    extra = ["--kill-on-exit"] if kill_on_exit else []
    proc = subprocess.Popen(
        [*ftmon_argv(), "run", str(recipe), "--headless", "--logs-dir", str(logs), *extra],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_metrics(logs / "ftmon.db", 3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    con = sqlite3.connect(logs / "ftmon.db")
    run_id, pid, status = con.execute("SELECT id, pid, status FROM runs").fetchone()
    try:
        if kill_on_exit:
            assert status == "killed" and not psutil.pid_exists(pid)
        else:
            assert f"ftmon attach {run_id}" in out
            assert f"  {run_id}: detached, still running" in out
            assert status == "running" and psutil.Process(pid).is_running()
    finally:
        if psutil.pid_exists(pid):
            os.kill(pid, signal.SIGKILL)


def test_recipe_that_does_not_fit_is_refused_unless_forced(tmp_path: Path) -> None:
    """The memory estimate refuses a recipe too big for the card (exit 2, with the estimate);
    `--force` launches it anyway."""
    logs = tmp_path / "logs"
    recipe = write_recipe(
        tmp_path, "count_steps.py", args={"steps": 2, "interval": 0.01},
        preflight={"model": "tiny", "gpu_gb": 0.0001},
    )  # fmt: skip
    code, _, err = ftmon_here("run", str(recipe), "--headless", "--logs-dir", str(logs))
    assert code == 2 and "does not fit" in err and "--force" in err and "peak" in err
    assert json.loads(read("history", "--json", "--logs-dir", str(logs))) == []
    code, out, _ = ftmon_here("run", str(recipe), "--headless", "--force", "--logs-dir", str(logs))
    assert code == 0 and "ended finished" in out


def test_secret_args_never_stored_or_shown(tmp_path: Path) -> None:
    """A secret passed as an arg (`hub_token`) reaches the run but never the database,
    history, show, diff, recipe.yaml or command.sh; command.sh and the pasted history command
    read it from HUB_TOKEN, and a replay takes it from there or says to set it."""
    logs = tmp_path / "logs"
    recipe = write_recipe(
        tmp_path, "count_steps.py", name="secret-arg",
        args={"steps": 2, "interval": 0.01, "hub_token": SECRET},
    )  # fmt: skip
    res = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs))
    assert res.returncode == 0, res.stdout + res.stderr
    assert SECRET not in res.stdout + res.stderr
    assert ": ended finished\n" in res.stdout and "finished: finished" not in res.stdout
    (run,) = json.loads(read("history", "--json", "--logs-dir", str(logs)))
    run_dir = Path(run["run_dir"])
    assert f"hub_token length: {len(SECRET)}" in (run_dir / "output.log").read_text()

    missing = ftmon("replay", run["id"], "--logs-dir", str(logs))
    assert missing.returncode == 2 and "set HUB_TOKEN in the environment" in missing.stderr
    replay = ftmon("replay", "last", "--logs-dir", str(logs), env={"HUB_TOKEN": SECRET})
    assert replay.returncode == 0, replay.stdout + replay.stderr
    newest = json.loads(read("history", "--json", "--logs-dir", str(logs)))[0]
    assert f"hub_token length: {len(SECRET)}" in Path(newest["log_path"]).read_text()

    shown = [
        read("history", "--logs-dir", str(logs)),
        read("history", "--json", "--logs-dir", str(logs)),
        read("show", run["id"], "--logs-dir", str(logs)),
        read("show", "last", "--json", "--logs-dir", str(logs)),
        read("diff", run["id"], "last", "--logs-dir", str(logs)),
    ]
    stored = [p.read_bytes().decode("latin-1") for p in logs.rglob("*") if p.is_file()
              and p.name != "output.log"]  # fmt: skip
    for text in shown + stored:
        assert SECRET not in text
    assert newest["argv"][newest["argv"].index("--hub_token") + 1] == "<redacted:HUB_TOKEN>"
    # The pasted command runs as it ran, with the token from the environment.
    line = next(x for x in shown[0].splitlines() if "--hub_token" in x).strip()
    line = line[line.index("cd ") :]
    pasted = subprocess.run(
        ["bash", "-c", line], env={**os.environ, "HUB_TOKEN": SECRET}, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip
    assert f"hub_token length: {len(SECRET)}" in pasted.stdout, pasted.stderr
    script = subprocess.run(
        ["bash", str(run_dir / "command.sh")], env={"PATH": os.environ["PATH"]},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert script.returncode != 0 and "set HUB_TOKEN in the environment" in script.stderr


def test_replay_passes_a_secret_with_braces_verbatim(tmp_path: Path) -> None:
    """`ftmon replay` of a run whose token is read back from the environment as `ab{c}d}`
    runs (no traceback), and the child gets a token of exactly that length."""
    logs = tmp_path / "logs"
    recipe = write_recipe(
        tmp_path, "count_steps.py", name="brace-token",
        args={"steps": 1, "interval": 0.01, "hub_token": SECRET},
    )  # fmt: skip
    res = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs))
    assert res.returncode == 0, res.stdout + res.stderr
    token = "ab{c}d}"
    replay = ftmon("replay", "last", "--logs-dir", str(logs), env={"HUB_TOKEN": token})
    assert replay.returncode == 0 and "Traceback" not in replay.stderr, replay.stderr
    newest = json.loads(read("history", "--json", "--logs-dir", str(logs)))[0]
    assert f"hub_token length: {len(token)}\n" in Path(newest["log_path"]).read_text()


def test_history_without_a_database_is_empty_not_an_error(tmp_path: Path) -> None:
    """`ftmon history` before any run says there are none (exit 0, `[]` with --json) and where
    it looked; `show` of a run there says no history yet and how to point elsewhere (exit 2)."""
    logs = tmp_path / "nothing-here"
    code, out, _ = ftmon_here("history", "--logs-dir", str(logs))
    assert code == 0 and "no runs recorded yet" in out and str(logs) in out
    code, out, _ = ftmon_here("history", "--json", "--logs-dir", str(logs))
    assert code == 0 and json.loads(out) == []
    code, _, err = ftmon_here("show", "last", "--logs-dir", str(logs))
    assert code == 2 and "no history yet" in err and "--logs-dir" in err
    assert not logs.exists()  # reading the history creates nothing


def test_a_run_in_a_missing_folder_is_refused_with_exit_2(tmp_path: Path) -> None:
    """A recipe whose cwd does not exist is bad input: exit 2, one line naming the folder,
    nothing started and nothing in the history (issue 10)."""
    logs = tmp_path / "logs"
    recipe = write_recipe(tmp_path, "count_steps.py", cwd=str(tmp_path / "gone"))
    code, out, err = ftmon_here("run", str(recipe), "--headless", "--logs-dir", str(logs))
    assert code == 2
    (line,) = err.strip().splitlines()
    assert f"cwd: {tmp_path / 'gone'} does not exist" in line and "started" not in out
    assert json.loads(read("history", "--json", "--logs-dir", str(logs))) == []


def test_replay_runs_in_the_folder_the_run_ran_in(tmp_path: Path) -> None:
    """A recipe without cwd ran where ftmon was; replaying it from another folder runs it in
    the recorded folder again, as `ftmon history` shows it."""
    logs = tmp_path / "logs"
    recipe = write_recipe(tmp_path, "count_steps.py", args={"steps": 1, "interval": 0.01})
    assert ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs)).returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    replay = subprocess.run(
        [*ftmon_argv(), "replay", "last", "--logs-dir", str(logs)],
        cwd=elsewhere, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert replay.returncode == 0, replay.stdout + replay.stderr
    newest, first = json.loads(read("history", "--json", "--logs-dir", str(logs)))
    assert newest["cwd"] == first["cwd"] == str(ROOT)
    assert newest["changes"] == []
