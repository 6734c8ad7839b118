"""Where one session of a run stands as the training loop goes: its steps, the best and last evaluation, the
step time, and the live outputs (progress bar, TensorBoard, qualitative images) it feeds."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tqdm import tqdm

from benchmark.train.sample_images import QualitativeSaver
from benchmark.train.tensorboard_log import TensorBoardLog


@dataclass
class Session:
    """Where this process's session of a run stands: what the loop updates step by step, and what each
    checkpoint keeps of it."""
    start: int                 # the step this session resumes from (0 for a new run)
    total: int
    every: int                 # steps between evaluations
    checkpoint_every: int      # train.checkpoint_every (0 = only at evaluations)
    images_per_step: int       # per process
    facts: dict[str, Any]      # the recipe as trained (schedule.run_facts), recorded in the summary
    best: dict | None
    last: dict | None
    train_time: float          # step time of the earlier sessions (restored from the checkpoint)
    checkpoint_step: int | None   # the step of the last checkpoint written or resumed from
    qualitative: QualitativeSaver | None
    live: TensorBoardLog
    bar: tqdm
    steps: int = 0             # steps trained in this session, and their time
    step_seconds: float = 0.0

    def elapsed(self) -> float:
        """Step time of the whole run so far."""
        return self.train_time + self.step_seconds

    def evaluation_due(self, done: int) -> bool:
        return done % self.every == 0 or done == self.total

    def checkpoint_due(self, done: int) -> bool:
        """Besides the checkpoint written after each evaluation."""
        return self.checkpoint_every > 0 and done % self.checkpoint_every == 0

    def show(self, out: dict[str, float]) -> None:
        self.bar.update(1)
        self.bar.set_postfix(loss=f"{out['loss']:.3f}", best=f"{self.best['miou']:.1f}" if self.best else "-")

    def close(self) -> None:
        self.bar.close()
        self.live.close()
