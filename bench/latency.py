"""How fast ftmon acts: from a child writing a NaN line to ftmon's SIGTERM reaching the child.

    python bench/latency.py [--trials 50] [--interval 0.02]

Each trial starts the chatty fixture writing healthy HF-Trainer lines into a log, waits until the
reader is following the log and SETTLE more seconds (a steady state, not start-up), then sends
the child SIGUSR1: the child writes a `{'loss': nan, ...}` line, recording the time just before
the write; its SIGTERM handler records the arrival of the signal. Three readers, in the same run
on the same machine:

- baseline: a plain `tail -n0 -f LOG` (GNU tail, inotify); latency = write -> line read from
  tail's stdout. This is what "as fast as a file can be followed" costs here.
- in-process: `watch_log` + Monitor + `kill_tree_async` in this interpreter; write -> SIGTERM.
- cli: `ftmon --watch LOG --pid CHILD --on nan=kill`; write -> SIGTERM.

It then measures the CPU cost of sampling a process tree at 20 Hz with ResourceProbe (cached
process objects, children refreshed every 2 s) against walking the tree afresh on each sample.
Figures are printed (p50 / p99 in ms, ratios against the baseline); nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor import process  # noqa: E402
from supervisor.events import Anomaly  # noqa: E402
from supervisor.monitoring.resources import ResourceProbe  # noqa: E402

CHATTY = ROOT / "tests" / "programs" / "chatty.py"
# A NaN comes long after a run starts: let the reader read a few healthy batches first, so that
# one-time costs (imports, pattern compilation on the first batch) stay out of the figures.
SETTLE = 0.3


def start_child(log: Path, stamp: Path, interval: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, str(CHATTY), "--log", str(log), "--stamp", str(stamp),
         "--interval", str(interval)],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip


def stamps(path: Path) -> dict[str, float]:
    out: dict[str, float] = {}
    for line in path.read_text().splitlines():
        name, value = line.split()
        out.setdefault(name, float(value))
    return out


def wait_open(pid: int, log: Path, timeout: float = 30.0) -> None:
    """Until process `pid` has `log` open: the reader is following it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if str(log) in {f.path for f in psutil.Process(pid).open_files()}:
                return
        except psutil.Error:
            pass
        time.sleep(0.01)
    raise RuntimeError(f"pid {pid} never opened {log}")


def wait_lines(log: Path, n: int = 3) -> None:
    while not log.exists() or log.read_bytes().count(b"\n") < n:
        time.sleep(0.01)


def trial_tail(tmp: Path, interval: float) -> float:
    log, stamp = tmp / "train.log", tmp / "stamp"
    child = start_child(log, stamp, interval)
    try:
        wait_lines(log)
        reader = subprocess.Popen(
            ["tail", "-n0", "-f", str(log)], stdout=subprocess.PIPE, bufsize=0
        )
        try:
            wait_open(reader.pid, log)
            child.send_signal(signal.SIGUSR1)
            buf = b""
            assert reader.stdout is not None
            while b"nan" not in buf:
                buf = buf.rsplit(b"\n", 1)[-1] + reader.stdout.read(65536)
            seen = time.time()
        finally:
            reader.kill()
            reader.wait()
        while "nan" not in stamps(stamp):
            time.sleep(0.001)
        return seen - stamps(stamp)["nan"]
    finally:
        child.kill()
        child.wait()


