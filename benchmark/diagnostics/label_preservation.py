"""Does the recipe's strong view keep the label? A trained run's val mIoU under the weak and the strong view.

    python -m benchmark.diagnostics.label_preservation results/runs/animals/full/supervised/seed0 [--draws 4]

Weak-to-strong consistency rests on a premise: a strong view of an image has the label map of the image. A
researcher bringing a new domain (medical, aerial) can see here whether the recipe's augmentations keep its
labels. The run's model is evaluated on its val set as the trainer evaluates it (the weak view: the images as
they are) and under the strong colour pipeline of the training code (`datasets.transforms.strong_color`;
CutMix is left out, as it moves labels on purpose), confusion matrices summed over `--draws` seeded draws.
A large drop means weak-to-strong consistency asks the model to be invariant to the very cue its labels teach.
Writes `label_preservation.json` into the run folder; the grid checks its all-labels reference cells after
training them (`grid.label_check`) and the report shows the result.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tabulate import tabulate
from tqdm import tqdm

from benchmark.errors import run_main
from benchmark.diagnostics.label_record import DIFFERENCE, RECORD_NAME, VIEWS, make_record
from benchmark.diagnostics.trained_run import TrainedRun, load_trained_run
from benchmark.train.data_plan import evaluate_val, val_loader
from benchmark.train.evaluate import ConfusionMatrix
from datasets.io import atomic_write_json
from datasets.semi import ImageView, derive_seed
from datasets.transforms import strong_color

DEFAULT_DRAWS = 4
DEFAULT_SEED = 0


def view_confusion(run: TrainedRun, view: ImageView | None, draws: int, seed: int, bar: tqdm) -> ConfusionMatrix:
    """The val confusion matrix under `view` summed over `draws` draws (None: the images as they are, once);
    draw d gives image k its own generator, seeded from (seed, d, k)."""
    total = ConfusionMatrix(run.plan.spec.num_classes)
    for draw in range(draws if view is not None else 1):
        loader = val_loader(run.cfg, run.plan, image_view=view, view_seed=derive_seed(seed, "draw", draw))
        result = evaluate_val(run.model, loader, run.cfg, run.plan, run.device, progress=False)
        total.matrix += result["confusion"]
        bar.update()
    return total


def measure(run_dir: Path, draws: int = DEFAULT_DRAWS, seed: int = DEFAULT_SEED, view: ImageView = strong_color,
            device: str = "cpu", progress: bool = True) -> dict:
    """The record (benchmark/diagnostics/label_record.py) of the run in `run_dir`; `view` replaces the strong
    colour pipeline (the tests give it views that keep or destroy the labels)."""
    if draws < 1:
        raise ValueError(f"--draws must be at least 1, got {draws}")
    run = load_trained_run(run_dir, device)
    absent = run.cfg.eval.absent
    with tqdm(total=1 + draws, desc="label preservation", unit="pass", disable=not progress) as bar:
        weak = view_confusion(run, None, 1, seed, bar)
        strong = view_confusion(run, view, draws, seed, bar)
    scores = {name: (matrix.miou(absent), matrix.iou(absent).tolist()) for name, matrix in zip(VIEWS, (weak, strong))}
    return make_record(list(run.plan.spec.class_names), scores, run=str(run.run_dir), dataset=run.plan.spec.name,
                       split=run.plan.split, weights=run.weights, step=run.step, eval_mode=run.plan.eval_mode,
                       view=f"{view.__module__}.{view.__qualname__}",
                       view_doc=(view.__doc__ or "").strip().split("\n")[0], draws=draws, seed=seed)


def render(record: dict) -> str:
    def show(value, signed=False):
        return "n/a" if value is None else (f"{value:+.2f}" if signed else f"{value:.2f}")

    parts = (record["weak"], record["strong"], record[DIFFERENCE])
    rows = [[name] + [show(p["per_class"][name], signed=i == 2) for i, p in enumerate(parts)]
            for name in record["weak"]["per_class"]]
    rows.append(["mIoU"] + [show(p["miou"], signed=i == 2) for i, p in enumerate(parts)])
    head = (f"{record['run']}: {record['dataset']} val ({record['eval_mode']} evaluation), {record['weights']}; "
            f"strong view: {record['view']}, {record['draws']} draws from seed {record['seed']}")
    return head + "\n" + tabulate(rows, headers=["class", "weak IoU %", "strong IoU %", "strong − weak"],
                                  tablefmt="github", disable_numparse=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmark.diagnostics.label_preservation", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="a run folder (config.yaml, checkpoint.pt)")
    parser.add_argument("--draws", type=int, default=DEFAULT_DRAWS,
                        help=f"draws of the strong view per val image (default {DEFAULT_DRAWS})")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"base seed of the draws (default {DEFAULT_SEED}): the same seed, the same figures")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:N or auto")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.draws < 1:
        build_parser().error(f"--draws must be at least 1, got {args.draws}")
    for run_dir in map(Path, args.run_dirs):
        record = measure(run_dir, args.draws, args.seed, device=args.device, progress=not args.no_progress)
        atomic_write_json(run_dir / RECORD_NAME, record)
        print(render(record), flush=True)
    return 0


if __name__ == "__main__":
    run_main(lambda: main(sys.argv[1:]))
