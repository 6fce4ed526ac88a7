"""Runs side by side, from the history database alone (`ftmon compare`, the report, the TUI).

One row per lineage: a sweep member (or a run named on the command line) with its relaunches.
Figures come from the lineage's last run (the one that got to train); anomalies, relaunches and
wall time count the whole lineage. Columns: the swept values (for runs not in a sweep, the
recipe args that differ between them), best and final val loss, accuracy, format accuracy,
truncation rate, mean generation length, tokens/s (mean), wall time, anomalies, relaunches.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from supervisor.events import Severity
from supervisor.report.metrics import fmt

# (column, header, how it is made from the eval/metric series of the last run)
FIGURES: tuple[tuple[str, str], ...] = (
    ("best_val_loss", "best val"),
    ("final_val_loss", "final val"),
    ("accuracy", "acc"),
    ("format_accuracy", "fmt acc"),
    ("trunc_rate", "trunc"),
    ("avg_gen_len", "gen len"),
    ("mmlu", "mmlu"),
    ("arc", "arc"),
    ("tok_s", "tok/s"),
    ("wall_secs", "wall s"),
)
LOWER_IS_BETTER = {"best_val_loss", "final_val_loss", "val_loss", "trunc_rate", "wall_secs",
                   "loss", "anomalies", "relaunches"}  # fmt: skip


@dataclass
class CompareRow:
    label: str  # `#3` for a sweep member, else the run id
    first_id: str
    run_id: str  # the lineage's last run
    status: str
    values: dict[str, Any]
    figures: dict[str, float | None]
    anomalies: int
    relaunches: int
    lineage: list[Any] = field(default_factory=list)  # RunRecords, first launch first
    note: str = ""  # why a member never ran (refused)

    def to_json(self) -> dict[str, Any]:
        figs = {
            k: (v if v is None or math.isfinite(v) else str(v)) for k, v in self.figures.items()
        }
        return {
            "label": self.label, "run_id": self.run_id, "first_run_id": self.first_id,
            "status": self.status, "values": self.values, **figs,
            "anomalies": self.anomalies, "relaunches": self.relaunches,
            "lineage": [r.id for r in self.lineage], "note": self.note,
        }  # fmt: skip


@dataclass
class CompareTable:
    title: str
    keys: list[str]
    rows: list[CompareRow]
    sort: str = ""
    sweep_id: str | None = None

    def columns(self) -> list[tuple[str, str]]:
        """Figures at least one row has (an always-empty column says nothing)."""
        return [(k, h) for k, h in FIGURES if any(r.figures.get(k) is not None for r in self.rows)]

    def best(self, metric: str | None = None) -> CompareRow | None:
        metric = metric or self.sort or "best_val_loss"
        scored = [r for r in self.rows if _value(r, metric) is not None]
        if not scored:
            return None
        sign = 1 if metric in LOWER_IS_BETTER else -1
        return min(scored, key=lambda r: sign * (_value(r, metric) or 0.0))


def _value(row: CompareRow, metric: str) -> float | None:
    if metric in ("anomalies", "relaunches"):
        return float(getattr(row, metric))
    v = row.figures.get(metric, row.values.get(metric))
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return float(v)


def lineage_down(history: Any, run_id: str) -> list[Any]:
    """The run and its relaunches, following the newest child, first launch first. A replay
    (`ftmon replay`) starts a lineage of its own and is not followed."""
    chain = []
    seen: set[str] = set()
    current = history.get(run_id)
    while current is not None and current.id not in seen:
        chain.append(current)
        seen.add(current.id)
        kids = [k for k in history.children(current.id) if not k.is_replay]
        current = kids[-1] if kids else None
    return chain


def lineage_root(history: Any, run_id: str) -> str:
    """The first run of `run_id`'s lineage: up through its parents, stopping at a replay."""
    rec = history.get(run_id)
    seen: set[str] = set()
    while rec is not None and rec.parent_id and not rec.is_replay and rec.id not in seen:
        seen.add(rec.id)
        parent = history.get(rec.parent_id)
        if parent is None:
            break
        rec = parent
    return rec.id if rec is not None else run_id


def _figures(history: Any, chain: list[Any]) -> tuple[dict[str, float | None], int]:
    last = chain[-1]
    series: dict[str, list[float]] = {}
    for row in history.metrics(last.id):
        if row.value is not None:
            series.setdefault(row.name, []).append(float(row.value))

    def final(name: str, *alts: str) -> float | None:
        for n in (name, *alts):
            if series.get(n):
                return series[n][-1]
        return None

    finite_val = [v for v in series.get("val_loss", []) if math.isfinite(v)]
    tok = [v for v in series.get("tok_s", []) if math.isfinite(v)]
    start = chain[0].started_at
    end = max((r.ended_at or r.started_at) for r in chain)
    figures: dict[str, float | None] = {
        "best_val_loss": min(finite_val) if finite_val else None,
        "final_val_loss": final("val_loss"),
        "accuracy": final("accuracy", "acc"),
        "format_accuracy": final("format_accuracy"),
        "trunc_rate": final("trunc_rate"),
        "avg_gen_len": final("avg_gen_len"),
        "mmlu": final("mmlu_acc", "mmlu"),
        "arc": final("arc_acc", "arc"),
        "tok_s": sum(tok) / len(tok) if tok else None,
        # Still running (its last run has not ended): no wall time yet, whatever earlier
        # attempts did.
        "wall_secs": end - start if last.ended_at is not None else None,
    }
    # What went wrong, not what ftmon said for information ("vram rule off: no NVIDIA GPU",
    # how the run ended): a table where every CPU run shows one anomaly hides the one that
    # really had one.
    anomalies = sum(
        1 for r in chain for a in history.anomalies(r.id) if a.severity >= Severity.WARNING
    )
    return figures, anomalies


