"""What supervising a sweep costs: `ftmon sweep` with 8 concurrent members, its own CPU beyond
the members'.

    python bench/sweep.py [--members 8] [--secs 20] [--rates 5,20]

Members are light programs (this file with `--member`) that print RATE JSON metric lines a
second (step, loss, lr, tok_s, grad_norm, as the reference trainer does) for `--secs` seconds;
each rate of `--rates` is measured in turn.
Two measurements, in the same run on the same machine:

- baseline: the 8 members started as plain processes writing their logs, no ftmon; their own
  CPU time is what the work itself costs.
- ftmon: `ftmon sweep` of a recipe whose grid makes the same 8 members, `--max-parallel 8`.
  ftmon's own CPU (the ftmon process alone, children excluded) is sampled with psutil once all
  members run and again just before the first ends: that window is the steady state (start-up
  imports and the final table are not supervision).

Printed: ftmon's CPU in the window as a percentage of one core (the issue's bound: under 5%),
and as a ratio to the members' own CPU in the baseline. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def member(secs: float, rate: float, seed: int) -> None:
    """One member: metric lines at `rate` per second for `secs` seconds."""
    interval = 1.0 / rate
    end = time.monotonic() + secs
    step = 0
    while time.monotonic() < end:
        step += 1
        line = {"type": "metric", "step": step, "loss": 3.0 / (1 + step * 0.01) + seed * 0.01,
                "lr": 1e-3, "tok_s": 1234.5, "grad_norm": 0.8}  # fmt: skip
        print(json.dumps(line), flush=True)
        time.sleep(interval)


def member_argv(secs: float, rate: float, seed: int) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--member", "--secs", str(secs),
            "--rate", str(rate), "--seed", str(seed)]  # fmt: skip


def cpu_of(procs: list[psutil.Process]) -> float:
    total = 0.0
    for p in procs:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


def baseline(n: int, secs: float, rate: float, folder: Path) -> float:
    """CPU seconds the members themselves use (measured through their own `wait4` rusage)."""
    before = os.times()
    procs = []
    for i in range(n):
        log = open(folder / f"base-{i}.log", "wb")  # noqa: SIM115 (closed below)
        procs.append((subprocess.Popen(member_argv(secs, rate, i), stdout=log, stderr=log), log))
    for p, log in procs:
        p.wait()
        log.close()
    after = os.times()
    return (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )


def supervised(n: int, secs: float, rate: float, folder: Path) -> tuple[float, float, int]:
    """(ftmon CPU seconds in the steady window, window seconds, exit code)."""
    import yaml

    seeds = list(range(n))
    recipe = {
        "name": "bench-sweep",
        "command": member_argv(secs, rate, 0)[:-2],
        "args": {"seed": 0},  # rendered `--seed N`; the grid gives each member its own
        "preflight": {"enabled": False},
        "sweep": {"grid": {"seed": seeds}},
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    ftmon = Path(sys.executable).with_name("ftmon")
    proc = subprocess.Popen(
        [str(ftmon), "sweep", str(path), "--max-parallel", str(n), "--logs-dir",
         str(folder / "logs")],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    while len(me.children()) < n and time.monotonic() < deadline:  # all members running
        time.sleep(0.05)
    time.sleep(1.0)  # past the members' start-up
    t0, c0 = time.monotonic(), cpu_of([me])
    time.sleep(max(1.0, secs - 4.0))  # ends before the first member does
    t1, c1 = time.monotonic(), cpu_of([me])
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 0:
        print(err.decode(errors="replace")[-2000:], file=sys.stderr)
    return c1 - c0, t1 - t0, proc.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=8)
    ap.add_argument("--secs", type=float, default=20.0)
    ap.add_argument("--rates", default="5,20", help="metric lines per second per member, a list")
    ap.add_argument("--rate", type=float, default=20.0, help=argparse.SUPPRESS)
    ap.add_argument("--member", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.member:
        member(args.secs, args.rate, args.seed)
        return
    print(f"{args.members} members for {args.secs:g} s; cores on this machine: {os.cpu_count()}")
    for rate in (float(r) for r in args.rates.split(",")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            base_cpu = baseline(args.members, args.secs, rate, folder)
            cpu, window, rc = supervised(args.members, args.secs, rate, folder)
        share, member_share = cpu / window, base_cpu / args.secs
        ratio = share / member_share if member_share else float("nan")
        print(f"{rate:g} metric lines/s per member ({args.members * rate:g}/s in all):")
        print(f"  baseline: the members alone used {base_cpu:.2f} CPU s "
              f"({100 * member_share:.1f}% of one core)")  # fmt: skip
        print(f"  ftmon sweep (exit {rc}): {cpu:.2f} CPU s in a {window:.1f} s steady window = "
              f"{100 * share:.2f}% of one core (bound: 5%)")  # fmt: skip
        print(f"  ratio: ftmon / the members' own CPU = {ratio:.2f}")


if __name__ == "__main__":
    main()
