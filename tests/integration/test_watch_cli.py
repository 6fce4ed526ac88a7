"""`ftmon --watch` and `ftmon scan` end to end: the real CLI on logs that real processes write."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import CORPUS, PROGRAMS, ROOT, wait_for

# The console script users run, where it is installed beside this interpreter (the venv).
_SCRIPT = Path(sys.executable).parent / "ftmon"
FTMON = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "supervisor"]
HEALTHY = "{'loss': 1.2345, 'grad_norm': 1.25, 'learning_rate': 2e-05, 'epoch': 0.01}\n"


class Lines:
    """Reads a process's stdout in a thread, so a test can wait for a line with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.q: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.q.put(line)
        self.q.put(None)

    def until(self, predicate, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.q.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no matching line in {timeout}s; saw {self.seen}") from None
            if line is None:
                raise AssertionError(f"output ended; saw {self.seen}")
            self.seen.append(line)
            if predicate(line):
                return line

    def rest(self, timeout: float = 20.0) -> list[str]:
        deadline = time.monotonic() + timeout
        while (line := self.q.get(timeout=max(0.01, deadline - time.monotonic()))) is not None:
            self.seen.append(line)
        return self.seen


def ftmon(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FTMON, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


def start_ftmon(*args: str) -> tuple[subprocess.Popen[str], Lines]:
    proc = subprocess.Popen(
        [*FTMON, *args], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    return proc, Lines(proc)


def start_writer(log: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(PROGRAMS / "chatty.py"), "--log", str(log), *extra],
        stdout=subprocess.DEVNULL,
    )


def wait_ready(proc: subprocess.Popen[str]) -> str:
    """ftmon says on stderr where it starts reading, once its loop and signal handlers are up:
    everything written to the log after that line is read."""
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("ftmon: watching"), line
    return line


@pytest.fixture
def cleanup():
    procs: list[subprocess.Popen] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_watch_reports_a_planted_nan_while_the_writer_still_runs(tmp_path: Path, cleanup) -> None:
    """A NaN line written into a live log is reported while the run that wrote it goes on."""
    log = tmp_path / "train.log"
    log.write_text(HEALTHY * 5)
    watcher, out = start_ftmon("--watch", str(log))
    cleanup.append(watcher)
    assert "from line 6" in wait_ready(watcher)
    writer = start_writer(log, "--interval", "0.05", "--nan-at", "20")
    cleanup.append(writer)
    line = out.until(lambda s: "nan" in s.split())
    assert writer.poll() is None, "reported only after the writer had stopped"
    assert "line 25" in line, "line numbers count the lines before the watch started"
    writer.kill()
    writer.wait()
    watcher.send_signal(signal.SIGINT)
    rest = "".join(out.rest())
    assert watcher.wait(20) == 1, "anomalies found -> exit code 1"
    assert "-- summary --" in rest and "nan x" in rest


def test_watch_with_pid_kills_the_writer_on_nan(tmp_path: Path, cleanup) -> None:
    """With --pid and --on nan=kill the writer is gone, and ftmon ends by itself with a summary."""
    log = tmp_path / "train.log"
    log.touch()
    stamp = tmp_path / "stamp"
    writer = start_writer(log, "--interval", "0.05", "--nan-at", "30", "--stamp", str(stamp))
    cleanup.append(writer)
    watcher, out = start_ftmon(
        "--watch", str(log), "--from-start", "--json", "--pid", str(writer.pid),
        "--on", "nan=kill", "--grace", "5",
    )  # fmt: skip
    cleanup.append(watcher)
    records = [json.loads(line) for line in out.rest(timeout=60)]
    assert watcher.wait(20) == 1
    assert writer.wait(5) == 143, "the writer's own SIGTERM handler ran"
    assert "sigterm" in stamp.read_text(), "the writer received SIGTERM"
    types = [r["type"] for r in records]
    assert types[-1] == "summary" and "anomaly" in types and "action" in types
    anomaly = next(r for r in records if r["type"] == "anomaly" and r["rule"] == "nan")
    assert anomaly["lineno"] == 30 and anomaly["evidence"]
    assert set(anomaly) == {
        "type", "rule", "severity", "message", "lineno", "evidence", "ts", "run_id",
    }  # fmt: skip
    action = next(r for r in records if r["type"] == "action")
    assert action["kind"] == "kill" and action["rule"] == "nan" and action["ok"] is True
    assert set(action) == {"type", "kind", "rule", "detail", "ok", "ts"}
    summary = records[-1]
    assert summary["ended"] == "exit" and summary["anomalies"]["nan"] >= 1
    assert summary["exit"]["killed_by_ftmon"].startswith("nan")
    assert summary["lines"] >= 30


def test_watch_with_pid_pause_stops_the_writer(tmp_path: Path, cleanup) -> None:
    """--on nan=pause stops the writer: its log stops growing until it is continued."""
    log = tmp_path / "train.log"
    log.touch()
    writer = start_writer(log, "--interval", "0.02", "--nan-at", "10")
    cleanup.append(writer)
    watcher, out = start_ftmon(
        "--watch", str(log), "--from-start", "--pid", str(writer.pid), "--on", "nan=pause"
    )
    cleanup.append(watcher)
    action = out.until(lambda s: "ACTION" in s and "pause" in s)
    assert f"kill -CONT {writer.pid}" in action, "says how to resume"
    wait_for(lambda: psutil.Process(writer.pid).status() == psutil.STATUS_STOPPED)
    size = log.stat().st_size
    time.sleep(0.4)
    assert log.stat().st_size == size
    os.kill(writer.pid, signal.SIGCONT)
    wait_for(lambda: log.stat().st_size > size)
    writer.kill()
    writer.wait()
    assert watcher.wait(20) == 1, "ends by itself when the pid exits"


def test_watch_notice_never_triggers_a_kill(tmp_path: Path, cleanup) -> None:
    """On a machine without an NVIDIA GPU, --on vram=kill leaves the writer alone: the
    "vram rule off" notice is news, and the writer runs to its own clean end."""
    log = tmp_path / "train.log"
    log.touch()
    writer = start_writer(log, "--interval", "0.05", "--count", "20")
    cleanup.append(writer)
    watcher, out = start_ftmon(
        "--watch", str(log), "--from-start", "--json", "--pid", str(writer.pid),
        "--on", "vram=kill", "--set", "watch.vram.poll_secs=0.05",
    )  # fmt: skip
    cleanup.append(watcher)
    records = [json.loads(line) for line in out.rest(timeout=60)]
    watcher.wait(20)
    assert writer.wait(20) == 0, "the writer ended by itself"
    assert any(r["type"] == "anomaly" and r["rule"] == "vram" for r in records), "notice shown"
    assert not any(r["type"] == "action" for r in records)
    assert records[-1]["type"] == "summary" and not records[-1]["exit"]["killed_by_ftmon"]


def test_watch_on_a_healthy_log_exits_0_on_sigterm(tmp_path: Path, cleanup) -> None:
    """A watch that found nothing ends on SIGTERM with a summary and exit code 0."""
    log = tmp_path / "train.log"
    log.write_text(HEALTHY * 3)
    watcher, out = start_ftmon("--watch", str(log), "--from-start", "--json")
    cleanup.append(watcher)
    wait_ready(watcher)
    watcher.send_signal(signal.SIGTERM)
    records = [json.loads(line) for line in out.rest()]
    assert watcher.wait(20) == 0
    assert records[-1]["type"] == "summary" and records[-1]["anomalies"] == {}
    assert records[-1]["lines"] == 3 and records[-1]["last_loss"] == pytest.approx(1.2345)


def test_scan_exit_codes_and_corpus_findings(tmp_path: Path) -> None:
    """scan: 0 on a healthy corpus file; 1 and the labelled rule at its line on an anomalous one."""
    healthy = ftmon("scan", str(CORPUS / "010_normal_torchtune.log"))
    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "anomalies: none" in healthy.stdout
    found = ftmon("scan", "--json", str(CORPUS / "001_nan_nanogpt.log"))
    assert found.returncode == 1, found.stderr
    records = [json.loads(line) for line in found.stdout.splitlines()]
    assert any(r["type"] == "anomaly" and r["rule"] == "nan" for r in records)
    assert min(r["lineno"] for r in records if r.get("rule") == "nan") in range(9, 16)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["scan", "{missing}"], "no such file"),
        (["scan", "{dir}"], "is a directory"),
        (["scan", "{notdir}"], "cannot read"),
        (["--watch", "{missing}"], "no such file"),
        (["--watch", "{log}", "--on", "nan=explode", "--pid", "1"], "unknown action"),
        (["--watch", "{log}", "--on", "nope=kill", "--pid", "1"], "unknown rule"),
        (["--watch", "{log}", "--on", "nan=kill"], "needs --pid"),
        (["--watch", "{log}", "--on", "exit=kill", "--pid", "1"], "only alert"),
        (["--watch", "{log}", "--pid", "999999999"], "no such process"),
        (["--watch", "{log}", "--pid", "{self}", "--on", "oom=kill"], "is ftmon itself"),
        (["scan", "{log}", "--set", "watch.nosuchrule.x=1"], "watch.nosuchrule"),
        (["scan", "{log}", "--pattern", "("], "--pattern"),
        (["scan", "{log}", "--pattern", "loss=\\d+"], "named groups"),
    ],
)
def test_bad_usage_or_input_is_one_line_and_exit_2(tmp_path: Path, args, words, capsys) -> None:
    """Bad usage or an unreadable log: exit code 2 and one clear line naming the problem."""
    from supervisor.cli.main import main

    log = tmp_path / "ok.log"
    log.write_text(HEALTHY)
    values = {
        "missing": str(tmp_path / "missing.log"),
        "dir": str(tmp_path),
        "notdir": str(log / "x.log"),
        "log": str(log),
        "self": str(os.getpid()),
    }
    code = main([a.format(**values) for a in args])  # in-process: an exception fails the test
    err = capsys.readouterr().err
    assert code == 2, err
    assert words in err
    assert len(err.strip().splitlines()) == 1


