"""A `Report` as Markdown (PNGs beside it) or as one self-contained HTML page (PNGs inlined as
data URIs, so the page can be mailed or attached alone)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from supervisor.report.document import Code, Heading, Image, Para, Report, Table


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(report: Report) -> str:
    out: list[str] = []
    for block in report.blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Para):
            out.append(block.text)
        elif isinstance(block, Table):
            out.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            out.append("|" + "|".join("---" for _ in block.header) + "|")
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
        elif isinstance(block, Code):
            fence = "````" if "```" in block.text else "```"
            out.append(f"{fence}{block.lang}\n{block.text}\n{fence}")
        elif isinstance(block, Image):
            out.append(f"![{block.alt}]({block.file})")
        out.append("")
    return "\n".join(out)


_STYLE = """body{font-family:system-ui,sans-serif;max-width:70em;margin:2em auto;padding:0 1em}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.2em .5em;
text-align:left}pre{background:#f4f4f4;padding:.8em;overflow-x:auto}img{max-width:100%}"""


def _inline(text: str) -> str:
    """Paragraph text: escaped, with the two marks the report uses (**bold**, `code`)."""
    parts = html.escape(text).split("**")
    text = "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))
    parts = text.split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def to_html(report: Report, images: dict[str, Path]) -> str:
    """`images`: the PNG file of each image name (read and inlined)."""
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(report.title)}"
           f"</title><style>{_STYLE}</style></head><body>"]  # fmt: skip
    for block in report.blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{html.escape(block.text)}</h{block.level}>")
        elif isinstance(block, Para):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{html.escape(h)}</th>" for h in block.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>"
                for row in block.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Code):
            out.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
        elif isinstance(block, Image) and block.file in images:
            data = base64.b64encode(images[block.file].read_bytes()).decode("ascii")
            out.append(f"<p><img alt='{html.escape(block.alt)}' "
                       f"src='data:image/png;base64,{data}'></p>")  # fmt: skip
    out.append("</body></html>")
    return "\n".join(out)
