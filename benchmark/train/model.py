"""DeepLabV3+ exactly as the official UniMatch code builds it (model/semseg/deeplabv3plus.py), plus a small variant.

Structure (module names equal the official ones, so official checkpoints load by key after stripping "module."):
  backbone -> (c1 = layer1, c4 = layer4)
  head     = ASPP on c4: 1x1 branch, three 3x3 atrous branches (dilations), image-pooling branch
             (GAP -> 1x1 conv-BN-ReLU -> bilinear up), concat, 1x1 conv-BN-ReLU projection (no dropout)
  reduce   = 1x1 conv-BN-ReLU on c1 to 48 channels
  fuse     = two 3x3 conv-BN-ReLU on cat(reduce(c1), up(head(c4)))
  classifier = 1x1 conv with bias; every upsampling is bilinear with align_corners=True.

Widths: resnet50/101 use the official ones: ASPP and fuse 256 (= 2048 // 8), low-level reduction 48. resnet_small
at base width w (layer channels w/2w/4w/8w) scales the head: ASPP and fuse 4w, low-level reduction 3w (64 and 48 at
w=16; ~1.07 M parameters in all with 21 classes).

`standardize_input` (off by default; the official model has none) gives each image, channel by channel, zero
mean and unit standard deviation before the backbone, so that its brightness and contrast tell nothing.

The official backbone is the deep-stem ResNet (`deep_stem=True`); the default False lets torchvision's ImageNet
weights load. Checked locally against a transcription of the official module: identical state-dict keys and
shapes, and bit-identical outputs (train and eval mode, need_fp under the same seed) for deep-stem resnet50/101.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import ModelError
from benchmark.train.backbones import SMALL_BACKBONES, build_backbone

OFFICIAL_HEAD_CHANNELS = 256
OFFICIAL_REDUCED_LOW_LEVEL = 48
FP_DROPOUT = 0.5  # UniMatch feature perturbation: channel dropout on layer1 and layer4 features
MODEL_KEYS = ("backbone", "weights", "output_stride", "dilations", "small_width", "deep_stem", "standardize_input")
STANDARDIZE_EPS = 1e-3   # a flat image stays finite


def small_head_widths(width: int) -> tuple[int, int]:
    """(ASPP/fuse channels, reduced low-level channels) for resnet_small: 4w and 3w (64 and 48 at w=16).

    The official rule (ASPP width = high-level channels // 8) would give only w channels here; 4w gives the head
    about a third of all parameters (official ResNet-50: about two fifths), and 3w is the official 48 at w=16.
    """
    return 4 * width, 3 * width


def _conv_bn_relu(cin, cout, kernel, dilation=1):
    padding = dilation * (kernel // 2)
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _upsample(x, size):
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class ASPPPooling(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.gap = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(cin, cout, 1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def forward(self, x):
        return _upsample(self.gap(x), x.shape[-2:])


class ASPPModule(nn.Module):
    def __init__(self, cin, cout, dilations):
        super().__init__()
        rate1, rate2, rate3 = dilations
        self.b0 = _conv_bn_relu(cin, cout, 1)
        self.b1 = _conv_bn_relu(cin, cout, 3, rate1)
        self.b2 = _conv_bn_relu(cin, cout, 3, rate2)
        self.b3 = _conv_bn_relu(cin, cout, 3, rate3)
        self.b4 = ASPPPooling(cin, cout)
        self.project = _conv_bn_relu(5 * cout, cout, 1)

    def forward(self, x):
        return self.project(torch.cat([self.b0(x), self.b1(x), self.b2(x), self.b3(x), self.b4(x)], dim=1))


class DeepLabV3Plus(nn.Module):
    """DeepLabV3+ with UniMatch's `forward(x, need_fp)` hook. See the module docstring for the structure."""

    def __init__(self, num_classes: int, backbone: str = "resnet50", weights="none", output_stride: int = 16,
                 dilations=(6, 12, 18), small_width: int = 16, deep_stem: bool = False,
                 standardize_input: bool = False):
        super().__init__()
        if int(num_classes) < 1:
            raise ModelError(f"num_classes must be >= 1, got {num_classes!r}")
        dilations = tuple(int(d) for d in dilations)
        if len(dilations) != 3 or min(dilations) < 1:
            raise ModelError(f"dilations must be three positive integers, got {dilations!r}")
        self.num_classes = int(num_classes)
        self.backbone_name = backbone
        self.standardize_input = bool(standardize_input)
        self.backbone = build_backbone(backbone, weights=weights, output_stride=output_stride,
                                       deep_stem=deep_stem, small_width=small_width)
        self.low_level_channels = self.backbone.low_level_channels
        self.high_level_channels = self.backbone.high_level_channels
        if backbone in SMALL_BACKBONES:
            head_channels, reduced = small_head_widths(int(small_width))
        else:  # official: ASPP width = 2048 // 8 = 256, fuse width 256, low-level reduced to 48
            head_channels, reduced = OFFICIAL_HEAD_CHANNELS, OFFICIAL_REDUCED_LOW_LEVEL
        self.feature_channels = head_channels  # fuse width = ASPP width (256 for resnet50/101)

        self.head = ASPPModule(self.high_level_channels, head_channels, dilations)
        self.reduce = _conv_bn_relu(self.low_level_channels, reduced, 1)
        self.fuse = nn.Sequential(
            nn.Conv2d(head_channels + reduced, self.feature_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(self.feature_channels), nn.ReLU(inplace=True),
            nn.Conv2d(self.feature_channels, self.feature_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(self.feature_channels), nn.ReLU(inplace=True))
        self.classifier = nn.Conv2d(self.feature_channels, self.num_classes, 1, bias=True)

    def encode(self, x):
        """Backbone features (c1 = layer1 at 1/4 resolution, c4 = layer4 at 1/output_stride)."""
        return self.backbone(standardized(x) if self.standardize_input else x)

    def decode(self, c1, c4, out_size=None, return_features: bool = False):
        """Logits at `out_size` (None: at c1's 1/4 resolution); with `return_features`, also the fused
        `feature_channels` map before the classifier, at 1/4 resolution."""
        c4 = _upsample(self.head(c4), c1.shape[-2:])
        features = self.fuse(torch.cat([self.reduce(c1), c4], dim=1))
        logits = self.classifier(features)
        if out_size is not None:
            logits = _upsample(logits, tuple(out_size))
        return (logits, features) if return_features else logits

    def forward(self, x, need_fp: bool = False):
        """Logits [N, C, H, W] at input size; with `need_fp`, (logits, logits_fp).

        As in the official code, the perturbation is a fresh Dropout2d(0.5) that is active in eval mode too, and
        the clean and perturbed features are decoded as ONE batch (so train-mode BatchNorm sees both halves).
        """
        c1, c4 = self.encode(x)
        if not need_fp:
            return self.decode(c1, c4, x.shape[-2:])
        c1 = torch.cat([c1, F.dropout2d(c1, FP_DROPOUT, training=True)])
        c4 = torch.cat([c4, F.dropout2d(c4, FP_DROPOUT, training=True)])
        logits, logits_fp = self.decode(c1, c4, x.shape[-2:]).chunk(2)
        return logits, logits_fp

    def backbone_parameters(self):
        """Parameters of the (pretrainable) backbone: the base-lr group."""
        return list(self.backbone.parameters())

    def head_parameters(self):
        """All other parameters (ASPP, reduce, fuse, classifier): the lr * lr_multi group."""
        return [p for name, p in self.named_parameters() if not name.startswith("backbone.")]


def standardized(x: torch.Tensor) -> torch.Tensor:
    """Each image's channels at zero mean and unit standard deviation: a view that scales a channel and shifts it
    (ColorJitter's brightness and contrast, a white balance) gives the same input."""
    # Not torch.std_mean: its float order differs, and the figures in docs/embedded-benchmark.md came from this one.
    return (x - x.mean(dim=(2, 3), keepdim=True)) / (x.std(dim=(2, 3), keepdim=True) + STANDARDIZE_EPS)


def _as_dict(model_cfg) -> dict:
    if model_cfg is None:
        return {}
    if dataclasses.is_dataclass(model_cfg) and not isinstance(model_cfg, type):
        return dataclasses.asdict(model_cfg)
    if isinstance(model_cfg, Mapping):
        return dict(model_cfg)
    return dict(vars(model_cfg))


def build_model(model_cfg=None, num_classes: int | None = None, **overrides) -> DeepLabV3Plus:
    """DeepLabV3Plus from a dict / dataclass / namespace with keys among MODEL_KEYS, updated by `overrides`.

    `num_classes` may also come from the config or overrides. Unknown keys raise `ModelError` naming them.
    """
    settings = {**_as_dict(model_cfg), **overrides}
    if num_classes is None:
        num_classes = settings.pop("num_classes", None)
    else:
        settings.pop("num_classes", None)
    if num_classes is None:
        raise ModelError("build_model needs num_classes")
    unknown = sorted(set(settings) - set(MODEL_KEYS))
    if unknown:
        raise ModelError(f"unknown model setting(s) {', '.join(unknown)}; known: {', '.join(MODEL_KEYS)}")
    return DeepLabV3Plus(num_classes, **settings)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (the official log prints this / 1e6 as 'Total params')."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
