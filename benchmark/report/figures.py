"""Figures (PNG, written atomically). Sized for an A4 text width so that fonts stay legible in the PDF."""
from __future__ import annotations

import math
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")   # reports render headless (CI, clusters); must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from datasets.io import atomic_write_files  # noqa: E402

DPI = 150
TEXT_WIDTH_IN = 6.7     # A4 portrait text width at 2 cm margins, so 1 figure inch ≈ 1 printed inch
sns.set_theme(context="paper", style="whitegrid", font_scale=1.0)


def save_figure(fig, path: Path) -> Path:
    try:
        # No timestamp in PNG metadata: re-rendering the same results gives identical files.
        atomic_write_files({Path(path): lambda tmp: fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")})
    finally:
        plt.close(fig)
    return path


def miou_vs_split(series: dict[str, list[tuple[str, float, float]]], splits: list[str], title: str,
                  path: Path) -> Path:
    """series: label -> [(split, mean, std)]; splits on a categorical axis, fewest labels first."""
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN, 3.2))
    pos = {s: i for i, s in enumerate(splits)}
    for label, pts in series.items():
        pts = [p for p in pts if math.isfinite(p[1])]
        if not pts:
            continue
        ax.errorbar([pos[p[0]] for p in pts], [p[1] for p in pts],
                    yerr=[p[2] if math.isfinite(p[2]) else 0 for p in pts], marker="o", capsize=3, label=label)
    ax.set_xticks(range(len(splits)), splits)
    ax.set_xlabel("labelled split")
    ax.set_ylabel("best-on-val mIoU (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="best")
    return save_figure(fig, path)


def ablation_bars(data: list[tuple[str, str, float, float, int]], title: str, path: Path) -> Path:
    frame = pd.DataFrame(data, columns=["variant", "split", "mean", "std", "n"])
    variants = list(dict.fromkeys(frame["variant"]))
    splits = list(dict.fromkeys(frame["split"]))
    width = 0.8 / max(len(splits), 1)
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN, 3.2))
    colors = sns.color_palette(n_colors=max(len(splits), 1))
    for k, split in enumerate(splits):
        sub = frame[frame["split"] == split].set_index("variant").reindex(variants)
        xs = [i + (k - (len(splits) - 1) / 2) * width for i in range(len(variants))]
        # Dots with error bars, not bars: a bar's length reads as the value, so an axis that does not start
        # at zero would exaggerate differences, and one that does would hide them.
        ax.errorbar(xs, sub["mean"], yerr=sub["std"].fillna(0), fmt="o", capsize=3, label=f"split {split}",
                    color=colors[k])
    # Tilt the names when the longest would run into its neighbours (~0.6 em per character; the axes take
    # ~85% of the figure width).
    slot_pt = TEXT_WIDTH_IN * 72 * 0.85 / max(len(variants), 1)
    crowded = max(map(len, variants)) * 0.6 * plt.rcParams["font.size"] > slot_pt
    ax.set_xticks(range(len(variants)), variants, rotation=20 if crowded else 0, ha="right" if crowded else "center")
    ax.set_ylabel("best-on-val mIoU (%)")
    ax.set_title(title)
    low = (frame["mean"] - frame["std"].fillna(0)).min()
    ax.set_ylim(bottom=max(0.0, low - 5))   # dot plot: the axis may start near the data
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def sweep_lines(points: dict[str, list], key: str, title: str, path: Path) -> Path:
    """points: split -> [(value, SeedStats, is_default)]."""
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN * 0.75, 3.0))
    for split, pts in points.items():
        pts = [p for p in pts if p[1].n]
        xs = [p[0] for p in pts]
        ys = [p[1].mean for p in pts]
        es = [p[1].std if p[1].n > 1 else 0 for p in pts]
        line = ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=f"split {split}")
        defaults = [(x, y) for (x, y, p) in zip(xs, ys, pts) if p[2]]
        if defaults:
            ax.scatter(*zip(*defaults), s=120, facecolors="none", edgecolors=line[0].get_color(), zorder=3)
    ax.set_xlabel(f"{key}  (circled: the full method's default)")
    ax.set_ylabel("best-on-val mIoU (%)")
    ax.set_title(title)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def per_class_heatmaps(iou: pd.DataFrame, gain: pd.DataFrame | None, title: str, path: Path) -> Path:
    """iou: methods × classes; gain: methods × classes (vs supervised) or None."""
    n_cls = iou.shape[1]
    width = max(TEXT_WIDTH_IN, min(0.42 * n_cls + 2.0, 11.0))   # wide class sets go on a landscape page
    rows = 2 if gain is not None and not gain.empty else 1
    heights = [max(1.0, 0.38 * iou.shape[0] + 0.9)] + ([max(1.0, 0.38 * gain.shape[0] + 0.9)] if rows == 2 else [])
    # Constrained layout leaves room for the rotated class names between the two panels.
    fig, axes = plt.subplots(rows, 1, figsize=(width, sum(heights) + 1.6 * rows), squeeze=False,
                             gridspec_kw={"height_ratios": heights}, layout="constrained")
    annot = n_cls <= 30
    with warnings.catch_warnings():
        # seaborn's heatmap calls a matplotlib API scheduled for deprecation; not ours to fix.
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        _draw_heatmaps(axes, iou, gain, annot, title)
    for ax in axes[:, 0]:
        ax.tick_params(axis="x", labelrotation=60, labelsize=7)
        ax.tick_params(axis="y", labelrotation=0, labelsize=8)
        for label in ax.get_xticklabels():
            label.set_horizontalalignment("right")
    return save_figure(fig, path)


def _draw_heatmaps(axes, iou, gain, annot, title) -> None:
    sns.heatmap(iou, ax=axes[0][0], cmap="viridis", vmin=0, vmax=100, annot=annot, fmt=".0f",
                annot_kws={"fontsize": 6.5}, cbar_kws={"label": "IoU (%)", "pad": 0.01})
    axes[0][0].set_title(f"{title}: IoU (%)")
    axes[0][0].set_xlabel("")
    axes[0][0].set_ylabel("")
    if gain is not None and not gain.empty:
        lim = max(1.0, float(abs(gain).max().max()) if gain.notna().any().any() else 1.0)
        sns.heatmap(gain, ax=axes[1][0], cmap="RdBu", center=0, vmin=-lim, vmax=lim, annot=annot, fmt="+.0f",
                    annot_kws={"fontsize": 6.5}, cbar_kws={"label": "Δ IoU (points)", "pad": 0.01})
        axes[1][0].set_title("gain over the supervised baseline (points)")
        axes[1][0].set_xlabel("")
        axes[1][0].set_ylabel("")


def learning_curves(curves: dict[str, pd.DataFrame], title: str, path: Path, x_label: str = "iteration") -> Path:
    """curves: label -> frame with columns x, mean, std, count (count = seeds evaluated at x)."""
    fig, ax = plt.subplots(figsize=(TEXT_WIDTH_IN, 3.2))
    for label, df in curves.items():
        line, = ax.plot(df["x"], df["mean"], label=label, linewidth=1.4)
        band = df["count"] >= 2
        if band.any():
            ax.fill_between(df["x"][band], (df["mean"] - df["std"])[band], (df["mean"] + df["std"])[band],
                            alpha=0.2, color=line.get_color(), linewidth=0)
    ax.set_xlabel(x_label)
    ax.set_ylabel("val mIoU (%)")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower right")
    return save_figure(fig, path)
