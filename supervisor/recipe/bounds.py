"""Bounds on a recipe's text, checked before any YAML is parsed: size and nesting.

A YAML parser builds nested values by recursion and holds every node in memory, so a recipe
nested thousands of levels deep dies with a RecursionError and one with 300,000 keys takes
seconds and hundreds of MB before anything can say it is wrong. Real recipes are a few KiB and
a few levels deep (the deepest shipped one: 4). `text_problem` reads the text once, line by
line, with no parser: a cost linear in the text, and no memory beyond one line.
"""

from __future__ import annotations

MAX_BYTES = 128 * 1024  # the largest shipped recipe is under 4 KiB
MAX_DEPTH = 40  # levels of nesting: `a: {b: [c]}` is 3
MAX_LINES = 5_000


def text_problem(text: str) -> tuple[int, str] | None:
    """(line, why) when `text` is too big or too deeply nested to be a recipe, else None.

    Depth is counted as a YAML reader would open values: one level per deeper indentation
    than the line above (a stack of indents), one per `- ` starting a sequence item on a line,
    and one per open `[` / `{` outside quotes. Block scalars (`|`, `>`) and comments count
    like other lines, which can only overestimate, by a level or two.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        return 0, f"the recipe is {size} bytes; a recipe is at most {MAX_BYTES} bytes"
    indents: list[int] = []
    brackets = 0
    for lineno, line in enumerate(text.splitlines(), 1):
        if lineno > MAX_LINES:
            return lineno, f"the recipe has over {MAX_LINES} lines"
        stripped = line.lstrip(" ")
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        if brackets == 0:  # inside a flow collection, indentation means nothing
            while indents and indents[-1] >= indent:
                indents.pop()
            indents.append(indent)
        dashes = 0
        while stripped.startswith("- ") or stripped == "-":
            dashes += 1
            stripped = stripped[2:].lstrip(" ")
        deepest = brackets
        quote = ""
        for ch in stripped:
            if quote:
                quote = "" if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch == "#":
                break
            elif ch in "[{":
                brackets += 1
                deepest = max(deepest, brackets)
                if len(indents) + dashes + deepest > MAX_DEPTH:
                    break  # no need to read the rest of a 10,000-bracket line
            elif ch in "]}":
                brackets = max(0, brackets - 1)
        depth = len(indents) + dashes + deepest
        if depth > MAX_DEPTH:
            return lineno, f"nested over {MAX_DEPTH} levels deep here; a recipe nests at most that"
    return None
