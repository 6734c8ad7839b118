"""The suite's training step against an independent reference of the official one (tests/methods/reference_unimatch.py),
compared with torch.equal: every loss term, every parameter gradient, every BatchNorm buffer and every
parameter after each of 3 SGD steps with the poly lr, for supervised (CE and OHEM), FixMatch and UniMatch
(all four terms, the fp stream's dropout, CutMix boxes over padding in both the unlabeled and the mix batch).
"""
from __future__ import annotations

import copy
import itertools

import pytest
import torch

from benchmark.train.config import resolve
from benchmark.train.trainer import Trainer
from methods.common import ohem_cross_entropy
from tests.methods import reference_unimatch as ref

SIZE, N, STEPS, LR, LR_MULTI = 32, 2, 3, 0.05, 10.0
PAD = 6   # rows (unlabeled) / columns (mix) of crop padding


class FixedStreams:
    """Stands in for benchmark.train.data_plan.Streams: hands the trainer the given batches, in order."""

    def __init__(self, batches):
        self.batches = iter(batches)

    def next(self):
        return next(self.batches)


def make_batch(step: int, num_classes: int, semi: bool) -> dict:
    g = torch.Generator().manual_seed(1000 + step)
    mask = torch.randint(0, num_classes, (N, SIZE, SIZE), generator=g)
    mask[:, -PAD:, :] = 255                        # labeled crop padding
    batch = {"labeled": {"image": torch.randn(N, 3, SIZE, SIZE, generator=g), "mask": mask}}
    if not semi:
        return batch

    def unlabeled(pad_rows: bool) -> dict:
        ignore = torch.zeros(N, SIZE, SIZE, dtype=torch.long)
        if pad_rows:
            ignore[:, -PAD:, :] = 255
        else:
            ignore[:, :, -PAD:] = 255
        box1 = torch.zeros(N, SIZE, SIZE, dtype=torch.long)
        box1[0, 20:, 18:] = 1                      # the bottom-right corner: padding of both batches
        box1[1, 4:14, 22:30] = 1                   # the mix batch's padding only
        box2 = torch.zeros(N, SIZE, SIZE, dtype=torch.long)
        box2[0, 24:31, 2:12] = 1                   # the unlabeled batch's padding only
        box2[1, 10:30, 10:30] = 1                  # both
        return {"weak": torch.randn(N, 3, SIZE, SIZE, generator=g) * 3,
                "strong1": torch.randn(N, 3, SIZE, SIZE, generator=g),
                "strong2": torch.randn(N, 3, SIZE, SIZE, generator=g),
                "ignore": ignore, "box1": box1, "box2": box2}

    batch["unlabeled"], batch["mix"] = unlabeled(True), unlabeled(False)
    return batch


def test_boxes_cover_padding_of_both_batches():
    """What the comparison relies on: pasted regions carry the mix batch's padding, kept ones the unlabeled
    batch's, so the normaliser differs from both batches' own."""
    b = make_batch(0, 3, semi=True)
    u_pad, m_pad = b["unlabeled"]["ignore"] == 255, b["mix"]["ignore"] == 255
    for box in ("box1", "box2"):
        inside = b["unlabeled"][box] == 1
        assert (inside & u_pad).any() and (inside & m_pad).any() and (~inside & u_pad).any()


CASES = {
    "supervised-ce": ("supervised", {}),
    # thresh below the typical true-class probability and a floor above it: the min_kept-th probability rules
    "supervised-ohem-floor": ("supervised", {"criterion": "ohem", "ohem_thresh": 0.05, "ohem_min_kept": 900}),
    "supervised-ohem-thresh": ("supervised", {"criterion": "ohem", "ohem_thresh": 0.1, "ohem_min_kept": 50}),
    "fixmatch": ("fixmatch", {"conf_thresh": 0.4}),
    "unimatch": ("unimatch", {"conf_thresh": 0.35}),
    # Cityscapes: OHEM on the labeled term, every unlabeled pixel confident
    "unimatch-ohem": ("unimatch", {"criterion": "ohem", "ohem_thresh": 0.1, "ohem_min_kept": 900,
                                   "conf_thresh": 0.0}),
}


def settings_for(loss: dict) -> dict:
    return {"criterion": "ce", "conf_thresh": 0.95, "ohem_thresh": 0.7, "ohem_min_kept": 200000, **loss}


