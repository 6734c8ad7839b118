"""UniMatch (Yang et al., CVPR 2023), term by term as its official code.

    ŷ_w, c_w  = pseudo-labels of f(x_w) (train mode, detached);  ŷ_mix from an eval-mode forward of x_mix
    x_si      = CutMix(strong_i(x_w), strong_i(x_mix), box_i),  ŷ_si = CutMix(ŷ_w, ŷ_mix, box_i),  i = 1, 2
    p_fp      = decoder(Dropout2d(layer1), Dropout2d(layer4)) of x_w      (feature perturbation)
    L         = (L_x + w_s · Σ_i L_si / n_strong + w_fp · L_fp) / 2,   official w_s = w_fp = 0.5

Components: `feature_perturbation` (the fp stream) and `dual_strong` (two strong views instead of one).
With a component off its weight goes to the remaining unlabeled terms, so both off is FixMatch exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from methods.base import Batch, LossOutput, Method, MethodContext, MethodError, StepInfo, register
from methods.common import (LabeledLoss, PseudoLabeler, PseudoLabels, confident_cross_entropy, confident_ratio,
                            paste_images)


@dataclass
class UniMatchParams:
    weight_fp: float = 0.5   # share of the unlabeled loss on the feature-perturbed stream


@dataclass
class UniMatchForward:
    """What one UniMatch forward produced; extensions (S4MIM) add their terms to it."""
    terms: dict[str, torch.Tensor]
    weights: dict[str, float]
    pseudo_w: PseudoLabels
    scalars: dict[str, float]


@register
class UniMatch(Method):
    name = "unimatch"
    display_name = "UniMatch"
    significance_baseline = True
    # One strong stream (loss_s) instead of two; the feature-perturbed stream.
    component_terms = {"dual_strong": ("loss_s1", "loss_s2", "loss_s"), "feature_perturbation": ("loss_fp",)}
    description = "Unified image- and feature-level perturbations with dual strong views (Yang et al. 2023)."
    views = frozenset({"strong1", "strong2", "box1", "box2", "mix"})
    components = {"feature_perturbation": True, "dual_strong": True}
    component_help = {
        "feature_perturbation": "Dropout2d(0.5) on layer1/layer4 features of the weak view, supervised by ŷ_w",
        "dual_strong": "two independently augmented strong views (each with its own CutMix box)",
    }
    Params = UniMatchParams

    def __init__(self, params: UniMatchParams, components, ctx: MethodContext):
        super().__init__(params, components, ctx)
        if not 0.0 <= params.weight_fp <= 1.0:
            raise MethodError(f"method.weight_fp must be in [0, 1], got {params.weight_fp}")
        self.labeled_loss = LabeledLoss(ctx.loss, ctx.ignore_index, ctx.loss_shards)

    def needs(self) -> frozenset[str]:
        return self.views if self.on["dual_strong"] else self.views - {"strong2", "box2"}

    def strong_streams(self) -> list[tuple[str, str]]:
        return [("strong1", "box1"), ("strong2", "box2")] if self.on["dual_strong"] else [("strong1", "box1")]

    def forward_unimatch(self, model, batch: Batch, labeler: PseudoLabeler | None = None) -> UniMatchForward:
        """The UniMatch terms; `labeler` says where pseudo-labels come from (default: the official rule)."""
        x, u, mix = batch.labeled, batch.unlabeled, batch.mix
        thresh = self.ctx.loss.conf_thresh
        streams = self.strong_streams()
        use_fp = self.on["feature_perturbation"]
        shards = self.ctx.loss_shards

        labeler = labeler or PseudoLabeler()
        pseudo_mix = labeler.mix(model, mix["weak"], mix["ignore"])
        strong = [paste_images(u[view], mix[view], u[box]) for view, box in streams]

        num_x, num_u = x["image"].shape[0], u["weak"].shape[0]
        if use_fp:
            preds, preds_fp = model(torch.cat((x["image"], u["weak"])), need_fp=True)
            pred_w_fp = preds_fp[num_x:]
        else:
            preds = model(torch.cat((x["image"], u["weak"])))
        pred_x, pred_w = preds.split([num_x, num_u])
        pred_strong = model(torch.cat(strong)).chunk(len(streams))

        pseudo_w = labeler.weak(model, u["weak"], pred_w, u["ignore"])
        terms = {"loss_x": self.labeled_loss(pred_x, x["mask"])}
        weights = {"loss_x": 1.0}
        strong_share = (1.0 - self.params.weight_fp) if use_fp else 1.0
        for i, ((_, box), pred) in enumerate(zip(streams, pred_strong), start=1):
            name = f"loss_s{i}" if len(streams) > 1 else "loss_s"
            terms[name] = confident_cross_entropy(pred, pseudo_w.paste(pseudo_mix, u[box]), thresh, shards)
            weights[name] = strong_share / len(streams)
        if use_fp:
            terms["loss_fp"] = confident_cross_entropy(pred_w_fp, pseudo_w, thresh, shards)
            weights["loss_fp"] = self.params.weight_fp
        return UniMatchForward(terms, weights, pseudo_w, {"confident_ratio": confident_ratio(pseudo_w, thresh)})

    @staticmethod
    def combine(out: UniMatchForward) -> LossOutput:
        total = sum(out.weights[name] * term for name, term in out.terms.items()) / 2
        return LossOutput(total=total, terms=out.terms, scalars=out.scalars)

    def losses(self, model, batch: Batch, step: StepInfo) -> LossOutput:
        return self.combine(self.forward_unimatch(model, batch))
