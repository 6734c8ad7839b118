"""Per-class IoU, compute cost and provenance tables."""
from __future__ import annotations

import math
import re
import statistics
from collections import Counter, defaultdict

import pandas as pd

from benchmark.report.labels import (DASH, PAPER_DESCRIPTION_NOTE, display_name,
                                     method_sort_key, same_run_suffix, slugify, split_sort_key)
from benchmark.report.comparison import (REFERENCE_MARK, REFERENCE_NOTE, method_label, methods_of, numerics_note,
                                         paper_flag, paper_method)
from benchmark.report.document import Numbering, Table
from benchmark.report.published import REGISTER_FIELDS, RegisterState
from benchmark.report.records import ReferenceRecord, RunRecord
from benchmark.report.stats import fmt, seed_stats, seeds_phrase
from datasets import REPO_ROOT
from methods.registry import lower_bound

# ---------------------------------------------------------------------------------------------- per class


def _norm(name: str) -> str:
    # Official logs say "tv/monitor" and "dining table" where the catalogue says "tvmonitor"/"diningtable".
    return re.sub(r"[^a-z0-9]", "", name.lower())


def per_class_frame(runs: list[RunRecord], refs: list[ReferenceRecord], dataset: str, split: str) -> pd.DataFrame:
    """Index: class names in evaluation order. Columns: one per method (mean IoU over seeds of the best-on-val
    evaluation), `std <m>`, `n <m>`, `gain <m>` (vs supervised), then imported official logs."""
    fr = [r for r in runs if r.dataset == dataset and r.split == split and r.variant is None
          and math.isfinite(r.best.miou) and r.best.per_class]
    classes: list[str] = []
    for r in fr:   # the catalogue order when the summary records it, else the order of the per-class dict
        classes += [c for c in (r.class_names or r.best.per_class) if c not in classes]
    for r in fr:
        classes += [c for c in r.best.per_class if c not in classes]
    ds_refs = [ref for ref in refs if ref.dataset == dataset and ref.split == split]
    if not classes:   # imported official logs alone: their classes, in the order the log lists them
        for ref in ds_refs:
            classes += [c for c in ref.best.per_class if _norm(c) not in {_norm(k) for k in classes}]
    frame = pd.DataFrame(index=pd.Index(classes, name="class"))
    for method in methods_of(fr):
        rs = [r for r in fr if r.method == method]
        st = [seed_stats([r.best.per_class.get(c) for r in rs]) for c in classes]
        frame[method] = [s.mean for s in st]
        frame[f"std {method}"] = [s.std for s in st]
        frame[f"n {method}"] = [s.n for s in st]
    baseline = lower_bound()
    if baseline in frame:
        for method in methods_of(fr):
            if method != baseline:
                frame[f"gain {method}"] = frame[method] - frame[baseline]
    for ref in ds_refs:
        if classes:
            by_norm = {_norm(k): v for k, v in ref.best.per_class.items()}
            if any(_norm(c) in by_norm for c in classes):
                frame[f"{ref.name} {REFERENCE_MARK}"] = [by_norm.get(_norm(c), math.nan) for c in classes]
    return frame


def per_class_table(frame: pd.DataFrame, runs: list[RunRecord], dataset: str, split: str,
                    num: Numbering) -> Table:
    methods = [c for c in frame.columns if not c.startswith(("std ", "n ", "gain "))]
    gains = [c for c in frame.columns if c.startswith("gain ")]
    run_methods = [m for m in methods if not m.endswith(REFERENCE_MARK)]
    labels = {m: method_label(runs, m) if m in run_methods else m for m in methods}
    columns = ["Class"] + [labels[m] for m in methods] + \
              [f"Δ {display_name(g[5:], paper_flag(runs, g[5:]))}" for g in gains]
    rows, bold = [], set()
    for i, cls in enumerate(frame.index):
        vals = {m: frame.at[cls, m] for m in run_methods}
        finite = [v for v in vals.values() if isinstance(v, float) and math.isfinite(v)]
        top = round(max(finite), 2) if finite else None
        row = [cls]
        for j, m in enumerate(methods, start=1):
            row.append(fmt(frame.at[cls, m]))
            if m in run_methods and top is not None and round(frame.at[cls, m], 2) == top and len(finite) > 1:
                bold.add((i, j))
        row += [fmt(frame.at[cls, g], signed=True) for g in gains]
        rows.append(row)
    delta = "; Δ = gain over the supervised baseline (points)" if gains else ""
    notes = ["IoU (%) at each run's best-on-val evaluation, mean over seeds; **bold** = best reproduced method "
             f"for the class{delta}. Per-seed std: "
             f"tables/per_class_{slugify(dataset)}_{slugify(split)}.csv beside this report."]
    if any(paper_flag(runs, m) for m in run_methods):
        notes.append(PAPER_DESCRIPTION_NOTE)
    if len(run_methods) < len(methods):
        notes.append(REFERENCE_NOTE)
    shown = [r for r in runs if r.dataset == dataset and r.split == split and r.variant is None]   # references too
    over = seeds_phrase(shown) if shown else "imported official logs only (no run here)"
    return Table(columns, rows, num.table(f"{dataset}, split {split}: per-class IoU (%), {over}."),
                 notes, bold)


