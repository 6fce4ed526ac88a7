"""How fast does ftmon read a whole log, against `grep -cE` of the anomaly words on the same file?

    python bench/scan.py                 # 1M lines, cached under bench/out/
    python bench/scan.py --lines 200000 --profile
    mkdir /tmp/before && git archive REV | tar -x -C /tmp/before && \
        python bench/scan.py --before /tmp/before

Prints seconds, lines per second and ratios to grep, measured in the same run, for: splitting
the file into lines (Tail's LineSplitter), splitting + parsing every line (Parser), and `ftmon
scan` itself (the whole Monitor: parse + rules), and checks that every anomaly planted by
make_log.py was reported. With `--before DIR` (another checkout of ftmon), its `ftmon scan` is
timed in the same run too, and the two reports are compared: same anomalies at the same lines,
same number of metrics. Figures, not assertions: the machine's load decides the absolute
numbers; compare the ratios.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from supervisor.parsing.parser import Parser  # noqa: E402
from supervisor.reading.tail import iter_file_lines  # noqa: E402

OUT = ROOT / "bench" / "out"
MAKE_LOG = next(
    (
        p
        for p in (
            ROOT.parent / "shared" / "bench" / "make_log.py",
            Path("/work/shared/bench/make_log.py"),
        )
        if p.is_file()
    ),
    None,
)
# What a person would grep a training log for.
ANOMALY_WORDS = (
    "nan|inf|out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED|Traceback|F F F F"
)
LABEL_OF_RULE = {
    "nan": "nan",
    "oom": "oom",
    "repetition": "repetition",
    "spike": "spike",
    "grad_norm": "spike",
    "divergence": "spike",
    "kl": "spike",
}


def make_log(lines: int) -> tuple[Path, Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    log = OUT / f"scan-{lines}.log"
    planted = OUT / f"scan-{lines}.planted.tsv"
    if not (log.is_file() and planted.is_file()):
        if MAKE_LOG is None:
            sys.exit("make_log.py not found (expected ../shared/bench/make_log.py)")
        print(f"writing {log} ({lines:,} lines) ...", flush=True)
        with open(planted, "wb") as err:
            subprocess.run(
                [
                    sys.executable,
                    str(MAKE_LOG),
                    "--lines",
                    str(lines),
                    "--plant",
                    "20",
                    "--out",
                    str(log),
                ],
                check=True,
                stderr=err,
            )
    return log, planted


@dataclass
class Timing:
    wall: float  # seconds on the clock
    cpu: float  # CPU seconds (user + system) of this process and of the children it waited for


def measure(fn: Callable[[], object]) -> tuple[Timing, object]:
    """Wall and CPU time of one call. CPU time moves much less than wall time when other
    programs share the machine, so the ratios below are taken on it."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0, c0 = time.perf_counter(), time.process_time()
    result = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu += (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu), result


def best_of(repeat: int, fn: Callable[[], object]) -> tuple[Timing, object]:
    best, result = None, None
    for _ in range(repeat):
        t, result = measure(fn)
        if best is None or t.cpu < best.cpu:
            best = t
    assert best is not None
    return best, result


def grep(log: Path) -> int:
    """`grep -cE WORDS LOG | cat`: through a pipe, as a person reads it (GNU grep whose output
    is /dev/null stops at the first match, so it would read almost nothing)."""
    g = subprocess.Popen(["grep", "-cE", ANOMALY_WORDS, str(log)], stdout=subprocess.PIPE)
    cat = subprocess.run(["cat"], stdin=g.stdout, capture_output=True, text=True)
    assert g.stdout is not None
    g.stdout.close()
    g.wait()
    return int(cat.stdout.strip() or 0)


def split_only(log: Path) -> int:
    return sum(len(batch) for batch in iter_file_lines(log))


def split_and_parse(log: Path) -> int:
    parse = Parser().parse
    n = 0
    for batch in iter_file_lines(log):
        for line in batch:
            n += len(parse(line, 0.0))
    return n


def monitor_lines(log: Path, batch: bool) -> int:
    """The whole Monitor in this process, batches of up to 4 MiB as `ftmon scan` reads them:
    through batch.py (`batch`), or the per-line loop that a live log's few lines take."""
    from supervisor.monitoring import monitor as monitor_module

    saved = monitor_module.BATCH_LINES
    monitor_module.BATCH_LINES = 1 if batch else 1 << 62
    try:
        monitor = monitor_module.Monitor()
        n = 0
        for lines in iter_file_lines(log):
            n += len(monitor.feed_lines(lines, 0.0))
        return n
    finally:
        monitor_module.BATCH_LINES = saved


