"""Test program: leaves a daemon behind the way a careless data loader or server does.

    python double_fork.py --output_dir DIR [--stay-in-group] [--nan-after N] [--argv-too]

The run ignores SIGTERM and forks an intermediate child that calls setsid() (a session and a
group of its own), forks the daemon and exits at once: the daemon is re-parented (to init, or
to the nearest child subreaper), so walking down from the run no longer finds it, and a signal
to the run's group misses it. With --stay-in-group the intermediate does not call setsid(): the
daemon stays in the run's process group and session, but still leaves its tree. The daemon
ignores SIGTERM too and prints nothing.

DIR/pids gets "run PID" and "daemon PID" once the daemon runs; then the run prints a metric
line every 0.05 s, and a NaN loss after N of them (default: never).
"""

from __future__ import annotations

import argparse
import os
import signal
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--output_dir", required=True)
    ap.add_argument("--stay-in-group", "--stay_in_group", action="store_true")
    ap.add_argument("--nan-after", "--nan_after", type=int, default=0)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready_r, ready_w = os.pipe()
    middle = os.fork()
    if middle == 0:
        if not args.stay_in_group:
            os.setsid()
        daemon = os.fork()
        if daemon == 0:
            os.write(ready_w, str(os.getpid()).encode())
            while True:
                time.sleep(1)
        os._exit(0)  # the daemon is now an orphan
    os.waitpid(middle, 0)
    daemon_pid = int(os.read(ready_r, 32))
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "pids.tmp").write_text(f"run {os.getpid()}\ndaemon {daemon_pid}\n")
    os.replace(out / "pids.tmp", out / "pids")  # the reader never sees half a file
    step = 0
    while True:
        step += 1
        loss = "nan" if args.nan_after and step > args.nan_after else "1.25"
        print(f"{{'loss': {loss}, 'step': {step}}}", flush=True)
        time.sleep(0.05)


if __name__ == "__main__":
    main()