def _row(history: Any, label: str, first_id: str, values: dict[str, Any]) -> CompareRow:
    chain = lineage_down(history, first_id)
    figures, anomalies = _figures(history, chain)
    last = chain[-1]
    return CompareRow(label, first_id, last.id, last.status, values, figures, anomalies,
                      len(chain) - 1, chain)  # fmt: skip


def compare_sweep(history: Any, sweep_id: str, sort: str = "") -> CompareTable:
    sweep = history.sweep(sweep_id)
    if sweep is None:
        raise KeyError(history.why_no_sweep(sweep_id))
    rows = []
    for m in history.sweep_members(sweep.id):
        if m.run_id and history.get(m.run_id) is not None:
            row = _row(history, f"#{m.member}", m.run_id, dict(m.values))
            if m.status == "pruned":  # stopped early by successive halving: say so and why
                row.status, row.note = "pruned", m.detail
            rows.append(row)
        else:
            rows.append(CompareRow(f"#{m.member}", "", "", m.status, dict(m.values), {}, 0, 0,
                                   note=m.detail))  # fmt: skip
    table = CompareTable(sweep.id, list(sweep.keys), rows, sort, sweep.id)
    return sort_table(table, sort)


def compare_runs(history: Any, refs: Sequence[str], sort: str = "") -> CompareTable:
    """Named runs (ids, prefixes or `last`); a run's row follows its relaunches."""
    records = [history.resolve(ref) for ref in refs]
    args = [_recipe_args(r.recipe_yaml) for r in records]
    keys = sorted({k for a in args for k in a if len({json.dumps(x.get(k), default=str)
                                                      for x in args}) > 1})  # fmt: skip
    rows = [
        _row(history, r.id, r.id, {k: a.get(k) for k in keys})
        for r, a in zip(records, args, strict=True)
    ]
    return sort_table(CompareTable(", ".join(r.id for r in records), keys, rows, sort), sort)


def _recipe_args(recipe_yaml: str) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(recipe_yaml) or {}
    except yaml.YAMLError:
        return {}
    args = data.get("args", {}) if isinstance(data, dict) else {}
    return args if isinstance(args, dict) else {}


def sort_table(table: CompareTable, sort: str) -> CompareTable:
    """Best first by `sort` (a figure, a swept key, anomalies, relaunches); rows without a
    value last, in their original order."""
    if not sort:
        return table
    sign = 1 if sort in LOWER_IS_BETTER else -1

    def key(row: CompareRow) -> tuple[int, float]:
        v = _value(row, sort)
        return (1, 0.0) if v is None else (0, sign * v)

    table.rows.sort(key=key)
    table.sort = sort
    return table


def sort_names(table: CompareTable) -> list[str]:
    return [*(k for k, _ in FIGURES), "anomalies", "relaunches", *table.keys]


# --- output -----------------------------------------------------------------------------------


def header_and_cells(table: CompareTable) -> tuple[list[str], list[list[str]]]:
    """The table as text cells (the terminal, Markdown and the TUI show the same)."""
    cols = table.columns()
    header = ["run", *table.keys, *(h for _, h in cols), "anom", "relaunch", "status"]
    cells = []
    for r in table.rows:
        values = [_show(r.values.get(k)) for k in table.keys]
        figs = [fmt(r.figures.get(k)) if k != "wall_secs" else _secs(r.figures.get(k))
                for k, _ in cols]  # fmt: skip
        status = r.status if not r.note else f"{r.status}: {r.note}"
        cells.append([r.label, *values, *figs, str(r.anomalies), str(r.relaunches), status])
    return header, cells


def _show(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f}"


def format_table(table: CompareTable) -> str:
    header, cells = header_and_cells(table)
    widths = [max(len(row[i]) for row in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    best = table.best()
    if best is not None:
        metric = table.sort or "best_val_loss"
        lines.append(f"best by {metric}: {best.label} ({best.run_id})")
    return "\n".join(lines)


def to_json(table: CompareTable) -> str:
    best = table.best()
    return json.dumps(
        {"title": table.title, "sweep_id": table.sweep_id, "keys": table.keys,
         "sort": table.sort or None, "best": best.run_id if best else None,
         "rows": [r.to_json() for r in table.rows]},
        indent=2, default=str,
    )  # fmt: skip


def to_csv(table: CompareTable) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    figs = [k for k, _ in FIGURES]
    w.writerow(["label", "run_id", *table.keys, *figs, "anomalies", "relaunches", "status"])
    for r in table.rows:
        w.writerow([r.label, r.run_id, *(r.values.get(k, "") for k in table.keys),
                    *("" if r.figures.get(k) is None else r.figures[k] for k in figs),
                    r.anomalies, r.relaunches, r.status])  # fmt: skip
    return buf.getvalue()
