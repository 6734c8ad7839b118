"""Document passes that make the report read well: a mark's footnote once per section, not under every
table and figure."""
from __future__ import annotations

from benchmark.report.document import Document, Figure, Heading, Paragraph, Table


def _mentions(block, mark: str) -> bool:
    if isinstance(block, Table):
        cells = [block.caption, *block.columns, *(c for row in block.rows for c in row)]
        return any(mark in str(c) for c in cells)
    return False


def notes_once_per_section(doc: Document, notes: tuple[str, ...]) -> None:
    """Each note (a footnote starting with its mark, e.g. '† our implementation ...') is taken out of table
    notes and figure captions and written once, right under the heading of each section (level 2) whose
    tables or figures used it. Blocks before the first section (the introduction) are left as they are."""
    sections: list[list] = [[]]
    for block in doc.blocks:
        if isinstance(block, Heading) and block.level == 2:
            sections.append([])
        sections[-1].append(block)
    for section in sections[1:]:
        used = []
        for note in notes:
            mark, found = note[0], False
            for block in section:
                if isinstance(block, Table) and note in block.notes:
                    block.notes = [n for n in block.notes if n != note]
                    found = True
                elif isinstance(block, Figure) and note in block.caption:
                    block.caption = block.caption.replace(" " + note, "").replace(note, "").rstrip()
                    found = True
                found = found or _mentions(block, mark)
            if found:
                used.append(note)
        if used:
            section[1:1] = [Paragraph(note, small=True) for note in used]
    doc.blocks = [block for section in sections for block in section]
