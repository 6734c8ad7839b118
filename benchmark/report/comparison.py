"""Main comparison (methods × splits), significance vs the baselines, and published vs reproduced."""
from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from dataclasses import dataclass

from benchmark.report.labels import (CUSTOM_DATA_MARK, CUSTOM_DATA_NOTE, DASH, PAPER_DESCRIPTION_NOTE, display_name,
                                     method_sort_key, registered_method, split_sort_key)
from benchmark.report.document import Numbering, Table
from benchmark.report.published import PublishedEntry
from benchmark.report.records import ReferenceRecord, RunRecord
from benchmark.report.inference import (Comparison, compare, draws_sentence, fmt_p, fmt_seeds_needed, holm,
                                         test_label, tests_sentence)
from benchmark.report.stats import DECIMALS, SeedStats, fmt, fmt_cell, fmt_ci, seed_stats, seeds_phrase

REFERENCE_MARK = "‡"
REFERENCE_NOTE = (f"{REFERENCE_MARK} official training log imported with `import-log` (one run, not re-run here); "
                  "never marked as best, not part of the significance tests.")
NOT_AVAILABLE = "not available"
METRICS = {"best": "best-on-val mIoU (%)", "last": "last-iteration mIoU (%)"}


def _evaluations_phrase(runs: list[RunRecord]) -> str:
    """How many evaluations "best on val" was picked from (the official code: one per epoch)."""
    counts = sorted({r.evaluations for r in runs if r.evaluations is not None})
    if not counts:
        return ""
    span = str(counts[0]) if len(counts) == 1 else f"{counts[0]} to {counts[-1]}"
    return f" (here picked from {span} evaluations per run; the official code evaluates after every epoch)"


def full_runs(runs: list[RunRecord], dataset: str) -> list[RunRecord]:
    """Runs of the methods as published (no ablation variant), grid.references cells left out."""
    return [r for r in runs if r.dataset == dataset and r.variant is None and not r.reference]


def reference_runs(runs: list[RunRecord], dataset: str) -> list[RunRecord]:
    """grid.references cells (e.g. supervised with all labels): shown beside the grid, never ranked."""
    return [r for r in runs if r.dataset == dataset and r.variant is None and r.reference]


def reference_column(split: str) -> str:
    return f"{split} (reference)"


def splits_of(runs, refs, dataset: str) -> list[str]:
    found = {r.split for r in runs if r.dataset == dataset} | {r.split for r in refs if r.dataset == dataset}
    return sorted(found, key=split_sort_key)


def methods_of(runs: list[RunRecord]) -> list[str]:
    return sorted({r.method for r in runs}, key=method_sort_key)


def paper_flag(runs: list[RunRecord], method: str) -> bool:
    return any(r.from_paper_description for r in runs if r.method == method)


def paper_method(method: str) -> bool:
    """A published entry's method is our reading of a paper's description (its class says so)."""
    cls = registered_method(method)
    return cls is not None and cls.from_paper_description


def user_flag(runs: list[RunRecord], method: str) -> bool:
    return any(r.user_supplied for r in runs if r.method == method)


def method_label(runs: list[RunRecord], method: str) -> str:
    """The method's display name with its marks († paper description, § user-supplied)."""
    shown = next((r.display_name for r in runs if r.method == method and r.display_name), None)
    return display_name(method, paper_flag(runs, method), user_flag(runs, method), shown)


def declared_base(runs: list[RunRecord], method: str) -> str | None:
    return next((r.base for r in runs if r.method == method and r.base), None)


def significance_baselines(runs: list[RunRecord], methods: list[str]) -> list[str]:
    """The methods every other one is tested against (`Method.significance_baseline`), in method order."""
    return [m for m in methods if any(r.significance_baseline for r in runs if r.method == m)]


def on_custom_data(runs: list[RunRecord]) -> set[tuple[str, str]]:
    """(method, split) cells with a run on custom split lists or accepted custom embedded data."""
    return {(r.method, r.split) for r in runs if r.custom_splits or r.custom_data}


def stats_by(runs: list[RunRecord], metric: str) -> dict[tuple[str, str], SeedStats]:
    """(method, split) -> seed statistics of best or last mIoU."""
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in runs:
        values[(r.method, r.split)].append(getattr(r, metric).miou)
    return {k: seed_stats(v) for k, v in values.items()}


