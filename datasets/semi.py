"""The semi-supervised dataset (UniMatch's data recipe, keyed for reproducibility) and its key samplers.

A dataset is indexed by an integer *sample key*, not a position: `index = key % len(items)`, and every random
draw for that sample comes from generators seeded from `(seed, key)`. A sample is therefore a pure function of
`(seed, key)`; resume and DDP need no data RNG state, only the position in the key stream (`KeySampler`).
"""
from __future__ import annotations

import hashlib
import math
import operator
import os
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from datasets.errors import DataError
from datasets import IGNORE_INDEX
from datasets.transforms import (LABELED_PAD_VALUE, UNLABELED_PAD_VALUE, cutmix_box, hflip,
                                 normalize, pad_and_crop, resize_long_side, strong_color)

MODES = ("train_l", "train_u", "val")
SAMPLE_VIEWS = frozenset({"strong1", "strong2", "box1", "box2"})
# Views a method may declare that are built by the trainer (a second unlabeled batch), not per sample.
BATCH_VIEWS = frozenset({"mix"})
# An image-only view of a val image, drawn from the generator it is given (e.g. datasets.transforms.strong_color).
ImageView = Callable[[Image.Image, random.Random], Image.Image]
RESIZE_RATIO_RANGE = (0.5, 2.0)
FLIP_P = 0.5
CUTMIX_P = 0.5

_READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)
# A dataset whose decoded images (and masks) all fit in this many bytes keeps them in memory after the first
# read (per process and DataLoader worker), so a small dataset (the embedded one) is decoded once, not at
# every draw. Larger ones (the real datasets) are read from disk every time, as the official loader does.
DECODE_CACHE_BYTES = 256 * 2**20


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any parts, stable across processes and Python versions (unlike `hash()`)."""
    text = "/".join(str(part) for part in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def sample_rng(seed: int, key: int, stream: str) -> random.Random:
    """The generator of one named stream (weak crop, one strong view, one box) of sample `key`.

    One stream per view keeps each view the same whether or not the other views are built, so methods that
    request different views still see identical weak crops for the same `(seed, key)`.
    """
    return random.Random(derive_seed(seed, key, stream))


class SemiDataset(Dataset):
    """UniMatch's SemiDataset over `(image_rel, mask_rel)` items under `root`, indexed by sample key.

    - `train_l`: resize long side, pad (mask 255), random crop, flip → `{"image", "mask"}`.
    - `train_u`: the same weak pipeline with padding marked 254 → `{"weak", "ignore"}` (`ignore` 255 on
      padding, else 0), plus `strong1`/`strong2` (independent strong colour pipelines of the weak crop) and
      `box1`/`box2` (independent CutMix boxes), each only when named in `views`. The mask file is not read:
      unlabeled data need not have labels.
    - `val`: the full image, no resize → `{"image", "mask", "id"}` (`id` is the image's relative path); with
      `image_view`, the image under that view (drawn from `(seed, key)`), the mask as it is.
    `length` only sets `len()`; any integer key is valid.
    """

    def __init__(self, root: str | os.PathLike, items: Sequence[tuple[str, str]], mode: str,
                 crop_size: int | None, num_classes: int, views: frozenset[str] | set[str] = frozenset(),
                 seed: int = 0, length: int | None = None, image_view: ImageView | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown dataset mode {mode!r}; expected one of {', '.join(MODES)}")
        if image_view is not None and mode != "val":
            raise ValueError(f"an image_view applies to val images only, not to mode {mode!r}")
        unknown = set(views) - SAMPLE_VIEWS - BATCH_VIEWS
        if unknown:
            raise ValueError(f"unknown view(s) {sorted(unknown)}; known: {sorted(SAMPLE_VIEWS | BATCH_VIEWS)}")
        if mode != "val" and (crop_size is None or crop_size <= 0):
            raise ValueError(f"mode {mode!r} needs a positive crop_size, got {crop_size!r}")
        if not items:
            raise DataError(f"dataset under {root} has no samples ({mode})")
        self.root = Path(root)
        self.items = list(items)
        self.mode = mode
        self.crop_size = crop_size
        self.num_classes = num_classes
        self.views = frozenset(views) & SAMPLE_VIEWS
        self.seed = seed
        self.length = length
        self.image_view = image_view
        self._decoded: dict[int, tuple[Image.Image, Image.Image | None]] | None = None
        self._cache_decided = False
        self._cached_bytes = 0

    def __len__(self) -> int:
        return self.length if self.length is not None else len(self.items)

    def __getitem__(self, key: int) -> dict:
        key = operator.index(key)
        index = key % len(self.items)
        image_rel = self.items[index][0]
        image, mask = self._read(index)
        if mask is None:
            # Labels of unlabeled samples are never used; a zero mask only carries the padding through.
            mask = Image.new("L", image.size, 0)

        if self.mode == "val":
            if self.image_view is not None:
                image = self.image_view(image, sample_rng(self.seed, key, "image_view"))
            image_tensor, mask_tensor = normalize(image, mask)
            return {"image": image_tensor, "mask": mask_tensor, "id": image_rel}

        pad_value = UNLABELED_PAD_VALUE if self.mode == "train_u" else LABELED_PAD_VALUE
        image, mask = self._weak(image, mask, key, pad_value)
        if self.mode == "train_l":
            image_tensor, mask_tensor = normalize(image, mask)
            return {"image": image_tensor, "mask": mask_tensor}
        return self._unlabeled_views(image, mask, key)

    def _read(self, index: int) -> tuple[Image.Image, Image.Image | None]:
        """The decoded image and checked mask of item `index` (no mask for `train_u`), from the cache when the
        dataset is small enough to keep (DECODE_CACHE_BYTES). The augmentations return new images, never
        changing their input, so a cached image is shared safely by every draw."""
        if self._decoded is not None and index in self._decoded:
            return self._decoded[index]
        image_rel, mask_rel = self.items[index]
        image_path = self.root / image_rel
        image = read_image(image_path)
        mask = None
        if self.mode != "train_u":
            mask_path = self.root / mask_rel
            mask = read_mask(mask_path, self.num_classes)
            if mask.size != image.size:
                raise DataError(f"size mismatch: image {image_path} is {image.size[0]}x{image.size[1]} but "
                                f"mask {mask_path} is {mask.size[0]}x{mask.size[1]} (width x height)")
        size = image.size[0] * image.size[1] * (4 if mask is not None else 3)
        if not self._cache_decided:   # from the first image: a dataset far over the budget never starts one
            self._cache_decided = True
            if len(self.items) * size <= DECODE_CACHE_BYTES:
                self._decoded = {}
        if self._decoded is not None and self._cached_bytes + size <= DECODE_CACHE_BYTES:
            self._decoded[index] = (image, mask)
            self._cached_bytes += size
        return image, mask

    def _weak(self, image: Image.Image, mask: Image.Image, key: int,
              pad_value: int) -> tuple[Image.Image, Image.Image]:
        rng = sample_rng(self.seed, key, "weak")
        image, mask = resize_long_side(image, mask, rng, RESIZE_RATIO_RANGE)
        image, mask = pad_and_crop(image, mask, self.crop_size, rng, pad_value)
        return hflip(image, mask, rng, FLIP_P)

    def _unlabeled_views(self, image: Image.Image, mask: Image.Image, key: int) -> dict:
        padding = torch.from_numpy(np.array(mask)) == UNLABELED_PAD_VALUE
        ignore = torch.zeros(padding.shape, dtype=torch.long)
        ignore[padding] = IGNORE_INDEX
        sample = {"weak": normalize(image), "ignore": ignore}
        for name in ("strong1", "strong2"):
            if name in self.views:
                sample[name] = normalize(strong_color(image, sample_rng(self.seed, key, name)))
        for name in ("box1", "box2"):
            if name in self.views:
                sample[name] = cutmix_box(self.crop_size, sample_rng(self.seed, key, name), p=CUTMIX_P)
        return sample


def read_image(path: str | os.PathLike) -> Image.Image:
    """An RGB image, fully decoded now so corrupt bytes fail here with the file named."""
    try:
        with Image.open(path) as opened:
            return opened.convert("RGB")
    except _READ_ERRORS as err:
        raise DataError(f"cannot read image {path}: {err}") from None


def read_mask(path: str | os.PathLike, num_classes: int) -> Image.Image:
    """A class-id mask as an 'L' image, checked to hold only labels in [0, num_classes) and 255 (ignore).

    Masks are palettized ('P') or greyscale ('L') PNGs; the pixel values (palette indices) are the class ids.
    """
    try:
        with Image.open(path) as opened:
            opened.load()  # decode now: numpy's array protocol may hide a decoding error
            mode = opened.mode
            labels = np.array(opened)
    except _READ_ERRORS as err:
        raise DataError(f"cannot read mask {path}: {err}") from None
    if mode not in ("P", "L"):
        raise DataError(f"mask {path} has image mode {mode!r}; expected a palettized ('P') or greyscale ('L') "
                        f"PNG whose pixel values are class ids")
    if labels.size and labels.max() >= num_classes:
        found = np.unique(labels)
        bad = [int(value) for value in found if value >= num_classes and value != IGNORE_INDEX]
        if bad:
            raise DataError(f"mask {path} has label values {bad} outside [0, {num_classes}) and {IGNORE_INDEX} "
                            f"(ignore)")
    return Image.fromarray(labels)


class KeySampler(Sampler[int]):
    """The trainer's stream of sample keys: epoch after epoch, each a fresh permutation, sharded over ranks.

    Stream definition (global positions p = 0, 1, 2, ...), with epoch length L = `length` or n:
    - R = ceil(L / n) copies of the n ids span a per-epoch key space of P = R·n slots; slot s is id s % n.
    - Used slots: all P when L is a multiple of n; otherwise the first L of `torch.randperm(P)` drawn once
      from `derive_seed(seed, "slots")` — UniMatch's `ids * ceil(nsample / len(ids))`, shuffled once, truncated
      to nsample (which ids get the extra copy is fixed for the run).
    - Epoch e = p // L, i = p % L: `perm_e = torch.randperm(L)` from a generator seeded with
      `derive_seed(seed, "epoch", e)`; key(p) = e·P + used_slots[perm_e[i]]. Without `length`, P = n and this
      is `e·n + perm_e[i]`. Every draw of an epoch gets its own key, so repeated labeled ids are augmented
      independently, and `key % n` is the id.
    - Rank r of `world_size` yields positions start + r, start + r + world_size, ... up to `stop` (exclusive;
      None = infinite). `start` counts the global positions already consumed — on resume,
      `step · batch_size_per_rank · world_size` — so a resumed run continues the identical stream.
    For a second, independent stream over the same ids (the CutMix source batch), use a different seed for both
    the sampler and the dataset, e.g. `derive_seed(seed, "mix")`.
    """

    def __init__(self, n: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1,
                 length: int | None = None, stop: int | None = None):
        if n <= 0:
            raise ValueError(f"KeySampler needs at least one id, got n={n}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        if length is not None and length <= 0:
            raise ValueError(f"epoch length must be positive, got {length}")
        if start < 0:
            raise ValueError(f"start must be >= 0, got {start}")
        self.n = n
        self.seed = seed
        self.start = start
        self.rank = rank
        self.world_size = world_size
        self.stop = stop
        self.epoch_length = length if length is not None else n
        self.keys_per_epoch = math.ceil(self.epoch_length / n) * n
        self._used_slots: torch.Tensor | None = None
        if self.epoch_length != self.keys_per_epoch:
            generator = torch.Generator().manual_seed(derive_seed(seed, "slots"))
            self._used_slots = torch.randperm(self.keys_per_epoch, generator=generator)[:self.epoch_length]
        self._cached_epoch = -1
        self._cached_perm = torch.empty(0, dtype=torch.long)

    def epoch_keys(self, epoch: int) -> torch.Tensor:
        """The L keys of one epoch, in stream order."""
        if epoch != self._cached_epoch:
            generator = torch.Generator().manual_seed(derive_seed(self.seed, "epoch", epoch))
            order = torch.randperm(self.epoch_length, generator=generator)
            slots = order if self._used_slots is None else self._used_slots[order]
            self._cached_perm = epoch * self.keys_per_epoch + slots
            self._cached_epoch = epoch
        return self._cached_perm

    def key_at(self, position: int) -> int:
        epoch, offset = divmod(position, self.epoch_length)
        return int(self.epoch_keys(epoch)[offset])

    def __iter__(self) -> Iterator[int]:
        position = self.start + self.rank
        while self.stop is None or position < self.stop:
            yield self.key_at(position)
            position += self.world_size

    def __len__(self) -> int:
        if self.stop is None:
            raise TypeError("an infinite KeySampler (stop=None) has no length")
        return len(range(self.start + self.rank, self.stop, self.world_size))


class ShardedEvalSampler(Sampler[int]):
    """Indices 0..n-1 split over ranks (rank r takes r, r + world_size, ...) with no padding, so every image
    is evaluated exactly once; ranks may differ in length by one. Sum confusion matrices over ranks."""

    def __init__(self, n: int, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.indices = range(rank, n, world_size)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def build_loader(dataset: Dataset, batch_size: int, sampler: Sampler[int], num_workers: int = 0,
                 drop_last: bool = True) -> DataLoader:
    """A DataLoader over an explicit key sampler. Worker seeding does not matter: samples carry their own RNG."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      drop_last=drop_last, persistent_workers=num_workers > 0)
