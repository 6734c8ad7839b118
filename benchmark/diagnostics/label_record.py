"""The label-preservation check's record in a run folder (`label_preservation.json`): its one format, written by
`benchmark.diagnostics.label_preservation`, read by the grid (is it current?) and by the report. Standard
library only, so neither of those needs torch for it.

    {"weak":       {"miou": float, "per_class": {class: IoU}},     # the val images as they are
     "strong":     {"miou": ..., "per_class": ...},              # under the strong colour view, over the draws
     "difference": {"miou": ..., "per_class": ...},              # strong − weak (negative: the view costs)
     "view", "draws", "seed", "weights", ...}                     # how it was measured
IoU and mIoU in percent; null where a class is absent from prediction and ground truth under `eval.absent=nan`.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

RECORD_NAME = "label_preservation.json"
VIEWS = ("weak", "strong")
DIFFERENCE = "difference"


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def make_record(class_names: list[str], scores: dict[str, tuple[float, list[float]]], **facts: Any) -> dict:
    """The record from each view's (mIoU, per-class IoU in class order), as the evaluation computed them."""
    record: dict[str, Any] = {}
    for view in VIEWS:
        miou, iou = scores[view]
        record[view] = {"miou": _number(miou), "per_class": dict(zip(class_names, map(_number, iou)))}

    def minus(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else a - b

    weak, strong = record["weak"], record["strong"]
    record[DIFFERENCE] = {"miou": minus(strong["miou"], weak["miou"]),
                          "per_class": {c: minus(strong["per_class"][c], weak["per_class"][c]) for c in class_names}}
    return {**record, **facts}


def read_record(run_dir: Path) -> dict | None:
    """The run's record, None when it has none; a record that is not of this format raises ValueError."""
    path = Path(run_dir) / RECORD_NAME
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} cannot be read ({exc})") from None
    for part in (*VIEWS, DIFFERENCE):
        section = record.get(part) if isinstance(record, dict) else None
        if not isinstance(section, dict) or not isinstance(section.get("per_class"), dict):
            raise ValueError(f"{path} has no '{part}' section with per-class IoU")
    return record


def is_current(run_dir: Path, checkpoint_name: str) -> bool:
    """Whether the run folder's record was written after its checkpoint (a retrained run is checked again)."""
    record, checkpoint = Path(run_dir) / RECORD_NAME, Path(run_dir) / checkpoint_name
    try:
        return record.stat().st_mtime >= checkpoint.stat().st_mtime
    except FileNotFoundError:
        return False