def numerics_note(runs: list[RunRecord]) -> str | None:
    """A warning when a table's runs trained under different CPU numerics (benchmark/numerics.py): their
    digits then depend on the hosts, not only on the methods."""
    labels = sorted({r.numerics or "not recorded" for r in runs})
    if len(labels) < 2:
        return None
    return (f"Mixed numerics: these runs trained under {', '.join(labels)} CPU numerics, so their digits come "
            f"from different float summation orders; rerun them under one (train.cpu_numerics) to compare to "
            f"the digit.")


def _stats_cell(table: dict, method: str, split: str, custom: set[tuple[str, str]]) -> str:
    if (method, split) not in table:
        return DASH
    return fmt_cell(table[(method, split)]) + (CUSTOM_DATA_MARK if (method, split) in custom else "")


def _best_cells(stats: dict, methods: list[str], splits: list[str]) -> set[tuple[int, int]]:
    """(row, column) of the best reproduced value per column, compared at display precision so visible ties
    are all marked."""
    bold = set()
    for j, split in enumerate(splits, start=1):
        means = {i: round(stats[(m, split)].mean, DECIMALS) for i, m in enumerate(methods)
                 if (m, split) in stats and stats[(m, split)].n}
        if means:
            top = max(means.values())
            bold.update((i, j) for i, v in means.items() if v == top)
    return bold


def _official_log_rows(ds_refs: list[ReferenceRecord], metric: str, splits: list[str],
                       lab_splits: list[str]) -> list[list[str]]:
    """One row per imported official log, its one run in its split's column."""
    rows = []
    for ref in sorted(ds_refs, key=lambda r: r.name):
        point = getattr(ref, metric)
        rows.append([f"{ref.name} {REFERENCE_MARK}"]
                    + [fmt_cell(seed_stats([point.miou])) if s == ref.split else DASH for s in splits]
                    + [DASH] * len(lab_splits))
    return rows


def _main_table_notes(fr: list[RunRecord], lab: list[RunRecord], metric: str, methods: list[str],
                      custom: set, has_refs: bool, has_lab_splits: bool) -> list[str]:
    notes = [f"Cells: mean ± sample std [95 % CI of the mean: Student's t-interval, n − 1 degrees of freedom] "
             f"over seeds (n = seeds with a finite value); {DASH} = no run for this method and split; **bold** = "
             "best reproduced value in the column.", draws_sentence(fr + lab)]
    if metric == "best":
        notes.append("Best on val: the highest val mIoU over all evaluations of a run, as the official tables "
                     f"report it{_evaluations_phrase(fr)}. It selects on the set it reports on, so it is "
                     "optimistic; compare with the last-iteration table.")
    else:
        notes.append("Last iteration: val mIoU at the final evaluation of the run (no selection).")
    diverged = sorted((r for r in fr if not math.isfinite(getattr(r, metric).miou)),
                      key=lambda r: (method_sort_key(r.method), split_sort_key(r.split), r.seed))
    if diverged:
        listed = "; ".join(f"{display_name(r.method)} {r.split} seed {r.seed}" for r in diverged)
        notes.append(f"NaN (diverged): mIoU was NaN, excluded from mean and std ('NaN excl.' counts them); "
                     f"runs: {listed}.")
    if any(paper_flag(fr, m) for m in methods):
        notes.append(PAPER_DESCRIPTION_NOTE)
    if custom:
        notes.append(CUSTOM_DATA_NOTE)
    if has_refs:
        notes.append(REFERENCE_NOTE)
    mixed = numerics_note(fr + lab)
    if mixed:
        notes.append(mixed)
    if has_lab_splits:
        notes.append("(reference): grid.references cells, trained for every seed beside the grid (e.g. the "
                     "supervised baseline with all labels, the room the labels leave); not ranked, not tested.")
    return notes


def main_table(runs: list[RunRecord], refs: list[ReferenceRecord], dataset: str, metric: str,
               num: Numbering) -> Table:
    """One metric (best or last) for one dataset: reproduced rows, then imported official logs."""
    fr = full_runs(runs, dataset)
    ds_refs = [r for r in refs if r.dataset == dataset]
    splits = splits_of(fr, ds_refs, dataset)
    stats = stats_by(fr, metric)
    lab = reference_runs(runs, dataset)
    lab_splits = sorted({r.split for r in lab}, key=split_sort_key)
    lab_stats = stats_by(lab, metric)
    methods = methods_of(fr + lab)
    custom = on_custom_data(fr + lab)
    rows = [[method_label(fr + lab, method)] + [_stats_cell(stats, method, s, custom) for s in splits]
            + [_stats_cell(lab_stats, method, s, custom) for s in lab_splits] for method in methods]
    bold = _best_cells(stats, methods, splits)
    rows += _official_log_rows(ds_refs, metric, splits, lab_splits)
    notes = _main_table_notes(fr, lab, metric, methods, custom, bool(ds_refs), bool(lab_splits))
    caption = f"{dataset}: {METRICS[metric]}, {seeds_phrase(fr + lab)}."
    return Table(["Method"] + splits + [reference_column(s) for s in lab_splits], rows, num.table(caption),
                 notes, bold)


