"""An absurd integer rule setting is bad input: exit 2 with one line naming it, before anything
is launched (it was accepted, the run launched, then supervision failed on an OverflowError and
left the run going, detached, with exit 0)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import ftmon
from tests.programs.recipes import write_recipe


def test_a_recipe_with_an_absurd_window_launches_nothing(tmp_path: Path) -> None:
    recipe = write_recipe(
        tmp_path,
        "goes_quiet.py",
        args={"lines": 3, "quiet": 0},
        watch={"spike": {"window": 10**20}},
    )
    logs = tmp_path / "logs"
    done = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "watch.spike.window" in done.stderr and "at most 1,000,000,000" in done.stderr
    assert "Traceback" not in done.stderr
    assert not logs.exists() or not [p for p in logs.iterdir() if p.is_dir()]


def test_scan_refuses_an_absurd_set_in_one_line(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("{'loss': 1.0, 'epoch': 0.1}\n")
    done = ftmon("scan", str(log), "--set", "spike.window=100000000000000000000")
    assert done.returncode == 2
    assert done.stderr == "ftmon: --set: watch.spike.window: at most 1,000,000,000\n"


def test_watch_refuses_a_pid_that_is_no_process_id(tmp_path: Path) -> None:
    """`--pid -1` was a traceback (psutil's ValueError); now one line, exit 2."""
    log = tmp_path / "train.log"
    log.write_text("{'loss': 1.0, 'epoch': 0.1}\n")
    for pid in ("-1", "0"):
        done = ftmon("--watch", str(log), "--pid", pid, "--on", "nan=kill")
        assert done.returncode == 2
        assert done.stderr == f"ftmon: --pid {pid}: a process id is a positive number\n"


def test_estimate_refuses_a_card_size_that_is_no_number() -> None:
    """`--gpu-gb nan` said "card: nan GB: does NOT fit" (exit 1); `inf` said it fits."""
    from tests.conftest import ROOT

    for size in ("nan", "inf"):
        done = ftmon("estimate", str(ROOT / "recipes" / "lora.yaml"), "--gpu-gb", size)
        assert done.returncode == 2, (size, done.stdout)
        assert "--gpu-gb must be a finite number above 0" in done.stderr


def test_watch_refuses_a_grace_that_is_no_time(tmp_path: Path) -> None:
    """`--grace nan` (or inf, or -5) was taken as is: the kill's wait between SIGTERM and
    SIGKILL would never end or fail. Bounded as a recipe's kill_grace_secs is (0-3600)."""
    log = tmp_path / "train.log"
    log.write_text("{'loss': 1.0, 'epoch': 0.1}\n")
    for grace in ("nan", "inf", "-5"):
        done = ftmon("--watch", str(log), "--grace", grace)
        assert done.returncode == 2
        assert done.stderr.startswith(f"ftmon: --grace {grace}: seconds from 0 to 3600")


def test_history_refuses_a_count_of_runs_that_is_none(tmp_path: Path) -> None:
    """`history -n 0` said "no runs recorded yet" with runs recorded; `-n 1e20` (as digits)
    was an sqlite3 traceback; `-n -1` listed every run."""
    from supervisor.store.history import History

    history = History(tmp_path / "ftmon.db")
    history.add_run(run_id="20261207-2300-only", name="only", started_at=1.0)
    history.close()
    for n in ("0", "-1", "1" + "0" * 20):
        done = ftmon("history", "-n", n, "--logs-dir", str(tmp_path))
        assert done.returncode == 2, (n, done.stdout, done.stderr)
        assert done.stderr == f"ftmon: -n {n}: a number of runs from 1 to 1000000\n"
    done = ftmon("history", "-n", "1", "--logs-dir", str(tmp_path))
    assert done.returncode == 0 and "20261207-2300-only" in done.stdout


def test_a_nul_byte_in_an_argument_or_env_value_launches_nothing(tmp_path: Path) -> None:
    """exec cannot pass a NUL: it was a ValueError traceback after the run folder was made
    (exit 1); now one line naming the field, exit 2, no run folder."""
    logs = tmp_path / "logs"
    for name, fields, field in (
        ("nul-env", {"env": {"FOO": "a\0b"}}, "env.FOO"),
        ("nul-arg", {"args": {"lines": "3\0"}}, "argv."),
    ):
        recipe = write_recipe(tmp_path, "goes_quiet.py", name=name, **fields)
        done = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs), timeout=60)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"recipe: {field}" in done.stderr and "NUL byte" in done.stderr
        assert "Traceback" not in done.stderr
        assert not [p for p in logs.iterdir() if p.is_dir()]


def test_a_recipe_sizing_a_repetition_buffer_absurdly_launches_nothing(tmp_path: Path) -> None:
    """`max_block: 1e9` is under MAX_COUNT but made the rule allocate gigabytes (15 s) before
    judging a line: a setting that sizes a buffer has its own bound, said in one line."""
    recipe = write_recipe(
        tmp_path,
        "goes_quiet.py",
        args={"lines": 3, "quiet": 0},
        watch={"repetition": {"max_block": 10**9}},
    )
    logs = tmp_path / "logs"
    done = ftmon("run", str(recipe), "--headless", "--logs-dir", str(logs), timeout=60)
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.splitlines()
    assert "watch.repetition.max_block" in line and "less than or equal to 1000" in line
    assert not logs.exists() or not [p for p in logs.iterdir() if p.is_dir()]
