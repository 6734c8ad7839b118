"""Optional live training curves in TensorBoard (`train.tensorboard=true`), named as the official UniMatch code
logs them: train/loss_all, train/<loss term>, train/confident_ratio (share of confident pixels), train/lr, eval/mIoU and
eval/<class>_IoU, under <run folder>/tensorboard/. Off by default; the results files never depend on it.

The `tensorboard` package is not a requirement of the suite (requirements-optional.txt lists it): asking for
the logs without it is one clear error before training starts.
"""
from __future__ import annotations

from pathlib import Path

from benchmark.train.config_files import ConfigError

TENSORBOARD_DIR = "tensorboard"


class TensorBoardLog:
    def __init__(self, enabled: bool, run_dir: Path):
        self.writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter   # optional package: only when asked for
        except ImportError:
            raise ConfigError("train.tensorboard=true needs the tensorboard package, which is not installed: "
                              "pip install tensorboard (or set train.tensorboard=false)") from None
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / TENSORBOARD_DIR))

    def train(self, step: int, record: dict[str, float]) -> None:
        if self.writer is None:
            return
        for key, value in record.items():
            self.writer.add_scalar("train/loss_all" if key == "loss" else f"train/{key}", value, step)

    def evaluation(self, record: dict) -> None:
        if self.writer is None:
            return
        self.writer.add_scalar("eval/mIoU", record["miou"], record["iter"])
        for name, iou in record.get("per_class", {}).items():
            self.writer.add_scalar(f"eval/{name}_IoU", iou, record["iter"])
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