def test_the_real_command_exits_2_without_a_traceback(tmp_path: Path) -> None:
    """`ftmon scan` on a missing file, as a process: exit code 2, one line, no traceback."""
    result = ftmon("scan", str(tmp_path / "missing.log"))
    assert result.returncode == 2
    assert result.stderr.strip() == f"ftmon: {tmp_path / 'missing.log'}: no such file"


def test_scan_survives_hostile_bytes_and_a_50mb_line(tmp_path: Path) -> None:
    """Invalid UTF-8, NUL bytes, ANSI codes, Rich markup and a 50 MB line are scanned, no crash."""
    log = tmp_path / "hostile.log"
    with open(log, "wb") as fh:
        fh.write(b"\xff\xfe broken utf-8 \xc3\x28 here\n")
        fh.write(b"nul\x00bytes\x00inside\n")
        fh.write(b"\x1b[31mred\x1b[0m \x1b]0;title\x07 ansi\n")
        fh.write(b"[bold red]not markup[/bold red] [link=x]y[/link]\n")
        fh.write(b"x" * (50 * 1024 * 1024) + b"\n")
        fh.write(b"{'loss': nan, 'grad_norm': 1.0, 'learning_rate': 1e-05, 'epoch': 0.1}\n")
    result = ftmon("scan", "--json", str(log))
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert result.returncode == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert records[-1]["lines"] == 6
    nan = [r for r in records if r.get("rule") == "nan"]
    assert nan and nan[0]["lineno"] == 6, "the line after the huge one keeps its number"
    assert all(len(line) < 2_000_000 for line in result.stdout.splitlines()), "output bounded"


