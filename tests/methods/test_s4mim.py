"""S4MIM: masked inputs, the three MIM terms, switches, and the all-off == UniMatch guarantee."""
import copy
from pathlib import Path

import pytest
import torch
import yaml

from methods.base import MethodError
from methods.common import PseudoLabels, frozen_bn_statistics, random_patch_mask, region_patch_mask
from methods.registry import get
from methods.s4mim import (FILL, NO_CLASS, MaskedInputs, ReconstructionDecoder, S4MIMParams, classwise_inputs,
                           feature_aggregation_loss, plain_inputs)
from tests.conftest import build as build_method
from tests.conftest import make_batch, run
MIM_TERMS = {"loss_mim", "loss_agg", "loss_sem"}
UNIMATCH_TERMS = {"loss_x", "loss_s1", "loss_s2", "loss_fp"}
ALL_OFF = {"mim": False, "classwise_mim": False, "feature_agg": False, "semantic_mim": False}


def build(name="s4mim", components=None, thresh=0.0, **params):
    return build_method(name, components, thresh, **params)


def deeplab():
    from benchmark.train.model import build_model
    torch.manual_seed(0)
    return build_model({"backbone": "resnet_small", "small_width": 4}, num_classes=3)


def blobs(n=4, size=32, num_classes=3, seed=0):
    """Class maps of rectangles on a background, with some pixels of no class."""
    g = torch.Generator().manual_seed(seed)
    maps = torch.zeros(n, size, size, dtype=torch.long)
    for i in range(n):
        for c in range(1, num_classes):
            y, x = torch.randint(0, size - 12, (2,), generator=g).tolist()
            maps[i, y:y + 12, x:x + 10] = c
    maps[torch.rand(n, size, size, generator=g) < 0.1] = NO_CLASS
    return maps


# --- masked inputs ------------------------------------------------------------------------------------------

def test_classwise_inputs_hold_only_pixels_of_their_class():
    torch.manual_seed(0)
    maps = blobs()
    images = torch.randn(4, 3, 32, 32) + 10  # no pixel equals the fill value by chance
    inputs = classwise_inputs(images, maps, 3, classes_per_image=3, patch=4, ratio=0.5)
    assert inputs.images.shape[0] == 12  # every class touches >= 2 patches in every image
    source = inputs.originals
    for m in range(inputs.images.shape[0]):
        cls = int(inputs.class_map[m][inputs.class_map[m] >= 0].unique().item())
        region = inputs.class_map[m] == cls
        shown = (inputs.images[m] != FILL).all(0)
        assert torch.equal(shown, region & ~inputs.masked[m])          # visible = the class minus its masked patches
        assert (inputs.images[m] == FILL)[:, ~shown].all()             # everything else is the fill value
        assert torch.equal(inputs.images[m][:, shown], source[m][:, shown])
        assert torch.equal(inputs.target[m], region & inputs.masked[m])
    # the region of each input is exactly one class of its source image's map, never unassigned pixels
    matches = [(maps == c).unsqueeze(0) for c in range(3)]
    for m in range(inputs.images.shape[0]):
        region = inputs.class_map[m] >= 0
        assert any(torch.equal(region, match[0][i]) for match in matches for i in range(4))


def test_unconfident_and_padding_pixels_belong_to_no_class():
    method = build(thresh=0.9, mim_images="unlabeled")
    batch = make_batch(n=1, size=8)
    conf = torch.full((1, 8, 8), 0.95)
    conf[0, :, :3] = 0.5
    pseudo = PseudoLabels(label=torch.ones(1, 8, 8, dtype=torch.long), conf=conf, ignore=batch.unlabeled["ignore"])
    _, maps, valid = method.class_maps(batch, pseudo)
    expected = (conf >= 0.9) & (batch.unlabeled["ignore"] != 255)
    assert torch.equal(maps >= 0, expected) and torch.all(maps[expected] == 1)
    _, lab_maps, _ = build(mim_images="labeled").class_maps(batch, pseudo)
    assert torch.equal(lab_maps >= 0, batch.labeled["mask"] != 255)


def test_region_patch_mask_is_patch_aligned_and_inside_the_class():
    torch.manual_seed(0)
    region = blobs(n=16, size=32)[:, None].eq(1)[:, 0]
    patch, ratio = 4, 0.5
    masked = region_patch_mask(region, patch, ratio)
    grid = masked.view(16, 8, patch, 8, patch)
    assert torch.equal(grid.all(dim=(2, 4)), grid.any(dim=(2, 4)))  # each patch all masked or all visible
    touching = region.view(16, 8, patch, 8, patch).any(dim=(2, 4))
    masked_patches = grid.any(dim=(2, 4))
    assert not (masked_patches & ~touching).any()                   # only patches holding the class
    counts, n = masked_patches.sum(dim=(1, 2)), touching.sum(dim=(1, 2))
    assert torch.equal(counts, torch.round(ratio * n).clamp(1).minimum(n - 1).long())
    assert ((counts / n) - ratio).abs().max() <= 1 / n.min()       # ratio within one patch
    assert (region & ~masked).any(dim=(1, 2)).all() and (region & masked).any(dim=(1, 2)).all()


