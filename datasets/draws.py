"""One draw of a generated dataset: its folder, its labeled splits, its content digest and the pinned digests.

A *draw* is everything the generator makes from one seed: the image set and its labeled splits. Under
`data.draws: per_seed` the run of training seed k trains on draw `data.generator_seed + k`, so a grid's seeds
average over the generator rather than over one draw; under `single` every seed shares draw
`data.generator_seed`, as the official split lists of the real datasets do.

Digest. The sha256 of the decoded pixels of every image and mask (in file-name order, with shapes) and of the
split lists' text. Decoded pixels rather than file bytes: PNG bytes depend on the zlib that Pillow was built
with, the pixels do not. `datasets/pinned_digests.json` pins the digest of every (variant, seed, generator
version) that a shipped profile uses; a draw whose digest differs is refused unless `data.custom_data=true`
accepts it, and then every table marks the run custom. A draw nobody pinned (a new family of seeds) trains and
records its digest as unpinned.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.errors import DataError
from datasets.io import atomic_write_text

PINNED_DIGESTS_FILE = Path(__file__).with_name("pinned_digests.json")
DIGEST_CACHE = ".digest.json"   # the last verified digest, valid while no file's size or mtime changed
DESIGNS = ("per_seed", "single")


def draw_seed(generator_seed: int, train_seed: int, design: str) -> int:
    """The generator seed of the draw a run of `train_seed` trains on."""
    if design not in DESIGNS:
        raise DataError(f"data.draws must be one of {', '.join(DESIGNS)}, got {design!r}")
    return generator_seed + train_seed if design == "per_seed" else generator_seed


def draw_folder(root: Path, seed: int) -> Path:
    """Where draw `seed` lives under a generated dataset's root (one folder per draw)."""
    return Path(root) / f"draw{seed}"


# ---------------------------------------------------------------------------------------------------------
# Labeled splits: stratified, nested.

def stratified_order(class_pixels: np.ndarray, rng: np.random.Generator, count: int) -> list[int]:
    """`count` image indices, each the next image (in a random order) whose most-covered animal class is the
    class with the fewest labeled pixels so far: every class gets a comparable share of labeled pixels, and
    every prefix of the order is itself balanced (so the smaller label splits nest in the larger ones).

    `class_pixels[i, c]`: pixels of animal class c in train image i (background excluded).
    """
    order = rng.permutation(len(class_pixels))
    dominant = class_pixels[order].argmax(axis=1)
    has_animal = class_pixels[order].sum(axis=1) > 0
    queues = [list(order[(dominant == c) & has_animal]) for c in range(class_pixels.shape[1])]
    rest = list(order[~has_animal])
    labeled_pixels = np.zeros(class_pixels.shape[1], dtype=np.int64)
    chosen: list[int] = []
    while len(chosen) < count:
        # The neediest class that still has images; ties go to the lower class index (deterministic).
        candidates = [c for c in np.argsort(labeled_pixels, kind="stable") if queues[c]]
        index = queues[candidates[0]].pop(0) if candidates else rest.pop(0)
        chosen.append(int(index))
        labeled_pixels += class_pixels[index]
    return chosen


