"""Assembles the report document (sections 1–7) from the results store, writing figures and CSV tables."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from benchmark.train.config_files import profile_report_note
from datasets import REPO_ROOT
from datasets.io import atomic_write_text
from benchmark.report import ablation, comparison, details, figures, label_check, qualitative
from benchmark.report.labels import (CUSTOM_DATA_NOTE, PAPER_DESCRIPTION_NOTE, USER_SUPPLIED_NOTE,
                                     display_name, slugify, split_sort_key)
from benchmark.report.headline import headlines
from benchmark.report.polish import notes_once_per_section
from benchmark.report.document import Document, Figure, Heading, Numbering, Paragraph, Table
from benchmark.report.published import PublishedEntry, RegisterState
from benchmark.report.records import ResultsStore
from benchmark.report.results_store import load_curve

TITLE = "Semi-supervised semantic segmentation benchmark: results"


@dataclass
class BuildOutput:
    document: Document
    written: set[Path] = field(default_factory=set)    # figures and CSVs of this rendering (others are stale)
    warnings: list[str] = field(default_factory=list)


def marks_note(runs) -> str:
    """The footnotes of the marks a figure's legend carries († paper description, § user-supplied); the
    document pass `notes_once_per_section` moves them to one note per section."""
    notes = [note for flag, note in ((any(r.from_paper_description for r in runs), PAPER_DESCRIPTION_NOTE),
                                     (any(r.user_supplied for r in runs), USER_SUPPLIED_NOTE)) if flag]
    return "".join(" " + n for n in notes)


class _Builder:
    def __init__(self, store: ResultsStore, published: list[PublishedEntry], register: RegisterState, out: Path,
                 figures: bool = True):
        self.store, self.published, self.register = store, published, register
        self.draw = figures
        self.fig_dir, self.table_dir = out / "figures", out / "tables"
        self.num = Numbering()
        self.out = BuildOutput(Document(TITLE))
        self.doc = self.out.document

    def figure(self, name: str, caption: str, draw, *args, width: float = 1.0, **kwargs) -> None:
        path = self.fig_dir / f"{slugify(name)}.png"
        if not self.draw:   # --latex-only: the tables are wanted, not the pictures
            self.num.figure(caption)
            return
        draw(*args, path=path, **kwargs)
        self.out.written.add(path)
        self.doc.add(Figure(path, self.num.figure(caption), width))

    # ------------------------------------------------------------------------------------------------ sections
    def headline(self) -> None:
        lines = headlines(self.store.runs, self.store.datasets())
        if lines:
            self.doc.add(Paragraph("**Headline.** Gain of each method over the supervised baseline at the lowest "
                                   "label split (best-on-val mIoU, mean over seeds; the 95 % CI of the gain and "
                                   "the Holm-adjusted p are the significance table's):"))
            self.doc.add(*(Paragraph(line) for line in lines))

    def intro(self) -> None:
        runs, refs = self.store.runs, self.store.references
        seeds = len(runs)
        datasets = ", ".join(self.store.datasets())
        self.doc.add(Paragraph(
            f"Rendered from the results files under `{self.store.root}` only (summary.json, metrics.jsonl, "
            f"config.yaml; imported reference logs): {seeds} run(s) over {len(self.store.datasets())} dataset(s) "
            f"({datasets}), and {len(refs)} imported official log(s). Every number is a mean over seeds ± the "
            "sample standard deviation, with its 95 % confidence interval and the number of seeds n next to it "
            "(docs/statistics.md: which test, interval and correction each table uses). 'Best on val' is the highest "
            "val mIoU among a run's evaluations (as the published tables report); 'last' is the final "
            "evaluation."))
        if self.store.skipped:
            self.doc.add(Paragraph(f"**Skipped:** {len(self.store.skipped)} result folder(s) could not be read "
                                   "and are left out of every table; they are listed in 'Skipped results' at "
                                   "the end.", small=True))

    def main_comparison(self) -> None:
        self.doc.add(Heading("1. Main comparison", 2))
        for ds in self.store.datasets():
            self.doc.add(Heading(f"Dataset: {ds}", 3))
            # The note is the profile file's (`report_note:`), as this checkout has it, not a copy in each run.
            profiles = dict.fromkeys(r.profile for r in self.store.runs if r.dataset == ds and r.profile)
            for note in dict.fromkeys(filter(None, map(profile_report_note, profiles))):
                self.doc.add(Paragraph(f"**Note.** {note}", small=True))
            for metric in ("best", "last"):
                self.doc.add(comparison.main_table(self.store.runs, self.store.references, ds, metric, self.num))
            sig = comparison.significance_table(self.store.runs, ds, self.num)
            if sig:
                self.doc.add(sig)
                self._significance_csv(ds)
            fr = comparison.full_runs(self.store.runs, ds)
            splits = comparison.splits_of(fr, [], ds)
            if len(splits) >= 2:
                stats = comparison.stats_by(fr, "best")
                series = {comparison.method_label(fr, m):
                          [(s, stats[(m, s)].mean, stats[(m, s)].std) for s in splits if (m, s) in stats]
                          for m in comparison.methods_of(fr)}
                note = marks_note(fr)
                self.figure(f"main_{ds}", f"{ds}: best-on-val mIoU per split, mean ± std over seeds.{note}",
                            figures.miou_vs_split, series, splits, ds)
            self.qualitative(ds)

    def _significance_csv(self, ds: str) -> None:
        """The significance table at full precision (Hedges' g, CI bounds, raw and Holm p) for analysis."""
        rows = [{"comparison": f"{r.method} vs {r.base}", "split": r.split, "test": r.comparison.test or "none",
                 "n_a": r.comparison.n[0], "n_b": r.comparison.n[1], "delta": r.comparison.delta,
                 "ci_low": r.comparison.ci[0] if r.comparison.ci else math.nan,
                 "ci_high": r.comparison.ci[1] if r.comparison.ci else math.nan,
                 "p": r.comparison.p, "p_holm": r.comparison.p_holm, "hedges_g": r.comparison.g,
                 "mde": r.comparison.mde, "seeds_needed": r.comparison.seeds_needed}
                for r in comparison.significance_rows(self.store.runs, ds)]
        path = self.table_dir / f"significance_{slugify(ds)}.csv"
        atomic_write_text(path, pd.DataFrame(rows).to_csv(index=False, float_format="%.6g"))
        self.out.written.add(path)

    def qualitative(self, ds: str) -> None:
        missing = []
        for split in comparison.splits_of(comparison.full_runs(self.store.runs, ds), [], ds):
            q = qualitative.collect(self.store.runs, ds, split)
            if q is None:
                missing.append(split)
                continue
            self.figure(f"qualitative_{ds}_{split}", qualitative.caption(q, ds, split) + marks_note(
                comparison.full_runs(self.store.runs, ds)), qualitative.draw, q, f"{ds}, split {split}")
        if missing:
            self.doc.add(Paragraph(f"No qualitative figure for {ds} split(s) {', '.join(missing)}: no run saved "
                                   f"predictions of the fixed val images ({qualitative.QUALITATIVE_FILE}; runs "
                                   "from before this feature or with output.qualitative_images=0).", small=True))

    def published_section(self) -> None:
        self.doc.add(Heading("2. Published vs reproduced", 2))
        shown = self.store.datasets()
        for ds in shown:
            table = comparison.published_table(self.store.runs, self.store.references, self.published, ds, self.num)
            if table:
                self.doc.add(table)
            else:
                self.doc.add(Paragraph(f"{ds}: no published numbers in the data file.", small=True))
        others = sorted({e.dataset for e in self.published} - set(shown))
        if others:
            counts = ", ".join(f"{d} ({sum(1 for e in self.published if e.dataset == d)} entries)" for d in others)
            self.doc.add(Paragraph(f"Published entries for datasets without results are not shown: {counts}.",
                                   small=True))

    def ablation_section(self) -> None:
        self.doc.add(Heading("3. Ablations", 2))
        groups = ablation.ablation_groups(self.store.runs)
        if not groups:
            self.doc.add(Paragraph("No ablation runs (runs with a `variant`) in the results.", small=True))
        for g in groups:
            self.doc.add(ablation.ablation_table(g, self.num))
            name = display_name(g.method, g.from_paper_description)
            note = marks_note([r for _, rs in g.rows() for r in rs])
            data = ablation.bar_data(g)
            if data:
                self.figure(f"ablation_{g.dataset}_{g.method}",
                            f"{g.dataset}: ablation of {name}, best-on-val mIoU, mean ± std over seeds.{note}",
                            figures.ablation_bars, data, f"{g.dataset}: {name}")
            for sw in ablation.sweeps(g):
                self.figure(f"sweep_{g.dataset}_{g.method}_{sw.key}",
                            f"{g.dataset}: {name}, sweep of `{sw.key}`, mean ± std over seeds.{note}",
                            figures.sweep_lines, sw.points, sw.key, f"{g.dataset}: {name}", width=0.75)

    def per_class_section(self) -> None:
        self.doc.add(Heading("4. Per-class IoU", 2))
        for ds in self.store.datasets():
            for split in comparison.splits_of(self.store.runs, self.store.references, ds):
                frame = details.per_class_frame(self.store.runs, self.store.references, ds, split)
                if frame.empty or frame.shape[1] == 0:
                    continue
                self.doc.add(details.per_class_table(frame, self.store.runs, ds, split, self.num))
                csv_path = self.table_dir / f"per_class_{slugify(ds)}_{slugify(split)}.csv"
                atomic_write_text(csv_path, frame.round(4).to_csv(float_format="%.4f"))
                self.out.written.add(csv_path)
                if any(r.dataset == ds and r.split == split for r in self.store.runs):
                    self._heatmap(frame, ds, split)   # of reproduced runs; an imported log has its table
        self.doc.add(*label_check.section(self.store.runs, self.num))

    def _heatmap(self, frame: pd.DataFrame, ds: str, split: str) -> None:
        runs = self.store.runs
        methods = [c for c in frame.columns if not c.startswith(("std ", "n ", "gain ")) and not c.endswith("‡")]
        label = {m: comparison.method_label(runs, m) for m in methods}
        iou = frame[methods].T.rename(index=label)
        gain_cols = [c for c in frame.columns if c.startswith("gain ")]
        gain = frame[gain_cols].T.rename(index=lambda c: label.get(c[5:], c[5:])) if gain_cols else None
        note = marks_note([r for r in runs if r.method in methods])
        gains = ", and gain over the supervised baseline" if gain is not None and not gain.empty else ""
        self.figure(f"per_class_{ds}_{split}", f"{ds}, split {split}: per-class IoU at best-on-val, mean over "
                    f"seeds{gains}.{note}", figures.per_class_heatmaps, iou, gain, f"{ds} {split}")

    def curves_section(self) -> None:
        self.doc.add(Heading("5. Learning curves", 2))
        problems = []
        for ds in self.store.datasets():
            fr = comparison.full_runs(self.store.runs, ds)
            for split in comparison.splits_of(fr, [], ds):
                curves = {}
                for m in comparison.methods_of([r for r in fr if r.split == split]):
                    rows = []
                    for r in fr:
                        if r.method == m and r.split == split:
                            pts, problem = load_curve(r)
                            if problem:
                                problems.append(f"{self._rel(r.path)}: {problem}")
                            rows += [(it, v, r.seed) for it, v in pts if math.isfinite(v)]
                    if rows:
                        df = pd.DataFrame(rows, columns=["x", "miou", "seed"]).groupby("x")["miou"]
                        agg = df.agg(["mean", "std", "count"]).reset_index()
                        curves[comparison.method_label(fr, m)] = agg
                if curves:
                    shown = [r for r in fr if r.split == split]
                    note = marks_note(shown)
                    self.figure(f"curves_{ds}_{split}", f"{ds}, split {split}: val mIoU vs iteration, mean over "
                                f"seeds (band: ± 1 std where ≥ 2 seeds were evaluated).{note}",
                                figures.learning_curves, curves, f"{ds} {split}")
            for split in sorted({r.split for r in self.store.references if r.dataset == ds}, key=split_sort_key):
                refs = [r for r in self.store.references if r.dataset == ds and r.split == split and r.curve]
                curves = {r.name: pd.DataFrame({"x": [p[0] for p in r.curve], "mean": [p[1] for p in r.curve],
                                                "std": 0.0, "count": 1}) for r in refs}
                if curves:
                    self.figure(f"reference_curves_{ds}_{split}", f"{ds}, split {split}: imported official "
                                "log(s), val mIoU per epoch (one run each).", figures.learning_curves, curves,
                                f"{ds} {split} (official logs)", x_label="epoch")
        if problems:
            self.doc.add(Paragraph("Curve data problems: " + "; ".join(sorted(problems)) + ".", small=True))
        if not any(isinstance(b, Figure) and "curve" in b.path.name for b in self.doc.blocks):
            self.doc.add(Paragraph("No metrics.jsonl curves found.", small=True))

    def compute_section(self) -> None:
        self.doc.add(Heading("6. Compute", 2))
        for ds in self.store.datasets():
            table = details.compute_table(self.store.runs, ds, self.num)
            if table:
                self.doc.add(table)

    def provenance_section(self) -> None:
        self.doc.add(Heading("7. Provenance", 2))
        if self.store.runs:
            self.doc.add(details.provenance_table(self.store.runs, self.num))
            versions = details.versions_table(self.store.runs, self.num)
            if versions:
                self.doc.add(versions)
        for ref in sorted(self.store.references, key=lambda r: (r.dataset, r.split, r.name)):
            self.doc.add(Paragraph(f"Reference log '{ref.name}' ({ref.dataset} {ref.split}, "
                                   f"{display_name(ref.method)}, backbone {ref.backbone or 'unknown'}): imported "
                                   f"from {ref.source_log}.", small=True))
        self.doc.add(Heading("Interpretation register (S4MIM, MaskMatch)", 3))
        table = details.register_table(self.register, self.num)
        if self.register.problem:
            self.doc.add(Paragraph(self.register.problem.replace(str(REPO_ROOT) + "/", ""), small=True))
        if table:
            self.doc.add(table)
        elif not self.register.problem or self.register.entries:
            self.doc.add(Paragraph("The register has no entries for S4MIM or MaskMatch.", small=True))

    def skipped_section(self) -> None:
        if not self.store.skipped:
            return
        self.doc.add(Heading("Skipped results", 2))
        rows = [[self._rel(s.path), s.reason] for s in self.store.skipped]
        self.doc.add(Table(["Folder or file", "Reason"], rows,
                           self.num.table("Result folders left out of this report."),
                           ["Fix or delete these and re-render; the rest of the report does not depend on them."],
                           prose=True))
        self.out.warnings += [f"skipped {self._rel(s.path)}: {s.reason}" for s in self.store.skipped]

    def _rel(self, path: Path) -> str:
        try:
            return str(Path(path).relative_to(self.store.root))
        except ValueError:
            return str(path)


def build_document(store: ResultsStore, published: list[PublishedEntry], register: RegisterState,
                   out_dir: Path, figures: bool = True) -> BuildOutput:
    b = _Builder(store, published, register, Path(out_dir), figures)
    b.headline()
    b.intro()
    b.main_comparison()
    b.published_section()
    b.ablation_section()
    b.per_class_section()
    b.curves_section()
    b.compute_section()
    b.provenance_section()
    b.skipped_section()
    notes_once_per_section(b.doc, (PAPER_DESCRIPTION_NOTE, USER_SUPPLIED_NOTE, CUSTOM_DATA_NOTE))
    return b.out

