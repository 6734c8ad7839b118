import random
from collections import Counter
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.catalog import voc_palette
from datasets.errors import DataError
from datasets.semi import (KeySampler, SemiDataset, ShardedEvalSampler, build_loader, derive_seed, read_image,
                           read_mask)
from datasets.transforms import IMAGENET_MEAN, IMAGENET_STD

NUM_CLASSES = 5
CROP = 32
ALL_VIEWS = frozenset({"strong1", "strong2", "box1", "box2"})
SIZES = [(40, 30), (24, 36), (50, 50), (18, 12)]   # the last is smaller than the crop at any scale


def write_sample(root: Path, name: str, size: tuple[int, int], seed: int, with_ignore: bool = True,
                 mask_mode: str = "P") -> tuple[str, str]:
    w, h = size
    gen = np.random.default_rng(seed)
    # image values >= 1, so zero padding stays recognisable after bilinear resizing
    Image.fromarray(gen.integers(1, 256, (h, w, 3), dtype=np.uint8), "RGB").save(root / "JPEGImages" / f"{name}.png")
    labels = gen.integers(0, NUM_CLASSES, (h, w), dtype=np.uint8)
    if with_ignore:
        labels[0, :] = 255
    mask = Image.fromarray(labels, "L")
    if mask_mode == "P":
        mask = mask.convert("P")
        mask.putpalette(voc_palette())
    else:
        mask = mask.convert(mask_mode)
    mask.save(root / "SegmentationClass" / f"{name}.png")
    return f"JPEGImages/{name}.png", f"SegmentationClass/{name}.png"


@pytest.fixture
def data(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClass").mkdir()
    items = [write_sample(tmp_path, f"s{i}", size, seed=i) for i, size in enumerate(SIZES)]
    return tmp_path, items


def dataset(data, mode, **kwargs):
    root, items = data
    return SemiDataset(root, kwargs.pop("items", items), mode, CROP, NUM_CLASSES, **kwargs)


ZERO_PIXEL = torch.tensor([-m / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)])


def is_padding(image: torch.Tensor) -> torch.Tensor:
    return torch.isclose(image, ZERO_PIXEL[:, None, None], atol=1e-5).all(dim=0)


def test_train_l_outputs_crop_with_255_padding(data):
    root, _ = data
    items = [write_sample(root, f"clean{i}", size, seed=10 + i, with_ignore=False) for i, size in enumerate(SIZES)]
    labeled = dataset(data, "train_l", items=items)
    padded_samples = 0
    for key in range(40):
        sample = labeled[key]
        assert set(sample) == {"image", "mask"}
        assert sample["image"].shape == (3, CROP, CROP) and sample["image"].dtype == torch.float32
        assert sample["mask"].shape == (CROP, CROP) and sample["mask"].dtype == torch.long
        assert torch.equal(sample["mask"] == 255, is_padding(sample["image"]))
        assert set(sample["mask"].unique().tolist()) <= set(range(NUM_CLASSES)) | {255}
        padded_samples += bool((sample["mask"] == 255).any())
    assert padded_samples >= 10     # the 18x12 image is always padded


@pytest.mark.parametrize("views", [frozenset(), frozenset({"strong1"}), frozenset({"strong1", "box1"}), ALL_VIEWS,
                                   frozenset({"strong1", "strong2", "box1", "box2", "mix"})])
def test_train_u_builds_only_requested_views(data, views):
    sample = dataset(data, "train_u", views=views)[3]
    assert set(sample) == {"weak", "ignore"} | (views - {"mix"})
    for name in ("weak", "strong1", "strong2"):
        if name in sample:
            assert sample[name].shape == (3, CROP, CROP)
    for name in ("box1", "box2"):
        if name in sample:
            assert sample[name].shape == (CROP, CROP) and sample[name].dtype == torch.long


def test_train_u_ignore_is_255_exactly_on_padding(data):
    unlabeled = dataset(data, "train_u", views=ALL_VIEWS)
    padded_samples = 0
    for key in range(40):
        sample = unlabeled[key]
        ignore = sample["ignore"]
        assert ignore.dtype == torch.long and set(ignore.unique().tolist()) <= {0, 255}
        assert torch.equal(ignore == 255, is_padding(sample["weak"]))
        padded_samples += bool((ignore == 255).any())
    assert padded_samples >= 10


