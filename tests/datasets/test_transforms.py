import random
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from datasets import transforms as T

DRAWS = 2000


def colourful_image(w: int, h: int, seed: int = 0) -> Image.Image:
    # values >= 1 so that zero-padding is recognisable after any interpolation
    pixels = np.random.default_rng(seed).integers(1, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def label_mask(w: int, h: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 5, size=(h, w), dtype=np.uint8), "L")


@pytest.mark.parametrize("w,h", [(40, 30), (30, 50), (33, 33)])
def test_resize_long_side_range_and_aspect(w, h):
    rng = random.Random(0)
    long_side, short_side = max(w, h), min(w, h)
    image, mask = colourful_image(w, h), label_mask(w, h)
    seen = set()
    for _ in range(300):
        out_image, out_mask = T.resize_long_side(image, mask, rng)
        assert out_image.size == out_mask.size
        out_long, out_short = max(out_image.size), min(out_image.size)
        assert int(0.5 * long_side) <= out_long <= int(2.0 * long_side)
        assert out_short == int(short_side * out_long / long_side + 0.5)
        assert (out_image.size[0] >= out_image.size[1]) == (w >= h)
        assert set(np.unique(np.array(out_mask))) <= set(range(5))   # nearest: no new label values
        seen.add(out_long)
    assert min(seen) <= 0.6 * long_side and max(seen) >= 1.9 * long_side


@pytest.mark.parametrize("fill", [T.LABELED_PAD_VALUE, T.UNLABELED_PAD_VALUE])
def test_pad_and_crop_pads_right_bottom_with_fill(fill):
    image, mask = colourful_image(10, 6), label_mask(10, 6)
    out_image, out_mask = T.pad_and_crop(image, mask, 16, random.Random(0), fill)
    assert out_image.size == out_mask.size == (16, 16)
    pixels, labels = np.array(out_image), np.array(out_mask)
    assert (labels[:6, :10] == np.array(mask)).all() and (pixels[:6, :10] == np.array(image)).all()
    padded = np.ones((16, 16), bool)
    padded[:6, :10] = False
    assert (labels[padded] == fill).all() and (pixels[padded] == 0).all()


def test_crop_is_exact_and_uniform_over_positions():
    image = Image.fromarray(np.arange(20 * 8, dtype=np.uint8).reshape(8, 20), "L").convert("RGB")
    mask = Image.fromarray(np.arange(20 * 8, dtype=np.uint8).reshape(8, 20), "L")
    rng = random.Random(1)
    corners = Counter()
    for _ in range(DRAWS):
        out_image, out_mask = T.pad_and_crop(image, mask, 16, rng, 255)
        assert out_image.size == out_mask.size == (16, 16)
        labels = np.array(out_mask)
        corners[int(labels[0, 0])] += 1       # top-left pixel identifies the x offset (height is padded)
        assert (labels[8:] == 255).all()
    assert sorted(corners) == list(range(5))  # x in [0, 20 - 16] inclusive, as random.randint
    assert min(corners.values()) > DRAWS / 5 * 0.8


def test_hflip_probability_and_consistency():
    image, mask = colourful_image(12, 7), label_mask(12, 7)
    rng = random.Random(2)
    flips = 0
    for _ in range(DRAWS):
        out_image, out_mask = T.hflip(image, mask, rng)
        flipped = np.array_equal(np.array(out_image), np.array(image)[:, ::-1])
        assert np.array_equal(np.array(out_mask), np.array(mask)[:, ::-1]) == flipped
        flips += flipped
    assert abs(flips / DRAWS - 0.5) < 0.05


def box_extent(box: torch.Tensor) -> tuple[int, int]:
    rows = box.any(dim=1).nonzero().flatten()
    cols = box.any(dim=0).nonzero().flatten()
    h, w = int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)
    assert int(box.sum()) == h * w, "box is not a filled rectangle"
    return h, w


