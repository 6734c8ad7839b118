"""Augmentations of the official UniMatch recipe, as pure functions of an explicit `random.Random`.

Every random draw goes through the `rng` argument (never the global `random`, numpy or torch generators), so a
sample is reproducible from the seed of its generator alone: that is what makes resume and DDP need no data RNG
state. The draws mirror UniMatch's `dataset/transform.py` and `dataset/semi.py` one for one (same
distributions, same inclusive/exclusive bounds, same order of checks); only the generator differs.
"""
from __future__ import annotations

import math
import random

import numpy as np
import torch
import torchvision.transforms.functional as TF
from PIL import Image, ImageFilter, ImageOps

from datasets import IGNORE_INDEX

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

LABELED_PAD_VALUE = IGNORE_INDEX   # padding is ignored by the supervised loss
UNLABELED_PAD_VALUE = 254    # a distinct value so that padding can be turned into the ignore mask later

# UniMatch's strong colour pipeline.
COLOR_JITTER_P = 0.8
COLOR_JITTER_STRENGTH = (0.5, 0.5, 0.5, 0.25)   # brightness, contrast, saturation, hue
GRAYSCALE_P = 0.2
BLUR_P = 0.5
BLUR_SIGMA_RANGE = (0.1, 2.0)


def resize_long_side(img: Image.Image, mask: Image.Image, rng: random.Random,
                     ratio_range: tuple[float, float] = (0.5, 2.0)) -> tuple[Image.Image, Image.Image]:
    """Rescale so the long side becomes a random integer in [lo·L, hi·L] of the image's own long side L.

    The short side follows proportionally, rounded half up, as UniMatch's `resize`; bilinear image, nearest mask.
    """
    w, h = img.size
    long_side = rng.randint(int(max(h, w) * ratio_range[0]), int(max(h, w) * ratio_range[1]))
    if h > w:
        out_h, out_w = long_side, int(1.0 * w * long_side / h + 0.5)
    else:
        out_w, out_h = long_side, int(1.0 * h * long_side / w + 0.5)
    return img.resize((out_w, out_h), Image.BILINEAR), mask.resize((out_w, out_h), Image.NEAREST)


def pad_and_crop(img: Image.Image, mask: Image.Image, size: int, rng: random.Random,
                 mask_fill: int) -> tuple[Image.Image, Image.Image]:
    """Pad right/bottom up to `size` (image 0, mask `mask_fill`), then take a uniform random size×size crop."""
    w, h = img.size
    pad_w, pad_h = max(size - w, 0), max(size - h, 0)
    if pad_w or pad_h:
        img = ImageOps.expand(img, border=(0, 0, pad_w, pad_h), fill=0)
        mask = ImageOps.expand(mask, border=(0, 0, pad_w, pad_h), fill=mask_fill)
    w, h = img.size
    x = rng.randint(0, w - size)
    y = rng.randint(0, h - size)
    box = (x, y, x + size, y + size)
    return img.crop(box), mask.crop(box)


def hflip(img: Image.Image, mask: Image.Image, rng: random.Random,
          p: float = 0.5) -> tuple[Image.Image, Image.Image]:
    if rng.random() < p:
        return img.transpose(Image.FLIP_LEFT_RIGHT), mask.transpose(Image.FLIP_LEFT_RIGHT)
    return img, mask


