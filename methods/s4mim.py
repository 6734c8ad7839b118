"""S4MIM — "Masked Image Modeling Boosting Semi-Supervised Semantic Segmentation" (Li et al., arXiv 2411.08756),
our reading of its abstract on top of UniMatch (every choice is listed in methods/interpretations/s4mim.yaml).

    K_i     class map of image i: ground truth on labeled images; ŷ_w where c_w ≥ τ and not padding on unlabeled
            ones; every other pixel belongs to no class (never reconstructed, never context)
    class-wise MIM, one input per image i and sampled class c (classes_per_image of them):
            R = [K_i = c],  M = random patches among those touching R (ratio r, patch p),  x̃ = x_i · R · (1 − M)
            (other classes and masked patches are filled with 0 = the dataset mean after normalisation)
    plain MIM (classwise_mim off): x̃ = x_i · (1 − M), M random patches of the whole image, R = not padding
    F, P    fused decoder features (1/4 resolution) and logits of decode(encode(x̃));  x̂ = up(g(F)), g the
            light reconstruction decoder
    L_mim = Σ_{p ∈ M∩R} ‖x̂_p − x_p‖₁ / (3 · |M∩R|)
    L_agg = mean over (input, class k) of 1 − cos(F̄_k(M), sg(F̄_k(¬M))),  F̄_k(S) = mean of F over S ∩ [K = k]
    L_sem = Σ_{p ∈ M, K_p ≠ none} CE(P_p, K_p) / |M ∩ [K ≠ none]|        (MIM in semantic space)
    L     = (L_x + w_s·Σ_i L_si / n_strong + w_fp·L_fp  +  w_mim·L_mim + w_agg·L_agg + w_sem·L_sem) / 2

Components: `mim` (the whole masked branch; off = UniMatch exactly, the other three then have no effect),
`classwise_mim`, `feature_agg`, `semantic_mim`, plus UniMatch's `feature_perturbation` and `dual_strong`.
The masked forward goes through `encode`/`decode` (the fused features are not returned by `forward`); the
trainer calls the unwrapped model, so these calls see the same parameters and gradient averaging as `forward`.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from datasets import IGNORE_INDEX
from methods.base import Batch, LossOutput, Method, MethodContext, MethodError, StepInfo, register
from methods.common import frozen_bn_statistics, patches_touching, random_patch_mask, region_patch_mask
from methods.unimatch import UniMatch, UniMatchParams

MIM_TERMS = ("loss_mim", "loss_agg", "loss_sem")
NO_CLASS = -1   # class-map value of pixels that belong to no class (unconfident, ignored, padding)
FILL = 0.0      # value of blanked and masked pixels: 0 after ImageNet normalisation = the dataset mean
IMAGE_SOURCES = ("labeled", "unlabeled", "both")


@dataclass
class S4MIMParams(UniMatchParams):
    patch_size: int = 8              # mask patch side in pixels (the embedded 72×72 crops: a 9×9 grid)
    mask_ratio: float = 0.5          # share of a class's patches (plain MIM: of all patches) that is masked
    classes_per_image: int = 1       # class-wise inputs per image (cost: one extra forward per input)
    mim_images: str = "both"         # which images are masked: labeled, unlabeled or both
    weight_mim: float = 0.25         # w_mim: pixel reconstruction (see the register)
    weight_agg: float = 0.5          # w_agg: feature aggregation
    weight_sem: float = 0.5          # w_sem: MIM in semantic space
    recon_loss: str = "l1"           # l1 | mse, on the normalised image
    recon_channels: int = 64         # width the decoder features are channel-pooled to, and its hidden width
    agg_detach_visible: bool = True  # stop-gradient on the visible side: masked features move towards visible
    mim_update_bn_stats: bool = False  # let the masked forward update BatchNorm running statistics


def check_params(params: S4MIMParams) -> None:
    if params.patch_size < 1:
        raise MethodError(f"method.patch_size must be >= 1, got {params.patch_size}")
    if not 0.0 < params.mask_ratio < 1.0:
        raise MethodError(f"method.mask_ratio must be in (0, 1), got {params.mask_ratio}")
    if params.classes_per_image < 1:
        raise MethodError(f"method.classes_per_image must be >= 1, got {params.classes_per_image}")
    if params.mim_images not in IMAGE_SOURCES:
        raise MethodError(f"method.mim_images must be one of {', '.join(IMAGE_SOURCES)}, got {params.mim_images!r}")
    if params.recon_loss not in ("l1", "mse"):
        raise MethodError(f"method.recon_loss must be l1 or mse, got {params.recon_loss!r}")
    for key in ("weight_mim", "weight_agg", "weight_sem"):
        if getattr(params, key) < 0:
            raise MethodError(f"method.{key} must be >= 0, got {getattr(params, key)}")


@dataclass
class MaskedInputs:
    images: torch.Tensor     # float [M,3,H,W], the masked (and for class-wise MIM, class-blanked) inputs
    originals: torch.Tensor  # float [M,3,H,W], the unmasked images they come from (reconstruction target)
    class_map: torch.Tensor  # long [M,H,W], the input's classes (NO_CLASS elsewhere)
    masked: torch.Tensor     # bool [M,H,W], the masked patches
    target: torch.Tensor     # bool [M,H,W], pixels to reconstruct: masked and inside the input's region


class ReconstructionDecoder(nn.Module):
    """g: fused features → pixels. The features are first averaged in channel groups to `channels` (identity
    for the 64-channel resnet_small head), so the decoder does not need the model's width when it is built."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.body = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(channels, 3, 1))

    def forward(self, features: torch.Tensor, out_size) -> torch.Tensor:
        n, c, h, w = features.shape
        pooled = F.adaptive_avg_pool1d(features.permute(0, 2, 3, 1).reshape(-1, 1, c), self.channels)
        pooled = pooled.view(n, h, w, self.channels).permute(0, 3, 1, 2)
        return F.interpolate(self.body(pooled), size=tuple(out_size), mode="bilinear", align_corners=True)


