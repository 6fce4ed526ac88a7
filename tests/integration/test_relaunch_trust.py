"""Relaunches you can trust with trainers shaped like the ones people run (issue 10): what a
run writes is checked at launch, a relaunch starts from the base weights or from the last good
checkpoint, a kill waits for a checkpoint being written, base weights edited in place stop the
chain, secrets never reach the logs folder, bad input is exit 2 with nothing left behind.

Child programs: tests/programs/nanogpt_resume.py (nanoGPT's `init_from=resume`, `ckpt.pt`
saved in place after each eval) and tests/programs/hf_checkpoints.py (HF Trainer's
`checkpoint-N/` folders, `--resume_from_checkpoint`).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.cli.main import main
from supervisor.recipe.model import load_recipe
from supervisor.runs import events as ev
from supervisor.runs.supervise import Supervisor
from supervisor.store.history import History
from tests.conftest import PROGRAMS, ROOT
from tests.programs.recipes import base_weights, write_recipe

NANOGPT = "nanogpt_resume.py"
HF = "hf_checkpoints.py"
NAN_RELAUNCH = {"nan": {"do": "relaunch", "adjust": {"learning_rate": "*0.01"}, "max": 2}}


def supervisor(tmp_path: Path) -> tuple[Supervisor, list[object]]:
    events: list[object] = []
    logs = tmp_path / "logs"
    return Supervisor(History(logs / "ftmon.db"), logs, events.append), events


def of(events: list[object], kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


def loads(checkpoint: Path) -> bool:
    """The checkpoint loads (complete, checksum right), checked by the program that wrote it."""
    proc = subprocess.run(
        [sys.executable, str(PROGRAMS / NANOGPT), f"--check={checkpoint}"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.returncode == 0


def ftmon_in_process(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def nothing_recorded(logs: Path) -> None:
    """No run in the history and no run folder: a refused launch leaves nothing half-made."""
    if (logs / "ftmon.db").exists():
        history = History(logs / "ftmon.db")
        assert history.runs() == []
        history.close()
    if logs.exists():
        assert [p.name for p in logs.iterdir() if p.is_dir()] == []


def nanogpt_recipe(folder: Path, **fields: object) -> Path:
    args = {
        "out_dir": "{run_dir}/out",
        "init_from": "scratch",
        "learning_rate": 0.01,
        "max_iters": 20,
        "eval_interval": 10,
        "nan_at": 15,
        **fields.pop("args", {}),  # type: ignore[dict-item]
    }
    return write_recipe(folder, NANOGPT, args=args, flags={"equals": True}, **fields)


# ---------------------------------------------------------------- the launch-time check


def test_nanogpt_resuming_from_a_fixed_out_dir_is_refused_at_launch(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The issue's nanoGPT recipe (a fixed `out_dir`, `init_from: resume`, a relaunch policy)
    is refused before anything starts: exit 2, naming each argument and what to write."""
    work = tmp_path / "work"
    work.mkdir()
    recipe = nanogpt_recipe(
        tmp_path, args={"out_dir": "out", "init_from": "resume"}, cwd=str(work), on=NAN_RELAUNCH
    )
    logs = tmp_path / "logs"
    code, _, err = ftmon_in_process(
        capsys, "run", str(recipe), "--headless", "--logs-dir", str(logs)
    )
    assert code == 2
    lines = err.strip().splitlines()
    out_dir = next(x for x in lines if "args.out_dir" in x)
    assert '"out" is written by every attempt' in out_dir and 'write "{run_dir}/out"' in out_dir
    resume = next(x for x in lines if "args.init_from" in x)
    assert "init_from=resume" in resume and "from: last_good_checkpoint" in resume
    assert all("--force" in x for x in lines if "args." in x)
    assert not (work / "out").exists()
    nothing_recorded(logs)


