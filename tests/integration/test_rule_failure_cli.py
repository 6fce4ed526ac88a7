"""`ftmon --watch` and `ftmon scan` with a rule that raises on one line of a chunk: the chunk's
metrics and the OOM in it are still reported, and the failure is said once, as a warning.

The rule (`RaisesOn`, tests/programs/ftmon_extra_rule.py) is added through ftmon's own command
line entry (`cli.main.main(argv, extra_rules=...)`), run as a real process on a real log.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import PROGRAMS, ROOT

OOM = "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 7.46 GiB. GPU 0 has 44 GiB"
CHUNK = (
    "".join(
        f"{{'loss': {1 + i / 100:.3f}, 'learning_rate': 2e-05, 'epoch': {i}}}\n" for i in range(6)
    )
    + f"{OOM}\nprobe after the failure\n"
)


def extra_rule_ftmon(lines: str, *argv: str) -> list[str]:
    return [sys.executable, str(PROGRAMS / "ftmon_extra_rule.py"), lines, "--", *argv]


def check(records: list[dict]) -> None:
    anomalies = [r for r in records if r["type"] == "anomaly"]
    assert [a["lineno"] for a in anomalies if a["rule"] == "oom"] == [7]
    said = [a for a in anomalies if a["rule"] == "ftmon"]
    assert len(said) == 1, said
    assert said[0]["severity"] == "warning"
    assert "raises_on" in said[0]["message"] and "line 3" in said[0]["message"]
    assert "ZeroDivisionError" in said[0]["message"]
    assert [a["lineno"] for a in anomalies if a["rule"] == "raises_on"] == [8]
    summary = records[-1]
    assert summary["type"] == "summary" and summary["metrics"] == 6


def test_scan_reports_the_chunk_of_a_line_a_rule_raised_on(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(CHUNK)
    argv = extra_rule_ftmon("3", "scan", str(log), "--json", "--min-severity", "info")
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr  # the OOM (and the warning) were found
    check([json.loads(line) for line in done.stdout.splitlines()])
    assert "ZeroDivisionError" in done.stderr  # the traceback, for a bug report


def test_watch_reports_the_chunk_of_a_line_a_rule_raised_on(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("")
    proc = subprocess.Popen(
        extra_rule_ftmon("3", "watch", str(log), "--json"),
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = threading.Timer(30, proc.kill)  # a chunk never judged ends the test, not CI
    deadline.start()
    try:
        assert proc.stderr is not None and proc.stdout is not None
        assert proc.stderr.readline().startswith("ftmon: watching")
        with log.open("a") as f:
            f.write(CHUNK)  # one write: one chunk for the watch
        seen: list[dict] = []
        for line in proc.stdout:
            seen.append(json.loads(line))
            if seen[-1].get("rule") == "raises_on":  # the last line of the chunk was judged
                break
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        deadline.cancel()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1, err
    check(seen + [json.loads(line) for line in out.splitlines()])
    assert "ZeroDivisionError" in err
