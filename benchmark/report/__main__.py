"""Command line: `python -m benchmark.report` renders the report; `import-log` adds an official log as a reference.

Errors a user can fix (missing folder, bad data file, unknown option) print one `error: ...` line on stderr
and exit with status 2, without a traceback. Malformed run folders are skipped with a warning and listed in
the report, unless --strict.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datasets.io import atomic_write_files
from benchmark.report.errors import ReportError
from benchmark.report.published import DEFAULT_PUBLISHED, DEFAULT_REGISTER, load_published, load_register

DESCRIPTION = """\
Render the benchmark report (Markdown + PDF + figures + per-class CSV tables + every table as LaTeX) from
results files only:
  results/runs/<dataset>/<split>/<run>/seed<k>/summary.json (+ metrics.jsonl, config.yaml)
  results/references/<dataset>/<split>/<name>.json (official logs added with `import-log`)
Outputs, each written atomically: OUT/report.md, OUT/report.pdf, OUT/figures/*.png, OUT/tables/*.csv,
OUT/tables/*.tex (booktabs; --latex-only writes just the tables).
Re-rendering the same results gives the same files."""

EPILOG = """\
examples:
  python -m benchmark.report
  python -m benchmark.report --results results --out reports --register methods/interpretations
  python -m benchmark.report import-log pascal-classic-r101-92-run1.log --dataset pascal --split 92 \\
      --name "UniMatch official (run 1)"

import-log parses both official UniMatch log variants (meanIOU / MeanIoU, Mask: / Mask ratio:) and stores
best and last mIoU, per-class IoU at the best epoch and the per-epoch curve under
RESULTS/references/<dataset>/<split>/<slug-of-name>.json; the report shows it beside the reproduced rows.
exit status: 0 success, 2 error (one 'error:' line on stderr)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:   # one line, no usage dump: scripts grep for 'error:'
        raise ReportError(f"{message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m benchmark.report", description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=Path("results"), help="results folder (default: results)")
    p.add_argument("--out", type=Path, default=Path("reports"), help="output folder (default: reports)")
    p.add_argument("--register", type=Path, default=DEFAULT_REGISTER,
                   help="interpretation register: a folder of YAML lists, one per method, or one such file "
                        "(default: methods/interpretations/ of this checkout)")
    p.add_argument("--published", type=Path, default=DEFAULT_PUBLISHED,
                   help="published numbers YAML (default: benchmark/data/published.yaml)")
    p.add_argument("--latex-only", action="store_true",
                   help="write only the tables (OUT/tables/*.tex and *.csv): no Markdown, PDF or figures")
    p.add_argument("--strict", action="store_true",
                   help="fail (exit 2) if any run folder is malformed instead of skipping it with a note")
    sub = p.add_subparsers(dest="command", parser_class=_Parser, metavar="{import-log}")
    imp = sub.add_parser("import-log", help="import an official UniMatch training log as a reference row",
                         description="Parse an official UniMatch log and store it as a reference results file.")
    imp.add_argument("log", type=Path, help="the log file")
    imp.add_argument("--name", required=True, help='row label in the report, e.g. "UniMatch official (run 1)"')
    imp.add_argument("--dataset", help="dataset name (default: from the log's config)")
    imp.add_argument("--split", help="split name, e.g. 92 or 1_16 (default: from the log's labeled_id_path)")
    imp.add_argument("--method", help="method the log trained (default: the registry's strongest baseline, "
                                      "whose official code writes these logs)")
    imp.add_argument("--backbone", help="backbone (default: from the log's config)")
    imp.add_argument("--results", type=Path, default=argparse.SUPPRESS, help="results folder (default: results)")
    return p


def render(args) -> int:
    # The run records import torch (through the method registry): not for --help or a bad option.
    from benchmark.report.results_store import load_results, require_results

    store = load_results(args.results)
    require_results(store)
    if args.strict and store.skipped:
        first = store.skipped[0]
        raise ReportError(f"{len(store.skipped)} malformed result folder(s) (--strict); first: {first.path}: "
                          f"{first.reason}")
    published = load_published(args.published)
    register = load_register(args.register)
    # Plotting, statistics and PDF libraries are imported only now, so input errors answer without them.
    from benchmark.report.build import build_document   # matplotlib, scipy, statsmodels
    from benchmark.report.latex import write_latex_tables   # torch (method names), after the input checks
    from benchmark.report.markdown import render_markdown   # pandas, after the input checks
    from benchmark.report.pdf import write_pdf   # reportlab, after the input checks
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    built = build_document(store, published, register, out, figures=not args.latex_only)
    built.written.update(write_latex_tables(built.document, out / "tables"))
    for w in built.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.latex_only:
        _remove_stale(out, built.written, patterns=(("tables", "*.tex"),))
        n_tex = sum(1 for p in built.written if p.suffix == ".tex")
        print(f"wrote {n_tex} LaTeX tables to {out / 'tables'} ({len(store.runs)} runs)")
        return 0
    write_report_pair(out, render_markdown(built.document, out), lambda path: write_pdf(built.document, path))
    _remove_stale(out, built.written)
    n_fig = sum(1 for p in built.written if p.suffix == ".png")
    print(f"wrote {out / 'report.md'} and {out / 'report.pdf'} ({len(store.runs)} runs, "
          f"{len(store.references)} reference logs, {n_fig} figures, {len(store.skipped)} skipped)")
    return 0


def write_report_pair(out: Path, markdown: str, render_pdf_to) -> None:
    """report.md and report.pdf are replaced together or not at all (a full disk leaves the previous pair):
    both are written beside their targets first and moved into place only once both exist. A full disk is one
    error naming the file that did not fit."""
    atomic_write_files({out / "report.pdf": render_pdf_to,
                        out / "report.md": lambda tmp: tmp.write_text(markdown, encoding="utf-8")})


STALE_PATTERNS = (("figures", "*.png"), ("tables", "*.csv"), ("tables", "*.tex"))


def _remove_stale(out: Path, written: set[Path], patterns=STALE_PATTERNS) -> None:
    """Figures/tables from an earlier rendering whose results are gone would otherwise linger beside the report."""
    keep = {p.resolve() for p in written}
    for sub, pattern in patterns:
        for path in (out / sub).glob(pattern):
            if path.resolve() not in keep:
                path.unlink()


def import_log_command(args) -> int:
    from benchmark.report.logs_import import import_log   # torch (the method registry): not for --help
    results = getattr(args, "results", Path("results"))
    path, rec = import_log(args.log, results, args.name, dataset=args.dataset, split=args.split,
                           method=args.method, backbone=args.backbone)
    print(f"imported {args.log} as '{rec['name']}' ({rec['dataset']} {rec['split']}): best {rec['best']['miou']:.2f} "
          f"at epoch {rec['best']['epoch']}, last {rec['last']['miou']:.2f}, {rec['num_evaluations']} evaluations "
          f"-> {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return import_log_command(args) if args.command == "import-log" else render(args)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # unwritable output folder, disk full: the user's to fix, not a bug
        print(f"error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
