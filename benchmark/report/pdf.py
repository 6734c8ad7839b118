"""PDF rendering of the document model with reportlab: typeset text and real tables (selectable, searchable),
figures embedded at print size.

Wide content never gets cut: a table is set at 8 pt, then 7 pt, on a portrait page; failing that on a
landscape page down to 6 pt; failing that its columns are split into parts that repeat the key columns.
Free-text tables wrap their cells instead. Fonts are the DejaVu files shipped with matplotlib, so ±, Δ, †, ‡
and — print on every machine without a system font.
"""
from __future__ import annotations

import re
from pathlib import Path
from xml.sax.saxutils import escape

import matplotlib
from PIL import Image as PILImage
from reportlab.lib import colors
from reportlab.lib.enums import TA_LEFT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import cm
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import (BaseDocTemplate, Flowable, Frame, Image, KeepTogether, NextPageTemplate, PageBreak,
                                PageTemplate, Paragraph)
from reportlab.platypus import Table as RLTable
from reportlab.platypus import TableStyle

from benchmark.report.document import Document, Figure, Heading, Paragraph as DocParagraph, Table

MARGIN = 1.8 * cm
PORTRAIT_W = A4[0] - 2 * MARGIN
LANDSCAPE_W = landscape(A4)[0] - 2 * MARGIN
CELL_PAD = 3.0
FIT_STEPS = [("portrait", 8.0), ("portrait", 7.0), ("landscape", 8.0), ("landscape", 7.0), ("landscape", 6.5),
             ("landscape", 6.0)]
SPLIT_FONT = 7.0
PROSE_MIN_COL = 3.0 * cm   # a wrapped column this wide still reads well; a landscape page for a short table
# would leave the portrait page before it nearly empty (the versions table alone on a page)
BLOCK_GAP = 9.0
NO_PAD = dict(leftPadding=0, rightPadding=0, topPadding=0, bottomPadding=0)   # widths above are exact
FONT, BOLD, ITALIC, MONO = "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSansMono"


def _register_fonts() -> None:
    if FONT in pdfmetrics.getRegisteredFontNames():
        return
    ttf_dir = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    for name in (FONT, BOLD, ITALIC, MONO):
        pdfmetrics.registerFont(TTFont(name, str(ttf_dir / f"{name}.ttf")))
    pdfmetrics.registerFontFamily(FONT, normal=FONT, bold=BOLD, italic=ITALIC, boldItalic=BOLD)


def _styles() -> dict[str, ParagraphStyle]:
    base = ParagraphStyle("body", fontName=FONT, fontSize=9, leading=12, alignment=TA_LEFT, spaceAfter=5)
    return {
        "title": ParagraphStyle("title", parent=base, fontName=BOLD, fontSize=16, leading=20, spaceAfter=10),
        "h2": ParagraphStyle("h2", parent=base, fontName=BOLD, fontSize=13, leading=16, spaceBefore=10,
                             spaceAfter=6, keepWithNext=True),
        "h3": ParagraphStyle("h3", parent=base, fontName=BOLD, fontSize=10.5, leading=13, spaceBefore=6,
                             spaceAfter=4, keepWithNext=True),
        "body": base,
        "small": ParagraphStyle("small", parent=base, fontSize=7.2, leading=9, spaceAfter=2),
        "caption": ParagraphStyle("caption", parent=base, fontSize=8.5, leading=10.5, spaceBefore=4,
                                  spaceAfter=3, keepWithNext=True),
        "figcaption": ParagraphStyle("figcaption", parent=base, fontSize=8, leading=10, spaceAfter=8),
    }