def trial_in_process(tmp: Path, interval: float) -> float:
    from supervisor.monitoring.monitor import Monitor
    from supervisor.monitoring.watch import start_of_last_line, watch_log

    log, stamp = tmp / "train.log", tmp / "stamp"
    child = start_child(log, stamp, interval)
    wait_lines(log)

    async def run() -> None:
        kills: list[asyncio.Task[process.KillReport]] = []

        def on_event(event: object) -> None:
            if isinstance(event, Anomaly) and event.rule == "nan" and not kills:
                kills.append(asyncio.create_task(process.kill_tree_async(child.pid, None, 5.0)))

        offset, lineno = start_of_last_line(log)  # from here on, every line written is read
        watching = asyncio.create_task(
            watch_log(log, Monitor(), on_event, pid=child.pid, poll_secs=0.05,
                      offset=offset, lineno=lineno)
        )  # fmt: skip
        await asyncio.sleep(SETTLE)
        child.send_signal(signal.SIGUSR1)
        await watching
        await asyncio.gather(*kills)

    try:
        asyncio.run(run())
        child.wait(10)
        got = stamps(stamp)
        return got["sigterm"] - got["nan"]
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def trial_cli(tmp: Path, interval: float) -> float:
    log, stamp = tmp / "train.log", tmp / "stamp"
    child = start_child(log, stamp, interval)
    try:
        wait_lines(log)
        ftmon = subprocess.Popen(
            [sys.executable, "-m", "supervisor", "--watch", str(log), "--pid", str(child.pid),
             "--on", "nan=kill", "--grace", "5"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert ftmon.stderr is not None
        ready = ftmon.stderr.readline()  # "ftmon: watching ...": from now on every line is read
        assert ready.startswith("ftmon: watching"), ready
        time.sleep(SETTLE)
        child.send_signal(signal.SIGUSR1)
        ftmon.wait(30)
        child.wait(10)
        got = stamps(stamp)
        return got["sigterm"] - got["nan"]
    finally:
        for proc in (child,):
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def measure(name: str, trial, trials: int, interval: float) -> list[float]:
    out = []
    for _ in range(trials):
        with tempfile.TemporaryDirectory(prefix="ftmon-lat-") as tmp:
            out.append(trial(Path(tmp), interval) * 1000)
    print(
        f"{name:12} n={len(out):3}  p50 {statistics.median(out):7.2f} ms  "
        f"p99 {percentile(out, 99):7.2f} ms  max {max(out):7.2f} ms",
        flush=True,
    )
    return out


def probe_cost(seconds: float = 5.0, hz: float = 20.0, children: int = 32) -> None:
    """CPU this process spends sampling a tree of `children` + 1 processes at `hz`."""
    code = "import time; time.sleep(600)"
    root = subprocess.Popen(
        [sys.executable, "-c",
         f"import subprocess,sys,time\n"
         f"ps=[subprocess.Popen([sys.executable,'-c',{code!r}]) for _ in range({children})]\n"
         f"time.sleep(600)"],
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while len(psutil.Process(root.pid).children()) < children:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        n = int(seconds * hz)

        def idle() -> None:  # the sampling loop with nothing sampled: its own overhead
            for _ in range(n):
                time.sleep(1 / hz)

        def cached() -> None:
            probe = ResourceProbe(gpu=None)
            for _ in range(n):
                probe.sample(root.pid, time.time())
                time.sleep(1 / hz)

        def naive() -> None:  # psutil, the tree walked and every process read afresh each time
            for _ in range(n):
                proc = psutil.Process(root.pid)
                tree = [proc, *proc.children(recursive=True)]
                sum(p.memory_info().rss for p in tree)
                sum(p.cpu_percent(interval=None) for p in tree)
                psutil.virtual_memory()
                time.sleep(1 / hz)

        cpu = {}
        for name, fn in (("idle", idle), ("naive", naive), ("cached", cached)):
            t0 = time.process_time()
            fn()
            cpu[name] = time.process_time() - t0
        per = {k: (cpu[k] - cpu["idle"]) / n * 1e6 for k in ("naive", "cached")}
        share = {k: per[k] * hz / 1e6 * 100 for k in per}
        print(
            f"probe at {hz:.0f} Hz, tree of {children + 1}: ResourceProbe {per['cached']:.0f} us "
            f"per sample = {share['cached']:.2f}% of one core; psutil walk every sample "
            f"{per['naive']:.0f} us = {share['naive']:.2f}% "
            f"(ratio {per['cached'] / per['naive']:.2f})"
        )
    finally:
        for child in psutil.Process(root.pid).children(recursive=True):
            child.kill()
        root.kill()
        root.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--interval", type=float, default=0.02, help="child's seconds per line")
    ap.add_argument("--skip-cli", action="store_true", help="only the in-process measurement")
    args = ap.parse_args()
    print(f"latency from the NaN line's write to the reader ({args.trials} trials each, "
          f"{os.cpu_count()} CPUs)")  # fmt: skip
    base = measure("tail -f", trial_tail, args.trials, args.interval)
    inproc = measure("in-process", trial_in_process, args.trials, args.interval)
    rows = [("in-process", inproc)]
    if not args.skip_cli:
        rows.append(("cli", measure("cli", trial_cli, args.trials, args.interval)))
    b50, b99 = statistics.median(base), percentile(base, 99)
    for name, values in rows:
        print(
            f"{name:12} vs tail -f: p50 x{statistics.median(values) / b50:.1f}, "
            f"p99 x{percentile(values, 99) / b99:.1f} (target: p99 < 50 ms)"
        )
    probe_cost()


if __name__ == "__main__":
    main()