def color_jitter(img: Image.Image, rng: random.Random,
                 strength: tuple[float, float, float, float] = COLOR_JITTER_STRENGTH) -> Image.Image:
    """torchvision's ColorJitter with factors drawn from `rng`: all four factors are sampled, then the four
    adjustments are applied in a random order (as `ColorJitter.get_params` / `forward` do)."""
    brightness, contrast, saturation, hue = strength
    order = [0, 1, 2, 3]
    rng.shuffle(order)
    brightness_factor = rng.uniform(max(0.0, 1 - brightness), 1 + brightness)
    contrast_factor = rng.uniform(max(0.0, 1 - contrast), 1 + contrast)
    saturation_factor = rng.uniform(max(0.0, 1 - saturation), 1 + saturation)
    hue_factor = rng.uniform(-hue, hue)
    for op in order:
        if op == 0:
            img = TF.adjust_brightness(img, brightness_factor)
        elif op == 1:
            img = TF.adjust_contrast(img, contrast_factor)
        elif op == 2:
            img = TF.adjust_saturation(img, saturation_factor)
        else:
            img = TF.adjust_hue(img, hue_factor)
    return img


def random_grayscale(img: Image.Image, rng: random.Random, p: float = GRAYSCALE_P) -> Image.Image:
    if rng.random() < p:
        return TF.rgb_to_grayscale(img, num_output_channels=3)
    return img


def gaussian_blur(img: Image.Image, rng: random.Random, p: float = BLUR_P,
                  sigma_range: tuple[float, float] = BLUR_SIGMA_RANGE) -> Image.Image:
    """UniMatch's `blur`: PIL's GaussianBlur with radius = sigma ~ U(0.1, 2.0)."""
    if rng.random() < p:
        sigma = rng.uniform(*sigma_range)
        return img.filter(ImageFilter.GaussianBlur(radius=sigma))
    return img


def strong_color(img: Image.Image, rng: random.Random) -> Image.Image:
    """The colour part of a UniMatch strong view: jitter (p=0.8), grayscale (p=0.2), blur (p=0.5)."""
    if rng.random() < COLOR_JITTER_P:
        img = color_jitter(img, rng)
    img = random_grayscale(img, rng)
    return gaussian_blur(img, rng)


def cutmix_box(size: int, rng: random.Random, p: float = 0.5, size_min: float = 0.02, size_max: float = 0.4,
               ratio_1: float = 0.3, ratio_2: float = 1 / 0.3) -> torch.Tensor:
    """A size×size 0/1 LongTensor with one CutMix rectangle, or all zeros when not applied (prob 1 - p).

    As UniMatch's `obtain_cutmix_box`: the area is drawn once (fraction ~ U(size_min, size_max) of the crop);
    the aspect ratio h/w ~ U(ratio_1, ratio_2) and the top-left corner (uniform over the crop) are redrawn
    until the box fits. Side lengths are floored, so the area can fall a little under the drawn fraction.
    """
    box = torch.zeros(size, size, dtype=torch.long)
    if rng.random() > p:
        return box
    area = rng.uniform(size_min, size_max) * size * size
    while True:
        ratio = rng.uniform(ratio_1, ratio_2)
        box_w = int(math.sqrt(area / ratio))
        box_h = int(math.sqrt(area * ratio))
        x = rng.randrange(size)
        y = rng.randrange(size)
        if x + box_w <= size and y + box_h <= size:
            break
    box[y:y + box_h, x:x + box_w] = 1
    return box


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def normalize(img: Image.Image, mask: Image.Image | None = None):
    """ToTensor + ImageNet mean/std; the mask (if given) becomes a LongTensor of its pixel values.

    An RGB image takes the same float operations as torchvision's `to_tensor` then `normalize` (÷255, − mean,
    ÷ std, elementwise in float32, so the same bits) without their per-call checks and conversions, which
    cost more than the arithmetic on small images; other modes go through torchvision itself.
    """
    if img.mode == "RGB" and torch.get_default_dtype() == torch.float32:
        chw = np.ascontiguousarray(np.asarray(img).transpose(2, 0, 1))
        tensor = torch.from_numpy(chw).to(torch.float32).div(255).sub_(_MEAN).div_(_STD)
    else:
        tensor = TF.normalize(TF.to_tensor(img), IMAGENET_MEAN, IMAGENET_STD)
    if mask is None:
        return tensor
    return tensor, torch.from_numpy(np.array(mask, dtype=np.int64))