# ---------------------------------------------------------------------------------------------- compute
# (summary field, column, scale, decimals): precision a reader can use, not what the timer printed.
COMPUTE_FIELDS = [("wall_time_s", "Wall (min)", 1 / 60, 1), ("step_time_s", "Step (ms)", 1000.0, 1),
                  ("images_per_s", "Images/s", 1.0, 1), ("peak_memory_mb", "Peak mem (MB)", 1.0, 0)]


def compute_table(runs: list[RunRecord], dataset: str, num: Numbering) -> Table | None:
    fr = [r for r in runs if r.dataset == dataset and r.variant is None]
    if not fr:
        return None
    groups: dict[tuple[str, str], list[RunRecord]] = defaultdict(list)
    for r in fr:
        groups[(r.split, r.method)].append(r)

    def mean_of(rs, attr):
        vals = [getattr(r, attr) for r in rs if getattr(r, attr) is not None]
        return statistics.fmean(vals) if vals else None

    rows = []
    for (split, method) in sorted(groups, key=lambda k: (split_sort_key(k[0]), method_sort_key(k[1]))):
        rs = groups[(split, method)]
        sup = groups.get((split, lower_bound()))
        devices = sorted({r.device or DASH for r in rs})
        row = [split, method_label(fr, method), ", ".join(devices), str(len(rs))]
        for attr, _, scale, decimals in COMPUTE_FIELDS:
            v = mean_of(rs, attr)
            base = mean_of(sup, attr) if sup else None
            row.append(f"{v * scale:.{decimals}f}" if v is not None else DASH)
            row.append(f"×{v / base:.2f}" if v is not None and base else DASH)
        rows.append(row)
    columns = ["Split", "Method", "Device", "Runs"]
    for _, label, _, _ in COMPUTE_FIELDS:
        columns += [label, "rel."]
    notes = ["Means over seeds of the trainer's own measurements; rel. = ratio to the supervised baseline on "
             "the same split (×1.00 = same cost). Wall time counts the training steps only (evaluation and "
             "checkpoint writes, the same for every method, are excluded). Peak memory as the trainer "
             "records it: the accelerator's peak allocation on a GPU, the process's peak resident memory on "
             "CPU (so CPU and GPU figures are not comparable)."]
    devices = {r.device for r in fr if r.device}
    if len(devices) > 1:
        notes.append(f"Runs on different devices ({', '.join(sorted(devices))}): compare cost within a device.")
    if any(paper_flag(fr, m) for m in methods_of(fr)):
        notes.append(PAPER_DESCRIPTION_NOTE)
    return Table(columns, rows, num.table(f"{dataset}: compute per run."), notes, key_columns=2)


# ---------------------------------------------------------------------------------------------- provenance
def _short(values: list[str], width: int = 10, keep: int = 2) -> str:
    uniq = sorted({v[:width] for v in values if v})
    if not uniq:
        return DASH
    text = ", ".join(uniq[:keep])
    return text + (f" +{len(uniq) - keep} more" if len(uniq) > keep else "")


OFFICIAL_PRECISION = "fp32"
FIDELITY_DOC = "docs/fidelity.md"


def _batch(r: RunRecord) -> str:
    """Labeled images per step over all processes, as processes × per process (e.g. 8 = 4 × 2)."""
    if r.labeled_total_batch_size is None or r.world_size is None or r.labeled_batch_per_process is None:
        return ""
    return f"{r.labeled_total_batch_size} = {r.world_size} × {r.labeled_batch_per_process}"


