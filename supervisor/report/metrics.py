"""A run's metrics read back from the history database, in the shapes people look at: the last
step, the latest value of each metric, a sparkline per metric (`ftmon show`, `history --json`,
`compare`, `report`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from supervisor.events import show_step

BARS = "▁▂▃▄▅▆▇█"


def sparkline(values: Sequence[float], width: int = 24) -> str:
    """`▇▅▄▃▂▂▁`: the series thinned to `width` points (evenly, the last one kept), scaled
    between its min and max; a non-finite value shows as `!`."""
    if not values:
        return ""
    if len(values) > width:
        step = (len(values) - 1) / (width - 1)
        values = [values[round(i * step)] for i in range(width)]
    finite = [v for v in values if math.isfinite(v)]
    lo, hi = (min(finite), max(finite)) if finite else (0.0, 0.0)
    span = hi - lo
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append("!")
        elif span <= 0:
            out.append(BARS[len(BARS) // 2])
        else:
            out.append(BARS[round((v - lo) / span * (len(BARS) - 1))])
    return "".join(out)


def fmt(value: float | None) -> str:
    """A metric value for a table: 4 significant digits, `-` when absent."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.4g}"


@dataclass(frozen=True)
class MetricSummary:
    name: str
    kind: str  # metric or eval
    last_step: int | None
    latest: float
    series: tuple[float, ...]

    def to_json(self) -> dict[str, Any]:
        latest = self.latest if math.isfinite(self.latest) else str(self.latest)
        return {
            "name": self.name, "kind": self.kind, "step": self.last_step, "latest": latest,
            "points": len(self.series), "sparkline": sparkline(self.series),
        }  # fmt: skip


@dataclass(frozen=True)
class RunMetrics:
    last_step: int | None
    metrics: tuple[MetricSummary, ...]

    def to_json(self) -> dict[str, Any]:
        return {"last_step": self.last_step, "metrics": [m.to_json() for m in self.metrics]}

    def lines(self) -> list[str]:
        """`ftmon show`'s metrics section."""
        out = [f"metrics   last step {show_step(self.last_step)}"]
        width = max((len(m.name) for m in self.metrics), default=0)
        for m in self.metrics:
            out.append(f"    {m.name:{width}}  {fmt(m.latest):>10}  {sparkline(m.series)}")
        if not self.metrics:
            out.append("    (none recorded)")
        return out


def run_metrics(history: Any, run_id: str) -> RunMetrics:
    """Every metric of a run, training metrics first then evaluations, names in first-seen
    order."""
    series: dict[tuple[str, str], list[float]] = {}
    steps: dict[tuple[str, str], int | None] = {}
    last_step: int | None = None
    for row in history.metrics(run_id):
        key = (row.kind, row.name)
        series.setdefault(key, []).append(row.value if row.value is not None else math.nan)
        steps[key] = row.step
        if row.step is not None:
            last_step = row.step if last_step is None else max(last_step, row.step)
    order = sorted(series, key=lambda k: k[0] != "metric")  # stable: first seen within a kind
    return RunMetrics(
        last_step,
        tuple(
            MetricSummary(
                name,
                kind,
                steps[(kind, name)],
                series[(kind, name)][-1],
                tuple(series[(kind, name)]),
            )
            for kind, name in order
        ),
    )


def latest_json(history: Any, run_id: str) -> dict[str, Any]:
    """`history --json`'s metrics of a run: the last step and the newest value of each name
    (one query, no series)."""
    latest = history.latest_metrics(run_id)
    steps = [m.step for m in latest.values() if m.step is not None]
    return {
        "last_step": max(steps) if steps else None,
        "latest": {n: _json_value(m.value) for n, m in latest.items()},
    }


def _json_value(value: float | None) -> float | str:
    """A value JSON can carry: a non-finite one (stored as NULL, or inf) as its name."""
    if value is None:
        return "nan"  # SQLite keeps NaN as NULL
    return value if math.isfinite(value) else str(value)