def test_text_output_is_one_readable_line_per_anomaly(tmp_path: Path) -> None:
    """Each anomaly prints as a time stamp and Anomaly.one_line(), then the summary."""
    log = tmp_path / "t.log"
    log.write_text(HEALTHY * 2 + "{'loss': nan, 'grad_norm': nan, 'learning_rate': 2e-05}\n")
    result = ftmon("scan", str(log))
    assert result.returncode == 1
    first = result.stdout.splitlines()[0]
    stamp, _, rest = first.partition("  ")
    assert len(stamp) == 8 and stamp.count(":") == 2
    assert "nan" in rest and "line 3" in rest
    assert "last loss" in result.stdout


# ------------------------------------------------------------------ watch_log in-process


def test_watch_log_reads_the_last_words_of_a_run_before_its_exit(tmp_path: Path) -> None:
    """A run's final unfinished line is read, then its exit fed; resources are sampled meanwhile."""
    import asyncio

    from supervisor.events import Anomaly, Metric
    from supervisor.monitoring.monitor import Monitor
    from supervisor.monitoring.watch import watch_log

    log = tmp_path / "train.log"
    code = (
        "import sys, time\n"
        f"f = open({str(log)!r}, 'a')\n"
        "for i in range(1, 6):\n"
        "    loss = 2 - i / 10\n"
        "    f.write(\"{'loss': %.2f, 'grad_norm': 1.0, 'learning_rate': 1e-05}\\n\" % loss)\n"
        "    f.flush(); time.sleep(0.1)\n"
        "f.write('Traceback (most recent call last):\\n  File \"t.py\", line 1\\n')\n"
        "f.write('RuntimeError: CUDA error: an illegal memory access')  # no newline\n"
        "f.flush(); sys.exit(3)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code])
    events: list[object] = []
    samples: list[object] = []

    async def scenario():
        return await watch_log(
            log, Monitor(), events.append, from_start=True, pid=proc.pid, poll_secs=0.05,
            on_resource=samples.append,
        )  # fmt: skip

    summary = asyncio.run(asyncio.wait_for(scenario(), 60))
    proc.wait()
    assert summary.ended == "exit" and summary.exit.returncode == 3
    assert summary.lines == 8, "the unfinished last line was read too"
    assert [e.values["loss"] for e in events if isinstance(e, Metric)] == [1.9, 1.8, 1.7, 1.6, 1.5]
    rules = [e.rule for e in events if isinstance(e, Anomaly)]
    assert "traceback" in rules and rules[-1] == "exit", "the exit comes after the last lines"
    assert samples and all(s.pid == proc.pid for s in samples)


def test_watch_log_stops_when_asked_and_leaves_the_process_alone(tmp_path: Path) -> None:
    """Setting `stop` ends the watch (ended="stop") while the watched process runs on."""
    import asyncio

    from supervisor.monitoring.monitor import Monitor
    from supervisor.monitoring.watch import watch_log

    log = tmp_path / "train.log"
    writer = start_writer(log, "--interval", "0.02")
    try:
        wait_for(lambda: log.exists() and log.stat().st_size > 0)

        async def scenario():
            stop = asyncio.Event()
            asyncio.get_running_loop().call_later(0.5, stop.set)
            return await watch_log(log, Monitor(), lambda e: None, pid=writer.pid, stop=stop)

        summary = asyncio.run(asyncio.wait_for(scenario(), 30))
        assert summary.ended == "stop" and summary.exit is None
        assert summary.lines > 0 and summary.last_loss is not None
        assert writer.poll() is None
    finally:
        writer.kill()
        writer.wait()


def test_a_monitor_failure_on_one_batch_does_not_end_the_scan(tmp_path: Path, caplog) -> None:
    """If judging one batch of lines raises, it is logged and the lines after it are still read."""
    from supervisor.events import Anomaly
    from supervisor.monitoring.monitor import Monitor
    from supervisor.monitoring.watch import WatchSummary, scan_file

    class FailsOnce(Monitor):
        failed = False

        def feed_lines(self, lines, ts):
            if not self.failed:
                self.failed = True
                raise RuntimeError("a rule's bug")
            return super().feed_lines(lines, ts)

    log = tmp_path / "t.log"
    log.write_text(HEALTHY + "x" * (1 << 22) + "\n" + "{'loss': nan, 'learning_rate': 1e-05}\n")
    summary = WatchSummary(path=str(log))
    events = scan_file(log, FailsOnce(), summary)
    assert "a rule's bug" in caplog.text
    assert summary.lines == 3
    assert [e.lineno for e in events if isinstance(e, Anomaly) and e.rule == "nan"] == [3]


def test_scan_refuses_a_file_that_is_not_a_text_log(tmp_path: Path, capsys) -> None:
    """Scanning a checkpoint by mistake is exit 2 with one line saying it does not look like a
    log (no "no anomalies" that would mean nothing); a Latin-1 log scans quietly, exit 0; an
    empty one points at --watch."""
    from supervisor.cli.main import main

    binary = tmp_path / "model.bin"
    binary.write_bytes(bytes(range(256)) * 64)
    assert main(["scan", str(binary)]) == 2
    out, err = capsys.readouterr()
    assert "does not look like a text log" in err and len(err.strip().splitlines()) == 1
    assert "-- summary --" not in out
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    latin = tmp_path / "latin.log"
    latin.write_bytes("".join(f"étape {i} perte 0.5\n" for i in range(50)).encode("latin-1"))
    assert main(["scan", str(latin)]) == 0
    out, err = capsys.readouterr()
    assert err == "" and "anomalies: none" in out and "50 lines read" in out
    assert main(["scan", str(empty)]) == 0
    out, err = capsys.readouterr()
    assert "0 lines read" in out and f"to follow a log as it grows: ftmon --watch {empty}" in err


def test_a_log_that_starts_with_a_hole_of_nuls_is_still_a_log(tmp_path: Path, capsys) -> None:
    """`python train.py > train.log` rotated by logrotate's copytruncate: the trainer writes on
    at its old offset, so the file starts with a run of NUL bytes (a hole) and then the log.
    That is a log, not a checkpoint: its NaN is reported."""
    from supervisor.cli.main import main

    log = tmp_path / "train.log"
    with open(log, "wb") as f:
        f.truncate(3 << 20)  # what copytruncate leaves: zeros up to the writer's offset
        f.seek(3 << 20)
        f.write(b"step 900 loss 1.20\nstep 901 loss 1.19\nstep 902 loss nan\n")
    assert main(["scan", str(log)]) == 1
    out, err = capsys.readouterr()
    assert "loss is nan at step 902" in out and "does not look like" not in err
