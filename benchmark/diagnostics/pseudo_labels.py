"""How good are a run's pseudo-labels? Precision and coverage of confident predictions on the unlabeled images.

    python -m benchmark.diagnostics.pseudo_labels results/runs/animals/1_32/METHOD/seed0 [--threshold 0.95]

Semi-supervised methods learn from the pixels whose confidence passes `loss.conf_thresh`; when those pixels are
mostly one class, or often wrong, the unlabeled loss cannot help. This tool measures that on the unlabeled
images of the run's split, which needs their ground truth on disk (the embedded dataset has it; Pascal's SBD
images and Cityscapes' train set do too). It scores the run's checkpoint (last iteration) with whole-image
eval-mode predictions: the official pseudo-labels come from a train-mode forward of a weak view, so the
figures describe the model, not one augmentation draw. Writes `pseudo_labels.json` into the run folder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from tabulate import tabulate
from torch.utils.data import DataLoader
from tqdm import tqdm

from benchmark.errors import run_main
from datasets.io import atomic_write_json
from benchmark.diagnostics.trained_run import load_trained_run
from benchmark.train.config import ConfigError
from datasets import IGNORE_INDEX
from datasets.semi import SemiDataset
from datasets.splits import read_split_file, split_paths

REPORT_NAME = "pseudo_labels.json"


def confident_statistics(probabilities, target, threshold: float, num_classes: int,
                         ignore_index: int = IGNORE_INDEX) -> dict:
    """Counts over the valid pixels of one batch: per class, confident pixels predicted as it, how many of
    those are right, and its ground-truth pixels. `probabilities` [N,C,H,W], `target` [N,H,W] long."""
    confidence, predicted = probabilities.max(dim=1)
    valid = target != ignore_index
    confident = valid & (confidence >= threshold)
    classes = torch.arange(num_classes, device=target.device)
    as_class = (predicted[confident].unsqueeze(1) == classes)              # [P, C]
    right = as_class & (target[confident].unsqueeze(1) == classes)
    return {"valid": int(valid.sum()), "confident": int(confident.sum()),
            "confident_as": as_class.sum(0).tolist(), "confident_right": right.sum(0).tolist(),
            "ground_truth": (target[valid].unsqueeze(1) == classes).sum(0).tolist()}


def summarise(counts: dict, class_names, threshold: float) -> dict:
    """Shares in percent: coverage (confident / valid pixels), and per class the share of confident pixels
    predicted as it, their precision, and the share of the class's ground truth that is confidently right."""
    def pct(a, b):
        return round(100.0 * a / b, 2) if b else None

    per_class = {}
    for k, name in enumerate(class_names):
        per_class[name] = {"share_of_confident": pct(counts["confident_as"][k], counts["confident"]),
                           "precision": pct(counts["confident_right"][k], counts["confident_as"][k]),
                           "recall": pct(counts["confident_right"][k], counts["ground_truth"][k])}
    return {"threshold": threshold, "pixels": counts["valid"],
            "coverage": pct(counts["confident"], counts["valid"]),
            "precision": pct(sum(counts["confident_right"]), counts["confident"]),
            "per_class": per_class}


def measure(run_dir: Path, threshold: float | None = None, progress: bool = True) -> dict:
    run = load_trained_run(run_dir)
    cfg, plan, model = run.cfg, run.plan, run.model
    threshold = cfg.loss.conf_thresh if threshold is None else threshold
    items = read_split_file(split_paths(plan.split_dir, plan.split)[1], plan.root)   # masks required here
    if not items:
        raise ConfigError(f"split {plan.split} has no unlabeled images")
    dataset = SemiDataset(root=plan.root, items=items, mode="val", crop_size=plan.crop_size,
                          num_classes=plan.spec.num_classes)
    totals: dict | None = None
    with torch.no_grad():
        for batch in tqdm(DataLoader(dataset, batch_size=cfg.eval.batch_size), desc="pseudo-labels",
                          disable=not progress):
            counts = confident_statistics(model(batch["image"]).softmax(dim=1), batch["mask"], threshold,
                                          plan.spec.num_classes)
            totals = counts if totals is None else {
                k: (v + counts[k] if isinstance(v, int) else [a + b for a, b in zip(v, counts[k])])
                for k, v in totals.items()}
    result = summarise(totals, plan.spec.class_names, threshold)
    result.update(run=str(run_dir), images=len(items), split=plan.split)
    return result


def render(result: dict) -> str:
    def show(value):
        return "n/a" if value is None else f"{value:.1f}"

    rows = [[name, show(v["share_of_confident"]), show(v["precision"]), show(v["recall"])]
            for name, v in result["per_class"].items()]
    head = (f"{result['run']}: {result['images']} unlabeled images of split {result['split']}, threshold "
            f"{result['threshold']}: {show(result['coverage'])}% of pixels confident, "
            f"{show(result['precision'])}% of those right")
    return head + "\n" + tabulate(rows, headers=["class", "% of confident", "precision %", "recall %"],
                                  tablefmt="github")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.diagnostics.pseudo_labels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder (holds config.yaml and checkpoint.pt)")
    parser.add_argument("--threshold", type=float, help="confidence threshold (default: the run's loss.conf_thresh)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    run_dir = Path(args.run_dir)
    result = measure(run_dir, args.threshold, progress=not args.no_progress)
    atomic_write_json(run_dir / REPORT_NAME, result)
    print(render(result))
    return 0


if __name__ == "__main__":
    run_main(lambda: main(sys.argv[1:]))
