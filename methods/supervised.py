"""Supervised-only baseline: L = CE(f(x), y) on the labeled batch."""
from __future__ import annotations

from dataclasses import dataclass

from methods.base import Batch, LossOutput, Method, MethodContext, StepInfo, register
from methods.common import LabeledLoss


@dataclass
class SupervisedParams:
    # The official UniMatch README trains the supervised baseline with a doubled labeled batch.
    labeled_batch_factor: int = 1


@register
class Supervised(Method):
    name = "supervised"
    display_name = "Supervised"
    significance_baseline = True
    description = "Labeled data only (the lower bound every method must beat)."
    views = frozenset()
    Params = SupervisedParams

    def __init__(self, params: SupervisedParams, components, ctx: MethodContext):
        super().__init__(params, components, ctx)
        self.labeled_loss = LabeledLoss(ctx.loss, ctx.ignore_index, ctx.loss_shards)

    def labeled_batch_size(self, batch_size: int) -> int:
        return batch_size * self.params.labeled_batch_factor

    def losses(self, model, batch: Batch, step: StepInfo) -> LossOutput:
        loss_x = self.labeled_loss(model(batch.labeled["image"]), batch.labeled["mask"])
        return LossOutput(total=loss_x, terms={"loss_x": loss_x})
