"""The document model both renderers consume, so Markdown and PDF carry the same content by construction.

Text uses a tiny inline markup that both renderers understand: **bold** and `code`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str
    small: bool = False        # notes, legends


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""
    notes: list[str] = field(default_factory=list)
    bold: set[tuple[int, int]] = field(default_factory=set)   # (row, column) cells to emphasise
    key_columns: int = 1       # leading columns repeated when the PDF must split a wide table
    prose: bool = False        # long free text in cells: the PDF wraps cells instead of sizing to content


@dataclass
class Figure:
    path: Path                 # the PNG under <out>/figures/
    caption: str
    width: float = 1.0         # fraction of the text width in the PDF


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> None:
        self.blocks.extend(blocks)


class Numbering:
    """Table/figure counters shared by all section builders."""

    def __init__(self) -> None:
        self.tables = 0
        self.figures = 0

    def table(self, caption: str) -> str:
        self.tables += 1
        return f"Table {self.tables}. {caption}"

    def figure(self, caption: str) -> str:
        self.figures += 1
        return f"Figure {self.figures}. {caption}"
