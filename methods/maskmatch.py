"""MaskMatch (Pan et al., arXiv 2312.08631): masked modeling and multi-scale pseudo-labels on a weak-to-strong base.

Only the abstract is public here; every choice below is our reading, listed with its reason in
`methods/interpretations/maskmatch.yaml`.

    p̄(x)      = 1/K Σ_k  R_{H,W}( softmax f_T( F_k( S_k(x) ) ) )     K members = scales × (flip?)
                 S_k: bilinear resize by scale s_k, F_k: optional horizontal flip (undone on the output),
                 R_{H,W}: bilinear resize back to the input size. With teacher=same the weak view's (s=1, no
                 flip) member IS the base's train-mode prediction (official rule) and every other member is an
                 eval-mode, no-grad forward (as the official CutMix-source labels); with teacher=ema all are the
                 EMA copy's eval-mode forwards.
    ŷ, c       = argmax p̄, max p̄   for the weak view x_w AND the CutMix source x_mix (pasting stays consistent)
    base       = the FixMatch / UniMatch terms, computed by the base with ŷ, c as pseudo-labels
    x_m        = M ⊙ x_s + (1 − M) · fill       M: 1 on visible patches (1 − mask_ratio of them), x_s = strong1
    L_mask     = Σ_p CE(f(x_m), ŷ)_p · [c_p ≥ τ_m] · [p in region] / #(region pixels)   (region: all | masked)
    L          = (L_x + Σ w_u · L_u  +  w_mask · L_mask) / 2          (the base's own combination, plus L_mask)

Components: `masked_modeling` (L_mask), `multiscale_ensemble` (K > 1); with both off, and the default
`teacher: same`, this is the base method exactly. The teacher f_T is the student itself (no grad) or an EMA copy.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from datasets import IGNORE_INDEX
from methods.base import Batch, LossOutput, Method, MethodContext, MethodError, StepInfo, register
from methods.common import (PseudoLabeler, PseudoLabels, confident_cross_entropy, predict_in_eval_mode,
                            random_patch_mask)
from methods.unimatch import UniMatch

BASE_COMPONENTS = tuple(UniMatch.components)   # UniMatch's own switches


@dataclass
class MaskMatchParams:
    base: str = "fixmatch"          # fixmatch | unimatch: the weak-to-strong framework MaskMatch sits on
    weight_fp: float = 0.5          # base=unimatch only: UniMatch's share of the feature-perturbed stream
    teacher: str = "same"           # same (the student under no-grad, as FixMatch) | ema (a mean-teacher copy)
    ema_momentum: float = 0.999     # teacher=ema: θ_T ← m θ_T + (1 − m) θ_S; warm-up min(1 − 1/(t+1), m)
    patch_size: int = 0             # masking patch side in px; 0 = 1/8 of the crop side (MIC: 64 px on 512)
    mask_ratio: float = 0.7         # share of patches hidden ("even with 30% only" visible)
    mask_fill: float = 0.0          # value of hidden pixels after normalisation (0 = the mean colour, as MIC)
    masked_view: str = "strong"     # strong (strong1 before CutMix, as MIC's colour-augmented image) | weak
    mask_loss_region: str = "all"   # all pixels of the masked image | masked: only hidden pixels
    mask_conf_thresh: float = -1.0  # τ_m; < 0 means the base's loss.conf_thresh
    weight_mask: float = 1.0        # w_mask, relative to the weak-to-strong term (MIC's weight 1)
    scales: tuple = (0.75, 1.0)     # input scales of the pseudo-label ensemble (each one more forward)
    flip: bool = False              # also average horizontally flipped inputs (doubles the members)


def predict_at_scale(predict: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, scale: float,
                     flip: bool) -> torch.Tensor:
    """Logits at the input size of `predict(F(S(images)))`: resized by `scale`, optionally flipped, then back."""
    size = images.shape[-2:]
    inputs = images.flip(-1) if flip else images
    if scale != 1.0:
        scaled = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        inputs = F.interpolate(inputs, size=scaled, mode="bilinear", align_corners=True)
    logits = predict(inputs)
    if logits.shape[-2:] != size:
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=True)
    return logits.flip(-1) if flip else logits


def fuse_members(member_logits: list[torch.Tensor], ignore: torch.Tensor) -> PseudoLabels:
    """p̄ = mean of the members' softmax; ŷ = argmax p̄, c = max p̄ (one member: exactly `pseudo_labels`)."""
    mean_probs = sum(logits.detach().float().softmax(dim=1) for logits in member_logits) / len(member_logits)
    conf, label = mean_probs.max(dim=1)
    return PseudoLabels(label=label, conf=conf, ignore=ignore)