@dataclass(frozen=True)
class SignificanceRow:
    method: str
    base: str
    split: str
    comparison: Comparison


def significance_rows(runs: list[RunRecord], dataset: str) -> list[SignificanceRow]:
    """Every method but the lowest baseline against each significance baseline and its declared base, per
    split, Holm-adjusted across the whole list (the significance table's family; the headline reads it)."""
    fr = full_runs(runs, dataset)
    splits = splits_of(fr, [], dataset)
    cells: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in fr:
        cells[(r.method, r.split)].append(r)
    methods = methods_of(fr)
    baselines = significance_baselines(fr, methods)
    found = []
    for method in methods:
        if baselines and method == baselines[0]:
            continue
        for base in dict.fromkeys(baselines + [declared_base(fr, method) or baselines[0] if baselines else ""]):
            if method == base or base not in methods:
                continue
            found += [SignificanceRow(method, base, s, compare(cells[(method, s)], cells[(base, s)]))
                      for s in splits if (method, s) in cells and (base, s) in cells]
    adjusted = holm([row.comparison for row in found])
    return [dataclasses.replace(row, comparison=c) for row, c in zip(found, adjusted)]


SIGNIFICANCE_COLUMNS = ["Comparison", "Split", "Test", "Δ", "95 % CI", "p", "p (Holm)", "Hedges' g", "MDE",
                        "Seeds to detect Δ"]


def significance_table(runs: list[RunRecord], dataset: str, num: Numbering) -> Table | None:
    fr = full_runs(runs, dataset)
    found = significance_rows(runs, dataset)
    if not found:
        return None
    rows = []
    custom = on_custom_data(fr)
    for row in found:
        c = row.comparison
        zero = c.p is not None and not math.isfinite(c.p)
        mark = CUSTOM_DATA_MARK if {(row.method, row.split), (row.base, row.split)} & custom else ""
        rows.append([f"{method_label(fr, row.method)} vs {display_name(row.base)}", f"{row.split}{mark}",
                     test_label(c) + (" (zero variance)" if zero else ""), fmt(c.delta, signed=True),
                     fmt_ci(c.ci, signed=True), fmt_p(c.p), fmt_p(c.p_holm) + ("*" if c.significant else ""),
                     fmt(c.g, signed=True), fmt(c.mde), fmt_seeds_needed(c)])
    comparisons = [row.comparison for row in found]
    notes = [f"Δ = difference of mean best-on-val mIoU (points) with its 95 % CI; test: {tests_sentence(comparisons)}. "
             "p (Holm) = Holm's step-down adjustment across every comparison of this table; * p (Holm) < 0.05. "
             "Hedges' g = Δ over the pooled sd of the two methods, bias-corrected. MDE = the smallest |Δ| this "
             "comparison detects with 80 % power at α = 0.05, given its spread and seeds; seeds to detect Δ "
             "(comparisons not significant) = seeds per method the test would need for the observed Δ. "
             "'not enough seeds': fewer than 2 finite seeds on a side.",
             draws_sentence(fr)]
    resolves = resolution_sentence(found, fr)
    if resolves:
        notes.append(resolves)
    if any(paper_flag(fr, m) for m in methods_of(fr)):
        notes.append(PAPER_DESCRIPTION_NOTE)
    if custom:
        notes.append(CUSTOM_DATA_NOTE)
    return Table(SIGNIFICANCE_COLUMNS, rows,
                 num.table(f"{dataset}: significance of best-on-val differences, {seeds_phrase(fr)}."), notes,
                 key_columns=2)


