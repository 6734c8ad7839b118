"""The pseudo-label quality tool: counts on hand-built tensors, and the CLI on a tiny run."""
from __future__ import annotations

import json

import pytest
import torch

from benchmark.diagnostics import pseudo_labels
from benchmark.train.config import resolve
from benchmark.train.trainer import Trainer


def test_confident_statistics_by_hand():
    # 1 image, 2 classes, 4 pixels: confidences 0.9 (class 0), 0.6 (class 1), 0.99 (class 1), ignored pixel.
    p1 = torch.tensor([0.1, 0.6, 0.99, 0.99]).view(1, 1, 2, 2)
    probabilities = torch.cat([1 - p1, p1], dim=1)
    target = torch.tensor([[0, 1], [0, 255]]).view(1, 2, 2)
    counts = pseudo_labels.confident_statistics(probabilities, target, threshold=0.8, num_classes=2)
    assert counts == {"valid": 3, "confident": 2, "confident_as": [1, 1], "confident_right": [1, 0],
                      "ground_truth": [2, 1]}
    summary = pseudo_labels.summarise(counts, ["bg", "fg"], 0.8)
    assert summary["coverage"] == pytest.approx(66.67) and summary["precision"] == 50.0
    assert summary["per_class"]["bg"] == {"share_of_confident": 50.0, "precision": 100.0, "recall": 50.0}
    assert summary["per_class"]["fg"] == {"share_of_confident": 50.0, "precision": 0.0, "recall": 0.0}


def test_cli_measures_a_run_and_writes_its_report(tmp_path, capsys):
    root = tmp_path / "data"
    cfg = resolve(profile="smoke", method="supervised", overrides=[
        f"data.root={root}", f"output.results_dir={tmp_path / 'results'}",
        "train.iters=2", "eval.every=2"])
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    assert pseudo_labels.main([str(trainer.run_dir), "--threshold", "0.0", "--no-progress"]) == 0
    report = json.loads((trainer.run_dir / pseudo_labels.REPORT_NAME).read_text())
    assert report["coverage"] == 100.0                      # threshold 0: every valid pixel is confident
    assert set(report["per_class"]) == set(trainer.plan.spec.class_names)
    assert "% of pixels confident" in capsys.readouterr().out


def test_cli_without_checkpoint_is_one_clear_error(tmp_path):
    from benchmark.errors import run_main
    (tmp_path / "config.yaml").write_text("method: {name: supervised}\n")
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: pseudo_labels.main([str(tmp_path)]))
    assert exc.value.code == 2
