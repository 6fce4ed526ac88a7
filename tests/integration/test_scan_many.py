"""`ftmon scan` of many logs at once (a multi-node job's rank logs): the real CLI, real files.

Each log is read by its own Monitor in a worker process; what is reported about each must be
exactly what scanning it alone reports, in the order the logs were given, whatever the number
of workers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import psutil
import pytest

from tests.conftest import CORPUS, ftmon, ftmon_path, wait_for

# Real excerpts standing in for rank logs: two with an anomaly, two healthy.
RANKS = [
    "001_nan_nanogpt.log",
    "010_normal_torchtune.log",
    "002_nan_xtuner.log",
    "011_normal_torchtune.log",
]


def rank_logs(folder: Path) -> list[Path]:
    logs = []
    for rank, name in enumerate(RANKS):
        logs.append(folder / f"rank{rank}.log")
        shutil.copy(CORPUS / name, logs[-1])
    return logs


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def test_each_log_is_reported_as_when_scanned_alone_in_the_order_given(tmp_path: Path) -> None:
    logs = rank_logs(tmp_path)
    alone = []
    for log in logs:
        result = ftmon("scan", "--json", str(log))
        assert result.returncode in (0, 1), result.stderr
        alone += [{"log": str(log), **r} for r in records(result.stdout)]
    for jobs in ("1", "2", "4"):
        together = ftmon("scan", "--json", "--jobs", jobs, *map(str, logs))
        assert together.returncode == 1, together.stderr  # two logs hold anomalies
        got = records(together.stdout)
        for r in got + alone:  # the scan's clock is the only thing that differs
            r.pop("ts", None)
        assert got == alone, f"--jobs {jobs}"
    anomalous = {r["log"] for r in alone if r["type"] == "anomaly"}
    assert anomalous == {str(logs[0]), str(logs[2])}


def test_an_unreadable_log_is_named_and_the_others_are_still_read(tmp_path: Path) -> None:
    logs = rank_logs(tmp_path)[:2]
    missing = tmp_path / "rank9.log"
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(bytes(range(256)) * 64)
    result = ftmon("scan", str(logs[0]), str(missing), str(binary), str(logs[1]))
    assert result.returncode == 2
    assert f"ftmon: {missing}: no such file" in result.stderr
    assert f"{binary}: does not look like a text log" in result.stderr
    assert "Traceback" not in result.stderr
    # Both readable logs were read, and their lines say which log they are about.
    assert result.stdout.count("-- summary --") == 2
    assert f"{logs[0]}: " in result.stdout and f"{logs[1]}: " in result.stdout
    assert "-- 2 of 4 logs read, 1 with anomalies --" in result.stdout


def test_bad_settings_are_one_line_not_one_per_log(tmp_path: Path) -> None:
    logs = rank_logs(tmp_path)
    result = ftmon("scan", "--set", "watch.nosuchrule.x=1", *map(str, logs))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "nosuchrule" in result.stderr
    assert ftmon("scan", "--jobs", "0", str(logs[0])).returncode == 2


@pytest.mark.parametrize(
    ("to_group", "sig"),
    [(True, signal.SIGINT), (False, signal.SIGINT), (False, signal.SIGTERM)],
    ids=["terminal", "ftmon-only", "sigterm"],
)
def test_ctrl_c_stops_a_scan_of_many_logs_at_once(
    tmp_path: Path, to_group: bool, sig: signal.Signals
) -> None:
    """Ctrl-C ends a long multi-log scan now, not after every log given: exit 130, no worker
    left behind. The terminal sends SIGINT to ftmon and its workers alike; `kill -INT` to ftmon
    alone must stop them too, and so must `kill` (SIGTERM), as it stops `ftmon --watch`."""
    log = tmp_path / "rank0.log"
    log.write_bytes(b"".join(b"step %d | loss 2.0000\n" % i for i in range(1000)) * 3000)
    # 3M lines, four times: a minute or more of reading, which an interrupt must not wait for
    # (nor for the logs the workers are reading).
    proc = subprocess.Popen(
        [ftmon_path(), "scan", "--jobs", "2", *[str(log)] * 4],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        wait_for(lambda: len(psutil.Process(proc.pid).children()) == 2, what="for 2 workers")
        workers = psutil.Process(proc.pid).children()
        if to_group:
            os.killpg(proc.pid, sig)
        else:
            proc.send_signal(sig)
        _, err = proc.communicate(timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):  # ftmon and any worker it left behind
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert not alive
