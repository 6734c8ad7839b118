"""Miniature trees in each real dataset's on-disk layout, read the way training reads them, and the shipped
official split lists checked against the pinned manifest (so the miniatures provably mirror the real layout)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datasets import manifest
from datasets.catalog import get_spec, voc_palette
from datasets.semi import SemiDataset
from datasets.splits import read_split_file, sha256_file, split_paths, val_path

SHARED_SPLITS = Path("/work/shared/splits/unimatch")
needs_shared = pytest.mark.skipif(not (SHARED_SPLITS / "MANIFEST.txt").is_file(),
                                  reason="the shared official split lists (/work/shared/splits/unimatch) are absent")

# One regex per dataset for a split-list line: the path shapes of the official lists.
LINE_PATTERNS = {
    "pascal": re.compile(r"JPEGImages/(\d{4}_\d{6})\.jpg SegmentationClass/\1\.png"),
    "cityscapes": re.compile(r"leftImg8bit/(train|val)/([a-z_]+)/(\2_\d{6}_\d{6})_leftImg8bit\.png "
                             r"gtFine/\1/\2/\3_gtFine_labelTrainIds\.png"),
    "coco": re.compile(r"(train2017|val2017)/(\d{12})\.jpg masks/\2\.png"),
}


def _save_image(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)


def _save_mask(path: Path, size: tuple[int, int], num_classes: int, seed: int, palettized: bool) -> np.ndarray:
    """Blocks of class ids with a 255 border around each, like VOC's object outlines."""
    w, h = size
    labels = np.zeros((h, w), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    for _ in range(3):
        x, y = int(rng.integers(0, w - 8)), int(rng.integers(0, h - 8))
        labels[y:y + 8, x:x + 8] = 255
        labels[y + 1:y + 7, x + 1:x + 7] = int(rng.integers(1, num_classes))
    mask = Image.fromarray(labels, "L")
    if palettized:
        mask = mask.convert("P")
        mask.putpalette(voc_palette())
    path.parent.mkdir(parents=True, exist_ok=True)
    mask.save(path)
    return labels


def _write_list(path: Path, items: list[tuple[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{image} {mask}\n" for image, mask in items))
    return path


def pascal_items(names: list[str]) -> list[tuple[str, str]]:
    return [(f"JPEGImages/{n}.jpg", f"SegmentationClass/{n}.png") for n in names]


def cityscapes_items(subset: str, city: str, numbers: list[int]) -> list[tuple[str, str]]:
    stems = [f"{city}/{city}_{n:06d}_000019" for n in numbers]
    return [(f"leftImg8bit/{subset}/{s}_leftImg8bit.png", f"gtFine/{subset}/{s}_gtFine_labelTrainIds.png")
            for s in stems]


def coco_items(subset: str, ids: list[int]) -> list[tuple[str, str]]:
    return [(f"{subset}/{i:012d}.jpg", f"masks/{i:012d}.png") for i in ids]


def build_tree(dataset: str, root: Path, split_dir: Path, split: str) -> dict[str, list[tuple[str, str]]]:
    """A miniature tree of `dataset` in its real layout, with `split`'s lists and val.txt in UniMatch's format."""
    if dataset == "pascal":
        labeled, unlabeled, val = (pascal_items(["2007_000032", "2007_000039"]), pascal_items(["2011_003276"]),
                                   pascal_items(["2007_000033"]))
    elif dataset == "cityscapes":
        labeled, unlabeled, val = (cityscapes_items("train", "aachen", [0, 1]),
                                   cityscapes_items("train", "jena", [32]),
                                   cityscapes_items("val", "frankfurt", [62250]))
    else:
        labeled, unlabeled, val = (coco_items("train2017", [9, 25]), coco_items("train2017", [30]),
                                   coco_items("val2017", [139]))
    spec = get_spec(dataset)
    sizes = [(48, 40), (40, 52), (44, 44), (56, 36)]
    for index, (image, mask) in enumerate(labeled + unlabeled + val):
        _save_image(root / image, sizes[index % len(sizes)], seed=index)
        _save_mask(root / mask, sizes[index % len(sizes)], spec.num_classes, seed=index,
                   palettized=dataset == "pascal")
    lists = {f"{split}/labeled.txt": labeled, f"{split}/unlabeled.txt": unlabeled, "val.txt": val}
    for rel, items in lists.items():
        _write_list(split_dir / rel, items)
    return lists


@pytest.mark.parametrize("dataset", ["pascal", "cityscapes", "coco"])
def test_miniature_tree_lines_have_the_official_shape(dataset, tmp_path):
    lists = build_tree(dataset, tmp_path / "data", tmp_path / "splits", get_spec(dataset).splits[0])
    for items in lists.values():
        for image, mask in items:
            assert LINE_PATTERNS[dataset].fullmatch(f"{image} {mask}")


@pytest.mark.parametrize("dataset", ["pascal", "cityscapes", "coco"])
def test_miniature_tree_reads_through_split_lists_and_semi_dataset(dataset, tmp_path):
    spec = get_spec(dataset)
    root, split_dir, split = tmp_path / "data", tmp_path / "splits", spec.splits[0]
    build_tree(dataset, root, split_dir, split)
    labeled_txt, unlabeled_txt = split_paths(split_dir, split)
    labeled = read_split_file(labeled_txt, root)
    assert len(read_split_file(unlabeled_txt, root)) == 1
    val = read_split_file(val_path(split_dir), root)

    sample = SemiDataset(root, val, "val", None, spec.num_classes)[0]
    expected = np.array(Image.open(root / val[0][1]))
    assert sample["image"].shape[1:] == expected.shape
    assert np.array_equal(sample["mask"].numpy(), expected) and 255 in expected
    crop = 32
    train = SemiDataset(root, labeled, "train_l", crop, spec.num_classes, seed=1)
    for key in range(2):
        item = train[key]
        assert item["image"].shape == (3, crop, crop) and item["mask"].shape == (crop, crop)
        values = set(item["mask"].unique().tolist())
        assert values <= set(range(spec.num_classes)) | {255}


def test_coco_spec_follows_unimatch():
    spec = get_spec("coco")
    assert spec.num_classes == 81 and spec.class_names[0] == "background"
    assert spec.class_names[1] == "person" and spec.class_names[80] == "toothbrush"
    assert (spec.crop_size, spec.eval_mode) == (513, "whole")


@pytest.mark.parametrize("dataset", ["pascal", "cityscapes", "coco"])
def test_registered_splits_are_exactly_the_pinned_split_folders(dataset):
    assert sorted(get_spec(dataset).splits) == manifest.pinned_splits(dataset)


def _parse_shared_manifest() -> tuple[str, str, dict[str, tuple[str, int]]]:
    commit = pattern = ""
    files = {}
    for line in (SHARED_SPLITS / "MANIFEST.txt").read_text().splitlines():
        if line.startswith("# source:"):
            commit = line.split("commit")[-1].strip()
        elif line.startswith("# raw URL pattern:"):
            pattern = line.split(":", 1)[1].strip()
        elif line.strip() and not line.startswith("#"):
            sha, lines, path = line.split()
            files[path] = (sha, int(lines))
    return commit, pattern, files


@needs_shared
def test_manifest_module_is_a_faithful_copy_of_the_shared_manifest():
    commit, pattern, files = _parse_shared_manifest()
    assert manifest.COMMIT == commit
    assert manifest.FILES == files
    assert manifest.url_for("pascal", "92/labeled.txt") == pattern.replace("<path>", "pascal/92/labeled.txt")


@needs_shared
@pytest.mark.parametrize("dataset", ["pascal", "cityscapes", "coco"])
def test_shipped_official_lists_match_checksums_line_counts_and_layout(dataset):
    val = set(read_split_file(SHARED_SPLITS / dataset / "val.txt", check_exists=False))
    for rel, (sha, count) in manifest.files_for(dataset).items():
        path = SHARED_SPLITS / dataset / rel
        assert sha256_file(path) == sha, rel
        items = read_split_file(path, check_exists=False)
        assert len(items) == count, rel
        bad = [f"{image} {mask}" for image, mask in items if not LINE_PATTERNS[dataset].fullmatch(f"{image} {mask}")]
        assert not bad, f"{rel}: {bad[:3]}"
        if rel != "val.txt":
            assert not set(items) & val, f"{rel} overlaps val"
    for split in manifest.pinned_splits(dataset):
        labeled = set(read_split_file(SHARED_SPLITS / dataset / split / "labeled.txt", check_exists=False))
        unlabeled_txt = SHARED_SPLITS / dataset / split / "unlabeled.txt"
        if unlabeled_txt.is_file():
            assert not labeled & set(read_split_file(unlabeled_txt, check_exists=False)), split


@pytest.mark.parametrize("profile, dataset", [("pascal", "pascal"), ("pascal_blended", "pascal"),
                                              ("cityscapes", "cityscapes"), ("coco", "coco")])
def test_real_dataset_profiles_resolve_to_registered_splits_and_components(profile, dataset):
    from benchmark.train.config import resolve
    from methods.registry import owner_of_component
    cfg = resolve(profile=profile, method="unimatch")
    spec = get_spec(dataset)
    assert cfg.data.dataset == dataset and cfg.data.crop_size == spec.crop_size
    assert cfg.grid.splits and set(cfg.grid.splits) <= set(spec.splits)
    assert all(isinstance(split, str) for split in cfg.grid.splits)   # YAML reads an unquoted 1_16 as 116
    assert [c for c in cfg.grid.ablations if not owner_of_component(c)] == []
    assert cfg.per_method == {"supervised": {"labeled_batch_factor": 2}} and cfg.grid.seeds == 3