def ftmon_scan(log: Path, root: Path = ROOT) -> list[dict]:
    """`ftmon scan LOG --json` of the checkout at `root` (`python -m` puts it first on the path)."""
    out = subprocess.run(
        [sys.executable, "-m", "supervisor", "scan", str(log.resolve()), "--json"],
        capture_output=True,
        text=True,
        cwd=root,
    )
    if out.returncode not in (0, 1):
        raise SystemExit(f"ftmon scan failed ({out.returncode}): {out.stderr.strip()[-500:]}")
    return [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]


def check_planted(planted: Path, records: list[dict]) -> tuple[int, int, list[str]]:
    found = [
        (r["lineno"], LABEL_OF_RULE.get(r["rule"], r["rule"]))
        for r in records
        if r.get("type") == "anomaly"
    ]
    missed = []
    total = 0
    for row in planted.read_text().splitlines():
        line, kind = row.split("\t")
        total += 1
        if not any(label == kind and abs(n - int(line)) <= 3 for n, label in found):
            missed.append(f"{kind}@{line}")
    return total - len(missed), total, missed


def answers(records: list[dict]) -> tuple[list[tuple[object, ...]], object]:
    """What two scans must agree on: each anomaly (rule, line, message) and the metric count."""
    found = [(r["rule"], r["lineno"], r["message"]) for r in records if r.get("type") == "anomaly"]
    summary = next((r for r in records if r.get("type") == "summary"), {})
    return found, (summary.get("metrics"), summary.get("evals"), summary.get("anomalies"))