def test_plain_inputs_mask_random_patches_of_the_whole_image():
    torch.manual_seed(0)
    images, maps = torch.randn(2, 3, 16, 16) + 10, blobs(n=2, size=16)
    valid = torch.ones(2, 16, 16, dtype=torch.bool)
    valid[:, -2:] = False
    state = torch.get_rng_state()
    inputs = plain_inputs(images, maps, valid, patch=4, ratio=0.5)
    torch.set_rng_state(state)
    assert torch.equal(inputs.masked, random_patch_mask(2, 16, 16, 4, 0.5))
    assert (inputs.images == FILL).all(1).eq(inputs.masked).all()
    assert torch.equal(inputs.target, inputs.masked & valid) and torch.equal(inputs.class_map, maps)


# --- the three terms ----------------------------------------------------------------------------------------

def agg_case():
    maps = blobs(n=2, size=16)
    masked = random_patch_mask(2, 16, 16, 4, 0.5)
    return maps, masked


@pytest.mark.parametrize("detach_visible", [True, False])
def test_feature_aggregation_zero_for_identical_features_and_gradient_sides(detach_visible):
    torch.manual_seed(0)
    maps, masked = agg_case()
    same = torch.rand(2, 5, 1, 1).expand(2, 5, 16, 16)
    assert feature_aggregation_loss(same, maps, masked, 3, detach_visible).item() == pytest.approx(0, abs=1e-6)
    features = torch.rand(2, 5, 16, 16, requires_grad=True)
    loss = feature_aggregation_loss(features, maps, masked, 3, detach_visible)
    assert loss.item() > 0
    loss.backward()
    touched = features.grad.abs().sum(1) > 0
    assigned = maps >= 0
    assert not touched[~assigned].any()                           # pixels of no class never enter
    assert touched[masked & assigned].all()
    assert touched[~masked & assigned].any() == (not detach_visible)


def test_reconstruction_counts_only_masked_pixels_of_the_class(pixel_model):
    method = build()
    torch.manual_seed(0)
    maps = blobs(n=2, size=16)
    inputs = classwise_inputs(torch.randn(2, 3, 16, 16), maps, 3, 1, 4, 0.5)
    method.build_modules()
    base = method.mim_terms(pixel_model, inputs)["loss_mim"]
    elsewhere = inputs.originals.clone()
    elsewhere[~inputs.target.unsqueeze(1).expand_as(elsewhere)] += 5
    moved = method.mim_terms(pixel_model, MaskedInputs(inputs.images, elsewhere, inputs.class_map, inputs.masked,
                                                       inputs.target))["loss_mim"]
    assert torch.equal(base, moved)
    inside = inputs.originals.clone()
    inside[inputs.target.unsqueeze(1).expand_as(inside)] += 5
    assert method.mim_terms(pixel_model, MaskedInputs(inputs.images, inside, inputs.class_map, inputs.masked,
                                                      inputs.target))["loss_mim"] > base


def test_semantic_term_is_ce_on_masked_class_pixels(pixel_model):
    method = build()
    torch.manual_seed(0)
    inputs = plain_inputs(torch.randn(2, 3, 16, 16), blobs(n=2, size=16), torch.ones(2, 16, 16, dtype=torch.bool),
                          4, 0.5)
    method.build_modules()
    loss = method.mim_terms(pixel_model, inputs)["loss_sem"]
    logits = pixel_model(inputs.images)
    scored = inputs.masked & (inputs.class_map >= 0)
    expected = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[scored], inputs.class_map[scored])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradients_reach_the_intended_modules(pixel_model):
    method = build()
    out = run(method, pixel_model, make_batch(size=16))
    decoder = list(method.build_modules().parameters())
    model_params = list(pixel_model.parameters())
    for name, reaches_decoder in (("loss_mim", True), ("loss_agg", False), ("loss_sem", False)):
        grads = torch.autograd.grad(out.terms[name], decoder + model_params, allow_unused=True, retain_graph=True)
        on_decoder = any(g is not None and g.abs().sum() > 0 for g in grads[:len(decoder)])
        assert on_decoder == reaches_decoder, name
        assert any(g is not None and g.abs().sum() > 0 for g in grads[len(decoder):]), name


def test_no_eligible_class_gives_zero_terms_that_still_reach_the_decoder(pixel_model):
    method = build(thresh=1.1, mim_images="unlabeled")  # nothing is confident: no class anywhere
    out = run(method, pixel_model, make_batch(size=16))
    assert out.scalars["mim_inputs"] == 0 and all(out.terms[t].item() == 0 for t in MIM_TERMS)
    out.total.backward()
    assert all(p.grad is not None for p in method.build_modules().parameters())


def test_decoder_is_built_on_request_so_the_trainer_seed_sets_its_init():
    def first_weight(seed):
        method = build()
        torch.manual_seed(seed)
        return next(iter(method.build_modules().parameters())).detach().clone()
    assert torch.equal(first_weight(0), first_weight(0)) and not torch.equal(first_weight(0), first_weight(1))


