"""Markdown rendering of the document model (GitHub-flavoured tables via pandas + tabulate)."""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from benchmark.report.document import Document, Figure, Heading, Paragraph, Table


def _cell(text: str, bold: bool) -> str:
    # A pipe would end the cell; newlines would end the row.
    text = str(text).replace("|", "\\|").replace("\n", " ")
    return f"**{text}**" if bold and text else text


def render_table(t: Table) -> str:
    rows = [[_cell(v, (i, j) in t.bold) for j, v in enumerate(row)] for i, row in enumerate(t.rows)]
    frame = pd.DataFrame(rows, columns=[_cell(c, False) for c in t.columns])
    # disable_numparse: cells are already formatted text ("1.10" must not become "1.1"; "92" stays a label).
    body = frame.to_markdown(index=False, tablefmt="github", disable_numparse=True)
    parts = [f"**{t.caption}**", "", body]
    if t.notes:
        parts += [""] + [f"<sub>{n}</sub>  " for n in t.notes]
    return "\n".join(parts)


def render_markdown(doc: Document, out_dir: Path) -> str:
    parts = [f"# {doc.title}"]
    for block in doc.blocks:
        if isinstance(block, Heading):
            parts.append("#" * block.level + " " + block.text)
        elif isinstance(block, Paragraph):
            parts.append(f"<sub>{block.text}</sub>" if block.small else block.text)
        elif isinstance(block, Table):
            parts.append(render_table(block))
        elif isinstance(block, Figure):
            rel = Path(os.path.relpath(block.path, out_dir)).as_posix()
            # The caption is written once, below the image; the alt text only names the figure.
            parts.append(f"![{block.caption.split('.')[0]}]({rel})\n\n*{block.caption}*")
        else:  # pragma: no cover - a new block type must get a renderer here and in pdf.py
            raise TypeError(f"no Markdown renderer for {type(block).__name__}")
    return "\n\n".join(parts) + "\n"
