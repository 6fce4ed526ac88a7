"""The runs, grouped by lineage: a relaunch sits under its parent, with the adjustment shown;
a distributed run's ranks sit under it (step and straggler score), a Slurm job shows its id."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

from supervisor.events import show_step
from tui.state import RunBook, RunView
from tui.text import clean

STATUS_STYLES = {
    "running": "green",
    "paused": "bold yellow",
    "finished": "dim",
    "failed": "red",
    "killed": "red",
    "detached": "cyan",
}


def run_label(view: RunView, parent: RunView | None = None) -> Text:
    """`name #attempt  status  changes` as plain Text: run names are data, not markup. Under a
    parent of the same name only `#attempt` (the side panel is narrow; the name is above)."""
    same = parent is not None and parent.name == view.name
    label = Text(clean(f"#{view.attempt}" if same else f"{view.name} #{view.attempt}"))
    label.append(f"  {view.status}", style=STATUS_STYLES.get(view.status, ""))
    if view.job_id:
        state = f" {view.job_state}" if view.job_state and view.live else ""
        label.append(clean(f"  slurm job {view.job_id}{state}"), style="cyan")
    if view.changes:
        label.append(clean(f"  {', '.join(view.changes)}"), style="italic magenta")
    return label


RANK_MARK = "#rank"  # node data of a rank: `<run id>#rank<N>` (run ids never hold a '#')


def rank_label(rank: int, step: int, score: float) -> Text:
    """`rank 1  step 120  0.98`: the straggler score dims to a warning below 0.5."""
    label = Text(f"rank {rank}  step {show_step(step)}  ")
    label.append(f"{score:.2f}", style="bold yellow" if score < 0.5 else "dim")
    return label


def node_run(data: str) -> tuple[str, int | None]:
    """A node's run id, and its rank when it is a rank's node."""
    run_id, mark, rank = data.partition(RANK_MARK)
    return (run_id, int(rank)) if mark and rank.isdigit() else (data, None)


class RunsTree(Tree[str]):
    """Lineages as a tree; node data is the run id."""

    DEFAULT_CSS = """
    RunsTree { height: 1fr; }
    """

    def __init__(self, id: str | None = None) -> None:
        super().__init__(Text("runs"), id=id)
        self.show_root = False
        self.guide_depth = 3

    def show(self, book: RunBook, selected: str | None = None) -> None:
        """Rebuild from `book` (a few dozen runs at most), keeping `selected` highlighted."""
        self.clear()
        nodes: dict[str, TreeNode[str]] = {}

        def add(parent: TreeNode[str], view: RunView) -> None:
            kids = book.children(view.run_id)
            label = run_label(view, book.get(view.parent_id) if view.parent_id else None)
            ranks = view.rank_rows() if len(view.ranks.ranks) > 1 else []
            node = parent.add(
                label, data=view.run_id, expand=True, allow_expand=bool(kids or ranks)
            )
            nodes[view.run_id] = node
            for rank, step, score in ranks:
                node.add_leaf(rank_label(rank, step, score), data=f"{view.run_id}{RANK_MARK}{rank}")
            for child in kids:
                add(node, child)

        for root in book.roots():
            add(self.root, root)
        if selected in nodes:
            self.call_after_refresh(self._select, nodes[selected])

    def _select(self, node: TreeNode[str]) -> None:
        self.move_cursor(node)

    def update_ranks(self, view: RunView) -> bool:
        """Relabel `view`'s rank nodes in place (steps and scores move on every metric); False
        when the ranks shown are not the ranks known (the tree must be rebuilt)."""
        rows = view.rank_rows() if len(view.ranks.ranks) > 1 else []
        found: dict[int, TreeNode[str]] = {}

        def walk(node: TreeNode[str]) -> None:
            for child in node.children:
                if child.data:
                    run_id, rank = node_run(child.data)
                    if run_id == view.run_id and rank is not None:
                        found[rank] = child
                walk(child)

        walk(self.root)
        if sorted(found) != [r for r, _, _ in rows]:
            return False
        for rank, step, score in rows:
            found[rank].set_label(rank_label(rank, step, score))
        return True

    @property
    def run_ids(self) -> list[str]:
        """Run ids in display order (depth first)."""
        out: list[str] = []

        def walk(node: TreeNode[str]) -> None:
            for child in node.children:
                if child.data is not None and RANK_MARK not in child.data:
                    out.append(child.data)
                walk(child)

        walk(self.root)
        return out
