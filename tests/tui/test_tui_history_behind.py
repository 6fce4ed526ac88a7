"""The TUI says when the history database falls behind and when it has caught up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from supervisor.events import Metric
from supervisor.store.history import History
from tests.conftest import PROGRAMS
from tui.app import FtmonApp


async def test_the_tui_says_history_is_behind_while_another_process_holds_the_lock(
    tmp_path: Path,
) -> None:
    """Rows recorded while another process holds the write lock: the app says "history is
    behind" (a warning and the subtitle), then "caught up" once the lock is let go."""
    logs = tmp_path / "logs"
    history = History(logs / "ftmon.db", busy_timeout_ms=300)
    history.add_run(run_id="r", name="tiny", started_at=1.0)
    app = FtmonApp(logs, recipes_dir=tmp_path / "recipes", reattach=False, history=history)
    locker = subprocess.Popen(
        [sys.executable, str(PROGRAMS / "hold_db_lock.py"), str(logs / "ftmon.db"), "60"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        async with app.run_test(size=(120, 40)) as pilot:
            history.record_batch("r", events=[Metric(1, 100.0, {"loss": 1.0}, step=1)])
            for _ in range(100):
                if app.history_behind:
                    break
                await pilot.pause(0.05)
            assert app.history_behind.startswith("history is behind: 1 row(s) waiting")
            assert app.sub_title == app.history_behind
            assert locker.stdin is not None
            locker.stdin.close()  # let go of the lock
            for _ in range(200):
                if not app.history_behind:
                    break
                await pilot.pause(0.05)
            assert app.history_behind == "" and app.sub_title == ""
            said = [n.message for n in app._notifications]
            assert any("history is behind" in m for m in said)
            assert any("caught up" in m for m in said)
    finally:
        locker.kill()
        locker.wait()
    assert [m.value for m in history.metrics("r")] == [1.0]