def profile(log: Path, limit: int) -> None:
    from supervisor.monitoring.monitor import Monitor

    monitor = Monitor()
    prof = cProfile.Profile()

    def run() -> None:
        seen = 0
        for batch in iter_file_lines(log):
            monitor.feed_lines(batch, 0.0)
            seen += len(batch)
            if seen >= limit:
                return

    prof.runcall(run)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(20)
    print(f"\ncProfile of Monitor.feed_lines over the first {limit:,} lines (by own time):")
    print(buf.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=1, help="best of N for each timing")
    ap.add_argument("--profile", action="store_true", help="cProfile the Monitor afterwards")
    ap.add_argument("--skip-ftmon", action="store_true", help="time only the in-process parts")
    ap.add_argument("--skip-monitor", action="store_true", help="skip the in-process Monitor rows")
    ap.add_argument(
        "--before", type=Path, help="another ftmon checkout whose `ftmon scan` to time and compare"
    )
    ap.add_argument(
        "--ranks",
        type=int,
        default=0,
        help="also time `ftmon scan` of N copies of the log (a job's rank logs): one at a time "
        "(--jobs 1) against one process per core",
    )
    a = ap.parse_args()
    if a.before is not None and not (a.before / "supervisor" / "__main__.py").is_file():
        sys.exit(f"--before {a.before}: no ftmon checkout there (supervisor/__main__.py)")
    if shutil.which("grep") is None:
        sys.exit("grep not found")
    log, planted = make_log(a.lines)
    size = os.path.getsize(log)
    print(
        f"log: {log} ({a.lines:,} lines, {size / 2**20:.0f} MiB); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    grep(log)  # warm the page cache so that nobody pays for the disk
    # grep runs again next to every row, and each row is compared with the grep runs on
    # either side of it: the load of a shared machine drifts within one benchmark.
    greps: list[Timing] = []
    rows: list[tuple[str, Timing, str, int]] = []

    def row(name: str, fn: Callable[[], object], note: Callable[[object], str]) -> object:
        t, result = best_of(a.repeat, fn)
        rows.append((name, t, note(result), len(greps) - 1))
        greps.append(best_of(a.repeat, lambda: grep(log))[0])
        return result

    t_grep, hits = best_of(a.repeat, lambda: grep(log))
    greps.append(t_grep)
    row("split into LogLines (iter_file_lines)", lambda: split_only(log), lambda n: f"{n:,} lines")
    row("split + Parser.parse every line", lambda: split_and_parse(log), lambda n: f"{n:,} events")
    if not a.skip_monitor:
        row("Monitor, per-line loop", lambda: monitor_lines(log, False), lambda n: f"{n:,} events")
        row(
            "Monitor, batch path (batch.py)",
            lambda: monitor_lines(log, True),
            lambda n: f"{n:,} events",
        )
    missed: list[str] = []
    before: list[dict] | None = None
    if a.before is not None and not a.skip_ftmon:
        before = row(  # type: ignore[assignment]
            f"ftmon scan, before ({a.before.name})", lambda: ftmon_scan(log, a.before), str
        )
        assert isinstance(before, list)
        name, t, _, g = rows[-1]
        metrics = answers(before)[1][0]
        rows[-1] = (name, t, f"{metrics:,} metrics" if isinstance(metrics, int) else "", g)
    if not a.skip_ftmon:
        records = row("ftmon scan (parse + rules, new process)", lambda: ftmon_scan(log), str)
        assert isinstance(records, list)
        summary = next((r for r in records if r.get("type") == "summary"), {})
        ok, total, missed = check_planted(planted, records)
        name, t, _, g = rows[-1]
        rows[-1] = (name, t, f"{summary.get('metrics', '?'):,} metrics, planted {ok}/{total}", g)
    print(f"\ngrep -cE '{ANOMALY_WORDS}' LOG | cat: {hits:,} matching lines")
    print(f"grep CPU seconds, run by run: {', '.join(f'{g.cpu:.2f}' for g in greps)}")
    print(f"\n{'what':40} {'cpu s':>7} {'wall s':>7} {'x grep':>7} {'lines/s':>10}  notes")
    rate = a.lines / t_grep.cpu if t_grep.cpu else 0.0
    first = f"{t_grep.cpu:7.2f} {t_grep.wall:7.2f} {1:7.1f} {rate:10,.0f}"
    print(f"{'grep -cE (first run)':40} {first}")
    for name, t, note, g in rows:
        base = (greps[g].cpu + greps[g + 1].cpu) / 2
        rate = a.lines / t.cpu if t.cpu else 0.0
        figures = f"{t.cpu:7.2f} {t.wall:7.2f} {t.cpu / base:7.1f} {rate:10,.0f}"
        print(f"{name[:40]:40} {figures}  {note}")
    print("(x grep: CPU time against the mean of the grep runs just before and after;")
    print(" lines/s: lines per CPU second)")
    if before is not None and not a.skip_ftmon:
        same = answers(before) == answers(records)  # type: ignore[arg-type]
        print(f"same answers as {a.before}: {'yes' if same else 'NO'} (anomalies, lines, metrics)")
    if not a.skip_ftmon and missed:
        print(f"MISSED planted anomalies: {', '.join(missed)}")
    if not a.skip_ftmon:
        name, t, _, g = rows[-1]
        base = (greps[g].cpu + greps[g + 1].cpu) / 2
        print(
            f"\nftmon scan: {a.lines / t.cpu:,.0f} lines per CPU second "
            f"({a.lines / t.wall:,.0f} per wall second), {t.cpu / base:.1f}x grep -cE | cat "
            "(the issue asks 1,000,000 lines/s and 5x or under; 2x is the aim)"
        )
    if a.ranks:
        ranks(log, a.lines, a.ranks)
    if a.profile:
        profile(log, min(a.lines, 200_000))


def ranks(log: Path, lines: int, n: int) -> None:
    """`ftmon scan` of n rank logs (copies of the log): wall seconds with --jobs 1 and with
    the default (one worker per core), and that both report the same."""

    def scan(jobs: list[str]) -> list[dict]:
        argv = [sys.executable, "-m", "supervisor", "scan", "--json", *jobs, *[str(log)] * n]
        out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT)
        if out.returncode not in (0, 1):
            raise SystemExit(f"ftmon scan failed ({out.returncode}): {out.stderr[-300:]}")
        records = [json.loads(x) for x in out.stdout.splitlines() if x.startswith("{")]
        for r in records:
            r.pop("ts", None)  # when it was scanned: the one thing that differs
        return records

    one, serial = measure(lambda: scan(["--jobs", "1"]))
    many, parallel = measure(lambda: scan([]))
    print(
        f"\n{n} rank logs of {lines:,} lines: --jobs 1 {one.wall:.2f} s wall, one per core "
        f"({os.cpu_count()}) {many.wall:.2f} s wall: {one.wall / many.wall:.2f}x; "
        f"same report: {'yes' if serial == parallel else 'NO'}"
    )


if __name__ == "__main__":
    main()
