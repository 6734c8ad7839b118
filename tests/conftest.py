"""Shared test scaffolding: a transparent per-pixel model, hand-made batches, building and stepping a method, and
the tiny embedded dataset on disk."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
torch.set_num_threads(1)
os.environ.setdefault("TQDM_DISABLE", "1")

from methods.base import Batch, LossSettings, MethodContext, StepInfo  # noqa: E402

STEP = StepInfo(step=0, total_steps=10)


class PixelModel(nn.Module):
    """A segmentation model small enough to reason about: per-pixel features, no BatchNorm.

    Its feature-perturbation path touches only `logits_fp`, so a method's switches can be checked term by
    term without BatchNorm coupling the clean and perturbed halves.
    """

    def __init__(self, num_classes: int = 3, channels: int = 6):
        super().__init__()
        self.low = nn.Conv2d(3, channels, 1)
        self.high = nn.Conv2d(channels, channels, 1)
        self.fuse = nn.Conv2d(2 * channels, channels, 1)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.low_level_channels = self.high_level_channels = self.feature_channels = channels
        self.calls: list[dict] = []

    def encode(self, x):
        c1 = torch.relu(self.low(x))
        return c1, torch.relu(self.high(c1))

    def decode(self, c1, c4, out_size=None, return_features=False):
        features = torch.relu(self.fuse(torch.cat([c1, c4], dim=1)))
        logits = self.classifier(features)
        if out_size is not None and tuple(out_size) != logits.shape[-2:]:
            logits = F.interpolate(logits, size=tuple(out_size), mode="bilinear", align_corners=True)
        return (logits, features) if return_features else logits

    def forward(self, x, need_fp=False):
        self.calls.append({"training": self.training, "grad": torch.is_grad_enabled(), "n": x.shape[0],
                           "need_fp": need_fp})
        c1, c4 = self.encode(x)
        logits = self.decode(c1, c4)
        if not need_fp:
            return logits
        return logits, self.decode(F.dropout2d(c1, 0.5, True), F.dropout2d(c4, 0.5, True))

    def backbone_parameters(self):
        return list(self.low.parameters()) + list(self.high.parameters())

    def head_parameters(self):
        return list(self.fuse.parameters()) + list(self.classifier.parameters())


def make_batch(n: int = 2, size: int = 8, num_classes: int = 3, seed: int = 0, padding: bool = True) -> Batch:
    g = torch.Generator().manual_seed(seed)

    def unlabeled():
        ignore = torch.zeros(n, size, size, dtype=torch.long)
        if padding:
            ignore[:, -2:, :] = 255
        box = torch.zeros(n, size, size, dtype=torch.long)
        box[:, 1:4, 2:6] = 1
        return {"weak": torch.randn(n, 3, size, size, generator=g),
                "strong1": torch.randn(n, 3, size, size, generator=g),
                "strong2": torch.randn(n, 3, size, size, generator=g),
                "ignore": ignore, "box1": box, "box2": box.flip(-1)}

    mask = torch.randint(0, num_classes, (n, size, size), generator=g)
    mask[:, 0, 0] = 255
    return Batch(labeled={"image": torch.randn(n, 3, size, size, generator=g), "mask": mask},
                 unlabeled=unlabeled(), mix=unlabeled())


@pytest.fixture
def pixel_model():
    torch.manual_seed(0)
    return PixelModel()


@pytest.fixture
def batch():
    return make_batch()


def build(name, components=None, thresh=0.0, **params):
    """A registered method with 3 classes and confidence threshold `thresh`."""
    from methods.registry import get
    cls = get(name)
    return cls(cls.make_params(params), components or {}, MethodContext(3, 255, LossSettings(conf_thresh=thresh)))


def run(method, model, batch, seed=0):
    """One step's losses, seeded as the trainer seeds: extra modules are built first (S4MIM's decoder), then
    the step sees the same random numbers whatever those modules drew."""
    torch.manual_seed(seed)
    method.build_modules()
    torch.manual_seed(seed)
    return method.losses(model, batch, STEP)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """The tiny embedded dataset's folder of draws, draw 0 generated once per session (other draws are made on
    first use; tests that damage it copy it first)."""
    from datasets.animals import generate
    from datasets.draws import draw_folder
    root = tmp_path_factory.mktemp("animals_tiny")
    generate(draw_folder(root, 0), variant="tiny", progress=False)
    return root
