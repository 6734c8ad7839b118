"""Optional TensorBoard logging: off by default, one clear error without the package, the official tag names."""
from __future__ import annotations

import sys
import types

import pytest

from benchmark.train.config import ConfigError, resolve
from benchmark.train.tensorboard_log import TensorBoardLog


class FakeWriter:
    instances: list["FakeWriter"] = []

    def __init__(self, log_dir):
        self.log_dir, self.scalars, self.closed = log_dir, [], False
        FakeWriter.instances.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


def test_off_by_default_and_not_part_of_the_recipe():
    cfg = resolve(profile="smoke", method="fixmatch")
    assert cfg.train.tensorboard is False
    assert TensorBoardLog(False, "unused").writer is None
    assert resolve(profile="smoke", method="fixmatch", overrides=["train.tensorboard=true"]).hash() == cfg.hash()


def test_missing_package_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)   # import fails as if not installed
    with pytest.raises(ConfigError, match="train.tensorboard=true needs the tensorboard package.*pip install "
                                          "tensorboard"):
        TensorBoardLog(True, tmp_path)


def test_training_logs_losses_confident_ratio_lr_and_val_miou(monkeypatch, tmp_path):
    from benchmark.train.trainer import Trainer
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    FakeWriter.instances.clear()
    cfg = resolve(profile="smoke", method="fixmatch", overrides=[
        f"output.results_dir={tmp_path}", "train.iters=4", "eval.every=2", "train.log_every=2",
        "train.tensorboard=true", "output.qualitative_images=0"])
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    (writer,) = FakeWriter.instances
    assert writer.log_dir == str(trainer.run_dir / "tensorboard") and writer.closed
    tags = {tag for tag, _ in writer.scalars}
    assert {"train/loss_all", "train/loss_x", "train/loss_s", "train/confident_ratio", "train/lr", "eval/mIoU",
            "eval/bird_IoU"} <= tags
    assert sorted(step for tag, step in writer.scalars if tag == "eval/mIoU") == [2, 4]