def test_an_output_inside_the_base_weights_is_refused_and_force_is_recorded(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`out_dir: "{base_weights}"` is refused at launch, before the weights are written over;
    `--force` launches it anyway and the run's history says so."""
    weights = tmp_path / "gpt2-ckpt"
    weights.mkdir()
    (weights / "ckpt.pt").write_bytes(b"base")
    recipe = nanogpt_recipe(
        tmp_path,
        base_weights=str(weights),
        args={"out_dir": "{base_weights}", "learning_rate": 1e-4, "max_iters": 3},
        on=NAN_RELAUNCH,
    )
    logs = tmp_path / "logs"
    code, _, err = ftmon_in_process(
        capsys, "run", str(recipe), "--headless", "--logs-dir", str(logs)
    )
    assert code == 2
    assert "args.out_dir" in err and "points into base_weights" in err
    assert (weights / "ckpt.pt").read_bytes() == b"base"
    nothing_recorded(logs)

    args = ("run", str(recipe), "--headless", "--force", "--logs-dir", str(logs))
    code, out, err = ftmon_in_process(capsys, *args)
    assert code == 0, err
    history = History(logs / "ftmon.db")
    (run,) = history.runs()
    forced = [a for a in history.actions(run.id) if a.rule == "writes"]
    assert forced and forced[0].detail.startswith("launched with --force although: args.out_dir")
    assert "launched with --force" in out
    history.close()


def test_every_shipped_recipe_passes_the_launch_check(tmp_path: Path) -> None:
    """No recipe in recipes/ (walked as a tree) writes where a relaunch would read."""
    from supervisor.runs.plan import plan_run
    from supervisor.runs.writes import launch_problems

    recipes = sorted((ROOT / "recipes").rglob("*.yaml"))
    assert len(recipes) >= 5
    for path in recipes:
        plan = plan_run(load_recipe(path), "r1", 1, tmp_path / "logs", base_env={"PATH": "/bin"})
        assert launch_problems(plan) == [], path


# ---------------------------------------------------------------- relaunch: where from


async def test_a_safe_nanogpt_recipe_relaunches_from_the_base_weights(tmp_path: Path) -> None:
    """Per-run `out_dir`, `init_from: scratch`: the NaN attempt is killed and the relaunch
    trains from iteration 0 in its own folder, never resuming the failed checkpoint."""
    weights = base_weights(tmp_path)
    recipe = load_recipe(
        nanogpt_recipe(
            tmp_path, base_weights=str(weights), args={"base": "{base_weights}"}, on=NAN_RELAUNCH
        )
    )
    sup, events = supervisor(tmp_path)
    final = await sup.wait_lineage(await sup.launch(recipe))
    first, second = (sup.history.get(e.run_id) for e in of(events, ev.RunStarted))
    assert (first.status, second.status, final.status) == ("killed", "finished", "finished")
    log = Path(second.log_path).read_text()
    assert "Resuming" not in log and "iter 0: loss" in log
    assert loads(Path(second.run_dir) / "out" / "ckpt.pt")
    assert not (Path(first.run_dir) / "out").samefile(Path(second.run_dir) / "out")
    sup.history.close()


async def test_hf_trainer_relaunches_from_the_last_checkpoint_before_the_nan(
    tmp_path: Path,
) -> None:
    """`from: last_good_checkpoint`: the NaN first logged at step 35 (checkpoint-35 exists,
    written at that step) sends the relaunch to checkpoint-30 with the skip arg set; it resumes
    there and finishes."""
    weights = base_weights(tmp_path)
    policy = {
        "do": "relaunch",
        "from": "last_good_checkpoint",
        "skip_batches": 3,
        "adjust": {"learning_rate": "*0.01"},
        "max": 2,
    }
    recipe = load_recipe(
        write_recipe(
            tmp_path,
            HF,
            base_weights=str(weights),
            args={
                "model_name_or_path": "{base_weights}",
                "output_dir": "{run_dir}/out",
                "learning_rate": 0.01,
                "max_steps": 40,
                "save_steps": 10,
                "logging_steps": 5,
                "nan_at": 33,
            },
            checkpoints={"dir": "{run_dir}/out", "skip_arg": "skip_batches"},
            on={"nan": policy},
        )
    )
    sup, events = supervisor(tmp_path)
    final = await sup.wait_lineage(await sup.launch(recipe))
    first, second = (sup.history.get(e.run_id) for e in of(events, ev.RunStarted))
    assert (first.status, final.status) == ("killed", "finished")
    out = Path(first.run_dir) / "out"
    assert (out / "checkpoint-35").is_dir()  # written at the anomaly's step: never chosen
    good = out / "checkpoint-30"
    argv = second.argv
    assert argv[argv.index("--resume_from_checkpoint") + 1] == str(good)
    assert argv[argv.index("--skip_batches") + 1] == "3"
    assert f"resumed from {good} at step 30" in Path(second.log_path).read_text()
    (change,) = [c for c in second.changes if "checkpoint" in c]
    assert "(step 30; nan first at step 35)" in change and "skipping the next 3" in change
    sup.history.close()


# ---------------------------------------------------------------- kills and base weights


@pytest.mark.parametrize(("wait", "whole"), [(30.0, True), (0.0, False)])
async def test_a_kill_during_a_slow_save_waits_for_it(
    tmp_path: Path, wait: float, whole: bool
) -> None:
    """NaN found at an eval whose checkpoint is being written: the kill waits for the write,
    says so, and ckpt.pt loads. With the wait turned off (0 s) the same kill leaves a
    truncated file: what the wait prevents."""
    recipe = load_recipe(
        nanogpt_recipe(
            tmp_path,
            args={"nan_at": 10, "max_iters": 12, "save_secs": 1.6, "hold": 1},
            on={"nan": {"do": "kill"}},
            kill_save_wait_secs=wait,
        )
    )
    sup, _ = supervisor(tmp_path)
    run_id = await sup.launch(recipe)
    ended = await sup.wait_lineage(run_id)
    assert ended.status == "killed"
    (kill,) = [a for a in sup.history.actions(run_id) if a.kind == "kill"]
    assert ("for a checkpoint write to finish" in kill.detail) is whole
    assert loads(Path(sup.history.get(run_id).run_dir) / "out" / "ckpt.pt") is whole
    sup.history.close()


async def test_a_same_size_edit_of_the_base_weights_stops_the_chain(tmp_path: Path) -> None:
    """A run that flips one byte in the middle of the base weights, keeping size and mtime,
    is not relaunched: the fingerprint (ctime, full hash) sees it."""
    weights = tmp_path / "base" / "model.safetensors"
    weights.parent.mkdir()
    weights.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    before = weights.stat()
    recipe = load_recipe(
        nanogpt_recipe(
            tmp_path,
            base_weights=str(weights),
            args={"base": "{base_weights}", "edit_base": "{base_weights}"},
            on=NAN_RELAUNCH,
        )
    )
    sup, events = supervisor(tmp_path)
    final = await sup.wait_lineage(await sup.launch(recipe))
    after = weights.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert len(of(events, ev.RunStarted)) == 1 and final.status == "killed"
    (stopped,) = of(events, ev.ChainStopped)
    assert "base weights changed since the first launch" in stopped.reason
    assert "model.safetensors changed content" in stopped.reason
    sup.history.close()


# ---------------------------------------------------------------- secrets and file modes

SECRETS = {
    "DATABASE_URL": "postgres://u:PASSW0RDvalue@db.example/x",
    "HF_TOKEN": "hf_" + "A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7",
    "OPENAI_SETTING": "sk-proj-" + "abcDEF123456ghiJKL789012mnoPQR",
    "GH_SETTING": "ghp_" + "abcdefghijklmnopqrstuvwxyz0123456789",
    "AWS_ID": "AKIA" + "IOSFODNN7EXAMPL2",
    "SESSION": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
}
ARG_SECRETS = {
    "db": "mysql://admin:ARGpassw0rd@db.example/x",
    "api": "sk-" + "ZYXWVU987654tsrqpo321098nmlkji",
}


def _files_holding(root: Path, values: list[str], skip: str = "") -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file() and path.name != skip:
            data = path.read_bytes()
            found += [f"{path.name}: {v[:8]}..." for v in values if v.encode() in data]
    return found


def test_secrets_by_shape_never_reach_the_logs_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Env and args holding each secret shape, and a child printing $HF_TOKEN in its
    exception: nothing ftmon stores (database, recipe.yaml, command.sh) or prints (run, show,
    history) holds a value; the child's own log holds only what it printed itself."""
    recipe = write_recipe(
        tmp_path, "leak_secret.py", env=SECRETS, args={**ARG_SECRETS, "leak": "HF_TOKEN"}
    )
    logs = tmp_path / "logs"
    code, printed, err = ftmon_in_process(
        capsys, "run", str(recipe), "--headless", "--logs-dir", str(logs)
    )
    assert code == 1, err
    history = History(logs / "ftmon.db")
    (run,) = history.runs()
    anomalies = history.anomalies(run.id)
    assert any("<redacted>" in a.message or "<redacted>" in " ".join(a.evidence) for a in anomalies)
    history.close()
    shown = "".join(
        ftmon_in_process(capsys, *cmd, "--logs-dir", str(logs))[1]
        for cmd in (("show", run.id), ("history",))
    )
    values = [*SECRETS.values(), *ARG_SECRETS.values(), "PASSW0RDvalue", "ARGpassw0rd"]
    assert [v for v in values if v in printed + err + shown] == []
    assert _files_holding(logs, values, skip="output.log") == []
    output = (Path(run.run_dir) / "output.log").read_bytes()
    assert SECRETS["HF_TOKEN"].encode() in output  # the child printed it: its log, not ours
    assert _files_holding(Path(run.run_dir), [v for v in values if "hf_" not in v]) == []

    def mode(path: Path) -> int:
        return stat.S_IMODE(path.stat().st_mode)

    assert mode(logs) == 0o700 and mode(Path(run.run_dir)) == 0o700
    for name in ("ftmon.db", "ftmon.db-wal"):
        assert mode(logs / name) == 0o600, name
    for name in ("recipe.yaml", "output.log"):
        assert mode(Path(run.run_dir) / name) == 0o600, name
    assert mode(Path(run.run_dir) / "command.sh") == 0o700


# ---------------------------------------------------------------- bad input


def _nested(tmp_path: Path) -> Path:
    path = tmp_path / "deep.yaml"
    path.write_text("name: deep\ncommand: [x]\nargs:\n  a: " + "[" * 5000 + "]" * 5000 + "\n")
    return path


def _wide(tmp_path: Path) -> Path:
    path = tmp_path / "wide.yaml"
    keys = "".join(f"  k{i}: {i}\n" for i in range(300_000))
    path.write_text(f"name: wide\ncommand: [x]\nargs:\n{keys}")
    return path


BAD_INPUT = {
    "missing program": (
        lambda t: write_recipe(t, "count_steps.py", command=["/nonexistent/train"]),
        (),
        "command.0: /nonexistent/train does not exist",
    ),
    "program not on PATH": (
        lambda t: write_recipe(t, "count_steps.py", command=["no-such-trainer-xyz"]),
        (),
        "'no-such-trainer-xyz' is not a program on PATH",
    ),
    "missing cwd": (
        lambda t: write_recipe(t, "count_steps.py", cwd=str(t / "nowhere")),
        (),
        "nowhere does not exist",
    ),
    "nested 5000 deep": (_nested, (), "nested over 40 levels deep here"),
    "300k keys": (_wide, (), "a recipe is at most 131072 bytes"),
    "infinite grace": (
        lambda t: write_recipe(t, "count_steps.py", kill_grace_secs=float("inf")),
        (),
        "kill_grace_secs",
    ),
    "stall of a million years": (
        lambda t: write_recipe(t, "count_steps.py", watch={"stall": {"secs": 3.2e13}}),
        (),
        "watch.stall.secs: 3.2e+13 seconds is over 604800 (a week)",
    ),
    "--set a number to text": (
        lambda t: write_recipe(t, "count_steps.py", args={"learning_rate": 0.001}),
        ("--set", "learning_rate=abc"),
        "expects a number (float, like 0.001), got 'abc'",
    ),
    "--set an arg the recipe lacks": (
        lambda t: write_recipe(t, "count_steps.py", args={"learning_rate": 0.001}),
        ("--set", "args.learning_rat=1"),
        "did you mean 'learning_rate'?",
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_exit_2_with_nothing_left_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], case: str
) -> None:
    """Each kind of bad input: exit 2, its reason on stderr, no traceback, no run recorded."""
    make, sets, expected = BAD_INPUT[case]
    recipe = make(tmp_path)  # type: ignore[operator]
    logs = tmp_path / "logs"
    code, _, err = ftmon_in_process(
        capsys, "run", str(recipe), "--headless", *sets, "--logs-dir", str(logs)
    )
    assert code == 2, err
    assert expected in err and "Traceback" not in err
    nothing_recorded(logs)


def test_set_adds_an_arg_only_when_asked_with_plus(tmp_path: Path) -> None:
    """`+args.foo=1` (Hydra's spelling) adds a flag; the run gets it."""
    recipe = load_recipe(write_recipe(tmp_path, "count_steps.py", args={"steps": 2}))
    assert recipe.with_overrides(["+args.interval=0.01"]).args["interval"] == 0.01
    assert recipe.with_overrides(["+interval=0.01"]).args["interval"] == 0.01


def test_scan_and_watch_show_no_secret_a_log_holds(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A token in a traceback of a foreign log is found as an anomaly but shown redacted, as
    text and as JSON."""
    log = tmp_path / "train.log"
    token = SECRETS["HF_TOKEN"]
    log.write_text(
        'step 1 loss 1.0\nTraceback (most recent call last):\n  File "t.py", line 1\n'
        f"RuntimeError: 401 for token {token}\n"
    )
    for extra in ((), ("--json",)):
        code, out, err = ftmon_in_process(capsys, "scan", str(log), *extra)
        assert code == 1 and "traceback" in out
        assert token not in out + err and "<redacted>" in out


@pytest.mark.slow
def test_the_reference_trainer_resumes_from_the_checkpoint_it_is_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`python -m trainer --resume_from_checkpoint DIR --skip_batches K` (what a relaunch
    from the last good checkpoint passes it): it starts at that checkpoint's step, with the
    command's learning rate (a relaunch's lowered one), not the one saved, past K batches."""
    from trainer.cli import parse_args
    from trainer.train import Trainer

    fast = ["--threads", "1", "--eval_size", "4", "--max_new_tokens", "4", "--train_size", "400"]
    common = [*fast, "--seq_len", "32", "--micro_batch", "4", "--log_every", "1"]
    common += [
        "--sample_every",
        "0",
        "--eval_every",
        "0",
        "--schedule",
        "constant",
        "--warmup",
        "0",
    ]
    first = tmp_path / "a" / "out"
    lines = ["--steps", "6", "--save_every", "3", "--lr", "0.5", "--output_dir", str(first)]
    assert Trainer(parse_args([*common, *lines])).run() == 0
    capsys.readouterr()
    good = first / "checkpoint-3"
    argv = ["--steps", "5", "--lr", "0.01", "--output_dir", str(tmp_path / "b" / "out")]
    argv += ["--resume_from_checkpoint", str(good), "--skip_batches", "2"]
    resumed = Trainer(parse_args([*common, *argv]))
    assert resumed.run() == 0
    out = capsys.readouterr().out
    assert f"resumed from {good} at step 3" in out and "skipping the next 2 batches" in out
    metrics = [json.loads(x) for x in out.splitlines() if x.startswith('{"type": "metric"')]
    assert [m["step"] for m in metrics] == [4, 5]
    assert all(m["lr"] == pytest.approx(0.01) for m in metrics)
    assert resumed.seen == (3 + 2 + 2) * 4  # 3 steps trained, 2 batches skipped, 2 steps


@pytest.mark.parametrize("command", [("scan",), ("--watch",)])
def test_a_log_that_is_not_text_is_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    """A checkpoint given where a log belongs: exit 2, one line saying so, nothing read."""
    binary = tmp_path / "ckpt.pt"
    binary.write_bytes(os.urandom(4096))
    code, out, err = ftmon_in_process(capsys, *command, str(binary))
    assert code == 2 and out == ""
    (line,) = err.strip().splitlines()
    assert line == (
        f"ftmon: {binary}: does not look like a text log (binary bytes near its start); "
        "give the training log, e.g. logs/RUN/output.log"
    )


def test_watch_settings_from_the_command_line_are_finite_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`ftmon scan/--watch --set watch.stall.secs=.inf` is refused like the recipe's."""
    log = tmp_path / "train.log"
    log.write_text("step 1 loss 1.0\n")
    code, _, err = ftmon_in_process(capsys, "scan", str(log), "--set", "watch.stall.secs=.inf")
    assert code == 2 and err.strip() == "ftmon: --set: watch.stall.secs: inf is not a finite number"
