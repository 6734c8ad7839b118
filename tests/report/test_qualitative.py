"""Qualitative figures: fixed val images, predictions saved at each new best, the report's figure or note."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark.train.sample_images import QUALITATIVE_FILE, pick_images
from benchmark.report import qualitative as report_qualitative
from benchmark.report.results_store import load_results
from tests.fixtures.report_factory import write_run


def test_images_are_fixed_by_seed_not_by_run():
    assert pick_images(40, 4) == pick_images(40, 4)
    assert len(set(pick_images(40, 4))) == 4 and pick_images(40, 4) == sorted(pick_images(40, 4))
    assert pick_images(3, 4) == [0, 1, 2] and pick_images(40, 0) == []


def test_trainer_saves_best_on_val_predictions(tmp_path):
    from benchmark.train.config import resolve
    from benchmark.train.trainer import Trainer
    cfg = resolve(profile="smoke", method="supervised",
                  overrides=[f"output.results_dir={tmp_path}", "train.iters=4", "eval.every=2",
                             "output.qualitative_images=3"])
    trainer = Trainer(cfg, progress=False)
    summary = trainer.fit()
    with np.load(trainer.run_dir / QUALITATIVE_FILE) as saved:
        assert int(saved["iter"]) == summary["best"]["iter"]   # the best-on-val evaluation's predictions
        assert len(saved["ids"]) == 3
        assert saved["image_0"].shape[:2] == saved["mask_0"].shape == saved["pred_0"].shape
        assert saved["image_0"].dtype == np.uint8 and saved["palette"].shape == (4, 3)
    off = resolve(profile="smoke", method="supervised", overrides=[f"output.results_dir={tmp_path / 'off'}",
                  "train.iters=4", "eval.every=2", "output.qualitative_images=0"])
    trainer = Trainer(off, progress=False)
    trainer.fit()
    assert not (trainer.run_dir / QUALITATIVE_FILE).exists()
    assert off.hash() == cfg.hash()   # figures do not change the recipe


def _save_npz(folder, ids, preds):
    rng = np.random.default_rng(0)
    arrays = {}
    for k, _ in enumerate(ids):
        arrays[f"image_{k}"] = rng.integers(0, 255, (8, 12, 3), dtype=np.uint8)
        arrays[f"mask_{k}"] = np.full((8, 12), 1, dtype=np.uint8)
        arrays[f"pred_{k}"] = np.full((8, 12), preds, dtype=np.uint8)
    np.savez_compressed(folder / QUALITATIVE_FILE, ids=np.array(ids), iter=np.array(2),
                        palette=np.array([[0, 0, 0], [128, 0, 0], [0, 128, 0]], dtype=np.uint8), **arrays)


def test_report_collects_same_images_for_every_method_and_draws(tmp_path):
    for method, pred in (("supervised", 0), ("unimatch", 1)):
        for seed in range(2):
            folder = write_run(tmp_path, "animals", "1_32", method, seed, 30.0, class_names=["bg", "a", "b"])
            if seed == 1:
                _save_npz(folder, ["x.png", "y.png"], pred)
    write_run(tmp_path, "animals", "1_32", "fixmatch", 0, 31.0)   # saved nothing
    q = report_qualitative.collect(load_results(tmp_path).runs, "animals", "1_32")
    assert [p.method for p in q.panels] == ["Supervised", "UniMatch"] and q.missing == ["FixMatch"]
    assert [p.seed for p in q.panels] == [1, 1]
    assert (q.panels[1].preds[0] == 1).all()
    assert "Not shown (no saved predictions of these images): FixMatch" in report_qualitative.caption(
        q, "animals", "1_32")
    path = report_qualitative.draw(q, "animals", tmp_path / "q.png")
    assert path.stat().st_size > 0
    colours = report_qualitative.colourise(np.array([[0, 2, 255]], dtype=np.uint8), q.palette)
    assert colours.tolist() == [[[0, 0, 0], [0, 128, 0], [255, 255, 255]]]


def test_report_skips_with_a_note_without_predictions(tmp_path):
    from benchmark.report.__main__ import main
    write_run(tmp_path / "results", "animals", "1_32", "supervised", 0, 30.0)
    assert main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "No qualitative figure for animals split(s) 1_32" in md