@pytest.mark.parametrize("size,draws", [(64, DRAWS), (321, 300)])
def test_cutmix_box_statistics(size, draws):
    rng = random.Random(3)
    applied, fractions = 0, []
    for _ in range(draws):
        box = T.cutmix_box(size, rng)
        assert box.shape == (size, size) and box.dtype == torch.long
        if not box.any():
            continue
        applied += 1
        assert ((box == 0) | (box == 1)).all()
        h, w = box_extent(box)            # a filled rectangle also proves the box fits inside the crop
        # sides are floored from sqrt(area / ratio) and sqrt(area * ratio)
        assert h * w <= 0.4 * size * size
        assert (h + 1) * (w + 1) >= 0.02 * size * size
        assert 0.3 <= (h + 1) / w and h / (w + 1) <= 1 / 0.3
        fractions.append(h * w / size ** 2)
    assert abs(applied / draws - 0.5) < 2.5 * (0.25 / draws) ** 0.5
    assert min(fractions) < 0.06 and max(fractions) > 0.33
    assert abs(np.mean(fractions) - 0.21) < 0.03    # U(0.02, 0.4) has mean 0.21, flooring lowers it slightly


def test_strong_color_rates_ranges_and_random_order(monkeypatch):
    calls = []

    def spy(name):
        original = getattr(T.TF, name)
        monkeypatch.setattr(T.TF, name, lambda img, factor: calls.append((name, factor)) or original(img, factor))

    for name in ("adjust_brightness", "adjust_contrast", "adjust_saturation", "adjust_hue"):
        spy(name)
    radii = []
    original_blur = T.ImageFilter.GaussianBlur
    monkeypatch.setattr(T.ImageFilter, "GaussianBlur",
                        lambda radius: radii.append(radius) or original_blur(radius=radius))

    image = colourful_image(8, 8)
    rng = random.Random(4)
    draws, grey = 1000, 0
    orders = Counter()
    for _ in range(draws):
        start = len(calls)
        out = np.array(T.strong_color(image, rng)).astype(int)
        grey += bool((out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all())
        if len(calls) > start:
            orders[tuple(name for name, _ in calls[start:])] += 1
    assert abs(sum(orders.values()) / draws - 0.8) < 0.05
    assert len(orders) == 24                                     # every order of the four adjustments
    assert abs(grey / draws - 0.2) < 0.04
    assert abs(len(radii) / draws - 0.5) < 0.05 and 0.1 <= min(radii) and max(radii) <= 2.0
    for name, factor in calls:
        low, high = (-0.25, 0.25) if name == "adjust_hue" else (0.5, 1.5)
        assert low <= factor <= high


def test_transforms_are_pure_functions_of_the_rng():
    image, mask = colourful_image(30, 20), label_mask(30, 20)
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    global_state = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())

    def pipeline(seed):
        rng = random.Random(seed)
        img, msk = T.resize_long_side(image, mask, rng)
        img, msk = T.pad_and_crop(img, msk, 24, rng, 254)
        img, msk = T.hflip(img, msk, rng)
        strong = T.strong_color(img, rng)
        return np.array(img), np.array(msk), np.array(strong), T.cutmix_box(24, rng)

    first, again, other = pipeline(7), pipeline(7), pipeline(8)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))
    assert random.getstate() == global_state[0]
    assert np.array_equal(np.random.get_state()[1], global_state[1])
    assert torch.equal(torch.get_rng_state(), global_state[2])


def test_normalize_uses_imagenet_statistics():
    image = Image.new("RGB", (3, 2), (255, 0, 128))
    tensor, mask = T.normalize(image, Image.new("L", (3, 2), 7))
    assert tensor.shape == (3, 2, 3) and tensor.dtype == torch.float32
    expected = [(1 - 0.485) / 0.229, (0 - 0.456) / 0.224, (128 / 255 - 0.406) / 0.225]
    assert torch.allclose(tensor[:, 0, 0], torch.tensor(expected), atol=1e-6)
    assert mask.dtype == torch.long and mask.shape == (2, 3) and (mask == 7).all()
    assert torch.equal(T.normalize(image), tensor)


@pytest.mark.parametrize("size", [(64, 64), (37, 91)])
def test_normalize_has_torchvisions_bits(size):
    import torchvision.transforms.functional as TF
    image = colourful_image(*size, seed=3)
    for img in (image, T.strong_color(image, random.Random(1)), image.transpose(Image.FLIP_LEFT_RIGHT)):
        expected = TF.normalize(TF.to_tensor(img), T.IMAGENET_MEAN, T.IMAGENET_STD)
        got = T.normalize(img)
        assert torch.equal(got, expected) and got.stride() == expected.stride()
