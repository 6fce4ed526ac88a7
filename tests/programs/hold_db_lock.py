"""Test program: holds the write lock of a SQLite database, as a busy neighbour would.

    python hold_db_lock.py DB SECS

Takes the write lock (BEGIN IMMEDIATE), prints "locked" once it holds it, holds it SECS
seconds (or until stdin closes early, for a test that ends sooner), then rolls back and exits.
"""

from __future__ import annotations

import select
import sqlite3
import sys
import time


def main() -> None:
    db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
    secs = float(sys.argv[2])
    db.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    deadline = time.monotonic() + secs
    while (left := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([sys.stdin], [], [], left)
        if ready and not sys.stdin.read(1):
            break  # stdin closed: release now
    db.execute("ROLLBACK")
    db.close()


if __name__ == "__main__":
    main()
