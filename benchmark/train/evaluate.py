"""Validation: confusion-matrix mIoU and the official UniMatch inference modes (whole / center crop / sliding window).

Units: every IoU and mIoU this module returns is in PERCENT (0-100); `ConfusionMatrix.matrix` holds raw int64 pixel
counts (rows = ground truth, columns = prediction).

Absent classes: a class missing from both prediction and ground truth has union 0. `absent="zero"` (default, the
official UniMatch rule intersection / (union + 1e-10)) gives it IoU 0 and counts it in the mean; `absent="nan"`
gives it NaN and leaves it out of the mean. (Where union > 0 we divide exactly; the official +1e-10 changes IoU by
less than 1e-8 percentage points.)

Sliding window (official UniMatch `evaluate`): window = crop_size, stride = int(crop_size * 2 / 3), window starts
0, stride, 2*stride, ... while start < size, softmax scores summed over windows. The official code does NOT clamp
the last window to the border: windows that run past the border are clipped (smaller), and an image smaller than
the window is evaluated whole, never padded (`border="truncate"`, the default). `border="clamp"` is the
mmsegmentation convention instead: full-size windows, the last one shifted back to end at the border.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from datasets import IGNORE_INDEX

EVAL_MODES = ("whole", "center_crop", "sliding")
ABSENT_POLICIES = ("zero", "nan")
SLIDING_BORDERS = ("truncate", "clamp")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


class ConfusionMatrix:
    """Pixel confusion matrix accumulated with `torch.bincount`; mergeable across workers and ranks."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX, device=None):
        self.num_classes = int(num_classes)
        self.ignore_index = ignore_index
        self.matrix = torch.zeros(self.num_classes, self.num_classes, dtype=torch.int64, device=device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add label maps `pred` and `target` of equal shape; pixels where target == ignore_index are skipped."""
        if pred.shape != target.shape:
            raise ValueError(f"prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}")
        target = target.to(self.matrix.device).long()
        pred = pred.to(self.matrix.device).long()
        valid = target != self.ignore_index
        target, pred = target[valid], pred[valid]
        n = self.num_classes
        for name, labels in (("target", target), ("prediction", pred)):
            # bincount would silently mix such labels into other cells; min/max first, as the check is per pixel
            if not labels.numel() or (int(labels.min()) >= 0 and int(labels.max()) < n):
                continue
            bad = labels[(labels < 0) | (labels >= n)]
            if bad.numel():
                raise ValueError(f"{name} label values {bad.unique()[:10].tolist()} are outside [0, {n}) "
                                 f"and not the ignore index {self.ignore_index}")
        self.matrix += torch.bincount(target * n + pred, minlength=n * n).reshape(n, n)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        if other.num_classes != self.num_classes:
            raise ValueError(f"cannot merge {other.num_classes}-class into {self.num_classes}-class matrix")
        self.matrix += other.matrix.to(self.matrix.device)
        return self

    def all_reduce(self, group=None) -> None:
        """Sum the matrix over ranks (each image must have been counted on exactly one rank)."""
        dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM, group=group)

    def reset(self) -> None:
        self.matrix.zero_()

    def iou(self, absent: str = "zero") -> torch.Tensor:
        """Per-class IoU in percent, float64 on the CPU: diag / (rowsum + colsum - diag)."""
        _check_choice("absent", absent, ABSENT_POLICIES)
        m = self.matrix.detach().cpu().double()
        intersection = m.diagonal()
        union = m.sum(0) + m.sum(1) - intersection
        fill = 0.0 if absent == "zero" else float("nan")
        return torch.where(union > 0, intersection / union.clamp(min=1), torch.full_like(union, fill)) * 100.0

    def miou(self, absent: str = "zero") -> float:
        """Mean IoU in percent; with absent="nan" the mean over classes present in prediction or ground truth."""
        return float(self.iou(absent).nanmean())


def center_crop_box(height: int, width: int, crop_size: int) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) of UniMatch's centre crop; a side shorter than crop_size is kept whole."""
    top, left = max((height - crop_size) // 2, 0), max((width - crop_size) // 2, 0)
    return top, left, min(top + crop_size, height), min(left + crop_size, width)


def sliding_stride(crop_size: int) -> int:
    return max(int(crop_size * 2 / 3), 1)


def window_starts(length: int, window: int, stride: int, border: str = "truncate") -> list[int]:
    """Start offsets of sliding windows along one axis (see the module docstring for the two conventions)."""
    _check_choice("border", border, SLIDING_BORDERS)
    if border == "truncate":
        return list(range(0, length, stride))
    last = max(length - window, 0)
    return list(range(0, last, stride)) + [last]


def predict(model: nn.Module, image: torch.Tensor, mode: str, crop_size: int, num_classes: int,
            border: str = "truncate") -> torch.Tensor:
    """Scores [N, C, h, w] for `image` [N, 3, H, W]; their argmax over dim 1 is the prediction.

    "whole": logits of the full image. "center_crop": logits of the `center_crop_box` crop (crop the mask with the
    same box). "sliding": softmax probabilities summed over windows, at full size. The caller sets eval mode and
    no_grad (as `evaluate` does).
    """
    _check_choice("mode", mode, EVAL_MODES)
    if mode == "whole":
        return model(image)
    height, width = image.shape[-2:]
    if mode == "center_crop":
        top, left, bottom, right = center_crop_box(height, width, crop_size)
        return model(image[:, :, top:bottom, left:right])
    stride = sliding_stride(crop_size)
    scores = image.new_zeros(image.shape[0], num_classes, height, width)
    for top in window_starts(height, crop_size, stride, border):
        for left in window_starts(width, crop_size, stride, border):
            rows, cols = slice(top, top + crop_size), slice(left, left + crop_size)  # slicing clips at the border
            logits = model(image[:, :, rows, cols])
            if logits.shape[1] != num_classes:
                raise ValueError(f"model outputs {logits.shape[1]} classes, evaluation expects {num_classes}")
            scores[:, :, rows, cols] += logits.softmax(dim=1)
    return scores


def _image_and_mask(batch):
    if isinstance(batch, dict):
        return batch["image"], batch["mask"]
    return batch[0], batch[1]  # (image, mask, ...) tuples as the official loaders yield


def evaluate(model: nn.Module, loader, mode: str, crop_size: int, num_classes: int, class_names, device=None,
             absent: str = "zero", distributed: bool = False, progress: bool = True, ignore_index: int = IGNORE_INDEX,
             border: str = "truncate") -> dict:
    """mIoU of `model` over `loader` (batches of {"image", "mask", ...} dicts or (image, mask, ...) tuples).

    Returns {"miou": float percent, "per_class": {class_name: float percent}, "confusion": int64 CPU tensor}.
    Runs in eval mode under torch.no_grad() and restores the model's previous train/eval mode. With
    `distributed=True` and torch.distributed initialised, the confusion matrix is summed over ranks, so every
    rank returns the global result; the loader's sampler must give each image to exactly one rank (no padding).
    """
    _check_choice("mode", mode, EVAL_MODES)
    _check_choice("absent", absent, ABSENT_POLICIES)
    _check_choice("border", border, SLIDING_BORDERS)
    class_names = list(class_names)
    if len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    if device is None:
        device = next(model.parameters()).device
    reduce = distributed and dist.is_available() and dist.is_initialized()
    show = progress and (not reduce or dist.get_rank() == 0)
    confusion = ConfusionMatrix(num_classes, ignore_index, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(loader, desc=f"eval ({mode})", disable=not show, leave=False):
                image, mask = _image_and_mask(batch)
                image, mask = image.to(device, non_blocking=True), mask.to(device, non_blocking=True)
                scores = predict(model, image, mode, crop_size, num_classes, border)
                if mode == "center_crop":
                    top, left, bottom, right = center_crop_box(*image.shape[-2:], crop_size)
                    mask = mask[..., top:bottom, left:right]
                # max(dim).indices is argmax (the first maximal index on ties) at an eighth of its CPU time
                confusion.update(scores.max(dim=1).indices, mask)
    finally:
        model.train(was_training)
    if reduce:
        confusion.all_reduce()
    iou = confusion.iou(absent)
    return {"miou": confusion.miou(absent), "per_class": dict(zip(class_names, iou.tolist())),
            "confusion": confusion.matrix.cpu()}