def test_train_u_never_reads_masks(data):
    root, items = data
    no_labels = [(image, "SegmentationClass/does_not_exist.png") for image, _ in items]
    assert dataset(data, "train_u", items=no_labels)[0]["weak"].shape == (3, CROP, CROP)


def test_sample_is_a_pure_function_of_seed_and_key(data):
    first = dataset(data, "train_u", views=ALL_VIEWS, seed=1)
    second = dataset(data, "train_u", views=ALL_VIEWS, seed=1)
    other_seed = dataset(data, "train_u", views=ALL_VIEWS, seed=2)
    n = len(SIZES)
    random.seed(123), torch.manual_seed(123)
    state = (random.getstate(), torch.get_rng_state())
    for key in (0, 5, 1000):
        a, b = first[key], second[key]
        assert all(torch.equal(a[name], b[name]) for name in a)
        # same image (key % n), different augmentation
        assert not torch.equal(a["weak"], first[key + n]["weak"])
        assert not torch.equal(a["weak"], other_seed[key]["weak"])
    assert random.getstate() == state[0] and torch.equal(torch.get_rng_state(), state[1])
    labeled = dataset(data, "train_l", seed=1)
    assert torch.equal(labeled[7]["image"], dataset(data, "train_l", seed=1)[7]["image"])
    assert torch.equal(labeled[7]["mask"], dataset(data, "train_l", seed=1)[7]["mask"])


def test_views_do_not_perturb_each_other(data):
    full = dataset(data, "train_u", views=ALL_VIEWS)
    for key in range(8):
        reference = full[key]
        assert torch.equal(dataset(data, "train_u")[key]["weak"], reference["weak"])
        partial = dataset(data, "train_u", views={"strong1", "box1"})[key]
        assert torch.equal(partial["strong1"], reference["strong1"])
        assert torch.equal(partial["box1"], reference["box1"])


def test_strong_views_and_boxes_are_independent(data):
    unlabeled = dataset(data, "train_u", views=ALL_VIEWS)
    samples = [unlabeled[key] for key in range(60)]
    assert sum(not torch.equal(s["strong1"], s["strong2"]) for s in samples) > 40
    assert sum(not torch.equal(s["strong1"], s["weak"]) for s in samples) > 40
    applied = Counter((bool(s["box1"].any()), bool(s["box2"].any())) for s in samples)
    assert len(applied) == 4     # each box is applied independently (p = 0.5)


def test_val_returns_full_resolution_and_id(data):
    val = SemiDataset(data[0], data[1], "val", None, NUM_CLASSES)
    for index, (w, h) in enumerate(SIZES):
        sample = val[index]
        assert set(sample) == {"image", "mask", "id"}
        assert sample["image"].shape == (3, h, w) and sample["mask"].shape == (h, w)
        assert sample["id"] == data[1][index][0]
        expected = np.array(Image.open(data[0] / data[1][index][1]))
        assert torch.equal(sample["mask"], torch.from_numpy(expected).long())


def test_greyscale_masks_are_accepted(data):
    root, _ = data
    item = write_sample(root, "grey", (20, 20), seed=3, mask_mode="L")
    assert dataset(data, "train_l", items=[item])[0]["mask"].shape == (CROP, CROP)


def test_corrupt_image_is_named(data):
    root, items = data
    (root / items[0][0]).write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    with pytest.raises(DataError, match=items[0][0]):
        dataset(data, "train_l")[0]
    with pytest.raises(DataError, match=items[0][0]):
        dataset(data, "train_u")[0]


def test_truncated_mask_is_named(data):
    root, items = data
    mask_path = root / items[1][1]
    mask_path.write_bytes(mask_path.read_bytes()[:60])
    with pytest.raises(DataError, match=items[1][1]):
        read_mask(mask_path, NUM_CLASSES)
    with pytest.raises(DataError, match="cannot read image"):
        read_image(root / "JPEGImages" / "missing.png")


