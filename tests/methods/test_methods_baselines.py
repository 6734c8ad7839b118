"""Supervised, FixMatch and UniMatch against the official code's equations, term by term."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F

from methods.base import MethodError
from methods.common import (PseudoLabels, confident_cross_entropy, confident_ratio, ohem_cross_entropy,
                            paste_images, predict_in_eval_mode)
from methods.registry import get
from tests.conftest import STEP, build, make_batch, run


def test_confident_ce_divides_by_non_padding_pixels_not_confident_ones():
    logits = torch.tensor([[2.0, 0.0, 0.0, 1.0], [0.0, 1.0, 3.0, 1.0]]).view(1, 2, 1, 4)
    pseudo = PseudoLabels(label=torch.tensor([[[0, 1, 1, 0]]]), conf=torch.tensor([[[0.99, 0.5, 0.97, 0.99]]]),
                          ignore=torch.tensor([[[0, 0, 0, 255]]]))
    ce = [math.log(1 + math.exp(-2.0)), math.log(1 + math.exp(-1.0)), math.log(1 + math.exp(-3.0))]
    # pixel 1 is not confident, pixel 3 is padding: (ce0 + ce2) / 3 non-padding pixels
    expected = (ce[0] + ce[2]) / 3
    assert confident_cross_entropy(logits, pseudo, thresh=0.95).item() == pytest.approx(expected, rel=1e-6)
    assert confident_ratio(pseudo, 0.95) == pytest.approx(2 / 3)


def test_ohem_keeps_hard_pixels_and_at_least_min_kept():
    logits = torch.tensor([[4.0, 0.0, -4.0, 0.0], [0.0, 0.0, 0.0, 0.0]]).view(1, 2, 1, 4)
    target = torch.tensor([[[0, 0, 0, 255]]])
    p_true = torch.tensor([4.0, 0.0, -4.0]).sigmoid()          # true-class probabilities of the 3 valid pixels
    ce = -p_true.log()
    # thresh 0.7, min_kept 1: only pixels with p_true <= 0.7 are kept (pixels 1 and 2)
    assert ohem_cross_entropy(logits, target, 255, 0.7, 1).item() == pytest.approx(ce[1:].mean().item(), rel=1e-5)
    # min_kept 3 raises the threshold to the 3rd smallest probability: all valid pixels kept
    assert ohem_cross_entropy(logits, target, 255, 0.7, 3).item() == pytest.approx(ce.mean().item(), rel=1e-5)
    # min_kept 0: the official ProbOhemCrossEntropy2d applies no threshold at all, plain CE over valid pixels
    assert ohem_cross_entropy(logits, target, 255, 0.7, 0).item() == pytest.approx(ce.mean().item(), rel=1e-5)
    # more min_kept than valid pixels: no threshold either
    assert ohem_cross_entropy(logits, target, 255, 0.7, 4).item() == pytest.approx(ce.mean().item(), rel=1e-5)


def test_cutmix_pasting_moves_exactly_the_box():
    box = torch.zeros(2, 5, 5, dtype=torch.long)
    box[0, 1:3, 2:5] = 1
    target, source = torch.zeros(2, 3, 5, 5), torch.ones(2, 3, 5, 5)
    mixed = paste_images(target, source, box)
    assert torch.equal(mixed, box.unsqueeze(1).expand(-1, 3, -1, -1).float())
    a = PseudoLabels(torch.zeros(2, 5, 5, dtype=torch.long), torch.zeros(2, 5, 5), torch.zeros(2, 5, 5, dtype=torch.long))
    b = PseudoLabels(torch.full((2, 5, 5), 2), torch.ones(2, 5, 5), torch.full((2, 5, 5), 255))
    pasted = a.paste(b, box)
    for field, outside, inside in (("label", 0, 2), ("conf", 0, 1), ("ignore", 0, 255)):
        t = getattr(pasted, field)
        assert torch.all(t[box == 1] == inside) and torch.all(t[box == 0] == outside), field


def test_mix_source_forward_is_eval_mode_without_grad(pixel_model, batch):
    pixel_model.train()
    logits = predict_in_eval_mode(pixel_model, batch.mix["weak"])
    assert pixel_model.training and not logits.requires_grad
    assert pixel_model.calls[-1]["training"] is False and pixel_model.calls[-1]["grad"] is False
    pixel_model.calls.clear()
    build("fixmatch").losses(pixel_model, batch, STEP)
    first = pixel_model.calls[0]
    assert (first["training"], first["grad"], first["n"]) == (False, False, 2)
    assert all(c["training"] and c["grad"] for c in pixel_model.calls[1:])


def test_fixmatch_equation_by_hand(pixel_model, batch):
    out = build("fixmatch", thresh=0.0).losses(pixel_model, batch, STEP)
    with torch.no_grad():
        x, u, mix = batch.labeled, batch.unlabeled, batch.mix
        mix_probs = pixel_model.eval()(mix["weak"]).softmax(1)
        pixel_model.train()
        w_probs = pixel_model(u["weak"]).softmax(1)
        inside = u["box1"] == 1
        label = torch.where(inside, mix_probs.argmax(1), w_probs.argmax(1))
        ignore = torch.where(inside, mix["ignore"], u["ignore"])
        strong = torch.where(inside.unsqueeze(1), mix["strong1"], u["strong1"])
        ce = F.cross_entropy(pixel_model(strong), label, reduction="none")
        loss_s = (ce * (ignore != 255)).sum() / (ignore != 255).sum()
        loss_x = F.cross_entropy(pixel_model(x["image"]), x["mask"], ignore_index=255)
    assert out.terms["loss_s"].item() == pytest.approx(loss_s.item(), rel=1e-5)
    assert out.terms["loss_x"].item() == pytest.approx(loss_x.item(), rel=1e-5)
    assert out.total.item() == pytest.approx((loss_x + loss_s).item() / 2, rel=1e-5)


def test_unimatch_official_weights(pixel_model, batch):
    out = build("unimatch").losses(pixel_model, batch, STEP)
    t = {k: v.item() for k, v in out.terms.items()}
    assert set(t) == {"loss_x", "loss_s1", "loss_s2", "loss_fp"}
    expected = (t["loss_x"] + 0.25 * t["loss_s1"] + 0.25 * t["loss_s2"] + 0.5 * t["loss_fp"]) / 2
    assert out.total.item() == pytest.approx(expected, rel=1e-6)


def test_unimatch_switches_reweight_and_rename_their_terms(pixel_model, batch):
    """What each switch does to the terms it owns (that it leaves the others alone: tests/methods/test_switches.py)."""
    full = run(build("unimatch"), pixel_model, batch)
    no_fp = run(build("unimatch", {"feature_perturbation": False}), pixel_model, batch)
    single = run(build("unimatch", {"dual_strong": False}), pixel_model, batch)
    assert set(no_fp.terms) == {"loss_x", "loss_s1", "loss_s2"}
    t = no_fp.terms
    assert no_fp.total.item() == pytest.approx(((t["loss_x"] + 0.5 * t["loss_s1"] + 0.5 * t["loss_s2"]) / 2).item())
    assert set(single.terms) == {"loss_x", "loss_s", "loss_fp"}
    assert torch.equal(single.terms["loss_s"], full.terms["loss_s1"])
    assert build("unimatch", {"dual_strong": False}).needs() == {"strong1", "box1", "mix"}


@pytest.mark.parametrize("model_kind", ["pixel", "deeplab"])
def test_unimatch_with_both_switches_off_is_fixmatch(model_kind, pixel_model):
    if model_kind == "deeplab":
        from benchmark.train.model import build_model
        torch.manual_seed(0)
        model = build_model({"backbone": "resnet_small", "small_width": 4}, num_classes=3)
    else:
        model = pixel_model
    batch = make_batch(size=16)
    fix = run(build("fixmatch", thresh=0.5), copy.deepcopy(model), batch)
    uni = run(build("unimatch", {"feature_perturbation": False, "dual_strong": False}, thresh=0.5),
              copy.deepcopy(model), batch)
    assert torch.equal(fix.total, uni.total)
    assert {k: v.item() for k, v in fix.terms.items()} == {k: v.item() for k, v in uni.terms.items()}


def test_supervised_uses_only_labeled_data(pixel_model, batch):
    out = build("supervised").losses(pixel_model, batch, STEP)
    assert set(out.terms) == {"loss_x"} and build("supervised").needs() == frozenset()


def test_unknown_component_and_bad_params_are_clear_errors():
    with pytest.raises(MethodError, match="no component 'bogus'.*dual_strong"):
        build("unimatch", {"bogus": True})
    with pytest.raises(MethodError, match="method.weight_fp must be a number"):
        build("unimatch", weight_fp="high")
    with pytest.raises(MethodError, match="unknown method 'nope'"):
        get("nope")


def test_pseudo_labels_are_the_argmax_of_the_logits_where_the_softmax_ties():
    from methods.common import pseudo_labels
    logits = torch.tensor([0.0, 1e-8]).view(1, 2, 1, 1)        # apart as logits, one probability in float32
    probs = logits.softmax(dim=1)
    assert probs[0, 0] == probs[0, 1]
    pseudo = pseudo_labels(logits, torch.zeros(1, 1, 1, dtype=torch.long))
    assert pseudo.label.item() == 1 and pseudo.conf.item() == probs.max().item()


def test_pseudo_labels_equal_torch_argmax_on_exact_ties_and_nan():
    # pseudo_labels takes max(dim=1).indices for speed; it must pick argmax's index: the first maximal one,
    # and a NaN's where one is present.
    from methods.common import pseudo_labels
    logits = torch.randint(0, 3, (4, 5, 16, 16)).float()      # many exact ties among 5 classes
    logits[0, 3, 0, 0] = float("nan")
    logits[1, :, 2, 2] = float("nan")
    pseudo = pseudo_labels(logits, torch.zeros(4, 16, 16, dtype=torch.long))
    assert torch.equal(pseudo.label, logits.argmax(dim=1))
    channels_last = logits.contiguous(memory_format=torch.channels_last)
    assert torch.equal(pseudo_labels(channels_last, pseudo.ignore).label, logits.argmax(dim=1))