def suite_trainer(tiny_data, tmp_path, method, loss):
    overrides = [f"data.root={tiny_data}", f"output.results_dir={tmp_path}",
                 f"train.iters={STEPS}", f"train.lr={LR}", f"train.lr_multi={LR_MULTI}", "train.momentum=0.9",
                 "train.weight_decay=0.0001", "train.poly_power=0.9", "model.backbone=resnet_small",
                 "model.weights=none", "model.small_width=8", "train.channels_last=false",
                 "loss.ohem_min_kept_world_size=0"]
    overrides += [f"loss.{k}={v}" for k, v in loss.items()]
    trainer = Trainer(resolve(profile="smoke", method=method, split="1_8", overrides=overrides), progress=False)
    trainer.setup()
    return trainer


@pytest.mark.parametrize("case", list(CASES))
def test_three_steps_match_the_reference_bit_for_bit(tiny_data, tmp_path, case):
    method, loss = CASES[case]
    trainer = suite_trainer(tiny_data, tmp_path, method, loss)
    num_classes = trainer.plan.spec.num_classes
    model = copy.deepcopy(trainer.model)
    optimizer = ref.optimizer_for(model, LR, LR_MULTI)
    settings = settings_for(loss)

    seen = {}
    losses = trainer.method.losses

    def spy(*args, **kwargs):
        seen["out"] = losses(*args, **kwargs)
        return seen["out"]

    trainer.method.losses = spy
    batches = [make_batch(step, num_classes, semi=method != "supervised") for step in range(STEPS)]
    streams = FixedStreams(copy.deepcopy(batches))
    lr = LR
    for step, batch in enumerate(batches):
        torch.manual_seed(step)            # the fp stream's Dropout2d masks: the same draws on both sides
        record = trainer.train_step(streams, step, STEPS)
        torch.manual_seed(step)
        total, terms, lr = ref.train_step(model, optimizer, batch, settings, method, step, STEPS, LR, LR_MULTI)
        out = seen["out"]
        where = f"{case}, step {step}"
        assert set(out.terms) == set(terms), where
        for name in terms:
            assert torch.equal(out.terms[name].detach(), terms[name].detach()), (where, name)
        assert torch.equal(out.total.detach(), total.detach()), where
        assert record["lr"] == lr and trainer.optimizer.param_groups[1]["lr"] == lr * LR_MULTI, where
        if "confident_ratio" in record and loss.get("conf_thresh", 0.95) > 0:
            assert 0 < record["confident_ratio"] < 1, (where, "threshold should split the pixels")
        suite_params = dict(trainer.model.named_parameters())
        for name, p in model.named_parameters():
            assert torch.equal(suite_params[name].grad, p.grad), (where, "grad", name)
        suite_state = trainer.model.state_dict()
        for name, value in model.state_dict().items():     # parameters after the step and every BN buffer
            assert torch.equal(suite_state[name], value), (where, name)
    assert step == STEPS - 1 and lr == pytest.approx(LR * (1 - 2 / 3) ** 0.9)


def test_ohem_matches_the_reference_criterion_bit_for_bit():
    """ohem_cross_entropy against the reference ProbOhemCrossEntropy2d on batches with tied probabilities,
    ignored pixels and every min_kept edge (0, 1, #valid − 1, #valid, #valid + 1)."""
    g = torch.Generator().manual_seed(0)
    cases = 0
    for trial in range(40):
        c = 2 + trial % 4
        logits = (torch.randint(-3, 4, (2, c, 5, 6), generator=g).float() / 2).requires_grad_()  # ties
        target = torch.randint(0, c, (2, 5, 6), generator=g)
        target[torch.rand(2, 5, 6, generator=g) < 0.2] = 255
        num_valid = int((target != 255).sum())
        for thresh, min_kept in itertools.product((0.0, 0.3, 0.7, 1.0),
                                                  (0, 1, num_valid // 2, num_valid - 1, num_valid, num_valid + 1)):
            expected = ref.ProbOhemCrossEntropy2d(255, thresh, min_kept)(logits, target.clone())
            got = ohem_cross_entropy(logits, target, 255, thresh, min_kept)
            assert torch.equal(got, expected), (trial, thresh, min_kept)
            g_exp, = torch.autograd.grad(expected, logits)
            g_got, = torch.autograd.grad(got, logits)
            assert torch.equal(g_got, g_exp), (trial, thresh, min_kept)
            cases += 1
    assert cases == 40 * 24