class EnsembleLabeler(PseudoLabeler):
    """Pseudo-labels fused over members (scale, flip) for the weak view and the CutMix source.

    The teacher's forwards all happen here, before the base's: one eval-mode, no-grad forward per member with
    the weak and mix images stacked (eval-mode BatchNorm does not couple them). With `student_member`, the
    (1.0, no flip) member of the weak view is the base's own train-mode prediction, handed in later. Only the
    mix images that some CutMix box pastes from (`mix_used`) are predicted: the others' labels are never read.
    """

    def __init__(self, predict: Callable[[torch.Tensor], torch.Tensor], weak_images: torch.Tensor,
                 mix_images: torch.Tensor, scales: tuple[float, ...], flip: bool, student_member: bool,
                 mix_used: torch.Tensor | None = None):
        num_weak = weak_images.shape[0]
        self.mix_used = torch.ones(mix_images.shape[0], dtype=torch.bool) if mix_used is None else mix_used.cpu()
        mix_images = mix_images[self.mix_used.to(mix_images.device)]
        self.weak_members: list[torch.Tensor | None] = []   # None: the slot of the train-mode prediction
        self.mix_members: list[torch.Tensor] = []
        for scale in scales:
            for flipped in ((False, True) if flip else (False,)):
                student_slot = student_member and scale == 1.0 and not flipped
                inputs = torch.cat(([] if student_slot else [weak_images]) + [mix_images])
                logits = predict_at_scale(predict, inputs, scale, flipped) if len(inputs) else None
                self.weak_members.append(None if student_slot else logits[:num_weak])
                self.mix_members.append(logits[len(inputs) - len(mix_images):] if len(mix_images) else None)

    def weak(self, model, images, logits, ignore) -> PseudoLabels:
        return fuse_members([logits if member is None else member for member in self.weak_members], ignore)

    def mix(self, model, images, ignore) -> PseudoLabels:
        label, conf = torch.zeros_like(ignore), torch.zeros(ignore.shape, device=ignore.device)
        used = self.mix_used.to(ignore.device)
        if used.any():   # unused images keep label 0, confidence 0
            fused = fuse_members(self.mix_members, ignore[used])
            label, conf = label.index_put((used,), fused.label), conf.index_put((used,), fused.conf)
        return PseudoLabels(label=label, conf=conf, ignore=ignore)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module under a DistributedDataParallel wrapper (the EMA copy must not copy the wrapper)."""
    return getattr(model, "module", model)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """θ_T ← m θ_T + (1 − m) θ_S for parameters and float buffers (BN statistics); integer buffers copied."""
    student_state = student.state_dict()
    for name, value in teacher.state_dict().items():
        if value.dtype.is_floating_point:
            value.mul_(momentum).add_(student_state[name].detach(), alpha=1.0 - momentum)
        else:
            value.copy_(student_state[name])


@register
class MaskMatch(Method):
    name = "maskmatch"
    display_name = "MaskMatch"
    description = ("Masked-modeling consistency with multi-scale ensembled pseudo-labels on FixMatch/UniMatch "
                   "(Pan et al. 2023).")
    Params = MaskMatchParams
    views = UniMatch.views
    # UniMatch's two switches are off with the default base (FixMatch) and on with method.base=unimatch.
    components = {"masked_modeling": True, "multiscale_ensemble": True,
                  "feature_perturbation": False, "dual_strong": False}
    component_help = {
        "masked_modeling": "student segments the image with mask_ratio of its patches hidden; CE to the teacher's "
                           "pseudo-labels of the complete image (L_mask)",
        "multiscale_ensemble": "pseudo-labels = mean softmax over input scales (and flips), for both the "
                               "masked and the weak-to-strong branch (CutMix source too)",
        "feature_perturbation": "UniMatch's: on by default with method.base=unimatch, unavailable with fixmatch",
        "dual_strong": "UniMatch's: on by default with method.base=unimatch, unavailable with fixmatch",
    }
    # The ensemble labels feed both the weak-to-strong terms and the masked branch.
    component_terms = {**UniMatch.component_terms, "masked_modeling": ("loss_mask",),
                       "multiscale_ensemble": ("loss_s", "loss_s1", "loss_s2", "loss_fp", "loss_mask")}
    base = "fixmatch"                # the default of method.base (`resolved_base`)
    own_components = ("masked_modeling", "multiscale_ensemble")
    reduces_to_base = True           # with both components off and teacher `same` (differs_from_base)
    from_paper_description = True

    def __init__(self, params: MaskMatchParams, components, ctx: MethodContext):
        super().__init__(params, components, ctx)
        self._check(params, components or {})
        # UniMatch with both of its switches off (the fixmatch base) is FixMatch term by term.
        self.framework = self.make_base(UniMatch)
        self.scales = tuple(float(s) for s in params.scales)
        self.mask_thresh = params.mask_conf_thresh if params.mask_conf_thresh >= 0 else ctx.loss.conf_thresh
        self.teacher: nn.Module | None = None          # the EMA copy, made from the student at the first step
        self._pending_teacher_state: dict[str, Any] | None = None

    def resolved_base(self) -> str:
        return self.params.base

    @staticmethod
    def _check(p: MaskMatchParams, components: dict) -> None:
        choices = {"base": ("fixmatch", "unimatch"), "teacher": ("same", "ema"), "masked_view": ("strong", "weak"),
                   "mask_loss_region": ("all", "masked")}
        for key, allowed in choices.items():
            if getattr(p, key) not in allowed:
                raise MethodError(f"method.{key} must be one of {', '.join(allowed)}, got {getattr(p, key)!r}")
        if p.base == "fixmatch":
            switched_on = [name for name in BASE_COMPONENTS if components.get(name) is True]
            if switched_on:
                raise MethodError(f"component(s) {', '.join(switched_on)} of maskmatch need method.base=unimatch")
        if not 0.0 <= p.mask_ratio < 1.0:
            raise MethodError(f"method.mask_ratio must be in [0, 1), got {p.mask_ratio}")
        if p.patch_size < 0:
            raise MethodError(f"method.patch_size must be pixels >= 0 (0: 1/8 of the crop), got {p.patch_size}")
        if not 0.0 <= p.ema_momentum <= 1.0:
            raise MethodError(f"method.ema_momentum must be in [0, 1], got {p.ema_momentum}")
        if not p.scales or not all(isinstance(s, (int, float)) and not isinstance(s, bool) and s > 0
                                   for s in p.scales):
            raise MethodError(f"method.scales must be a non-empty list of positive numbers, got {list(p.scales)}")

    def needs(self) -> frozenset[str]:
        return self.framework.needs()

    @classmethod
    def default_components(cls, params: MaskMatchParams | None = None) -> dict[str, bool]:
        on_base = params is not None and params.base == "unimatch"
        return {**cls.components, **{name: on_base for name in BASE_COMPONENTS}}

    def differs_from_base(self) -> bool:
        """An EMA teacher's labels are not the base's own, even with both components off."""
        return self.params.teacher != "same"

    # --- pseudo-labels ------------------------------------------------------------------------------------
    def labeler(self, model: nn.Module, batch: Batch) -> PseudoLabeler:
        """The base's own rule when nothing changes it (so both switches off is the base exactly)."""
        ensemble, same = self.on["multiscale_ensemble"], self.params.teacher == "same"
        if not ensemble and same:
            return PseudoLabeler()
        teacher = model if same else self.ema_teacher(model)
        boxes = [batch.unlabeled[box] for _, box in self.framework.strong_streams()]
        mix_used = torch.stack([(box == 1).flatten(1).any(dim=1) for box in boxes]).any(dim=0)
        return EnsembleLabeler(lambda images: predict_in_eval_mode(teacher, images), batch.unlabeled["weak"],
                               batch.mix["weak"], self.scales if ensemble else (1.0,), self.params.flip and ensemble,
                               student_member=same, mix_used=mix_used)

    def ema_teacher(self, model: nn.Module) -> nn.Module:
        if self.teacher is None:   # a copy of the student, on its device; a resumed run loads its saved weights
            self.teacher = copy.deepcopy(unwrap(model)).requires_grad_(False).eval()
            if self._pending_teacher_state is not None:
                self.teacher.load_state_dict(self._pending_teacher_state)
                self._pending_teacher_state = None
        return self.teacher

    # --- masked modeling ----------------------------------------------------------------------------------
    def patch_pixels(self, height: int, width: int) -> int:
        return self.params.patch_size or max(1, round(min(height, width) / 8))

    def mask_images(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked images, hidden [N,H,W] bool): patch-aligned, round(mask_ratio · #patches) hidden per image."""
        n, _, h, w = images.shape
        hidden = random_patch_mask(n, h, w, self.patch_pixels(h, w), self.params.mask_ratio, device=images.device)
        return images.masked_fill(hidden.unsqueeze(1), self.params.mask_fill), hidden

    def masked_loss(self, model: nn.Module, unlabeled: dict, pseudo: PseudoLabels) -> torch.Tensor:
        """L_mask: the student sees only the visible patches; the target is the complete image's pseudo-label."""
        view = unlabeled["strong1"] if self.params.masked_view == "strong" else unlabeled["weak"]
        masked, hidden = self.mask_images(view)
        if self.params.mask_loss_region == "masked":   # visible pixels leave the loss and its normaliser
            pseudo = PseudoLabels(pseudo.label, pseudo.conf,
                                  torch.where(hidden, pseudo.ignore, torch.full_like(pseudo.ignore, IGNORE_INDEX)))
        # A forward of its own: batching it with the strong views would change their BatchNorm statistics,
        # and so the base terms.
        return confident_cross_entropy(model(masked), pseudo, self.mask_thresh, self.ctx.loss_shards)

    # --- per step -----------------------------------------------------------------------------------------
    def losses(self, model, batch: Batch, step: StepInfo) -> LossOutput:
        out = self.framework.forward_unimatch(model, batch, self.labeler(model, batch))
        if self.on["masked_modeling"]:
            out.terms["loss_mask"] = self.masked_loss(model, batch.unlabeled, out.pseudo_w)
            out.weights["loss_mask"] = self.params.weight_mask
        return UniMatch.combine(out)

    def after_step(self, model: nn.Module, step: StepInfo) -> None:
        if self.params.teacher == "ema":
            # Mean-teacher warm-up (as MIC): the teacher follows the student closely during the first steps.
            momentum = min(1.0 - 1.0 / (step.step + 1), self.params.ema_momentum)
            ema_update(self.ema_teacher(model), unwrap(model), momentum)

    def state_dict(self) -> dict[str, Any]:
        if self.teacher is not None:
            return {"ema_teacher": self.teacher.state_dict()}
        return {"ema_teacher": self._pending_teacher_state} if self._pending_teacher_state is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = state.get("ema_teacher")
        if saved is None:
            return
        if self.teacher is not None:
            self.teacher.load_state_dict(saved)
        else:   # the student is known only at the next step: load it then, onto the student's device
            self._pending_teacher_state = saved
