"""Successive halving's decisions (sweep/prune.py), on metric rows as the history returns them."""

from __future__ import annotations

from supervisor.store.history import MetricRow
from supervisor.sweep.prune import Pruner
from supervisor.sweep.spec import Prune


class Rows:
    """The two reads the pruner makes of the history, over fixed rows (a policy unit test)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[MetricRow]] = {}

    def log(self, run_id: str, step: int, **values: float) -> None:
        for name, value in values.items():
            self.rows.setdefault(run_id, []).append(MetricRow(run_id, step, name, value, 0.0, 0))

    def metrics(self, run_id: str, name: str | None = None) -> list[MetricRow]:
        return [r for r in self.rows.get(run_id, []) if name is None or r.name == name]

    def latest_metrics(self, run_id: str) -> dict[str, MetricRow]:
        return {r.name: r for r in self.rows.get(run_id, [])}

    def get(self, run_id: str) -> None:  # lineage_down: no relaunches here
        return None

    def children(self, run_id: str) -> list[object]:
        return []


def test_value_at_the_rung_decides_not_the_value_when_checked() -> None:
    rows = Rows()
    pruner = Pruner(rows, Prune(metric="val_loss", rungs=[10], keep=0.5))
    rows.log("a", 10, val_loss=1.0)
    assert pruner.check({1: "a"}) == []  # first at the rung: kept
    rows.log("b", 10, val_loss=3.0)
    rows.log("b", 40, val_loss=0.5)  # checked late: it improved after the rung
    assert pruner.check({2: "b"}) == [
        (2, "b", "pruned at step 10: val_loss 3 is not in the best 50% of 2 (cut-off 1)")
    ]


def test_max_mode_keeps_the_highest_and_later_rungs_judge_again() -> None:
    rows = Rows()
    pruner = Pruner(rows, Prune(metric="accuracy", mode="max", rungs=[5, 20], keep=0.5))
    for run, acc in (("a", 0.2), ("b", 0.6)):
        rows.log(run, 5, accuracy=acc)
    assert pruner.check({1: "a"}) == [] and pruner.check({2: "b"}) == []  # a first, then b
    rows.log("a", 20, accuracy=0.9)
    rows.log("b", 20, accuracy=0.7)
    assert pruner.check({1: "a"}) == []
    (stopped,) = pruner.check({2: "b"})
    assert stopped[0] == 2 and stopped[2].startswith("pruned at step 20: accuracy 0.7")
    assert pruner.check({2: "b"}) == []  # decided once


def test_a_member_without_the_metric_yet_waits() -> None:
    rows = Rows()
    pruner = Pruner(rows, Prune(metric="val_loss", rungs=[10], keep=0.5))
    rows.log("a", 12, loss=2.0)  # past the rung, no evaluation yet
    assert pruner.check({1: "a"}) == []
    assert 1 not in pruner.reached[10]