@pytest.mark.parametrize("channels", [6, 64, 256])
def test_decoder_accepts_any_feature_width(channels):
    assert ReconstructionDecoder(64)(torch.rand(2, channels, 4, 4), (16, 16)).shape == (2, 3, 16, 16)


# --- switches -----------------------------------------------------------------------------------------------

def test_mim_switches_and_the_weights_of_the_terms(pixel_model):
    """What the switches do to the MIM terms (that they leave the others alone: tests/methods/test_switches.py)."""
    batch = make_batch(size=16)
    full = run(build(), pixel_model, batch)
    assert set(full.terms) == UNIMATCH_TERMS | MIM_TERMS
    for switch, removed in (("feature_agg", "loss_agg"), ("semantic_mim", "loss_sem")):
        assert set(run(build(components={switch: False}), pixel_model, batch).terms) == set(full.terms) - {removed}
    plain = run(build(components={"classwise_mim": False}), pixel_model, batch)
    assert set(plain.terms) == set(full.terms)
    assert not torch.equal(plain.terms["loss_mim"], full.terms["loss_mim"])
    off = run(build(components={"mim": False}), pixel_model, batch)  # sub-switches on, no effect without mim
    assert set(off.terms) == UNIMATCH_TERMS
    weights = {"loss_x": 1, "loss_s1": 0.25, "loss_s2": 0.25, "loss_fp": 0.5, "loss_mim": 0.25, "loss_agg": 0.5,
               "loss_sem": 0.5}
    expected = sum(weights[k] * v.item() for k, v in full.terms.items()) / 2
    assert full.total.item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("model_kind", ["pixel", "deeplab"])
@pytest.mark.parametrize("components", [ALL_OFF, {"mim": False}, {**ALL_OFF, "feature_perturbation": False}])
def test_all_mim_switches_off_is_unimatch(model_kind, components, pixel_model):
    model = deeplab() if model_kind == "deeplab" else pixel_model
    batch = make_batch(size=32)
    uni_components = {k: v for k, v in components.items() if k in ("feature_perturbation", "dual_strong")}
    uni = run(build("unimatch", uni_components, thresh=0.5), copy.deepcopy(model), batch)
    ours = build(components=components, thresh=0.5)
    s4 = run(ours, copy.deepcopy(model), batch)
    assert torch.equal(uni.total, s4.total)
    assert uni.terms.keys() == s4.terms.keys()
    assert all(torch.equal(uni.terms[k], s4.terms[k]) for k in uni.terms)
    assert len(ours.build_modules()) == 0 and ours.needs() == build("unimatch", uni_components).needs()


def test_masked_forward_leaves_batchnorm_running_statistics_alone():
    model, batch = deeplab(), make_batch(size=32)
    uni_model, s4_model, updating = copy.deepcopy(model), copy.deepcopy(model), copy.deepcopy(model)
    run(build("unimatch", thresh=0.5), uni_model, batch)
    run(build(thresh=0.5), s4_model, batch).total.backward()  # restoring must not break the backward
    run(build(thresh=0.5, mim_update_bn_stats=True), updating, batch)
    buffers = lambda m: [b for name, b in m.named_buffers() if "running" in name]  # noqa: E731
    assert all(torch.equal(a, b) for a, b in zip(buffers(uni_model), buffers(s4_model)))
    assert not all(torch.equal(a, b) for a, b in zip(buffers(uni_model), buffers(updating)))
    with frozen_bn_statistics(model):
        model.train()(torch.randn(2, 3, 32, 32))
    assert all(torch.equal(a, b) for a, b in zip(buffers(model), buffers(deeplab())))


# --- declarations -------------------------------------------------------------------------------------------

def test_declaration_and_parameter_errors():
    cls = get("s4mim")
    assert cls.from_paper_description and set(cls.components) == set(ALL_OFF) | {"feature_perturbation",
                                                                                 "dual_strong"}
    assert set(cls.component_help) == set(cls.components)
    for bad, match in (({"mask_ratio": 1.0}, "mask_ratio"), ({"mim_images": "all"}, "mim_images"),
                       ({"patch_size": 0}, "patch_size"), ({"classes_per_image": 0}, "classes_per_image"),
                       ({"recon_loss": "ssim"}, "recon_loss"), ({"weight_agg": -1.0}, "weight_agg")):
        with pytest.raises(MethodError, match=match):
            build(**bad)


def test_interpretation_register_names_real_keys():
    path = Path(__file__).resolve().parents[2] / "methods" / "interpretations" / "s4mim.yaml"
    entries = yaml.safe_load(path.read_text())
    fields = set(S4MIMParams.__dataclass_fields__)
    components = set(get("s4mim").components)
    assert len({e["id"] for e in entries}) == len(entries)
    for entry in entries:
        assert set(entry) == {"id", "method", "topic", "paper_says", "we_chose", "why", "config_key"}, entry["id"]
        assert entry["method"] == "s4mim"
        for key in (entry["config_key"] or "").split(", "):
            if key.startswith("method.components."):
                assert key.removeprefix("method.components.") in components, key
            elif key.startswith("method."):
                assert key.removeprefix("method.") in fields, key
            else:
                assert key in ("", "loss.conf_thresh"), key
