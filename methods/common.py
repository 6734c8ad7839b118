"""Small helpers shared by the methods: losses, pseudo-labels, CutMix pasting and patch masking.

They follow the official UniMatch code term by term, so that methods built from them differ only where
the methods differ.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from datasets import IGNORE_INDEX
from methods.settings import LossSettings, MethodError


# --- losses -------------------------------------------------------------------------------------------------

def ohem_cross_entropy(logits: torch.Tensor, target: torch.Tensor, ignore_index: int, thresh: float,
                       min_kept: int) -> torch.Tensor:
    """Online hard example mining CE as the official code's ProbOhemCrossEntropy2d.

    Pixels whose probability of the true class is above the threshold are dropped, unless fewer than
    `min_kept` pixels would remain, in which case the threshold rises to the min_kept-th smallest probability.
    As in the official code, `min_kept = 0` applies no threshold at all (plain CE), and neither does a batch
    with fewer valid pixels than `min_kept`.
    """
    flat_target = target.reshape(-1)
    valid = flat_target != ignore_index
    num_valid = int(valid.sum())
    if 0 < min_kept <= num_valid:
        prob = logits.detach().float().softmax(dim=1).transpose(0, 1).reshape(logits.shape[1], -1)
        safe_target = flat_target * valid
        true_prob = prob[safe_target, torch.arange(flat_target.numel(), device=logits.device)]
        true_prob = true_prob.masked_fill(~valid, 1.0)
        kth = true_prob.sort().values[min(true_prob.numel(), min_kept) - 1]
        threshold = torch.maximum(torch.tensor(thresh, device=logits.device), kth)
        valid = valid & (true_prob <= threshold)
    kept = flat_target.masked_fill(~valid, ignore_index).reshape(target.shape)
    return F.cross_entropy(logits, kept, ignore_index=ignore_index)


def check_shards(batch: int, shards: int) -> None:
    if shards < 1 or batch % shards:
        raise MethodError(f"a batch of {batch} images does not split into {shards} loss shards "
                          f"(train.loss_shards over the world size must divide the batch per process)")


class LabeledLoss(nn.Module):
    """The supervised term: CE with ignore IGNORE_INDEX, or OHEM CE (Cityscapes); with `shards` > 1, the mean over
    equal batch shards of each shard's own loss (OHEM's `min_kept` is then per process, split over them)."""

    def __init__(self, settings: LossSettings, ignore_index: int = IGNORE_INDEX, shards: int = 1):
        super().__init__()
        if settings.criterion not in ("ce", "ohem"):
            raise MethodError(f"loss.criterion must be 'ce' or 'ohem', got {settings.criterion!r}")
        self.settings = settings
        self.ignore_index = ignore_index
        self.shards = shards

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if self.shards == 1:
            return self._loss(logits, target, self.settings.ohem_min_kept)
        check_shards(logits.shape[0], self.shards)
        min_kept = self.settings.ohem_min_kept // self.shards
        return torch.stack([self._loss(lg, tg, min_kept) for lg, tg in
                            zip(logits.chunk(self.shards), target.chunk(self.shards))]).mean()

    def _loss(self, logits: torch.Tensor, target: torch.Tensor, min_kept: int) -> torch.Tensor:
        if self.settings.criterion == "ohem":
            return ohem_cross_entropy(logits, target, self.ignore_index, self.settings.ohem_thresh, min_kept)
        return F.cross_entropy(logits, target, ignore_index=self.ignore_index)


def confident_cross_entropy(logits: torch.Tensor, pseudo: "PseudoLabels", thresh: float,
                            shards: int = 1) -> torch.Tensor:
    """sum_p CE_p · [conf_p ≥ τ] · [p not padding]  /  #(non-padding pixels).

    The normaliser counts all non-padding pixels, not only the confident ones (official UniMatch). With
    `shards` > 1 the ratio is taken per equal batch shard and averaged over the shards.
    """
    per_pixel = F.cross_entropy(logits, pseudo.label, reduction="none")
    valid = pseudo.ignore != IGNORE_INDEX
    confident = (pseudo.conf >= thresh) & valid
    if shards == 1:
        return (per_pixel * confident).sum() / valid.sum().clamp_min(1)
    check_shards(logits.shape[0], shards)
    sums = (per_pixel * confident).reshape(shards, -1).sum(dim=1)
    return (sums / valid.reshape(shards, -1).sum(dim=1).clamp_min(1)).mean()


def confident_ratio(pseudo: "PseudoLabels", thresh: float) -> float:
    """Share of non-padding pixels whose pseudo-label passes the threshold (the official 'Mask ratio')."""
    valid = pseudo.ignore != IGNORE_INDEX
    return float(((pseudo.conf >= thresh) & valid).sum()) / max(int(valid.sum()), 1)


# --- pseudo-labels ------------------------------------------------------------------------------------------

@dataclass
class PseudoLabels:
    label: torch.Tensor   # long [N,H,W], argmax of the logits
    conf: torch.Tensor    # float [N,H,W], max softmax probability
    ignore: torch.Tensor  # long [N,H,W], IGNORE_INDEX where the crop was padding

    def paste(self, other: "PseudoLabels", box: torch.Tensor) -> "PseudoLabels":
        """These labels with `other`'s inside the CutMix box (box == 1)."""
        inside = box == 1
        return PseudoLabels(
            label=torch.where(inside, other.label, self.label),
            conf=torch.where(inside, other.conf, self.conf),
            ignore=torch.where(inside, other.ignore, self.ignore),
        )


