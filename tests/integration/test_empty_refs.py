"""An empty run or sweep argument (`ftmon show "$RUN"` with RUN unset) is refused, exit 2; it
matched every run as a prefix, so with one run recorded it silently showed (or reattached to,
or replayed) that one."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.store.history import History, HistoryError
from tests.conftest import ftmon


def test_an_empty_ref_names_no_run(tmp_path: Path) -> None:
    history = History(tmp_path / "ftmon.db")
    history.add_run(run_id="20261207-2300-only", name="only", started_at=1.0)
    for ref in ("", "  "):
        with pytest.raises(HistoryError, match="no run given"):
            history.resolve(ref)
        assert history.sweep(ref) is None
        assert history.why_no_sweep(ref).startswith("no sweep given")
    assert history.resolve("2026").id == "20261207-2300-only"  # a real prefix still works
    history.close()
    for command in ("show", "attach", "replay", "report"):
        done = ftmon(command, "", "--logs-dir", str(tmp_path))
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "no run given" in done.stderr
