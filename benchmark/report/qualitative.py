"""Qualitative figures: per dataset and split, the same few val images with their ground truth and each
method's best-on-val prediction, coloured with the dataset's palette, with a class legend.

The trainer saves these predictions (`qualitative.npz`, see benchmark/train/sample_images.py); each method's column
comes from its lowest seed that has them. Without any, the figure is skipped with a note.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

from benchmark.report.comparison import full_runs, method_label, methods_of
from benchmark.report.figures import TEXT_WIDTH_IN, save_figure
from benchmark.report.records import RunRecord

QUALITATIVE_FILE = "qualitative.npz"   # plain arrays from benchmark/train/sample_images.py: no checkpoint to load
IGNORE_COLOUR = (255, 255, 255)


@dataclass
class Panel:
    method: str         # display label
    seed: int
    ids: list[str]
    preds: list[np.ndarray]


@dataclass
class QualitativeSet:
    ids: list[str]
    images: list[np.ndarray]
    masks: list[np.ndarray]
    palette: np.ndarray
    class_names: list[str]
    panels: list[Panel]
    missing: list[str]  # methods without saved predictions (or with other images)


def _load(path: Path) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            ids = [str(i) for i in data["ids"]]
            return {"ids": ids, "palette": data["palette"],
                    "images": [data[f"image_{k}"] for k in range(len(ids))],
                    "masks": [data[f"mask_{k}"] for k in range(len(ids))],
                    "preds": [data[f"pred_{k}"] for k in range(len(ids))]}
    except (OSError, KeyError, ValueError):
        return None


def collect(runs: list[RunRecord], dataset: str, split: str) -> QualitativeSet | None:
    """The saved predictions of every method at this dataset and split; None when no run saved any."""
    shown = [r for r in full_runs(runs, dataset) if r.split == split]
    base, panels, missing = None, [], []
    for method in methods_of(shown):
        label = method_label(shown, method)
        found = None
        for run in sorted((r for r in shown if r.method == method), key=lambda r: r.seed):
            found = _load(run.path / QUALITATIVE_FILE)
            if found is not None:
                break
        if found is None or (base is not None and found["ids"] != base["ids"]):
            missing.append(label)
            continue
        base = base or found
        panels.append(Panel(label, run.seed, found["ids"], found["preds"]))
    if base is None:
        return None
    names = next((r.class_names for r in shown if r.class_names), [])
    return QualitativeSet(base["ids"], base["images"], base["masks"], base["palette"], names, panels, missing)


def colourise(labels: np.ndarray, palette: np.ndarray) -> np.ndarray:
    out = np.empty(labels.shape + (3,), dtype=np.uint8)
    out[:] = IGNORE_COLOUR
    valid = labels < len(palette)
    out[valid] = palette[labels[valid]]
    return out


def draw(q: QualitativeSet, title: str, path: Path) -> Path:
    columns = ["image", "ground truth"] + [p.method for p in q.panels]
    rows = len(q.ids)
    height, width = q.images[0].shape[:2]
    cell = TEXT_WIDTH_IN / len(columns)
    grid_h = cell * height / width * rows
    top = 0.55   # inches above the images for the title and the column names
    fig, axes = plt.subplots(rows, len(columns), squeeze=False, figsize=(TEXT_WIDTH_IN, grid_h + top),
                             gridspec_kw={"wspace": 0.04, "hspace": 0.04})
    fig.subplots_adjust(left=0, right=1, bottom=0, top=grid_h / (grid_h + top))
    for i in range(rows):
        shown = [q.images[i], colourise(q.masks[i], q.palette)] + [colourise(p.preds[i], q.palette)
                                                                     for p in q.panels]
        for j, picture in enumerate(shown):
            ax = axes[i][j]
            ax.imshow(picture, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(columns[j], fontsize=7)
    names = q.class_names or [str(c) for c in range(len(q.palette))]
    handles = [Patch(facecolor=np.array(q.palette[c]) / 255, edgecolor="black", linewidth=0.3, label=name)
               for c, name in enumerate(names[:len(q.palette)])]
    handles.append(Patch(facecolor=np.array(IGNORE_COLOUR) / 255, edgecolor="black", linewidth=0.3,
                         label="ignored"))
    # Below the images; the saved figure's tight bounding box takes it in.
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0), ncol=min(len(handles), 8),
               fontsize=7, frameon=False)
    fig.suptitle(title, fontsize=9, y=1.0, va="top")
    return save_figure(fig, path)


def caption(q: QualitativeSet, dataset: str, split: str) -> str:
    seeds = sorted({p.seed for p in q.panels})
    text = (f"{dataset}, split {split}: {len(q.ids)} fixed val images (chosen once by seed, the same for every "
            f"method), ground truth and each method's prediction at its best-on-val evaluation "
            f"(seed {', '.join(map(str, seeds))}); white = ignored pixels.")
    if q.missing:
        text += f" Not shown (no saved predictions of these images): {', '.join(q.missing)}."
    return text
