"""FixMatch with an EMA teacher: a complete method plugin, written outside the suite (docs/adding-a-method.md).

    python -m benchmark.train --plugin examples/ema_fixmatch.py --method ema_fixmatch --profile smoke
    bash run_all.sh --plugin examples/ema_fixmatch.py --methods supervised,fixmatch,unimatch,ema_fixmatch
"""
import copy
from dataclasses import dataclass

import torch

from methods.base import LossOutput, Method, register
from methods.common import confident_cross_entropy, confident_ratio, paste_images, pseudo_labels
from methods.fixmatch import FixMatch


@dataclass
class EMAFixMatchParams:
    weight_u: float = 1.0     # L = (L_x + weight_u · L_s) / 2, as in FixMatch
    ema_decay: float = 0.99   # teacher ← decay · teacher + (1 − decay) · student, after every step


@register
class EMAFixMatch(Method):
    name = "ema_fixmatch"
    description = "FixMatch whose pseudo-labels come from an EMA teacher (example plugin)."
    Params = EMAFixMatchParams
    views = FixMatch.views
    components = {"ema_teacher": True}
    component_help = {"ema_teacher": "pseudo-labels from an EMA of the student (off: from the student, FixMatch)"}
    base = "fixmatch"

    def __init__(self, params, components, ctx):
        super().__init__(params, components, ctx)
        self.fixmatch = self.make_base(FixMatch)   # FixMatch with this method's weight_u
        self.teacher, self._saved_teacher = None, None

    def _teacher_of(self, model):
        if self.teacher is None:   # created from the student's first weights (or the checkpoint's teacher)
            self.teacher = copy.deepcopy(getattr(model, "module", model)).eval().requires_grad_(False)
            if self._saved_teacher is not None:
                self.teacher.load_state_dict(self._saved_teacher)
        return self.teacher

    def losses(self, model, batch, step):
        if not self.on["ema_teacher"]:
            return self.fixmatch.losses(model, batch, step)
        x, u, mix, thresh = batch.labeled, batch.unlabeled, batch.mix, self.ctx.loss.conf_thresh
        with torch.no_grad():
            teacher_w, teacher_mix = self._teacher_of(model)(torch.cat((u["weak"], mix["weak"]))).chunk(2)
        pseudo_w = pseudo_labels(teacher_w, u["ignore"])
        target = pseudo_w.paste(pseudo_labels(teacher_mix, mix["ignore"]), u["box1"])
        loss_x = self.fixmatch.labeled_loss(model(x["image"]), x["mask"])
        loss_s = confident_cross_entropy(model(paste_images(u["strong1"], mix["strong1"], u["box1"])), target, thresh)
        return LossOutput(total=(loss_x + self.params.weight_u * loss_s) / 2,
                          terms={"loss_x": loss_x, "loss_s": loss_s},
                          scalars={"confident_ratio": confident_ratio(pseudo_w, thresh)})

    @torch.no_grad()
    def after_step(self, model, step):
        if self.teacher is None:
            return
        student = getattr(model, "module", model).state_dict()
        for key, value in self.teacher.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(self.params.ema_decay).add_(student[key], alpha=1 - self.params.ema_decay)
            else:
                value.copy_(student[key])   # BatchNorm's step counter

    def state_dict(self):
        return {"teacher": self.teacher.state_dict()} if self.teacher is not None else {}

    def load_state_dict(self, state):
        self._saved_teacher = state.get("teacher")