def pseudo_labels(logits: torch.Tensor, ignore: torch.Tensor) -> PseudoLabels:
    """Labels: argmax over the logits (official); confidence: max softmax probability. The argmax of the
    softmax differs where rounding ties two probabilities whose logits differ, which threshold 0
    (Cityscapes) would train on. `max(dim=1).indices` is the argmax (the first maximal index, NaN included)
    at a ninth of the CPU cost of `argmax(dim=1)` over a non-innermost dimension."""
    logits = logits.detach().float()
    return PseudoLabels(label=logits.max(dim=1).indices, conf=logits.softmax(dim=1).amax(dim=1), ignore=ignore)


def predict_in_eval_mode(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Logits from an eval-mode, no-grad forward (the official CutMix-source pseudo-labels); mode restored."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(images).detach()
    finally:
        model.train(was_training)


class PseudoLabeler:
    """Where a weak-to-strong method's pseudo-labels come from; this base class is the official code's rule.

    `weak`: the unlabeled batch's labels from the student's own train-mode logits of the weak view (computed
    together with the labeled batch and passed in). `mix`: the CutMix source's labels from an eval-mode,
    no-grad forward. Extensions (an EMA teacher, a multi-scale ensemble) override these two methods, so a
    base method's loop stays the one place its terms are computed.
    """

    def weak(self, model: nn.Module, images: torch.Tensor, logits: torch.Tensor,
             ignore: torch.Tensor) -> PseudoLabels:
        return pseudo_labels(logits, ignore)

    def mix(self, model: nn.Module, images: torch.Tensor, ignore: torch.Tensor) -> PseudoLabels:
        return pseudo_labels(predict_in_eval_mode(model, images), ignore)


def paste_images(target: torch.Tensor, source: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """`target` images with `source` pixels inside the CutMix box, all channels (a new tensor)."""
    inside = (box == 1).unsqueeze(1)
    return torch.where(inside, source, target)


# --- masking ------------------------------------------------------------------------------------------------

def random_patch_mask(batch: int, height: int, width: int, patch: int, ratio: float,
                      generator: torch.Generator | None = None, device: torch.device | str = "cpu"
                      ) -> torch.Tensor:
    """Boolean [N,H,W] mask, True = masked, built from a patch grid with exactly round(ratio·#patches)
    masked patches per image (patches at the right/bottom border are cropped to the image)."""
    rows, cols = -(-height // patch), -(-width // patch)
    num_patches = rows * cols
    num_masked = int(round(ratio * num_patches))
    scores = torch.rand(batch, num_patches, generator=generator)
    order = scores.argsort(dim=1)
    grid = torch.zeros(batch, num_patches, dtype=torch.bool)
    grid.scatter_(1, order[:, :num_masked], True)
    grid = grid.view(batch, rows, cols)
    full = grid.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)
    return full[:, :height, :width].to(device)


def patches_touching(region: torch.Tensor, patch: int) -> torch.Tensor:
    """Boolean [N,rows,cols] patch grid: True where the patch holds at least one pixel of `region` [N,H,W]."""
    return F.max_pool2d(region.unsqueeze(1).float(), patch, stride=patch, ceil_mode=True).squeeze(1) > 0


def region_patch_mask(region: torch.Tensor, patch: int, ratio: float,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Boolean [N,H,W] mask, True = masked: whole patches chosen at random among those touching `region`
    (bool [N,H,W]), round(ratio·n) of the n touching patches per image, clamped to [1, n−1] so that a region
    spanning two or more patches always keeps both a masked and a visible part (n ≤ 1: nothing masked).
    Patches are aligned to the image grid, as in `random_patch_mask`."""
    batch, height, width = region.shape
    touching = patches_touching(region, patch).flatten(1).cpu()
    count = touching.sum(dim=1)
    num_masked = torch.minimum(torch.round(ratio * count).clamp_min(1), count - 1).clamp_min(0)
    scores = torch.rand(touching.shape, generator=generator).masked_fill(~touching, 2.0)  # untouched sort last
    rank = scores.argsort(dim=1).argsort(dim=1)
    grid = (rank < num_masked.unsqueeze(1)).view(batch, -(-height // patch), -(-width // patch))
    full = grid.repeat_interleave(patch, dim=1).repeat_interleave(patch, dim=2)
    return full[:, :height, :width].to(region.device)


@contextmanager
def frozen_bn_statistics(module: nn.Module):
    """BatchNorm layers of `module` still normalise with batch statistics inside this context, but their
    running statistics are left as they were, so an auxiliary forward of out-of-distribution inputs (masked
    or blanked images) does not shift what evaluation uses. The layers update throw-away copies (the
    originals are never written in place: autograd may hold them for the backward)."""
    names = ("running_mean", "running_var", "num_batches_tracked")
    originals = [(m, name, getattr(m, name)) for m in module.modules()
                 if isinstance(m, nn.modules.batchnorm._BatchNorm) for name in names if getattr(m, name) is not None]
    for layer, name, buffer in originals:
        setattr(layer, name, buffer.clone())
    try:
        yield
    finally:
        for layer, name, buffer in originals:
            setattr(layer, name, buffer)