def inline(text: str) -> str:
    """The document's inline markup (**bold**, `code`) as reportlab paragraph XML; everything else escaped."""
    out = escape(str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    return re.sub(r"`([^`]+)`", rf'<font face="{MONO}">\1</font>', out)


def _caption(text: str, style: ParagraphStyle) -> Paragraph:
    # "Table 3." / "Figure 2." in bold, like a paper.
    m = re.match(r"^((?:Table|Figure) \d+\.)(.*)$", text, re.S)
    return Paragraph(f"<b>{inline(m.group(1))}</b>{inline(m.group(2))}" if m else inline(text), style)


# -------------------------------------------------------------------------------------------------- tables
def _text_width(text: str, font: str, size: float) -> float:
    """The widest line of a cell (a cell may hold a second line, e.g. a confidence interval)."""
    return max(pdfmetrics.stringWidth(line, font, size) for line in str(text).split("\n")) + 2 * CELL_PAD


def _column_widths(t: Table, size: float) -> list[float]:
    """Width each column needs: its widest cell on one line; headers may wrap at spaces if cells are narrower."""
    widths = []
    for j, head in enumerate(t.columns):
        cells = max((_text_width(row[j], BOLD if (i, j) in t.bold else FONT, size)
                     for i, row in enumerate(t.rows)), default=0.0)
        head_full = _text_width(head, BOLD, size)
        head_word = max(_text_width(w, BOLD, size) for w in (head.split() or [""]))
        widths.append(max(cells, head_word, min(head_full, max(cells, head_word))))
    return widths


def _water_fill(natural: list[float], available: float) -> list[float]:
    """Cap the widest columns at a common width so that the total fits (free-text tables wrap their cells)."""
    if sum(natural) <= available:
        return natural
    lo, hi = 0.0, max(natural)
    for _ in range(50):
        cap = (lo + hi) / 2
        lo, hi = (cap, hi) if sum(min(w, cap) for w in natural) <= available else (lo, cap)
    return [min(w, lo) for w in natural]


def _rl_table(t: Table, cols: list[int], widths: list[float], size: float, wrap: bool) -> RLTable:
    head_style = ParagraphStyle("th", fontName=BOLD, fontSize=size, leading=size * 1.2)
    cell_style = ParagraphStyle("td", fontName=FONT, fontSize=size, leading=size * 1.22)
    bold_style = ParagraphStyle("tdb", parent=cell_style, fontName=BOLD)
    data = [[Paragraph(inline(t.columns[j]), head_style) for j in cols]]
    for i, row in enumerate(t.rows):
        if wrap:
            data.append([Paragraph(escape(row[j]), bold_style if (i, j) in t.bold else cell_style) for j in cols])
        else:
            data.append([row[j] for j in cols])   # plain strings never wrap: the widths were sized for them
    style = [("FONT", (0, 1), (-1, -1), FONT, size), ("LEADING", (0, 1), (-1, -1), size * 1.22),
             ("VALIGN", (0, 0), (-1, -1), "TOP"),
             ("LEFTPADDING", (0, 0), (-1, -1), CELL_PAD), ("RIGHTPADDING", (0, 0), (-1, -1), CELL_PAD),
             ("TOPPADDING", (0, 0), (-1, -1), 1.5), ("BOTTOMPADDING", (0, 0), (-1, -1), 1.5),
             ("LINEABOVE", (0, 0), (-1, 0), 0.9, colors.black), ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
             ("LINEBELOW", (0, -1), (-1, -1), 0.9, colors.black)]
    for i in range(1, len(data), 2):   # faint zebra rows keep long rows readable across wide tables
        style.append(("BACKGROUND", (0, i + 1), (-1, i + 1), colors.Color(0.95, 0.95, 0.95)))
    if not wrap:
        for (i, j) in t.bold:
            if j in cols:
                style.append(("FONT", (cols.index(j), i + 1), (cols.index(j), i + 1), BOLD, size))
    return RLTable(data, colWidths=widths, repeatRows=1, style=TableStyle(style), hAlign="LEFT")


def table_flowables(t: Table, styles) -> tuple[str, list]:
    """(orientation, flowables) for one table, applying the fitting rules in the module docstring."""
    cols = list(range(len(t.columns)))
    notes = [Paragraph(inline(n), styles["small"]) for n in t.notes]
    if t.prose:
        size = 7.5
        natural = _column_widths(t, size)
        widths = _water_fill(natural, PORTRAIT_W)
        # Wrapped text reads well in columns of ~3 cm or more; narrower than that, use the landscape width.
        orient = "portrait" if sum(natural) <= PORTRAIT_W or max(widths) >= PROSE_MIN_COL else "landscape"
        if orient == "landscape":
            widths = _water_fill(natural, LANDSCAPE_W)
        return orient, _spaced([_caption(t.caption, styles["caption"]), _rl_table(t, cols, widths, size, True),
                                *notes])
    for orient, size in FIT_STEPS:
        widths = _column_widths(t, size)
        if sum(widths) <= (PORTRAIT_W if orient == "portrait" else LANDSCAPE_W):
            return orient, _spaced([_caption(t.caption, styles["caption"]), _rl_table(t, cols, widths, size, False),
                                    *notes])
    # Still too wide: parts of the columns, each repeating the key columns (e.g. Method).
    widths = _column_widths(t, SPLIT_FONT)
    keys = list(range(min(t.key_columns, len(cols))))
    parts, current = [], []
    for j in cols[len(keys):]:
        if current and sum(widths[k] for k in keys + current + [j]) > LANDSCAPE_W:
            parts.append(current)
            current = []
        current.append(j)
    parts.append(current)
    flow = []
    for k, part in enumerate(parts, start=1):
        sel = keys + part
        flow += [_caption(f"{t.caption} (part {k} of {len(parts)})", styles["caption"]),
                 _rl_table(t, sel, [widths[j] for j in sel], SPLIT_FONT, False)]
        flow[-1].spaceAfter = 6
    return "landscape", _spaced(flow + notes)


def _spaced(flow: list) -> list:
    """Caption, table and notes as one block: moved whole to the next page when it fits there (a table
    longer than a page still splits, repeating its header). Space after it comes from spaceAfter, never a
    Spacer: a Spacer alone at the top of a page before a page break would leave that page blank."""
    last = flow[-1]
    if isinstance(last, Paragraph):
        flow[-1] = Paragraph(last.text, ParagraphStyle("last", parent=last.style, spaceAfter=BLOCK_GAP))
    else:
        last.spaceAfter = BLOCK_GAP
    return [KeepTogether(flow)]


# -------------------------------------------------------------------------------------------------- figures
MIN_FIGURE_SCALE = 0.6   # a figure shrinks to this share of its size to stay on the page after its table


class FigureBlock(Flowable):
    """An image and its caption as one block that shrinks to the space left on the page (down to
    MIN_FIGURE_SCALE) rather than moving whole to the next page and leaving this one half empty; larger than
    the frame, it shrinks to the frame."""

    def __init__(self, path: Path, width: float, height: float, caption: Paragraph):
        super().__init__()
        self.path, self.nat_w, self.nat_h, self.caption = path, width, height, caption
        self.scale = 1.0
        self._cap_h = 0.0

    def wrap(self, avail_w, avail_h):
        _, self._cap_h = self.caption.wrap(avail_w, avail_h)
        cap = self._cap_h + self.caption.style.spaceBefore + self.caption.style.spaceAfter
        frame = getattr(self, "_frame", None)    # set by the frame that places it; never taller than that
        frame_h = frame._height if frame is not None else avail_h
        scale = min(1.0, avail_w / self.nat_w, max(frame_h - cap, 1.0) / self.nat_h)
        if self.nat_h * scale + cap > avail_h and avail_h - cap >= MIN_FIGURE_SCALE * self.nat_h * scale:
            scale = (avail_h - cap) / self.nat_h
        self.scale = scale
        self.width, self.height = avail_w, self.nat_h * scale + cap
        return self.width, self.height

    def draw(self):
        w, h = self.nat_w * self.scale, self.nat_h * self.scale
        top = self.height
        Image(str(self.path), width=w, height=h).drawOn(self.canv, 0, top - h)
        self.caption.drawOn(self.canv, 0, top - h - self.caption.style.spaceBefore - self._cap_h)


def figure_flowables(f: Figure, styles) -> tuple[str, list]:
    with PILImage.open(f.path) as im:
        px_w, px_h = im.size
        dpi = im.info.get("dpi", (150, 150))[0] or 150
    nat_w = px_w / float(dpi) * 72.0
    orient = "portrait" if nat_w <= PORTRAIT_W * 1.15 else "landscape"   # wide heatmaps keep their font size
    frame_w = PORTRAIT_W if orient == "portrait" else LANDSCAPE_W
    w = min(frame_w * f.width, nat_w) if orient == "portrait" else min(frame_w, nat_w)
    w = min(w, frame_w)
    h = w * px_h / px_w
    max_h = (A4[1] if orient == "portrait" else A4[0]) - 2 * MARGIN - 3 * cm
    if h > max_h:
        w, h = w * max_h / h, max_h
    block = FigureBlock(f.path, w, h, _caption(f.caption, styles["figcaption"]))
    block.spaceAfter = 0
    return orient, [block]


# -------------------------------------------------------------------------------------------------- document
class _Doc(BaseDocTemplate):
    def afterFlowable(self, flowable):
        # PDF outline (bookmarks) from the headings, so the appendix is navigable.
        level = getattr(flowable, "_outline_level", None)
        if level is not None:
            key = f"h{id(flowable)}"
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(flowable.getPlainText(), key, level=level, closed=False)


def _footer(canvas, doc) -> None:
    canvas.saveState()
    canvas.setFont(FONT, 7)
    canvas.drawRightString(doc.pagesize[0] - MARGIN, MARGIN / 2, f"page {doc.page}")
    canvas.restoreState()


def _section_orientations(blocks: list, rendered: dict) -> dict[int, str]:
    """Heading index (level <= 2) -> the orientation its section starts in: landscape where any of its blocks
    needs it."""
    out: dict[int, str] = {}
    current = None
    for index, block in enumerate(blocks):
        if isinstance(block, Heading) and block.level <= 2:
            current = index
            out[current] = "portrait"
        elif index in rendered and rendered[index][0] == "landscape" and current is not None:
            out[current] = "landscape"
    return out


class _Story:
    """The flowables of the PDF in order, with the page orientation they are set in. A heading never ends a
    page: headings just added travel with the block they introduce, also across an orientation change."""

    def __init__(self, title: Paragraph):
        self.flowables: list = [title]
        self.orient = "portrait"
        self.trailing_headings: list = []   # headings just added, moved along when a page break must come first
        self.fresh_break: list = []         # [index of the NextPageTemplate] while only headings followed it

    def switch(self, to: str) -> None:
        if to == self.orient:
            return
        if self.fresh_break:                # the new page is still empty: change its orientation, no second break
            self.flowables[self.fresh_break[0]] = NextPageTemplate(to)
        else:
            moved = [self.flowables.pop() for _ in range(len(self.trailing_headings))][::-1]
            self.fresh_break[:] = [len(self.flowables)]
            self.flowables.extend([NextPageTemplate(to), PageBreak(), *moved])
        self.orient = to

    def add_heading(self, block: Heading, styles, section_orient: str | None) -> None:
        if block.level <= 2:
            # A section that needs a landscape page starts on one: switching halfway through would leave
            # a half-empty portrait page inside the section.
            self.switch(section_orient)
            self.trailing_headings.clear()
        para = Paragraph(inline(block.text), styles["h2" if block.level <= 2 else "h3"])
        para._outline_level = max(0, block.level - 2)
        self.flowables.append(para)
        self.trailing_headings.append(para)

    def add_paragraph(self, block: DocParagraph, styles) -> None:
        self.flowables.append(Paragraph(inline(block.text), styles["small" if block.small else "body"]))
        self.trailing_headings.clear()
        self.fresh_break.clear()

    def add_block(self, want: str, flow: list) -> None:
        """A rendered table or figure: (the orientation it needs, its flowables)."""
        if want == "landscape":
            self.switch("landscape")        # stays landscape until the next section: fewer half-empty pages
        if self.trailing_headings:          # a heading never ends a page: it travels with the block it introduces
            del self.flowables[len(self.flowables) - len(self.trailing_headings):]
            # Flattened: reportlab moves a KeepTogether nested in another to a new page even when it fits.
            inner = [x for f in flow for x in (f._content if isinstance(f, KeepTogether) else [f])]
            flow = [KeepTogether(list(self.trailing_headings) + inner)]
        self.flowables.extend(flow)
        self.trailing_headings.clear()
        self.fresh_break.clear()


def _flowables(doc: Document, styles) -> list:
    """The document's blocks as flowables, each table and figure in the orientation it needs."""
    story = _Story(Paragraph(inline(doc.title), styles["title"]))
    rendered = {i: (table_flowables(b, styles) if isinstance(b, Table) else figure_flowables(b, styles))
                for i, b in enumerate(doc.blocks) if isinstance(b, (Table, Figure))}
    section_orient = _section_orientations(doc.blocks, rendered)
    for index, block in enumerate(doc.blocks):
        if isinstance(block, Heading):
            story.add_heading(block, styles, section_orient.get(index))
        elif isinstance(block, DocParagraph):
            story.add_paragraph(block, styles)
        elif index in rendered:
            story.add_block(*rendered[index])
        else:  # pragma: no cover
            raise TypeError(f"no PDF renderer for {type(block).__name__}")
    return story.flowables


def _pdf_document(doc: Document, path: Path) -> _Doc:
    """An A4 document with a portrait and a landscape page template, both with the page-number footer."""
    pdf = _Doc(str(path), pagesize=A4, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
               bottomMargin=MARGIN, title=doc.title, author="benchmark.report", invariant=1)
    pw, ph = A4
    lw, lh = landscape(A4)
    pdf.addPageTemplates([
        PageTemplate("portrait", [Frame(MARGIN, MARGIN, pw - 2 * MARGIN, ph - 2 * MARGIN, id="p", **NO_PAD)],
                     onPage=_footer, pagesize=A4),
        PageTemplate("landscape", [Frame(MARGIN, MARGIN, lw - 2 * MARGIN, lh - 2 * MARGIN, id="l", **NO_PAD)],
                     onPage=_footer, pagesize=landscape(A4))])
    return pdf


def write_pdf(doc: Document, path: Path) -> None:
    """The PDF straight into `path`: the temp file datasets.io's atomic writer hands over (see __main__.py)."""
    _register_fonts()
    styles = _styles()
    story = _flowables(doc, styles)
    _pdf_document(doc, path).build(story)
