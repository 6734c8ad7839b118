"""Ablations: runs with a `variant` (component switches and/or config overrides) against the full method.

A variant whose only change is one numeric config override is also a point of a *sweep* of that key; the
full method's own value (read from its resolved config.yaml) joins the sweep as the default point.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from benchmark.report.labels import (DASH, PAPER_DESCRIPTION_NOTE, display_name, is_finite, method_sort_key,
                                     same_run_suffix, split_sort_key)
from benchmark.report.document import Numbering, Table
from benchmark.report.records import RunRecord
from benchmark.report.results_store import config_value
from benchmark.report.inference import Comparison, compare, draws_sentence, fmt_delta_cell, holm, tests_sentence
from benchmark.report.stats import SeedStats, fmt_cell, seed_stats, seeds_phrase

FULL = "full"   # the row label of the un-ablated method


@dataclass
class AblationGroup:
    dataset: str
    method: str
    full: list[RunRecord]
    variants: dict[str, list[RunRecord]]
    splits: list[str]
    from_paper_description: bool

    def rows(self) -> list[tuple[str, list[RunRecord]]]:
        return [(FULL, self.full)] + sorted(self.variants.items())

    def stats(self, runs: list[RunRecord], split: str) -> SeedStats | None:
        vals = [r.best.miou for r in runs if r.split == split]
        return seed_stats(vals) if vals else None

    def full_on_seeds_of(self, runs: list[RunRecord], split: str) -> list[RunRecord]:
        """The full method's runs over the seeds the variant has (ablations may run fewer seeds than the grid,
        and per-seed outcomes differ by several points): its other seeds would compare unlike with unlike."""
        seeds = {r.seed for r in runs if r.split == split}
        full = [r for r in self.full if r.split == split]
        return [r for r in full if r.seed in seeds] or full

    def comparisons(self) -> dict[tuple[str, str], Comparison]:
        """(variant, split) -> variant vs full method, Holm-adjusted across the table."""
        keys, found = [], []
        for name, rs in self.rows()[1:]:
            for s in self.splits:
                cell = [r for r in rs if r.split == s]
                full = self.full_on_seeds_of(rs, s)
                if cell and full:
                    keys.append((name, s))
                    found.append(compare(cell, full))
        return dict(zip(keys, holm(found)))


@dataclass
class SweepCurve:
    """Measured best-on-val mIoU along one numeric config key that ablation variants set (the planned sweep
    that trains them is benchmark.grid.variants.Sweep)."""
    dataset: str
    method: str
    key: str
    # split -> list of (value, stats, is_default)
    points: dict[str, list[tuple[float, SeedStats, bool]]] = field(default_factory=dict)
    from_paper_description: bool = False


def ablation_groups(runs: list[RunRecord]) -> list[AblationGroup]:
    by_method: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in runs:
        by_method[(r.dataset, r.method)].append(r)
    groups = []
    for (dataset, method), rs in sorted(by_method.items(), key=lambda kv: (kv[0][0], method_sort_key(kv[0][1]))):
        variants: dict[str, list[RunRecord]] = defaultdict(list)
        for r in rs:
            if r.variant is not None:
                variants[r.variant].append(r)
        if not variants:
            continue
        splits = sorted({r.split for r in rs if r.variant is not None}, key=split_sort_key)
        full = [r for r in rs if r.variant is None and r.split in splits]
        groups.append(AblationGroup(dataset, method, full, dict(variants), splits,
                                    any(r.from_paper_description for r in rs)))
    return groups


def _dotted(overrides: dict) -> dict:
    """Override keys as dotted config keys: the trainer records method parameters without the `method.`
    prefix (`mask_ratio`), a hand-written summary may carry it (`method.mask_ratio`); both mean the same."""
    return {(k if "." in str(k) else f"method.{k}"): v for k, v in overrides.items()}


def changes(run: RunRecord, full_runs: list[RunRecord]) -> tuple[dict, dict]:
    """(components, overrides) in which the variant differs from the full method. Settings a profile applies
    to every run of the method appear in both and are not changes."""
    if not full_runs:   # nothing to compare with: switched-off components and every override are the news
        return {k: v for k, v in run.components.items() if v is False}, _dotted(run.overrides)
    base_c, base_o = full_runs[0].components, _dotted(full_runs[0].overrides)
    comps = {k: v for k, v in run.components.items() if base_c.get(k, not v) != v}
    overrides = {k: v for k, v in _dotted(run.overrides).items() if k not in base_o or base_o[k] != v}
    return comps, overrides


def describe_change(variant_runs: list[RunRecord], full_runs: list[RunRecord]) -> str:
    """What the variant changes: components switched relative to the full method, then overrides."""
    comps, overrides = changes(variant_runs[0], full_runs)
    parts = [f"{name} {'on' if on else 'off'}" for name, on in sorted(comps.items())]
    parts += [f"{k}={v}" for k, v in sorted(overrides.items())]
    return (", ".join(parts) if parts else DASH) + same_run_suffix(variant_runs)


def ablation_table(group: AblationGroup, num: Numbering) -> Table:
    columns = ["Variant", "Change"]
    for s in group.splits:
        columns += [s, f"Δ {s}"]
    rows = []
    deltas = group.comparisons()
    for name, rs in group.rows():
        row = [name, "full method" if name == FULL else describe_change(rs, group.full)]
        for s in group.splits:
            st = group.stats(rs, s)
            row.append(fmt_cell(st) if st else DASH)
            row.append(fmt_delta_cell(deltas[(name, s)]) if (name, s) in deltas else DASH)
        rows.append(row)
    title = display_name(group.method, group.from_paper_description)
    shown = [r for _, rs in group.rows() for r in rs]
    notes = ["Best-on-val mIoU, mean ± std [95 % CI] over seeds; Δ = variant − full method on the variant's seeds "
             f"(points) with its 95 % CI, where both sides have ≥ 2 seeds: {tests_sentence(list(deltas.values()))}; "
             "p_Holm adjusted across this table (Holm); * p_Holm < 0.05.", draws_sentence(shown)]
    if not group.full:
        notes.append("No full-method run for these splits: Δ cannot be computed.")
    if group.from_paper_description:
        notes.append(PAPER_DESCRIPTION_NOTE)
    return Table(columns, rows, num.table(f"{group.dataset}: ablation of {title} (best-on-val mIoU, %), "
                                          f"{seeds_phrase(shown)}."), notes, key_columns=2)


def bar_data(group: AblationGroup) -> list[tuple[str, str, float, float, int]]:
    """(variant, split, mean, std, n) for the bar plot; rows without a finite value are left out."""
    out = []
    for name, rs in group.rows():
        for s in group.splits:
            st = group.stats(rs, s)
            if st is not None and st.n:
                out.append((name, s, st.mean, st.std if st.n > 1 else 0.0, st.n))
    return out


def sweeps(group: AblationGroup) -> list[SweepCurve]:
    by_key: dict[str, list[tuple[float, RunRecord]]] = defaultdict(list)
    for rs in group.variants.values():
        for r in rs:
            comps, overrides = changes(r, group.full)
            if comps or len(overrides) != 1:
                continue   # a component switched too, or several keys: not a clean sweep point
            (key, value), = overrides.items()
            if is_finite(value):
                by_key[key].append((float(value), r))
    result = []
    for key, pts in sorted(by_key.items()):
        sweep = SweepCurve(group.dataset, group.method, key, from_paper_description=group.from_paper_description)
        default = _default_value(group.full, key)
        for s in group.splits:
            vals: dict[float, list[float]] = defaultdict(list)
            for value, r in pts:
                if r.split == s:
                    vals[value].append(r.best.miou)
            line = [(v, seed_stats(m), False) for v, m in sorted(vals.items())]
            full_here = [r.best.miou for r in group.full if r.split == s]
            if default is not None and full_here and default not in vals:
                line.append((default, seed_stats(full_here), True))
            line.sort(key=lambda p: p[0])
            if len(line) >= 2:
                sweep.points[s] = line
        if sweep.points:
            result.append(sweep)
    return result


def _default_value(full: list[RunRecord], dotted_key: str) -> float | None:
    """The full method's value of the swept key: its summary's overrides or resolved `params`, else its
    config.yaml. A method default recorded nowhere leaves the full run off the sweep plot."""
    for r in full:
        value = _dotted(r.overrides).get(dotted_key, _dotted(r.params).get(dotted_key))
        if value is None:
            value = config_value(r.path, dotted_key)
        if is_finite(value):
            return float(value)
    return None
