"""The runs, grouped by lineage: a relaunch sits under its parent, with the adjustment shown."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree
from textual.widgets.tree import TreeNode

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
    if view.changes:
        label.append(clean(f"  {', '.join(view.changes)}"), style="italic magenta")
    return label


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
            node = parent.add(label, data=view.run_id, expand=True, allow_expand=bool(kids))
            nodes[view.run_id] = node
            for child in kids:
                add(node, child)

        for root in book.roots():
            add(self.root, root)
        if selected in nodes:
            self.call_after_refresh(self._select, nodes[selected])

    def _select(self, node: TreeNode[str]) -> None:
        self.move_cursor(node)

    @property
    def run_ids(self) -> list[str]:
        """Run ids in display order (depth first)."""
        out: list[str] = []

        def walk(node: TreeNode[str]) -> None:
            for child in node.children:
                if child.data is not None:
                    out.append(child.data)
                walk(child)

        walk(self.root)
        return out
