"""A report on a run or a sweep, made from the history database alone (`ftmon report`).

The report is a list of blocks (headings, paragraphs, tables, code, images) and the plots it
refers to; render.py writes it as Markdown or as one self-contained HTML page, plots.py draws
the PNGs. For a sweep: the comparison table and the winner, plots overlaying the members, each
member's lineage of relaunches with their reasons, the exact commands and the recipe. For a run:
the table of evaluations per step, the latest metrics, the plots, the lineage, the commands.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from supervisor.events import show_step
from supervisor.report.compare import (
    CompareTable,
    compare_sweep,
    header_and_cells,
    lineage_down,
    lineage_root,
)
from supervisor.report.metrics import fmt, run_metrics


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Code:
    text: str
    lang: str = ""


@dataclass(frozen=True)
class Image:
    file: str  # the PNG's name, beside the report
    alt: str


Block = Heading | Para | Table | Code | Image


@dataclass(frozen=True)
class Series:
    label: str
    steps: list[float]
    values: list[float]


@dataclass(frozen=True)
class Plot:
    file: str  # e.g. val_loss.png
    title: str
    ylabel: str
    series: list[Series]


@dataclass
class Report:
    title: str
    blocks: list[Block] = field(default_factory=list)
    plots: list[Plot] = field(default_factory=list)
    slug: str = "report"  # the file name without extension


# The metrics a plot is drawn for when the runs have them, in this order.
PLOTTED = (
    ("loss", "training loss"),
    ("val_loss", "validation loss"),
    ("accuracy", "accuracy"),
    ("format_accuracy", "format accuracy"),
    ("mmlu_acc", "MMLU accuracy"),
    ("arc_acc", "ARC accuracy"),
    ("tok_s", "tokens per second"),
)


def _when(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S") if ts else "-"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _series(history: Any, runs: list[tuple[str, str]], name: str) -> list[Series]:
    """One series per (label, run id) that has `name`, finite points only, x = step (else the
    point's index)."""
    out = []
    for label, run_id in runs:
        steps: list[float] = []
        values: list[float] = []
        for i, row in enumerate(history.metrics(run_id, name)):
            if row.value is not None and math.isfinite(row.value):
                steps.append(float(row.step if row.step is not None else i))
                values.append(float(row.value))
        if values:
            out.append(Series(label, steps, values))
    return out


def _plots(history: Any, runs: list[tuple[str, str]]) -> list[Plot]:
    plots = []
    for name, title in PLOTTED:
        series = _series(history, runs, name)
        if series:
            plots.append(Plot(f"{name}.png", title, name, series))
    return plots


def _lineage_blocks(history: Any, chain: list[Any]) -> list[Block]:
    rows = []
    for rec in chain:
        why = rec.reason_started or "first launch"
        changes = "; ".join(rec.changes) or "-"
        end = (
            rec.status if rec.end_reason in ("", rec.status) else f"{rec.status}: {rec.end_reason}"
        )
        rows.append([rec.id, str(rec.attempt), why, changes, end])
    return [Table(["run", "attempt", "why it started", "changes", "how it ended"], rows)]


def _command_blocks(chain: list[Any]) -> list[Block]:
    from supervisor.runs.plan import shell_command

    return [Code("\n".join(f"# {r.id}\n{shell_command(list(r.argv), r.env, r.cwd)}"
                           for r in chain), "sh")]  # fmt: skip


def _table_blocks(table: CompareTable) -> list[Block]:
    header, cells = header_and_cells(table)
    blocks: list[Block] = [Table(header, cells)]
    metric = table.sort or "best_val_loss"
    best = table.best(metric)
    if best is not None:
        values = " ".join(f"{k}={v}" for k, v in best.values.items())
        blocks.append(Para(f"**Best by {metric}:** {best.label} {values} (run {best.run_id})"))
    return blocks


def sweep_report(history: Any, sweep_id: str, sort: str = "") -> Report:
    from supervisor.report.compare import sort_table

    sweep = history.sweep(sweep_id)
    if sweep is None:
        raise KeyError(history.why_no_sweep(sweep_id))
    table = sort_table(compare_sweep(history, sweep.id), sort)
    report = Report(f"Sweep {sweep.id}", slug=sweep.id)
    b = report.blocks
    b.append(Heading(1, report.title))
    origin = f", a replay of {sweep.replay_of}" if sweep.replay_of else ""
    b.append(Para(f"Recipe `{sweep.name}`, started {_when(sweep.created_at)}{origin}; "
                  f"{len(table.rows)} members sweeping {', '.join(sweep.keys)}."))  # fmt: skip
    b.append(Heading(2, "Results"))
    b += _table_blocks(table)
    runs = [
        (" ".join([r.label, *(f"{k}={_short(v)}" for k, v in r.values.items())]), r.run_id)
        for r in table.rows
        if r.run_id
    ]
    report.plots = _plots(history, runs)
    if report.plots:
        b.append(Heading(2, "Plots"))
        b += [Image(p.file, p.title) for p in report.plots]
    b.append(Heading(2, "Members and their relaunches"))
    for row in table.rows:
        values = " ".join(f"{k}={v}" for k, v in row.values.items())
        b.append(Heading(3, f"{row.label} {values}"))
        if row.lineage:
            b += _lineage_blocks(history, row.lineage)
        else:
            b.append(Para(f"Never ran: {row.status}{': ' + row.note if row.note else ''}"))
    b.append(Heading(2, "Commands"))
    b += _command_blocks([rec for row in table.rows for rec in row.lineage])
    b.append(Heading(2, "Recipe"))
    b.append(Code(sweep.recipe_yaml.rstrip(), "yaml"))
    return report


def run_report(history: Any, ref: str) -> Report:
    rec = history.resolve(ref)
    chain = lineage_down(history, lineage_root(history, rec.id))
    last = chain[-1]
    report = Report(f"Run {rec.id}", slug=rec.id)
    b = report.blocks
    b.append(Heading(1, report.title))
    # A lineage whose last run still runs has not ended, whatever its first attempts did.
    end = None if last.ended_at is None else max((r.ended_at or 0.0) for r in chain) or None
    wall = f", {end - chain[0].started_at:.0f} s" if end else ""
    b.append(Para(f"Recipe `{rec.name}`; {len(chain)} run(s) in its lineage, the last "
                  f"{last.id} {last.status}. Started {_when(chain[0].started_at)}, "
                  f"ended {_when(end)}{wall}."))  # fmt: skip
    member = history.sweep_member_of(rec.id)
    if member is not None:
        values = " ".join(f"{k}={_short(v)}" for k, v in member.values.items())
        sweep = member.sweep_id
        b.append(Para(f"Member {member.member} ({values}) of sweep `{sweep}`: "
                      f"`ftmon report {sweep}` compares it with the others."))  # fmt: skip
    evals = [m for m in history.metrics(last.id) if m.kind == "eval"]
    if evals:
        names = list(dict.fromkeys(m.name for m in evals))
        by_step: dict[Any, dict[str, float]] = {}
        for m in evals:
            by_step.setdefault(m.step, {})[m.name] = m.value
        b.append(Heading(2, f"Evaluations ({last.id})"))
        b.append(Table(["step", *names], [
            [str(step), *(fmt(vals.get(n)) for n in names)] for step, vals in by_step.items()
        ]))  # fmt: skip
    summary = run_metrics(history, last.id)
    b.append(Heading(2, "Latest metrics"))
    b.append(Para(f"Last step {show_step(summary.last_step)}."))
    b.append(Table(["metric", "latest", "step"], [
        [m.name, fmt(m.latest), show_step(m.last_step)]
        for m in summary.metrics
    ]))  # fmt: skip
    report.plots = _plots(history, [(r.id, r.id) for r in chain])
    if report.plots:
        b.append(Heading(2, "Plots"))
        b += [Image(p.file, p.title) for p in report.plots]
    b.append(Heading(2, "Lineage"))
    b += _lineage_blocks(history, chain)
    anomalies = [(r.id, a) for r in chain for a in history.anomalies(r.id)]
    b.append(Heading(2, f"Anomalies ({len(anomalies)})"))
    if anomalies:
        b.append(Table(["run", "rule", "severity", "line", "message"], [
            [rid, a.rule, str(a.severity), str(a.lineno or "-"), a.message] for rid, a in anomalies
        ]))  # fmt: skip
    b.append(Heading(2, "Commands"))
    b += _command_blocks(chain)
    b.append(Heading(2, "Recipe"))
    b.append(Code(rec.recipe_yaml.rstrip(), "yaml"))
    return report
