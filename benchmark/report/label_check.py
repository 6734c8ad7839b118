"""Label preservation under the strong view, per class: the all-labels reference runs' val IoU under the weak view
and under the recipe's strong colour view, from the `label_preservation.json` records the grid writes into
their run folders (benchmark/diagnostics/label_preservation.py), averaged over the reference seeds. Nothing
is computed here: without records the section says "not available"."""
from __future__ import annotations

from collections import Counter

from benchmark.diagnostics.label_record import DIFFERENCE, RECORD_NAME, VIEWS, read_record
from benchmark.report.comparison import NOT_AVAILABLE, method_label
from benchmark.report.document import Heading, Numbering, Paragraph, Table
from benchmark.report.labels import split_sort_key
from benchmark.report.records import RunRecord
from benchmark.report.stats import fmt, seed_stats

TITLE = "Label preservation under the strong view"
WHY = ("Weak-to-strong consistency assumes that a strong view of an image keeps its label map. Each all-labels "
       "reference run is evaluated on its val set as it is (weak) and under the recipe's strong colour view "
       "(CutMix left out); a large drop means the consistency loss asks the model to be invariant to the very "
       "cue its labels teach.")
HOW_TO = (f"the grid writes {RECORD_NAME} into each reference run after training it (`grid.label_check`), or "
          "run `python -m benchmark.diagnostics.label_preservation RUN_DIR`")


def reference_groups(runs: list[RunRecord]) -> dict[tuple[str, str, str], list[RunRecord]]:
    """(dataset, split, method) -> the reference runs (grid.references cells) of that cell, one per seed."""
    groups: dict[tuple[str, str, str], list[RunRecord]] = {}
    for r in sorted(runs, key=lambda r: (r.dataset, split_sort_key(r.split), r.method, r.seed)):
        if r.reference and r.variant is None:
            groups.setdefault((r.dataset, r.split, r.method), []).append(r)
    return groups


def section(runs: list[RunRecord], num: Numbering) -> list:
    blocks: list = [Heading(TITLE, 3), Paragraph(WHY, small=True)]
    groups = reference_groups(runs)
    if not groups:
        blocks.append(Paragraph(f"{NOT_AVAILABLE}: no reference runs (`grid.references`) in the results.",
                                small=True))
    for (dataset, split, method), group in groups.items():
        name = f"{dataset}, {method_label(runs, method)} with the {split} labels (reference)"
        records, problems = [], []
        for r in group:
            try:
                record = read_record(r.path)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if record is not None:
                records.append(record)
        if records:
            blocks.append(preservation_table(records, name, num))
        else:
            blocks.append(Paragraph(f"{name}: {NOT_AVAILABLE} ({HOW_TO}).", small=True))
        if problems:
            blocks.append(Paragraph("Unreadable records, left out: " + "; ".join(problems) + ".", small=True))
    return blocks


def _row(label: str, values: list[list[float | None]]) -> list[str]:
    weak, strong, difference = (seed_stats(v).mean for v in values)
    return [label, fmt(weak), fmt(strong), fmt(difference, signed=True)]


def preservation_table(records: list[dict], name: str, num: Numbering) -> Table:
    """One row per class and one for mIoU: weak IoU, strong IoU and their difference, means over the records."""
    parts = (*VIEWS, DIFFERENCE)
    rows = [_row(c, [[record[part]["per_class"].get(c) for record in records] for part in parts])
            for c in records[0]["weak"]["per_class"]]
    rows.append(_row("mIoU", [[record[part].get("miou") for record in records] for part in parts]))
    n, first = len(records), records[0]
    caption = f"{name}: val IoU (%) under the weak and the strong view, mean over {n} seed{'s' if n != 1 else ''}."
    weights = Counter(str(record.get("weights")) for record in records)
    notes = [f"Strong view: {first.get('view_doc') or first.get('view')} ({first.get('draws')} draws per image, "
             f"seed {first.get('seed')}).",
             "Weights: " + "; ".join(f"{text} ({count} run{'s' if count != 1 else ''})"
                                     for text, count in weights.items()) + "."]
    return Table(["Class", "Weak view IoU", "Strong view IoU", "Δ (strong - weak)"], rows, num.table(caption), notes)
