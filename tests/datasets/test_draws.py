"""Draws of the embedded dataset: one per seed, stratified labeled splits, digests checked against the pins."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from benchmark.train.config import ConfigError, resolve
from benchmark.train.data_plan import plan_data
from datasets import animals, draws
from datasets.errors import DataError


def tiny_draw(root, seed=0, design="per_seed", custom=False):
    return animals.ensure_draw(root, seed, design, custom, variant="tiny")


def plan(root, *extra, profile="smoke"):
    return plan_data(resolve(profile=profile, overrides=[f"data.root={root}", *extra]))


# --- which draw a run trains on -----------------------------------------------------------------------------

def test_per_seed_gives_each_seed_its_own_draw_and_every_method_the_same_one(tiny_data):
    zero, one = plan(tiny_data, "train.seed=0"), plan(tiny_data, "train.seed=1")
    assert zero.root == draws.draw_folder(tiny_data, 0) and one.root == draws.draw_folder(tiny_data, 1)
    assert zero.split_dir == zero.root / "splits"
    assert zero.draw.digest != one.draw.digest and zero.draw.design == "per_seed"
    other_method = plan_data(resolve(profile="smoke", method="unimatch",
                                     overrides=[f"data.root={tiny_data}", "train.seed=1"]))
    assert other_method.draw == one.draw


def test_generator_seed_offsets_the_family_and_single_keeps_one_draw(tiny_data):
    assert plan(tiny_data, "train.seed=1", "data.generator_seed=1000").draw.generator_seed == 1001
    single = [plan(tiny_data, f"train.seed={s}", "data.draws=single").draw for s in (0, 1)]
    assert single[0] == single[1] and single[0].generator_seed == 0 and single[0].design == "single"


def test_real_datasets_keep_their_one_draw(tmp_path):
    with pytest.raises(ConfigError, match="generated datasets only"):
        plan(tmp_path, "data.draws=per_seed", profile="pascal")
    with pytest.raises(ConfigError, match="data.draws must be one of"):
        resolve(profile="smoke", overrides=["data.draws=every"])


# --- stratified labeled splits ------------------------------------------------------------------------------

def test_stratified_order_balances_labeled_pixels_and_nests():
    rng = np.random.default_rng(0)
    # Class 0 dominates five times as many images as class 2: a random prefix of 8 would mostly show class 0.
    dominant = rng.choice(3, size=400, p=[0.625, 0.25, 0.125])
    pixels = rng.integers(0, 50, size=(400, 3))
    pixels[np.arange(400), dominant] += 300
    order = draws.stratified_order(pixels, np.random.default_rng(1), 60)
    for count in (8, 24, 60):
        share = pixels[order[:count]].sum(axis=0)
        assert share.max() / share.min() < 1.6, (count, share)
    assert order == draws.stratified_order(pixels, np.random.default_rng(1), 60)
    assert order[:8] == draws.stratified_order(pixels, np.random.default_rng(1), 8)
    assert len(set(order)) == len(order)


# --- digests ------------------------------------------------------------------------------------------------

def test_manifest_digest_is_the_digest_of_the_files(tiny_data):
    folder, record = tiny_draw(tiny_data)
    assert record.digest == json.loads((folder / animals.MANIFEST_NAME).read_text())["digest"]
    assert record.digest == draws.folder_digest(folder, animals._expected_files(folder, animals.VARIANTS["tiny"]))


def _damage_one_pixel(folder):
    path = folder / "JPEGImages" / "train_00002.png"
    pixels = np.asarray(Image.open(path)).copy()
    pixels[0, 0] ^= 1
    Image.fromarray(pixels).save(path)


def test_changed_files_fail_with_how_to_regenerate_unless_custom_data(tmp_path):
    folder, good = tiny_draw(tmp_path)
    _damage_one_pixel(folder)
    with pytest.raises(DataError, match=r"draw0: generated data differ .*--force.*data.custom_data=true"):
        tiny_draw(tmp_path)
    _, custom = tiny_draw(tmp_path, custom=True)
    assert custom.custom and custom.digest != good.digest


def test_pinned_digest_is_enforced(tmp_path, monkeypatch):
    folder, record = tiny_draw(tmp_path, seed=3)
    key = draws.pin_key("tiny", 3, animals.GENERATOR_VERSION)
    monkeypatch.setattr(draws, "pinned_digests", lambda: {key: record.digest})
    assert tiny_draw(tmp_path, seed=3)[1].pinned
    monkeypatch.setattr(draws, "pinned_digests", lambda: {key: "0" * 64})
    with pytest.raises(DataError, match="the digest pinned for tiny/seed3"):
        tiny_draw(tmp_path, seed=3)
    assert tiny_draw(tmp_path, seed=3, custom=True)[1].custom


def test_shipped_pins_cover_the_profiles_draws():
    """Every draw the default and smoke grids train on has a pinned digest of the current generator."""
    pins = draws.pinned_digests()
    for profile in ("default", "smoke"):
        cfg = resolve(profile=profile)
        variant = animals.DATASET_VARIANTS[cfg.data.dataset]
        for seed in range(cfg.grid.seeds):
            generator_seed = draws.draw_seed(cfg.data.generator_seed, seed, cfg.data.draws)
            assert draws.pin_key(variant, generator_seed, animals.GENERATOR_VERSION) in pins, (profile, seed)


def test_summary_records_the_draw(tiny_data, tmp_path):
    from benchmark.train.trainer import Trainer
    cfg = resolve(profile="smoke", method="supervised", overrides=[
        f"data.root={tiny_data}", f"output.results_dir={tmp_path}", "train.iters=1", "eval.every=1", "train.seed=1"])
    summary = Trainer(cfg, progress=False).fit()
    assert summary["data_draw"]["generator_seed"] == 1 and summary["data_draw"]["design"] == "per_seed"
    assert summary["data_draw"]["digest"] == tiny_draw(tiny_data, seed=1)[1].digest
