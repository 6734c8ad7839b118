"""Every report table is also written as LaTeX; its numbers are the Markdown's (nothing compiles LaTeX here)."""
from __future__ import annotations

import re

import pytest

from benchmark.report.__main__ import main
from benchmark.report.document import Table
from benchmark.report.latex import table_to_latex
from tests.report.test_report_render import build_tree

NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("latex")
    results, out = root / "results", root / "reports"
    build_tree(results)
    assert main(["--results", str(results), "--out", str(out), "--register",
                 str(results / "interpretations.yaml")]) == 0
    return results, out


def _md_rows(md: str, caption: str) -> list[list[str]]:
    lines = md[md.index(f"**{caption}**"):].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip().strip("|").split(" | ")])
    return [rows[0]] + rows[2:]          # header and body, without the |---| rule


def _tex_rows(tex: str) -> list[list[str]]:
    body = tex[tex.index("\\toprule") + len("\\toprule"):tex.index("\\bottomrule")].replace("\\midrule", "")
    return [[c.strip() for c in re.split(r"(?<!\\)&", line)] for line in body.split("\\\\\n") if line.strip()]


def _numbers(rows):
    return [[NUMBER.findall(cell) for cell in row] for row in rows]


def test_every_table_has_a_latex_file_with_the_markdown_numbers(rendered):
    _, out = rendered
    md = (out / "report.md").read_text()
    tex_files = sorted((out / "tables").glob("*.tex"))
    assert len(tex_files) == md.count("\n**Table ")
    for path in tex_files:
        tex = path.read_text()
        caption = tex.splitlines()[0][2:]
        assert "\\toprule" in tex and "\\midrule" in tex and "\\bottomrule" in tex, path.name
        assert _numbers(_tex_rows(tex)) == _numbers(_md_rows(md, caption)), path.name


def test_latex_marks_best_std_and_footnote_marks(rendered):
    _, out = rendered
    main_tex = next(p for p in (out / "tables").glob("*.tex") if p.name.startswith("table_01_")).read_text()
    assert "$\\pm$" in main_tex and "\\textbf{" in main_tex
    assert "S4MIM\\textsuperscript{\\dag}" in main_tex
    t = Table(["Method", "1_8"], [["a_b & c%", "1.00 ± 2.00"]], "Table 9. x", ["`key_1` **bold**"], {(0, 1)})
    tex = table_to_latex(t)
    assert "a\\_b \\& c\\%" in tex and "\\textbf{1.00 $\\pm$ 2.00}" in tex
    assert "\\texttt{key\\_1} \\textbf{bold}" in tex


def test_latex_only_writes_just_the_tables(rendered, tmp_path):
    results, _ = rendered
    out = tmp_path / "paper"
    assert main(["--results", str(results), "--out", str(out), "--latex-only",
                 "--register", str(results / "interpretations.yaml")]) == 0
    assert list((out / "tables").glob("*.tex"))
    assert not (out / "report.md").exists() and not (out / "report.pdf").exists()
    assert not list(out.glob("figures/*.png"))
