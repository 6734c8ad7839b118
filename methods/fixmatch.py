"""FixMatch for segmentation, as in the official UniMatch code base.

    ŷ_w, c_w   = argmax / max softmax of f(x_w)                     (train mode, detached)
    ŷ_mix      = pseudo-labels of the CutMix source, eval mode, no grad
    x_s        = CutMix(strong(x_w), strong(x_mix), box);  ŷ_s = CutMix(ŷ_w, ŷ_mix, box)
    L_s        = Σ_p CE(f(x_s), ŷ_s) · [c ≥ τ] · [p not padding] / #non-padding
    L          = (L_x + L_s) / 2
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Batch, LossOutput, Method, MethodContext, StepInfo, register
from methods.common import (LabeledLoss, confident_cross_entropy, confident_ratio, paste_images,
                            predict_in_eval_mode, pseudo_labels)


@dataclass
class FixMatchParams:
    weight_u: float = 1.0   # L = (L_x + weight_u · L_s) / 2; the official code uses 1


@register
class FixMatch(Method):
    name = "fixmatch"
    display_name = "FixMatch"
    description = "Weak-to-strong consistency with CutMix (Sohn et al. 2020; UniMatch's implementation)."
    views = frozenset({"strong1", "box1", "mix"})
    Params = FixMatchParams

    def __init__(self, params: FixMatchParams, components, ctx: MethodContext):
        super().__init__(params, components, ctx)
        self.labeled_loss = LabeledLoss(ctx.loss, ctx.ignore_index, ctx.loss_shards)

    def losses(self, model, batch: Batch, step: StepInfo) -> LossOutput:
        x, u, mix = batch.labeled, batch.unlabeled, batch.mix
        thresh = self.ctx.loss.conf_thresh

        pseudo_mix = pseudo_labels(predict_in_eval_mode(model, mix["weak"]), mix["ignore"])
        strong = paste_images(u["strong1"], mix["strong1"], u["box1"])

        num_x = x["image"].shape[0]
        pred_x, pred_w = model(torch.cat((x["image"], u["weak"]))).split([num_x, u["weak"].shape[0]])
        pred_s = model(strong)

        pseudo_w = pseudo_labels(pred_w, u["ignore"])
        loss_x = self.labeled_loss(pred_x, x["mask"])
        loss_s = confident_cross_entropy(pred_s, pseudo_w.paste(pseudo_mix, u["box1"]), thresh,
                                         self.ctx.loss_shards)
        total = (loss_x + self.params.weight_u * loss_s) / 2
        return LossOutput(total=total, terms={"loss_x": loss_x, "loss_s": loss_s},
                          scalars={"confident_ratio": confident_ratio(pseudo_w, thresh)})
