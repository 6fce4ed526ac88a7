"""One ftmon following many rank logs: CPU of one core, and the lag from a NaN line to the
kill of every rank.

    python bench/ranks.py                    # 64 ranks x 50 lines/s, 10 s window, 30 NaN trials
    python bench/ranks.py --ranks 16 --secs 5 --trials 10

A writer process (not measured) appends one trainer-shaped JSON metric line per rank every
1/rate s to one file per rank, as torchrun's `--log-dir` does. This process follows all of
them, each file with the real tailer (inotify) and its own `Monitor()` (every rule), in one
event loop: its CPU time over the window, as a share of one core, is the figure. The baseline,
measured in the same run over the same files: the same tailers with no parsing and no rules
(what reading alone costs), so the ratio is what ftmon's parsing and rules add. 512 ranks on
paper: the per-line cost times 512 x rate.

NaN -> kill: each trial starts `--ranks` real processes in one process group (the ranks), writes
a NaN metric line into one rank's log and times (a) the line's write to the `nan` anomaly and
(b) the write to every rank process gone (signals.kill_tree: SIGTERM to the group, confirm).
Figures only, no assertions (tests check behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from supervisor.events import Anomaly, Event  # noqa: E402
from supervisor.monitoring.monitor import Monitor  # noqa: E402
from supervisor.monitoring.resources import descendant_pids  # noqa: E402
from supervisor.monitoring.watch import watch_log  # noqa: E402
from supervisor.runs.executors import process  # noqa: E402


def cpu_secs() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def write_lines(folder: Path, ranks: int, rate: float, secs: float, stream: bool) -> None:
    """The writer process: one metric line per rank per 1/rate s, for `secs`: into one file per
    rank, or (`stream`) into one file with torchrun's `[rankN]:` prefixes (`--tee`)."""
    if stream:
        one = (folder / "ranks.log").open("a", buffering=1)
        files = [one] * ranks
    else:
        files = [(folder / f"rank{r}.log").open("a", buffering=1) for r in range(ranks)]
    period = 1.0 / rate
    start = time.monotonic()
    step = 0
    while time.monotonic() - start < secs:
        step += 1
        for r, fh in enumerate(files):
            fh.write(
                (f"[rank{r}]:" if stream else "")
                + json.dumps({"type": "metric", "step": step, "loss": 2.0 + 1.0 / step,
                            "grad_norm": 1.2, "lr": 2e-4, "tok_s": 5321.0, "rank": r})
                + "\n"
            )  # fmt: skip
        time.sleep(max(0.0, start + step * period - time.monotonic()))


class NullMonitor:
    """Reading alone: the tailer's lines go nowhere (the baseline)."""

    def feed_lines(self, lines: list[object], ts: float) -> list[Event]:
        return []

    def tick(self, ts: float) -> list[Event]:
        return []

    def feed_resource(self, sample: object) -> list[Event]:
        return []

    def feed_exit(self, exit: object) -> list[Event]:
        return []


async def follow(
    paths: list[Path], make_monitor: type, secs: float, on_event: object = None
) -> tuple[float, int]:
    """Follow every path for `secs`: (CPU seconds used, lines read)."""
    stop = asyncio.Event()
    lines = 0

    def count(event: Event) -> None:
        if on_event is not None:
            on_event(event)  # type: ignore[operator]

    tasks = [
        asyncio.create_task(watch_log(p, make_monitor(), count, from_start=False, stop=stop))
        for p in paths
    ]
    await asyncio.sleep(0.5)  # every tailer at the end of its file
    before = cpu_secs()
    await asyncio.sleep(secs)
    used = cpu_secs() - before
    stop.set()
    for summary in await asyncio.gather(*tasks):
        lines += summary.lines
    return used, lines