def class_members(class_map: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Bool [N,K,H,W]: pixel p is of class k (pixels of no class are of none)."""
    classes = torch.arange(num_classes, device=class_map.device).view(1, -1, 1, 1)
    return class_map.unsqueeze(1) == classes


def classwise_inputs(images: torch.Tensor, class_map: torch.Tensor, num_classes: int, classes_per_image: int,
                     patch: int, ratio: float) -> MaskedInputs:
    """One input per (image, sampled class): only that class's pixels stay, minus random patches of them.

    A class is eligible in an image when its pixels touch at least two patches (so that both a masked and a
    visible part exist); up to `classes_per_image` eligible classes are drawn uniformly per image.
    """
    n = images.shape[0]
    members = class_members(class_map, num_classes).flatten(0, 1)
    touched = patches_touching(members, patch).flatten(1).sum(1).view(n, num_classes)
    scores = torch.rand(n, num_classes).to(images.device).masked_fill(touched < 2, -1.0)
    top = scores.topk(min(classes_per_image, num_classes), dim=1)
    image_idx, slot = (top.values >= 0).nonzero(as_tuple=True)
    classes = top.indices[image_idx, slot].view(-1, 1, 1)
    region = class_map[image_idx] == classes
    masked = region_patch_mask(region, patch, ratio)
    originals = images[image_idx]
    kept = (region & ~masked).unsqueeze(1)
    return MaskedInputs(images=torch.where(kept, originals, torch.full_like(originals, FILL)),
                        originals=originals,
                        class_map=torch.where(region, classes, torch.full_like(classes, NO_CLASS)),
                        masked=masked, target=region & masked)


def plain_inputs(images: torch.Tensor, class_map: torch.Tensor, valid: torch.Tensor, patch: int,
                 ratio: float) -> MaskedInputs:
    """Basic MIM: every image, random patches of the whole image masked; all non-padding pixels are targets."""
    n, _, height, width = images.shape
    masked = random_patch_mask(n, height, width, patch, ratio, device=images.device)
    filled = torch.where(masked.unsqueeze(1), torch.full_like(images, FILL), images)
    return MaskedInputs(images=filled, originals=images, class_map=class_map, masked=masked, target=masked & valid)


def class_means(features: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted per-class mean features [M,K,D] and total weights [M,K] from weights [M,K,h,w]."""
    total = weights.sum(dim=(2, 3))
    summed = torch.einsum("mkhw,mdhw->mkd", weights, features)
    return summed / total.clamp_min(1e-6).unsqueeze(-1), total


def feature_aggregation_loss(features: torch.Tensor, class_map: torch.Tensor, masked: torch.Tensor,
                             num_classes: int, detach_visible: bool) -> torch.Tensor:
    """mean over (input, class) of 1 − cos(mean feature of the masked part, mean feature of the visible part).

    Pixel masks are area-averaged to the feature resolution, so a feature cell counts by the share of its
    pixels in each part. Pairs lacking either part are left out; no pair at all gives 0.
    """
    features = features.float()
    members = class_members(class_map, num_classes).float()
    size = features.shape[-2:]
    in_masked = F.adaptive_avg_pool2d(members * masked.unsqueeze(1), size)
    in_visible = F.adaptive_avg_pool2d(members * (~masked).unsqueeze(1), size)
    mean_masked, weight_masked = class_means(features, in_masked)
    mean_visible, weight_visible = class_means(features.detach() if detach_visible else features, in_visible)
    pairs = (weight_masked > 0) & (weight_visible > 0)
    if not pairs.any():
        return features.sum() * 0
    return (1 - F.cosine_similarity(mean_masked[pairs], mean_visible[pairs], dim=-1)).mean()


@register
class S4MIM(Method):
    name = "s4mim"
    display_name = "S4MIM"
    description = "UniMatch + class-wise masked image modeling, feature aggregation, semantic-space MIM."
    Params = S4MIMParams
    views = UniMatch.views
    components = {**UniMatch.components, "mim": True, "classwise_mim": True, "feature_agg": True,
                  "semantic_mim": True}
    component_help = {
        **UniMatch.component_help,
        "mim": "masked image modeling branch at all (off: UniMatch exactly; the next three need it)",
        "classwise_mim": "one input per (image, class) with other classes blanked (off: plain random-patch MIM)",
        "feature_agg": "1 − cos between class-mean features of the masked and the visible part of each class",
        "semantic_mim": "segmentation of the masked input on its masked pixels against the class map (CE)",
    }
    component_terms = {**UniMatch.component_terms, "mim": MIM_TERMS, "classwise_mim": MIM_TERMS,
                       "feature_agg": ("loss_agg",), "semantic_mim": ("loss_sem",)}
    # Without `mim` no MIM term, module or forward exists: UniMatch exactly (Method.same_run_as).
    component_requires = {"classwise_mim": "mim", "feature_agg": "mim", "semantic_mim": "mim"}
    base = "unimatch"   # its own components: those UniMatch lacks
    reduces_to_base = True
    from_paper_description = True

    def __init__(self, params: S4MIMParams, components, ctx: MethodContext):
        super().__init__(params, components, ctx)
        self.unimatch = self.make_base(UniMatch)
        check_params(params)
        self.decoder: ReconstructionDecoder | None = None

    def needs(self) -> frozenset[str]:
        return self.unimatch.needs()

    def build_modules(self) -> nn.ModuleDict:
        """The reconstruction decoder; none without MIM, so the optimizer then matches UniMatch's exactly."""
        if self.on["mim"] and self.decoder is None:
            self.decoder = ReconstructionDecoder(self.params.recon_channels)
        return nn.ModuleDict({} if self.decoder is None else {"mim_decoder": self.decoder})

    def class_maps(self, batch: Batch, pseudo_w) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images, class maps, non-padding masks) of the images MIM uses, labeled first."""
        images, maps, valid = [], [], []
        if self.params.mim_images in ("labeled", "both"):
            mask = batch.labeled["mask"]
            images.append(batch.labeled["image"])
            maps.append(torch.where(mask != self.ctx.ignore_index, mask, NO_CLASS))
            valid.append(mask != self.ctx.ignore_index)
        if self.params.mim_images in ("unlabeled", "both"):
            not_padding = pseudo_w.ignore != IGNORE_INDEX
            confident = (pseudo_w.conf >= self.ctx.loss.conf_thresh) & not_padding
            images.append(batch.unlabeled["weak"])
            maps.append(torch.where(confident, pseudo_w.label, NO_CLASS))
            valid.append(not_padding)
        return torch.cat(images), torch.cat(maps), torch.cat(valid)

    def masked_inputs(self, images, class_map, valid) -> MaskedInputs:
        p = self.params
        if self.on["classwise_mim"]:
            return classwise_inputs(images, class_map, self.ctx.num_classes, p.classes_per_image, p.patch_size,
                                    p.mask_ratio)
        return plain_inputs(images, class_map, valid, p.patch_size, p.mask_ratio)

    def mim_terms(self, model, inputs: MaskedInputs) -> dict[str, torch.Tensor]:
        decoder = self.decoder
        if inputs.images.shape[0] == 0:  # zero terms still reach the decoder: every process has its gradients
            zero = sum((w * 0).sum() for w in decoder.parameters())
            terms = {"loss_mim": zero}
            terms.update({"loss_agg": zero} if self.on["feature_agg"] else {})
            terms.update({"loss_sem": zero} if self.on["semantic_mim"] else {})
            return terms
        size = inputs.images.shape[-2:]
        keep_stats = contextlib.nullcontext() if self.params.mim_update_bn_stats else frozen_bn_statistics(model)
        with keep_stats:
            low, high = model.encode(inputs.images)
            logits, features = model.decode(low, high, size, return_features=True)
        target = inputs.target.unsqueeze(1)
        error = decoder(features, size).float() - inputs.originals.float()
        per_pixel = error.abs() if self.params.recon_loss == "l1" else error.square()
        terms = {"loss_mim": (per_pixel * target).sum() / (3 * target.sum()).clamp_min(1)}
        if self.on["feature_agg"]:
            terms["loss_agg"] = feature_aggregation_loss(features, inputs.class_map, inputs.masked,
                                                         self.ctx.num_classes, self.params.agg_detach_visible)
        if self.on["semantic_mim"]:
            scored = inputs.masked & (inputs.class_map >= 0)
            ce = F.cross_entropy(logits.float(), inputs.class_map.clamp_min(0), reduction="none")
            terms["loss_sem"] = (ce * scored).sum() / scored.sum().clamp_min(1)
        return terms

    def losses(self, model, batch: Batch, step: StepInfo) -> LossOutput:
        out = self.unimatch.forward_unimatch(model, batch)
        if self.on["mim"]:
            # Masks are drawn after the UniMatch forward, so its terms see the same random numbers as UniMatch.
            inputs = self.masked_inputs(*self.class_maps(batch, out.pseudo_w))
            terms = self.mim_terms(model, inputs)
            weights = {"loss_mim": self.params.weight_mim, "loss_agg": self.params.weight_agg,
                       "loss_sem": self.params.weight_sem}
            for name, term in terms.items():
                out.terms[name] = term
                out.weights[name] = weights[name]
            out.scalars["mim_inputs"] = float(inputs.images.shape[0])
        return UniMatch.combine(out)
