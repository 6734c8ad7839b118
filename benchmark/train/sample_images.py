"""Predictions of a few fixed val images for the report's qualitative figures.

The images are chosen once from the val list by a fixed seed, so every method, split and seed shows the same
ones. Whenever a run reaches a new best on val, the trainer predicts just these images again and writes
`qualitative.npz` into the run folder (image, ground truth and prediction of each, plus the palette): a few
forward passes per new best, far cheaper than keeping a second checkpoint, and the report then needs neither
the data nor the model. `output.qualitative_images=0` turns it off.
"""
from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from datasets.io import atomic_write
from benchmark.train.evaluate import center_crop_box, predict
from datasets.semi import SemiDataset
from datasets.splits import read_split_file, val_path
from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

QUALITATIVE_FILE = "qualitative.npz"
QUALITATIVE_SEED = 0     # one choice of images for every method, split and seed


def pick_images(num_val: int, count: int) -> list[int]:
    """Indices into the val list, fixed by QUALITATIVE_SEED, in val-list order."""
    return sorted(random.Random(QUALITATIVE_SEED).sample(range(num_val), min(max(count, 0), num_val)))


def _to_uint8_image(tensor: torch.Tensor) -> np.ndarray:
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((tensor.cpu() * std + mean).clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


class QualitativeSaver:
    def __init__(self, cfg, plan):
        self.plan, self.border = plan, cfg.eval.border
        count = cfg.output.qualitative_images
        items = read_split_file(val_path(plan.split_dir), plan.root) if count > 0 else []
        self.indices = pick_images(len(items), count)
        self.dataset = (SemiDataset(root=plan.root, items=items, mode="val", crop_size=plan.crop_size,
                                    num_classes=plan.spec.num_classes) if self.indices else None)

    def save(self, model: torch.nn.Module, run_dir: Path, step: int, device: torch.device) -> None:
        if not self.indices:
            return
        module = getattr(model, "module", model)   # never through DDP: only the main process predicts
        was_training = module.training
        module.eval()
        plan = self.plan
        arrays: dict[str, np.ndarray] = {}
        ids = []
        try:
            with torch.no_grad():
                for k, index in enumerate(self.indices):
                    sample = self.dataset[index]
                    image, mask = sample["image"], sample["mask"]
                    scores = predict(module, image[None].to(device), plan.eval_mode, plan.crop_size,
                                     plan.spec.num_classes, self.border)
                    if plan.eval_mode == "center_crop":   # the prediction covers the crop only
                        top, left, bottom, right = center_crop_box(*image.shape[-2:], plan.crop_size)
                        image, mask = image[:, top:bottom, left:right], mask[top:bottom, left:right]
                    arrays[f"image_{k}"] = _to_uint8_image(image)
                    arrays[f"mask_{k}"] = mask.numpy().astype(np.uint8)
                    arrays[f"pred_{k}"] = scores.argmax(dim=1)[0].cpu().numpy().astype(np.uint8)
                    ids.append(str(sample["id"]))
        finally:
            module.train(was_training)
        palette = np.array(plan.spec.palette[:3 * plan.spec.num_classes], dtype=np.uint8).reshape(-1, 3)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, ids=np.array(ids), iter=np.array(step), palette=palette, **arrays)
        atomic_write(Path(run_dir) / QUALITATIVE_FILE, lambda f: f.write(buffer.getvalue()), mode="wb")