def resolution_sentence(found: list[SignificanceRow], fr: list[RunRecord]) -> str:
    """What the table can and cannot resolve: the MDE range, and the differences below it."""
    mdes = [row.comparison.mde for row in found if row.comparison.mde is not None]
    if not mdes:
        return ""
    lo, hi = min(mdes), max(mdes)
    span = f"≥ {fmt(lo)} points" if fmt(lo) == fmt(hi) else f"of {fmt(lo)}–{fmt(hi)} points or more"
    below = [f"{method_label(fr, r.method)} vs {display_name(r.base)} on {r.split} ({fmt(r.comparison.delta, True)})"
             for r in found if r.comparison.mde is not None and not r.comparison.significant
             and abs(r.comparison.delta) < r.comparison.mde]
    text = f"This grid resolves differences {span} (the MDE of each comparison)"
    if below:
        return text + f"; below it, so not told apart from no difference: {'; '.join(below)}."
    return text + "."


def _published_row(e: PublishedEntry, fr: list[RunRecord], stats: dict, ds_refs: list[ReferenceRecord],
                   source_number: int) -> list[str]:
    """A published number beside our reproduced one, their difference and any imported official log."""
    ours = stats.get((e.method, e.split))
    our_backbones = sorted({r.backbone or "?" for r in fr if r.method == e.method and r.split == e.split})
    have_ours = ours is not None and ours.n > 0
    if e.miou is None:
        delta = NOT_AVAILABLE
    elif not have_ours:
        delta = DASH
    else:
        delta = fmt(ours.mean - e.miou, signed=True)
        if e.backbone and our_backbones and our_backbones != [e.backbone]:
            delta += " (other backbone)"
    log_best = [r.best.miou for r in ds_refs if r.method == e.method and r.split == e.split
                and (r.backbone is None or e.backbone is None or r.backbone == e.backbone)]
    return [display_name(e.method, paper_flag(fr, e.method) or paper_method(e.method)), e.split,
            e.backbone or NOT_AVAILABLE, str(e.crop) if e.crop is not None else NOT_AVAILABLE,
            fmt(e.miou) if e.miou is not None else NOT_AVAILABLE,
            fmt_cell(ours) if ours is not None else DASH,
            ", ".join(our_backbones) if our_backbones else DASH, delta,
            ", ".join(fmt(v) for v in log_best) if log_best else DASH,
            f"[{source_number}]"]


def _published_notes(entries: list[PublishedEntry], fr: list[RunRecord], custom: list[RunRecord],
                     sources: list[str]) -> list[str]:
    notes = ["Reproduced: best-on-val mean ± std over seeds of our full-method runs. Δ = reproduced − published "
             "(points), only where both exist; '(other backbone)' marks a Δ across different backbones (e.g. a "
             "small CPU backbone vs the paper's ResNet-101) — a gap to read, not an error. 'not available': the "
             "published value is null in benchmark/data/published.yaml until someone copies it from the paper."]
    if custom:
        notes.append(f"{len(custom)} run(s) trained on custom split lists or data (data.custom_splits, "
                     f"data.custom_data; checksums in their summary.json) are left out of this table: their numbers "
                     f"are not comparable.")
    notes += [f"[{i}] {s}" for i, s in enumerate(sources, start=1)]
    if any(paper_method(e.method) for e in entries) or any(paper_flag(fr, m) for m in methods_of(fr)):
        notes.append(PAPER_DESCRIPTION_NOTE)
    return notes


PUBLISHED_COLUMNS = ["Method", "Split", "Backbone (published)", "Crop", "Published", "Reproduced",
                     "Backbone (ours)", "Δ", "Official log", "Source"]


def published_table(runs: list[RunRecord], refs: list[ReferenceRecord], published: list[PublishedEntry],
                    dataset: str, num: Numbering) -> Table | None:
    entries = [e for e in published if e.dataset == dataset]
    if not entries:
        return None
    # A run on other split lists than the official ones is never set beside a published number.
    custom = [r for r in full_runs(runs, dataset) if r.custom_splits or r.custom_data]
    fr = [r for r in full_runs(runs, dataset) if not (r.custom_splits or r.custom_data)]
    stats = stats_by(fr, "best")
    ds_refs = [r for r in refs if r.dataset == dataset]
    sources: list[str] = []
    entries.sort(key=lambda e: (method_sort_key(e.method), e.backbone or "~", split_sort_key(e.split)))
    rows = []
    for e in entries:
        if e.source not in sources:
            sources.append(e.source)
        rows.append(_published_row(e, fr, stats, ds_refs, sources.index(e.source) + 1))
    return Table(PUBLISHED_COLUMNS, rows, num.table(f"{dataset}: published vs reproduced (best-on-val mIoU, %)."),
                 _published_notes(entries, fr, custom, sources), key_columns=2)
