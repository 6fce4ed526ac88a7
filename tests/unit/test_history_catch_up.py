"""A catch-up's batch in the history: every value and the offset in one write, and the cyclic
collector (paused while the rows are built and written) left as it was found."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from supervisor.events import Eval, Metric
from supervisor.store.history import History


@pytest.mark.parametrize("collector_on", [True, False])
def test_a_large_batch_is_stored_whole_and_the_collector_is_left_as_found(
    tmp_path: Path, collector_on: bool
) -> None:
    history = History(tmp_path / "ftmon.db")
    history.add_run(run_id="r", name="tiny", started_at=1.0)
    events = [
        Metric(lineno=n, ts=2.0, values={"loss": 1.0 / n, "lr": 1e-4}, step=n)
        for n in range(1, 20_001)
    ] + [Eval(lineno=20_001, ts=3.0, values={"val_loss": 0.5}, step=20_000)]
    was = gc.isenabled()
    (gc.enable if collector_on else gc.disable)()
    try:
        history.record_batch("r", events=events, offset=123_456, lineno=20_001)
        assert gc.isenabled() is collector_on
    finally:
        (gc.enable if was else gc.disable)()
    rows = history.metrics("r")
    assert len(rows) == 40_001
    assert rows[0].name == "loss" and rows[0].value == 1.0 and rows[-1].kind == "eval"
    rec = history.get("r")
    assert rec is not None and (rec.offset, rec.lineno) == (123_456, 20_001)
    history.close()