def provenance_table(runs: list[RunRecord], num: Numbering) -> Table:
    groups: dict[tuple[str, str, str], list[RunRecord]] = defaultdict(list)
    for r in runs:
        groups[(r.dataset, r.split, r.label)].append(r)
    rows = []
    for key in sorted(groups, key=lambda k: (k[0], split_sort_key(k[1]), method_sort_key(k[2]))):
        rs = groups[key]
        rows.append([key[0], key[1], key[2] + same_run_suffix(rs), ", ".join(str(s) for s in sorted(r.seed for r in rs)),
                     _short([r.profile or "" for r in rs], 24), _short([r.device or "" for r in rs], 24),
                     _short([_batch(r) for r in rs], 16),
                     _short([str(r.evaluations) if r.evaluations is not None else "" for r in rs]),
                     _short([r.precision or "" for r in rs]), _short([r.numerics or "" for r in rs], 40),
                     _short([r.git_commit or "" for r in rs]), _short([r.config_hash or "" for r in rs])])
    notes = ["Run = run name (method, or method__variant). Commits and config hashes are shortened to 10 "
             "characters; the full values are in each run's summary.json.",
             "Labeled batch = labeled images per step over all processes = processes × images per process "
             "(the official recipes: 8 = 4 GPUs × 2, doubled for the supervised baseline). Evals = how many "
             "evaluations 'best on val' was picked from (the official code evaluates after every epoch). "
             f"Every known deviation from the official UniMatch code is listed in `{FIDELITY_DOC}`.",
             "Numerics: CPU runs pin oneDNN, MKL and ATen to AVX2 (train.cpu_numerics: pinned), so that a "
             "host's digits do not depend on its instruction set (hosts of other CPU models may still differ); "
             "'portable' runs trained without oneDNN and NNPACK and with MKL's COMPATIBLE branch, for the same "
             "digits across CPU models; 'native' runs used the host's best instruction set; GPU runs are left "
             "as they are."]
    mixed = numerics_note(runs)
    if mixed:
        notes.append(mixed)
    departing = sorted({r.precision for r in runs if r.precision and r.precision != OFFICIAL_PRECISION})
    if departing:
        notes.append(f"Precision {', '.join(departing)}: these runs trained under {', '.join(departing)} "
                     f"autocast (train.amp), a departure from the official recipe's {OFFICIAL_PRECISION}.")
    if any(r.same_run_as for r in runs):
        notes.append("(= X run): the variant trains exactly what run X trains (the method declares it and the "
                     "runner checks the resolved configs), so X's run is reported for it rather than trained "
                     "twice; its hash is X's.")
    commits = {r.git_commit for r in runs if r.git_commit}
    if len(commits) > 1:
        notes.append(f"The runs come from {len(commits)} different commits: differences between methods may "
                     "include code changes.")
    return Table(["Dataset", "Split", "Run", "Seeds", "Profile", "Device", "Labeled batch", "Evals", "Precision",
                  "Numerics", "Git commit", "Config hash"], rows,
                 num.table("Provenance of every reported run."), notes, key_columns=3)


def versions_table(runs: list[RunRecord], num: Numbering) -> Table | None:
    counts: Counter = Counter()
    for r in runs:
        for k, v in r.versions.items():
            counts[(str(k), str(v))] += 1
    if not counts:
        return None
    rows = [[k, v, str(n)] for (k, v), n in sorted(counts.items())]
    notes = []
    if any(sum(1 for (k2, _) in counts if k2 == k) > 1 for (k, _) in counts):
        notes.append("Several versions of one package: the runs were not made in one environment.")
    return Table(["Package", "Version", "Runs"], rows, num.table("Software versions recorded by the runs."), notes)


def register_table(register: RegisterState, num: Numbering) -> Table | None:
    wanted = [e for e in register.entries if paper_method(str(e.get("method", "")).lower())]
    if not wanted:
        return None
    wanted.sort(key=lambda e: method_sort_key(str(e.get("method", ""))))   # stable: keeps the file order
    rows = []
    for e in wanted:
        row = [str(e.get(f)) if e.get(f) not in (None, "") else DASH for f in REGISTER_FIELDS]
        row[1] = display_name(str(e.get("method")), True)
        rows.append(row)
    columns = ["ID", "Method", "Topic", "Paper says", "We chose", "Why", "Config key"]
    papers = " and ".join(dict.fromkeys(display_name(str(e.get("method")).lower()) for e in wanted))
    return Table(columns, rows, num.table(f"Interpretation register: what {papers} leave open, and our choices."),
                 [PAPER_DESCRIPTION_NOTE, f"Source: `{_display_path(register.path)}`."], key_columns=2, prose=True)


def _display_path(path) -> str:
    try:
        return str(path.resolve().relative_to(REPO_ROOT))
    except ValueError:
        return str(path)