def test_out_of_range_labels_are_named(data):
    root, items = data
    labels = np.zeros((30, 40), np.uint8)
    labels[3, 4], labels[5, 6], labels[0, 0] = 50, 7, 255
    Image.fromarray(labels, "L").save(root / items[0][1])
    with pytest.raises(DataError) as info:
        dataset(data, "val")[0]
    message = str(info.value)
    assert items[0][1] in message and "[7, 50]" in message and "[0, 5)" in message


def test_size_mismatch_names_both_files(data):
    root, items = data
    Image.new("L", (41, 30), 0).save(root / items[0][1])
    with pytest.raises(DataError) as info:
        dataset(data, "train_l")[0]
    message = str(info.value)
    assert items[0][0] in message and items[0][1] in message and "40x30" in message and "41x30" in message


def test_rgb_mask_is_rejected(data):
    root, items = data
    Image.new("RGB", (40, 30), (1, 1, 1)).save(root / items[0][1])
    with pytest.raises(DataError, match="mode 'RGB'"):
        dataset(data, "train_l")[0]


def test_bad_arguments():
    with pytest.raises(ValueError, match="mode"):
        SemiDataset(".", [("a", "b")], "train", CROP, NUM_CLASSES)
    with pytest.raises(ValueError, match="strong3"):
        SemiDataset(".", [("a", "b")], "train_u", CROP, NUM_CLASSES, views={"strong3"})
    with pytest.raises(DataError):
        SemiDataset(".", [], "train_l", CROP, NUM_CLASSES)
    assert len(SemiDataset(".", [("a", "b")], "train_l", CROP, NUM_CLASSES, length=9)) == 9


# ---------------------------------------------------------------- key samplers


def test_key_sampler_permutes_each_epoch():
    n = 7
    keys = list(islice(KeySampler(n, seed=0), 3 * n))
    epochs = [keys[e * n:(e + 1) * n] for e in range(3)]
    for e, epoch in enumerate(epochs):
        assert sorted(epoch) == [e * n + i for i in range(n)]
    assert len({tuple(k % n for k in epoch) for epoch in epochs}) == 3
    assert keys != list(islice(KeySampler(n, seed=1), 3 * n))
    assert keys == list(islice(KeySampler(n, seed=0), 3 * n))


@pytest.mark.parametrize("length", [None, 10, 3, 14])
def test_key_sampler_resume_continues_identical_stream(length):
    full = list(KeySampler(5, seed=3, length=length, stop=60))
    for start in (0, 1, 9, 10, 33):
        assert list(KeySampler(5, seed=3, length=length, start=start, stop=60)) == full[start:]
    infinite = KeySampler(5, seed=3, length=length, start=17)
    assert list(islice(infinite, 43)) == full[17:]