def label_splits(class_pixels: np.ndarray, rng: np.random.Generator, denominators, stratified: bool = True
                 ) -> dict[str, tuple[list[int], list[int]]]:
    """Split name -> (labeled, unlabeled) train indices for `denominators` ((name, d): 1/d of the images
    labeled; d = 1 is `full`); smaller splits are prefixes of one order.

    Stratified (the default): the order of `stratified_order`, so a draw's 8 labels do not leave one class
    nearly unseen. Otherwise a plain random permutation (generator version 2's splits)."""
    num_train = len(class_pixels)
    largest = max(max(1, num_train // d) for _, d in denominators if d > 1)
    order = stratified_order(class_pixels, rng, largest) if stratified else rng.permutation(num_train).tolist()
    splits = {}
    for name, denominator in denominators:
        if denominator == 1:   # `full` follows the custom of using every train image as unlabeled data too
            splits[name] = (list(range(num_train)), list(range(num_train)))
            continue
        labeled = sorted(order[:max(1, num_train // denominator)])
        taken = set(labeled)
        splits[name] = (labeled, [i for i in range(num_train) if i not in taken])
    return splits


# ---------------------------------------------------------------------------------------------------------
# Digests.

class ContentDigest:
    """sha256 over decoded arrays and texts, fed in a fixed order."""

    def __init__(self):
        self._hash = hashlib.sha256()

    def add_array(self, name: str, array: np.ndarray) -> None:
        self._hash.update(f"{name}:{array.dtype}:{array.shape}\n".encode())
        self._hash.update(np.ascontiguousarray(array).tobytes())

    def add_text(self, name: str, text: str) -> None:
        self._hash.update(f"{name}:text:{len(text)}\n".encode())
        self._hash.update(text.encode())

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


def folder_digest(folder: Path, files: list[Path]) -> str:
    """The content digest of a draw folder's `files` (PNGs decoded, text as text), in the given order."""
    digest = ContentDigest()
    for path in files:
        name = path.relative_to(folder).as_posix()
        if path.suffix == ".png":
            with Image.open(path) as image:
                digest.add_array(name, np.asarray(image))
        else:
            digest.add_text(name, path.read_text())
    return digest.hexdigest()


def _stat_key(files: list[Path]) -> str:
    blob = "\n".join(f"{p}:{s.st_size}:{s.st_mtime_ns}" for p in files for s in [p.stat()])
    return hashlib.sha256(blob.encode()).hexdigest()


def verified_digest(folder: Path, files: list[Path]) -> str:
    """`folder_digest`, decoded only when some file's size or mtime changed since the last verification (the
    cache file holds the stat key and the digest it verified)."""
    cache, key = folder / DIGEST_CACHE, _stat_key(files)
    try:
        cached = json.loads(cache.read_text())
        if cached.get("stat_key") == key:
            return cached["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    digest = folder_digest(folder, files)
    try:
        atomic_write_text(cache, json.dumps({"stat_key": key, "digest": digest}))
    except OSError:   # a read-only data folder still verifies, only without the cache
        pass
    return digest


def pin_key(variant: str, seed: int, generator_version: int) -> str:
    return f"{variant}/seed{seed}/v{generator_version}"


def pinned_digests() -> dict[str, str]:
    try:
        return json.loads(PINNED_DIGESTS_FILE.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise DataError(f"{PINNED_DIGESTS_FILE} is unreadable: {e}") from None


def pin_digest(key: str, digest: str) -> None:
    pins = {**pinned_digests(), key: digest}
    atomic_write_text(PINNED_DIGESTS_FILE, json.dumps(dict(sorted(pins.items())), indent=1) + "\n")


@dataclass(frozen=True)
class DrawRecord:
    """What a run records about the data it trained on (summary.json's `data_draw`)."""
    design: str                  # per_seed | single
    generator_seed: int
    generator_version: int
    variant: str
    digest: str
    pinned: bool                 # the repository pins a digest for this (variant, seed, version)
    custom: bool                 # the digest differs from the pinned one and data.custom_data accepted it

    def to_dict(self) -> dict:
        return asdict(self)


def check_digest(digest: str, generated: str | None, key: str, folder: Path, regenerate: str,
                 custom_allowed: bool) -> tuple[bool, bool]:
    """(pinned, custom) for the digest of a draw's files. They must equal the pinned digest of `key` where the
    repository pins one, else what the generator recorded (`generated`, from its manifest); otherwise a
    DataError, unless custom data are accepted."""
    pinned = pinned_digests().get(key)
    expected = pinned or generated
    if expected is None or expected == digest:
        return pinned is not None, False
    if custom_allowed:
        return pinned is not None, True
    what = f"the digest pinned for {key}" if pinned else "what the generator wrote (files changed since)"
    raise DataError(
        f"{folder}: generated data differ from {what} (sha256 {digest[:12]} != {expected[:12]}); regenerate with "
        f"`{regenerate}` (if it still differs, this host's numpy/Pillow draw other pixels), or pass "
        f"data.custom_data=true to train on them as custom data (marked custom in every table)")