def start_ranks(n: int) -> subprocess.Popen[bytes]:
    """`n` sleeping processes in one new process group (the leader execs the last one)."""
    script = f"i=1; while [ $i -lt {n} ]; do sleep 600 & i=$((i+1)); done; exec sleep 600"
    leader = subprocess.Popen(["sh", "-c", script], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(descendant_pids(leader.pid)) < n - 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    return leader


async def nan_trials(folder: Path, ranks: int, trials: int) -> tuple[list[float], list[float]]:
    """Lags (ms) from the NaN line's write to the anomaly, and to every rank gone."""
    paths = [folder / f"rank{r}.log" for r in range(ranks)]
    stop = asyncio.Event()
    seen: asyncio.Queue[float] = asyncio.Queue()

    def on_event(event: Event) -> None:
        if isinstance(event, Anomaly) and event.rule == "nan":
            seen.put_nowait(time.monotonic())

    tasks = [
        asyncio.create_task(watch_log(p, Monitor(), on_event, from_start=False, stop=stop))
        for p in paths
    ]
    await asyncio.sleep(0.5)
    detect, kill = [], []
    for trial in range(trials):
        leader = start_ranks(ranks)
        await asyncio.sleep(0.2)
        line = json.dumps({"type": "metric", "step": 10**6 + trial, "loss": float("nan"),
                           "grad_norm": float("nan"), "rank": trial % ranks})  # fmt: skip
        fd = os.open(paths[trial % ranks], os.O_WRONLY | os.O_APPEND)
        t0 = time.monotonic()
        os.write(fd, (line + "\n").encode())
        os.close(fd)
        t1 = await asyncio.wait_for(seen.get(), 10)
        report = await process.kill_tree_async(leader.pid, leader.pid, 2.0)
        t2 = time.monotonic()
        assert report.all_gone, report.detail()
        detect.append((t1 - t0) * 1000)
        kill.append((t2 - t0) * 1000)
        leader.wait()
    stop.set()
    await asyncio.gather(*tasks)
    return detect, kill


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ranks", type=int, default=64)
    ap.add_argument("--rate", type=float, default=50.0, help="lines per second per rank")
    ap.add_argument("--secs", type=float, default=10.0, help="measurement window")
    ap.add_argument("--trials", type=int, default=30, help="NaN -> kill trials")
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="ftmon-bench-ranks-"))
    paths = [folder / f"rank{r}.log" for r in range(args.ranks)]
    for p in [*paths, folder / "ranks.log"]:
        p.touch()
    figures = {}
    for stream in (False, True):
        total = 2 * (args.secs + 1.5) + 1
        writer = subprocess.Popen(
            [sys.executable, "-c",
             f"import sys; sys.path.insert(0, {str(ROOT)!r}); from bench.ranks import write_lines; "
             f"from pathlib import Path; write_lines(Path({str(folder)!r}), {args.ranks}, "
             f"{args.rate}, {total}, {stream})"],
        )  # fmt: skip
        followed = [folder / "ranks.log"] if stream else paths
        try:
            base = asyncio.run(follow(followed, NullMonitor, args.secs))
            full = asyncio.run(follow(followed, Monitor, args.secs))
        finally:
            writer.wait()
        figures[stream] = (base, full)
    detect, kill = asyncio.run(nan_trials(folder, args.ranks, args.trials))
    offered = args.ranks * args.rate
    kill_only = [k - d for k, d in zip(kill, detect, strict=True)]
    print(f"ranks.py: {args.ranks} ranks x {args.rate:g} lines/s = {offered:g} lines/s offered, "
          f"{args.secs:g} s windows")  # fmt: skip
    for stream, ((base_cpu, base_lines), (cpu, lines)) in figures.items():
        how = "one stream, [rankN]: prefixes (torchrun --tee)" if stream else "one file per rank"
        share, base_share = cpu / args.secs, base_cpu / args.secs
        per_line_us = cpu / (offered * args.secs) * 1e6  # the lines written in the window
        print(f"  {how}:")
        print(f"    follow + parse + every rule: {share:6.1%} of one core "
              f"({per_line_us:.1f} us of CPU per line written; {lines} read in all)")  # fmt: skip
        print(f"    baseline, reading only:      {base_share:6.1%} of one core "
              f"({base_lines} lines); ratio {share / max(base_share, 1e-9):.2f}x")  # fmt: skip
        print(f"    512 ranks on paper: {512 * args.rate * per_line_us / 1e6:.0%} of one core "
              f"({512 * args.rate:g} lines/s x {per_line_us:.1f} us)")  # fmt: skip
    print(
        f"  NaN line -> nan anomaly ({len(detect)} trials): p50 {pct(detect, 0.5):.1f} ms, "
        f"p99 {pct(detect, 0.99):.1f} ms"
    )
    print(
        f"  NaN line -> all {args.ranks} rank processes gone: p50 {pct(kill, 0.5):.1f} ms, "
        f"p99 {pct(kill, 0.99):.1f} ms, max {max(kill):.1f} ms "
        f"(median kill alone {statistics.median(kill_only):.1f} ms)"
    )


if __name__ == "__main__":
    main()
