"""The comparison screen: a sweep (or the latest runs) side by side, as `ftmon compare` prints it,
and one plot overlaying every row's curve of the chosen metric.

The rows come from supervisor/report/compare.py, the same function the CLI uses, so the screen
and `ftmon compare` cannot disagree. `n` / `N` walk the sweeps (newest first, then "latest
runs"), `s` sorts by the next metric, `m` plots the next metric, Enter opens the highlighted
row's run on the main screen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static
from textual_plotext import PlotextPlot

from supervisor.report.compare import (
    CompareTable,
    compare_runs,
    compare_sweep,
    header_and_cells,
    sort_table,
)
from tui.text import clean
from tui.widgets.plots import drawable, left_out_note

if TYPE_CHECKING:
    from tui.app import FtmonApp

LATEST_RUNS = 8  # what "latest runs" compares when there is no sweep
SORTS = ("best_val_loss", "final_val_loss", "accuracy", "format_accuracy", "tok_s", "wall_secs")
PLOTTED = ("val_loss", "loss", "accuracy", "tok_s")


class CompareScreen(Screen[None]):
    """See the module docstring."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "next", "Next sweep"),
        Binding("N", "previous", "Previous", show=False),
        Binding("s", "sort", "Sort"),
        Binding("m", "metric", "Plot metric"),
        Binding("escape,c,q", "back", "Back"),
    ]

    DEFAULT_CSS = """
    CompareScreen #title { height: 1; padding: 0 1; background: $boost; }
    CompareScreen #table { height: 1fr; min-height: 6; border: round $primary-lighten-2; }
    CompareScreen #overlay { height: 2fr; min-height: 10; }
    """

    def __init__(self) -> None:
        super().__init__()
        self.choices: list[str | None] = []  # sweep ids, then None: the latest runs
        self.at = 0
        self.sort = ""
        self.metric = PLOTTED[0]
        self.table: CompareTable | None = None

    @property
    def ftmon(self) -> FtmonApp:
        return self.app  # type: ignore[return-value]

    def compose(self) -> ComposeResult:
        yield Static(id="title")
        yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
        yield PlotextPlot(id="overlay")
        yield Footer()

    def on_mount(self) -> None:
        self.choices = [s.id for s in self.ftmon.history.sweeps()]
        self.choices.append(None)
        self.show()

    def show(self) -> None:
        history = self.ftmon.history
        chosen = self.choices[self.at]
        if chosen is not None:
            table = compare_sweep(history, chosen)
            title = f"sweep {chosen}  ({len(table.rows)} members)"
        else:
            ids = [r.id for r in history.runs(limit=LATEST_RUNS) if r.parent_id is None]
            table = compare_runs(history, ids) if ids else CompareTable("no runs yet", [], [])
            title = f"latest runs ({len(table.rows)})"
        self.table = sort_table(table, self.sort)
        best = self.table.best()
        sort = self.sort or "best_val_loss"
        where = f"  ·  {self.at + 1}/{len(self.choices)}" if len(self.choices) > 1 else ""
        if best is not None:
            title += f"  ·  best by {sort}: {best.label}"
        self.query_one("#title", Static).update(clean(title + where))
        grid = self.query_one("#table", DataTable)
        grid.clear(columns=True)
        header, cells = header_and_cells(self.table)
        grid.add_columns(*header)
        for row in cells:
            grid.add_row(*(clean(c) for c in row))
        self._plot()

    def _plot(self) -> None:
        plot = self.query_one("#overlay", PlotextPlot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        history = self.ftmon.history
        assert self.table is not None
        left_out = 0
        for row in self.table.rows:
            if not row.run_id:
                continue
            points, dropped = drawable(
                [
                    (float(m.step), float(m.value))
                    for m in history.metrics(row.run_id, self.metric)
                    if m.step is not None and m.value is not None and m.value == m.value
                ]
            )  # a float-max or inf value would end the app inside plotext
            left_out += dropped
            if points:
                xs, ys = zip(*points, strict=True)
                plt.plot(list(xs), list(ys), marker="braille", label=clean(row.label))
        plt.title(f"{self.metric} by step, one line per row{left_out_note(left_out)}")
        plot.refresh()

    def action_next(self) -> None:
        self.at = (self.at + 1) % len(self.choices)
        self.show()

    def action_previous(self) -> None:
        self.at = (self.at - 1) % len(self.choices)
        self.show()

    def action_sort(self) -> None:
        """Sort by the next metric some row has, best first."""
        rows = self.table.rows if self.table else []
        present = [s for s in SORTS if any(r.figures.get(s) is not None for r in rows)]
        if not present:
            return
        nxt = present.index(self.sort) + 1 if self.sort in present else 0
        self.sort = present[nxt % len(present)]
        self.show()

    def action_metric(self) -> None:
        self.metric = PLOTTED[(PLOTTED.index(self.metric) + 1) % len(PLOTTED)]
        self._plot()

    @on(DataTable.RowSelected, "#table")
    def _row_chosen(self, event: DataTable.RowSelected) -> None:
        """Enter on a row: back to the main screen with that row's run selected (when this
        ftmon shows it: a run of this session or reattached)."""
        rows = self.table.rows if self.table else []
        if not 0 <= event.cursor_row < len(rows):
            return
        run_id = rows[event.cursor_row].run_id
        self.app.pop_screen()
        if run_id and self.ftmon.book.get(run_id) is not None:
            self.ftmon.main_screen.select(run_id)

    def action_back(self) -> None:
        self.app.pop_screen()
