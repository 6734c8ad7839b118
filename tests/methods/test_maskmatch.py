"""MaskMatch: patch masking, the multi-scale ensemble, its switches against the base, and the EMA teacher."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from methods.base import MethodError, StepInfo
from methods.common import PseudoLabeler, predict_in_eval_mode, pseudo_labels, random_patch_mask
from methods.maskmatch import EnsembleLabeler, predict_at_scale
from methods.registry import get
from tests.conftest import build, make_batch, run
BOTH_OFF = {"masked_modeling": False, "multiscale_ensemble": False}


def small_deeplab():
    from benchmark.train.model import build_model
    torch.manual_seed(0)
    return build_model({"backbone": "resnet_small", "small_width": 4}, num_classes=3)


# --- masking ------------------------------------------------------------------------------------------------

def test_masked_image_keeps_30_percent_of_patches_patch_aligned_with_the_fill_value():
    method = build("maskmatch", patch_size=4, mask_ratio=0.7, mask_fill=-2.5)
    images = torch.randn(3, 3, 32, 32)
    torch.manual_seed(1)
    masked, hidden = method.mask_images(images)
    visible = 1.0 - hidden.float().mean(dim=(1, 2))
    assert torch.allclose(visible, torch.full((3,), 0.3), atol=1 / 64)   # 19 of the 8×8 = 64 patches visible
    blocks = hidden.view(3, 8, 4, 8, 4)   # every 4×4 patch is wholly hidden or wholly visible
    assert torch.equal(blocks.amin(dim=(2, 4)), blocks.amax(dim=(2, 4)))
    assert torch.all(masked.permute(1, 0, 2, 3)[:, hidden] == -2.5)
    assert torch.equal(masked.permute(1, 0, 2, 3)[:, ~hidden], images.permute(1, 0, 2, 3)[:, ~hidden])
    # the default patch is 1/8 of the crop side (MIC's 64 px on 512 crops): 40 px on Pascal's 321, 8 px on 64
    assert [build("maskmatch").patch_pixels(s, s) for s in (321, 801, 64)] == [40, 100, 8]


# --- the ensemble ---------------------------------------------------------------------------------------------

class SizeProbe(nn.Module):
    """Spatially constant logits = log of a probability vector chosen by the input height; records calls."""

    def __init__(self, probs_by_height):
        super().__init__()
        self.probs_by_height = probs_by_height
        self.calls = []

    def forward(self, x):
        self.calls.append({"height": x.shape[-2], "n": x.shape[0], "training": self.training,
                           "grad": torch.is_grad_enabled()})
        probs = torch.tensor(self.probs_by_height[x.shape[-2]]).view(1, -1, 1, 1)
        return probs.log().expand(x.shape[0], -1, *x.shape[-2:]).clone()


def labeler(model, weak, mix, scales, flip=False, student_member=True):
    return EnsembleLabeler(lambda x: predict_in_eval_mode(model, x), weak, mix, scales, flip, student_member)


def test_ensemble_over_scale_one_without_flip_is_the_plain_pseudo_label(pixel_model):
    images, ignore = torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
    logits = torch.randn(2, 3, 8, 8)
    ensemble, plain = labeler(pixel_model, torch.randn(2, 3, 8, 8), images, (1.0,)), PseudoLabeler()
    for got, expected in ((ensemble.weak(pixel_model, images, logits, ignore), pseudo_labels(logits, ignore)),
                          (ensemble.mix(pixel_model, images, ignore), plain.mix(pixel_model, images, ignore))):
        assert torch.equal(got.label, expected.label) and torch.equal(got.conf, expected.conf)


def test_scaled_predictions_are_resized_back_and_fused_by_mean_softmax():
    probe = SizeProbe({6: [0.1, 0.8, 0.1], 8: [0.5, 0.2, 0.3], 10: [0.2, 0.2, 0.6]})
    images, ignore = torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
    given = torch.tensor([0.6, 0.3, 0.1]).log().view(1, 3, 1, 1).expand(2, 3, 8, 8)   # the train-mode logits
    ensemble = labeler(probe, images, torch.randn(3, 3, 8, 8), (0.75, 1.0, 1.25))
    # one eval-mode, no-grad forward per member: weak (2) and mix (3) images stacked, except at scale 1.0 where
    # only the mix images need one
    assert [(c["height"], c["n"], c["training"], c["grad"]) for c in probe.calls] == [
        (6, 5, False, False), (8, 3, False, False), (10, 5, False, False)]

    weak = ensemble.weak(probe, images, given, ignore)
    # scale 1.0 is the given train-mode prediction: mean([.1,.8,.1], [.6,.3,.1], [.2,.2,.6]) = [.3, .433, .267]
    assert weak.label.shape == (2, 8, 8) and torch.all(weak.label == 1)
    assert torch.allclose(weak.conf, torch.full((2, 8, 8), 1.3 / 3), atol=1e-6)
    mix = ensemble.mix(probe, None, torch.zeros(3, 8, 8, dtype=torch.long))   # [.267, .4, .333]
    assert mix.label.shape == (3, 8, 8) and torch.all(mix.label == 1)
    assert torch.allclose(mix.conf, torch.full((3, 8, 8), 0.4), atol=1e-6)
    assert len(probe.calls) == 3   # nothing more at fusion time


def test_only_mix_images_that_a_box_pastes_from_are_predicted(pixel_model):
    weak, mix, ignore = torch.randn(2, 3, 8, 8), torch.randn(3, 3, 8, 8), torch.zeros(3, 8, 8, dtype=torch.long)
    used = torch.tensor([True, False, True])
    full = labeler(pixel_model, weak, mix, (0.75, 1.0)).mix(pixel_model, mix, ignore)
    pixel_model.calls.clear()
    part = EnsembleLabeler(
        lambda x: predict_in_eval_mode(pixel_model, x), weak, mix, (0.75, 1.0), False, True, mix_used=used)
    assert [c["n"] for c in pixel_model.calls] == [2 + 2, 2]   # scale 0.75: weak + used mix; 1.0: used mix
    got = part.mix(pixel_model, mix, ignore)
    assert torch.equal(got.label[used], full.label[used])
    assert torch.allclose(got.conf[used], full.conf[used], atol=1e-6) and torch.all(got.conf[~used] == 0)
    pixel_model.calls.clear()
    nothing = EnsembleLabeler(lambda x: predict_in_eval_mode(pixel_model, x), weak, mix, (1.0,), False, True,
                              mix_used=torch.zeros(3, dtype=torch.bool))   # no box at all: no forward
    assert pixel_model.calls == [] and torch.all(nothing.mix(pixel_model, mix, ignore).conf == 0)


def test_flipped_members_are_flipped_back():
    identity = nn.Identity()   # logits = the image itself, so a flip not undone would show
    images, ignore = torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
    assert torch.equal(predict_at_scale(identity, images, 1.0, flip=True), images)
    assert predict_at_scale(identity, images, 0.5, flip=True).shape == images.shape
    fused = labeler(identity, images, images, (1.0,), flip=True).mix(identity, images, ignore)
    assert torch.equal(fused.label, images.argmax(1))
    assert torch.allclose(fused.conf, images.softmax(1).amax(1), atol=1e-6)


# --- switches against the base -------------------------------------------------------------------------------

@pytest.mark.parametrize("base", ["fixmatch", "unimatch"])
@pytest.mark.parametrize("model_kind", ["pixel", "deeplab"])
def test_both_components_off_is_the_base_method_exactly(base, model_kind, pixel_model):
    model = small_deeplab() if model_kind == "deeplab" else pixel_model
    batch = make_batch(size=16)
    expected = run(build(base, thresh=0.5), copy.deepcopy(model), batch)
    got = run(build("maskmatch", BOTH_OFF, thresh=0.5, base=base), copy.deepcopy(model), batch)
    assert torch.equal(got.total, expected.total)
    assert {k: v.item() for k, v in got.terms.items()} == {k: v.item() for k, v in expected.terms.items()}


def test_each_switch_against_the_base(pixel_model):
    """Each component alone on top of the base (against the full method: tests/methods/test_switches.py)."""
    batch = make_batch(size=16)
    thresh = 0.41   # about the median confidence of this untrained model: moved confidences move the loss
    base = run(build("fixmatch", thresh=thresh), pixel_model, batch)
    masked = run(build("maskmatch", {"multiscale_ensemble": False}, thresh=thresh), pixel_model, batch)
    ensemble = run(build("maskmatch", {"masked_modeling": False}, thresh=thresh), pixel_model, batch)
    full = run(build("maskmatch", thresh=thresh), pixel_model, batch)

    # masked_modeling adds L_mask and leaves the base terms as they were
    assert set(masked.terms) == {"loss_x", "loss_s", "loss_mask"}
    for name in ("loss_x", "loss_s"):
        assert torch.equal(masked.terms[name], base.terms[name]), name
    t = masked.terms
    assert masked.total.item() == pytest.approx(((t["loss_x"] + t["loss_s"] + t["loss_mask"]) / 2).item())
    # multiscale_ensemble changes the pseudo-labels only: L_x stays, L_s moves
    assert set(ensemble.terms) == {"loss_x", "loss_s"}
    assert torch.equal(ensemble.terms["loss_x"], base.terms["loss_x"])
    assert not torch.equal(ensemble.terms["loss_s"], base.terms["loss_s"])
    # both on: the ensembled labels feed the masked branch too
    assert not torch.equal(full.terms["loss_mask"], masked.terms["loss_mask"])


@pytest.mark.parametrize("region,view", [("all", "strong"), ("masked", "weak")])
def test_masked_loss_by_hand(region, view, pixel_model):
    batch = make_batch(size=16)
    method = build("maskmatch", {"multiscale_ensemble": False}, thresh=0.0, patch_size=4,
                   mask_loss_region=region, masked_view=view, mask_conf_thresh=0.6)
    out = run(method, pixel_model, batch)
    u = batch.unlabeled
    with torch.no_grad():
        pseudo = pseudo_labels(pixel_model(u["weak"]), u["ignore"])   # from the complete weak view
        torch.manual_seed(0)   # the base draws no random numbers before the mask with this model
        hidden = random_patch_mask(2, 16, 16, 4, 0.7)
        image = u["strong1"] if view == "strong" else u["weak"]
        ce = F.cross_entropy(pixel_model(torch.where(hidden.unsqueeze(1), 0.0, image)), pseudo.label,
                             reduction="none")
        region_mask = (u["ignore"] != 255) & (hidden if region == "masked" else True)
        expected = (ce * (region_mask & (pseudo.conf >= 0.6))).sum() / region_mask.sum()
    assert out.terms["loss_mask"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_unimatch_base_keeps_its_switches_and_fixmatch_base_refuses_them(pixel_model):
    batch = make_batch(size=16)
    uni = run(build("maskmatch", {"feature_perturbation": False}, base="unimatch"), pixel_model, batch)
    assert set(uni.terms) == {"loss_x", "loss_s1", "loss_s2", "loss_mask"}
    fix = build("maskmatch")
    assert fix.needs() == {"strong1", "box1", "mix"}
    assert not fix.on["feature_perturbation"] and not fix.on["dual_strong"]
    with pytest.raises(MethodError, match="dual_strong of maskmatch need method.base=unimatch"):
        build("maskmatch", {"dual_strong": True})
    with pytest.raises(MethodError, match="method.teacher must be one of same, ema"):
        build("maskmatch", teacher="student")
    with pytest.raises(MethodError, match="method.scales"):
        build("maskmatch", scales=[])


# --- the EMA teacher --------------------------------------------------------------------------------------------

def test_ema_teacher_update_formula_and_pseudo_labels():
    student = small_deeplab()
    batch = make_batch(size=16)
    method = build("maskmatch", {"multiscale_ensemble": False}, teacher="ema", ema_momentum=0.99)
    run(method, student, batch)   # the first step makes the teacher: a copy of the student
    teacher = method.teacher
    assert teacher is not student and not teacher.training
    assert all(not p.requires_grad for p in teacher.parameters())

    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    with torch.no_grad():
        for p in student.parameters():
            p.add_(1.0)
    method.after_step(student, StepInfo(step=4, total_steps=10))
    momentum = min(1 - 1 / 5, 0.99)   # the mean-teacher warm-up: 0.8 at step index 4
    now, live = teacher.state_dict(), student.state_dict()
    for name, value in now.items():
        if value.dtype.is_floating_point:
            assert torch.allclose(value, momentum * before[name] + (1 - momentum) * live[name], atol=1e-6), name
        else:
            assert torch.equal(value, live[name]), name   # e.g. BatchNorm's num_batches_tracked
    method.after_step(student, StepInfo(step=0, total_steps=10))   # momentum 0 at the first step: a copy
    assert all(torch.equal(v, live[k]) for k, v in teacher.state_dict().items())

    with torch.no_grad():   # its pseudo-labels come from the teacher's eval-mode forward, not the student's
        teacher.classifier.bias.add_(torch.tensor([5.0, 0.0, 0.0]))
    images, ignore = batch.unlabeled["weak"], batch.unlabeled["ignore"]
    got = method.labeler(student, batch).weak(student, images, student(images), ignore)
    assert torch.equal(got.label, pseudo_labels(teacher(images), ignore).label)


def test_ema_teacher_state_round_trip():
    student = small_deeplab()
    batch = make_batch(size=16)
    first = build("maskmatch", teacher="ema")
    run(first, student, batch)
    with torch.no_grad():
        for p in first.teacher.parameters():
            p.mul_(0.5)
    saved = copy.deepcopy(first.state_dict())

    resumed = build("maskmatch", teacher="ema")
    resumed.load_state_dict(saved)                       # before the model is known (the trainer's order)
    assert resumed.state_dict()["ema_teacher"].keys() == saved["ema_teacher"].keys()
    run(resumed, student, batch)
    for name, value in resumed.teacher.state_dict().items():
        assert torch.equal(value, saved["ema_teacher"][name]), name
        assert value.device == student.classifier.weight.device
    assert not torch.equal(resumed.teacher.classifier.weight, student.classifier.weight)
    assert build("maskmatch").state_dict() == {}          # teacher=same keeps no extra state


def test_total_stays_finite_with_everything_on(pixel_model):
    out = run(build("maskmatch", thresh=0.95, flip=True), pixel_model, make_batch(size=16))
    assert math.isfinite(out.total.item()) and set(out.terms) == {"loss_x", "loss_s", "loss_mask"}


# --- the shared pseudo-label hook (methods.common.PseudoLabeler, UniMatch.forward_unimatch) ----------------------

def test_default_pseudo_labeler_is_the_official_rule_and_a_custom_one_feeds_every_unlabeled_term(pixel_model):
    images, ignore = torch.randn(2, 3, 8, 8), torch.zeros(2, 8, 8, dtype=torch.long)
    logits = torch.randn(2, 3, 8, 8)
    assert torch.equal(PseudoLabeler().weak(pixel_model, images, logits, ignore).label, logits.argmax(1))
    pixel_model.train()
    mix = PseudoLabeler().mix(pixel_model, images, ignore)
    assert pixel_model.training and pixel_model.calls[-1]["training"] is False
    assert torch.equal(mix.label, pixel_model.eval()(images).argmax(1))

    class AllPadding(PseudoLabeler):   # labels that exclude every pixel: every unlabeled term must vanish
        def weak(self, model, images, logits, ignore):
            return super().weak(model, images, logits, torch.full_like(ignore, 255))

        def mix(self, model, images, ignore):
            return super().mix(model, images, torch.full_like(ignore, 255))

    out = build("unimatch").forward_unimatch(pixel_model.train(), make_batch(), AllPadding())
    assert {k for k, v in out.terms.items() if v.item() == 0.0} == {"loss_s1", "loss_s2", "loss_fp"}


def test_interpretation_register_names_real_keys_and_covers_every_choice():
    import yaml
    from pathlib import Path
    from methods.maskmatch import MaskMatchParams
    path = Path(__file__).resolve().parents[2] / "methods" / "interpretations" / "maskmatch.yaml"
    entries = yaml.safe_load(path.read_text())
    assert len({e["id"] for e in entries}) == len(entries)
    fields, components = set(MaskMatchParams.__dataclass_fields__), set(get("maskmatch").components)
    for entry in entries:
        assert set(entry) == {"id", "method", "topic", "paper_says", "we_chose", "why", "config_key"}, entry["id"]
        assert entry["method"] == "maskmatch"
        key = entry["config_key"]
        if key.startswith("method.components."):
            assert key.removeprefix("method.components.") in components, key
        else:
            assert key.removeprefix("method.") in fields, key
    covered = {e["config_key"].removeprefix("method.") for e in entries}
    assert {"base", "teacher", "patch_size", "mask_ratio", "mask_fill", "masked_view", "mask_loss_region",
            "mask_conf_thresh", "weight_mask", "scales", "flip"} <= covered


def test_declared_defaults_are_what_runs():
    """The class's defaults (what `train --list` shows) are the default base's: UniMatch's switches off."""
    declared = get("maskmatch").components
    assert build("maskmatch").on == declared and not declared["feature_perturbation"] and not declared["dual_strong"]
    assert build("maskmatch", base="unimatch").on == {**declared, "feature_perturbation": True, "dual_strong": True}
    from benchmark.train.command import describe_everything
    listing = describe_everything().split("  maskmatch ")[1]
    assert "feature_perturbation   off" in listing and "dual_strong            off" in listing
