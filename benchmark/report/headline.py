"""The report's opening lines: per dataset, what each method gains over the supervised baseline (the registry's
`lower_bound`) where labels
are scarcest, with the significance table's 95 % CI and Holm-adjusted p-value, and the all-labels reference
when it was run. One line per dataset, of the form

    <dataset>, <n> labels: <method> <gain> [<CI>] (p_Holm = <p>), ... over <baseline> <mIoU>; all labels <mIoU>

Written from the results alone (best-on-val mIoU, mean over seeds; the comparisons are the significance
table's own rows, so the test, the interval and the adjustment are the same).
"""
from __future__ import annotations

import math

from benchmark.report.comparison import full_runs, method_label, reference_runs, significance_rows, stats_by
from benchmark.report.labels import split_sort_key
from benchmark.report.records import RunRecord
from methods.registry import lower_bound


def labels_text(runs: list[RunRecord], split: str) -> str:
    """'8 labels' when the runs recorded the split's size (or the split is a count), else 'split 1_128'."""
    counts = {r.num_labeled for r in runs if r.split == split and r.num_labeled}
    if len(counts) == 1:
        n = counts.pop()
        return f"{n} label{'s' if n != 1 else ''}"
    if split.isdigit():
        return f"{split} labels"
    return f"split {split}"


def p_text(p: float | None) -> str:
    """The Holm-adjusted p of the significance table ('one seed' when no test was possible)."""
    if p is None:
        return "one seed"
    if not math.isfinite(p):
        return "p n/a"
    if p < 0.001:
        return "p_Holm < 0.001"
    return f"p_Holm = {p:.2f}" if p >= 0.01 else f"p_Holm = {p:.3f}"


def ci_text(ci: tuple[float, float] | None) -> str:
    return f" [{ci[0]:+.1f}, {ci[1]:+.1f}]" if ci is not None else ""


def dataset_headline(runs: list[RunRecord], dataset: str) -> str | None:
    fr = [r for r in full_runs(runs, dataset) if math.isfinite(r.best.miou)]
    if not fr:
        return None
    baseline = lower_bound()
    stats = stats_by(fr, "best")
    with_baseline = sorted({r.split for r in fr if r.method == baseline}, key=split_sort_key)
    if not with_baseline:
        return f"{dataset}: no {baseline} baseline run, so no gain to report."
    split = with_baseline[0]
    base = stats[(baseline, split)]
    gains = []
    for row in significance_rows(runs, dataset):
        if row.base == baseline and row.split == split and math.isfinite(row.comparison.delta):
            c = row.comparison
            p = c.p_holm if c.p_holm is not None else c.p
            gains.append((c.delta, f"{method_label(fr, row.method)} {c.delta:+.1f}{ci_text(c.ci)} ({p_text(p)})"))
    gains.sort(key=lambda g: -g[0])
    text = f"{dataset}, {labels_text(fr, split)}: "
    text += (", ".join(g[1] for g in gains) + f" over {baseline}") if gains else baseline
    text += f" {base.mean:.1f}"
    refs = [r for r in reference_runs(runs, dataset) if r.method == baseline and math.isfinite(r.best.miou)]
    for ref_split in sorted({r.split for r in refs}, key=split_sort_key):
        ref = stats_by(refs, "best")[(baseline, ref_split)]
        where = "all labels" if ref_split == "full" else labels_text(refs, ref_split)
        text += f"; {where} {ref.mean:.1f}"
    return text


def headlines(runs: list[RunRecord], datasets: list[str]) -> list[str]:
    return [line for ds in datasets if (line := dataset_headline(runs, ds))]
