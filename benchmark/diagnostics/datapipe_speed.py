"""How fast one data worker prepares training samples, and how many workers a GPU's step rate needs.

    python -m benchmark.diagnostics.datapipe_speed [--images pascal,cityscapes] [--samples 24] [--batch 8]
                                       [--step-rate STEPS_PER_S | --steptime-json FILE]
    (also: python -m benchmark.diagnostics.steptime --data ...)

One worker is this process on one thread, as a DataLoader worker runs (torch sets 1 thread there), timed by
its CPU time: what a worker with a core of its own achieves, even on a shared machine. It builds samples
through the trainer's own dataset (`datasets.semi.SemiDataset`): labeled samples (read image and mask, resize,
crop, flip, normalise) and unlabeled samples with every view the strongest baseline needs
(`methods.registry.strongest_baseline()`: weak crop, two strong colour views, two CutMix boxes). Images are
generated at the real datasets' sizes: Pascal-like JPEGs of 500x375 at crop 321, Cityscapes-like PNGs of
2048x1024 at crop 801 (smooth random content, so the codecs work about as hard as on photos; collation and the
copy to the GPU are not included).

A step of that method takes `batch` labeled samples, `batch` unlabeled and `batch` more unlabeled (the CutMix
source), each stream from its own DataLoader with `data.workers` workers. For a step rate r the labeled loader
needs r·batch / (labeled samples/s) workers and each unlabeled loader r·batch / (unlabeled samples/s); the
profile's data.workers must be the larger of the two (rounded up), so 3 x data.workers processes per GPU.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter
from tabulate import tabulate

from benchmark.errors import run_main
from datasets.io import atomic_write_json
from datasets.semi import SemiDataset
from methods import registry

# The strongest baseline's step: labeled, unlabeled and the CutMix source (another unlabeled stream).
STREAMS_PER_STEP = {"labeled": 1, "unlabeled": 2}


@dataclass(frozen=True)
class ImageSet:
    name: str
    width: int
    height: int
    crop: int
    num_classes: int
    suffix: str          # the real dataset's image format


IMAGE_SETS = {"pascal": ImageSet("pascal", 500, 375, 321, 21, ".jpg"),
              "cityscapes": ImageSet("cityscapes", 2048, 1024, 801, 19, ".png")}


def unlabeled_views() -> frozenset[str]:
    """The per-sample views of the strongest baseline's unlabeled stream; its CutMix source ("mix") is a stream
    of its own."""
    return registry.get(registry.strongest_baseline()).views - {"mix"}


def strongest_baseline_title() -> str:
    """How reports name the strongest baseline."""
    method = registry.get(registry.strongest_baseline())
    return method.display_name or method.name


def generate_tree(root: Path, image_set: ImageSet, count: int, seed: int = 0) -> list[tuple[str, str]]:
    """`count` image/mask pairs under `root` in the on-disk layout of every dataset here; returns the items."""
    rng = np.random.default_rng(seed)
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
    w, h = image_set.width, image_set.height
    items = []
    for index in range(count):
        # Low-frequency colour fields plus mild grain: photo-like entropy for the JPEG / PNG codecs.
        coarse = Image.fromarray(rng.integers(0, 256, (h // 32 + 1, w // 32 + 1, 3), dtype=np.uint8))
        smooth = np.asarray(coarse.resize((w, h), Image.BICUBIC), dtype=np.int16)
        pixels = np.clip(smooth + rng.normal(0, 6, smooth.shape), 0, 255).astype(np.uint8)
        labels = Image.fromarray(rng.integers(0, image_set.num_classes, (h // 64 + 1, w // 64 + 1), dtype=np.uint8))
        mask = labels.resize((w, h), Image.NEAREST).filter(ImageFilter.ModeFilter(5))
        image_rel, mask_rel = f"JPEGImages/{index:04d}{image_set.suffix}", f"SegmentationClass/{index:04d}.png"
        Image.fromarray(pixels).save(root / image_rel, quality=90)
        mask.save(root / mask_rel)
        items.append((image_rel, mask_rel))
    return items


def samples_per_s(dataset, samples: int, warmup: int = 2) -> float:
    keys = list(range(warmup + samples))
    random.Random(0).shuffle(keys)
    for key in keys[:warmup]:
        dataset[key]
    # CPU time of this process: what one worker on a core of its own achieves, even on a shared machine.
    start = time.process_time()
    for key in keys[warmup:]:
        dataset[key]
    return samples / (time.process_time() - start)


def measure(image_set: ImageSet, samples: int, root: Path) -> dict:
    """Samples per second of one worker, labeled and unlabeled with the strongest baseline's views, on
    generated images."""
    torch.set_num_threads(1)
    items = generate_tree(root, image_set, count=min(samples, 16))
    common = dict(root=root, items=items, crop_size=image_set.crop, num_classes=image_set.num_classes)
    return {"images": image_set.name, "size": f"{image_set.width}x{image_set.height}", "crop": image_set.crop,
            "labeled_per_s": samples_per_s(SemiDataset(mode="train_l", **common), samples),
            "unlabeled_per_s": samples_per_s(SemiDataset(mode="train_u", views=unlabeled_views(), **common), samples)}


def workers_needed(figures: dict, step_rate: float, batch: int) -> dict:
    """data.workers (per loader) and worker processes per GPU that feed `step_rate` steps/s of `batch`."""
    per_loader = {stream: math.ceil(step_rate * batch / figures[f"{stream}_per_s"] - 1e-9)
                  for stream in STREAMS_PER_STEP}
    workers = max(per_loader.values())
    return {"data_workers": workers, "processes_per_gpu": workers * sum(STREAMS_PER_STEP.values()),
            "cores_busy": sum(step_rate * batch * n / figures[f"{s}_per_s"] for s, n in STREAMS_PER_STEP.items())}


def step_rate_from(steptime_json: str) -> float:
    """The fastest variant's steps/s of the strongest baseline (else of any method) from
    `python -m benchmark.diagnostics.steptime --json FILE`."""
    rows = [row for row in json.loads(Path(steptime_json).read_text()) if "step_s" in row]
    strongest = registry.strongest_baseline()
    target = [row for row in rows if row["method"] == strongest] or rows
    if not target:
        raise ValueError(f"{steptime_json} holds no timed step")
    return 1.0 / min(row["step_s"] for row in target)


def table(results: list[dict], step_rate: float | None, batch: int) -> str:
    headers = ["images", "crop", "labeled/s per worker", f"unlabeled ({strongest_baseline_title()} views)/s per worker",
               f"steps/s of batch {batch} one worker per loader feeds"]
    rows = []
    for r in results:
        feeds = min(r["labeled_per_s"], r["unlabeled_per_s"]) / batch
        row = [f"{r['images']} {r['size']}", r["crop"], f"{r['labeled_per_s']:.1f}", f"{r['unlabeled_per_s']:.1f}",
               f"{feeds:.2f}"]
        if step_rate:
            need = workers_needed(r, step_rate, batch)
            row.append(f"{need['data_workers']} ({need['processes_per_gpu']} processes, "
                       f"{need['cores_busy']:.1f} cores busy)")
        rows.append(row)
    if step_rate:
        headers.append(f"data.workers for {step_rate:.2f} steps/s")
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmark.diagnostics.datapipe_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", default="pascal,cityscapes", help=f"from {', '.join(IMAGE_SETS)}")
    parser.add_argument("--samples", type=int, default=24, help="samples timed per stream")
    parser.add_argument("--batch", type=int, default=8, help="per-GPU batch of each stream")
    rate = parser.add_mutually_exclusive_group()
    rate.add_argument("--step-rate", type=float, help="steps/s per GPU to feed")
    rate.add_argument("--steptime-json", help="take the step rate from `benchmark.diagnostics.steptime --json FILE`")
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    names = [n for n in args.images.split(",") if n]
    unknown = [n for n in names if n not in IMAGE_SETS]
    if unknown or not names:
        parser.error(f"unknown --images {','.join(unknown) or '(none)'}; known: {', '.join(IMAGE_SETS)}")
    if args.samples < 1 or args.batch < 1 or (args.step_rate is not None and args.step_rate <= 0):
        parser.error("--samples, --batch and --step-rate must be positive")
    step_rate = args.step_rate
    if args.steptime_json:
        try:
            step_rate = step_rate_from(args.steptime_json)
        except (OSError, ValueError, KeyError) as exc:
            parser.error(f"cannot read a step rate from --steptime-json {args.steptime_json}: {exc}")
    results = []
    for name in names:
        with tempfile.TemporaryDirectory() as scratch:
            results.append(measure(IMAGE_SETS[name], args.samples, Path(scratch)))
    for r in results:
        if step_rate:
            r["step_rate"], r["batch"] = step_rate, args.batch
            r.update(workers_needed(r, step_rate, args.batch))
    print(table(results, step_rate, args.batch))
    if args.json:
        atomic_write_json(Path(args.json), results)
    return 0


if __name__ == "__main__":
    run_main(lambda: main(sys.argv[1:]))