@pytest.mark.parametrize("world_size", [2, 3])
def test_key_sampler_shards_are_disjoint_and_cover_the_stream(world_size):
    stop = 36
    full = list(KeySampler(6, seed=0, length=12, stop=stop))
    shards = [list(KeySampler(6, seed=0, length=12, stop=stop, rank=r, world_size=world_size))
              for r in range(world_size)]
    assert [len(KeySampler(6, 0, length=12, stop=stop, rank=r, world_size=world_size))
            for r in range(world_size)] == [len(s) for s in shards]
    interleaved = [shards[p % world_size][p // world_size] for p in range(stop)]
    assert interleaved == full
    assert len(set(full)) == stop      # every draw has its own key


def test_labeled_ids_are_repeated_to_the_unlabeled_count():
    n, length = 3, 10
    sampler = KeySampler(n, seed=5, length=length)
    keys = list(islice(sampler, 4 * length))
    counts_per_epoch = []
    for e in range(4):
        epoch = keys[e * length:(e + 1) * length]
        assert len(set(epoch)) == length
        counts_per_epoch.append(Counter(k % n for k in epoch))
    # UniMatch: ids * ceil(10 / 3) = 4 copies each, shuffled once, truncated to 10 (2 copies dropped)
    assert sum(counts_per_epoch[0].values()) == length and len(counts_per_epoch[0]) == n
    assert all(2 <= count <= 4 for count in counts_per_epoch[0].values())
    assert all(counts == counts_per_epoch[0] for counts in counts_per_epoch)   # fixed for the run
    assert len({tuple(k % n for k in keys[e * length:(e + 1) * length]) for e in range(4)}) > 1


def test_fewer_labeled_draws_than_ids_use_a_fixed_subset():
    keys = list(islice(KeySampler(8, seed=2, length=5), 20))
    subsets = [frozenset(k % 8 for k in keys[e * 5:(e + 1) * 5]) for e in range(4)]
    assert all(len(s) == 5 for s in subsets) and len(set(subsets)) == 1


def test_length_equal_to_n_is_the_plain_stream():
    assert list(KeySampler(4, 9, length=4, stop=20)) == list(KeySampler(4, 9, stop=20))
    with pytest.raises(TypeError):
        len(KeySampler(4, 9))


def test_derive_seed_is_stable():
    # a golden value: changing the mixing would silently change every sample of every run
    assert derive_seed(0, 1, "weak") == 3763591136049149814


def test_sharded_eval_sampler_has_no_padding():
    shards = [list(ShardedEvalSampler(10, r, 4)) for r in range(4)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))
    assert [len(ShardedEvalSampler(10, r, 4)) for r in range(4)] == [3, 3, 2, 2]


def test_build_loader_batches_keys(data):
    loader = build_loader(dataset(data, "train_u", views={"strong1", "box1"}), batch_size=3,
                          sampler=KeySampler(len(SIZES), seed=0, length=8, stop=8))
    batches = list(loader)
    assert len(batches) == 2 and batches[0]["weak"].shape == (3, 3, CROP, CROP)
    assert set(batches[0]) == {"weak", "ignore", "strong1", "box1"}
    val = SemiDataset(data[0], data[1], "val", None, NUM_CLASSES)
    ids = [b["id"][0] for b in build_loader(val, 1, ShardedEvalSampler(len(val), 1, 2), drop_last=False)]
    assert ids == [data[1][1][0], data[1][3][0]]


def count_reads(monkeypatch):
    import datasets.semi as semi
    reads = Counter()
    for name in ("read_image", "read_mask"):
        original = getattr(semi, name)
        monkeypatch.setattr(semi, name, lambda path, *a, _orig=original, _name=name:
                            reads.update([_name]) or _orig(path, *a))
    return reads


@pytest.mark.parametrize("mode, views", [("train_l", frozenset()), ("train_u", ALL_VIEWS), ("val", frozenset())])
def test_small_dataset_decodes_each_file_once_and_samples_are_unchanged(data, monkeypatch, mode, views):
    import datasets.semi as semi
    monkeypatch.setattr(semi, "DECODE_CACHE_BYTES", 0)   # too small for anything: read from disk every time
    uncached = dataset(data, mode, views=views, seed=4)
    expected = [uncached[key] for key in range(3 * len(SIZES))]
    monkeypatch.undo()
    reads = count_reads(monkeypatch)
    cached = dataset(data, mode, views=views, seed=4)
    for key, sample in enumerate(expected):   # every key three times over the four items
        got = cached[key]
        assert got.keys() == sample.keys()
        assert all(torch.equal(got[k], v) if torch.is_tensor(v) else got[k] == v for k, v in sample.items())
    assert reads["read_image"] == len(SIZES)
    assert reads["read_mask"] == (0 if mode == "train_u" else len(SIZES))


def test_dataset_over_the_cache_budget_reads_from_disk_every_time(data, monkeypatch):
    import datasets.semi as semi
    monkeypatch.setattr(semi, "DECODE_CACHE_BYTES", 40 * 30 * 4 * len(SIZES) - 1)   # the first is 40x30
    reads = count_reads(monkeypatch)
    ds = dataset(data, "train_l")
    for key in range(2 * len(SIZES)):
        ds[key]
    assert reads["read_image"] == reads["read_mask"] == 2 * len(SIZES)
