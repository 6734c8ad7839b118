"""A finished (or interrupted) run folder loaded for measurement: its saved config, data plan and model with
the checkpoint's weights. Whatever is missing or unreadable is one ConfigError or DataError naming it, which
`benchmark.errors.run_main` prints as one `error:` line (exit status 2)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark import numerics
from benchmark.train.config import Config, ConfigError, load_run_config
from benchmark.train.data_plan import DataPlan, plan_data
from benchmark.train.model import build_model
from benchmark.train.run_state import CHECKPOINT, read_checkpoint
from benchmark.train.trainer import resolve_device


@dataclass
class TrainedRun:
    run_dir: Path
    cfg: Config
    plan: DataPlan
    model: torch.nn.Module          # in eval mode, on `device`
    device: torch.device
    step: int                       # the checkpoint's step
    best_step: int | None           # the step of the run's best evaluation on val so far (None: none yet)

    @property
    def weights(self) -> str:
        """Which weights these are, in words: the trainer keeps only its last checkpoint, not best-on-val weights."""
        if self.best_step == self.step:
            return f"last checkpoint (step {self.step}), which is also the run's best on val"
        best = f"best on val was step {self.best_step}" if self.best_step is not None else "no evaluation yet"
        return f"last checkpoint (step {self.step}; the run keeps no best-on-val weights, its {best})"


def load_trained_run(run_dir: Path, device: str = "cpu") -> TrainedRun:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"run folder not found: {run_dir}")
    cfg = load_run_config(run_dir / "config.yaml")
    checkpoint = run_dir / CHECKPOINT
    if not checkpoint.is_file():
        raise ConfigError(f"no checkpoint in {run_dir} (output.save_checkpoint=false, or the run never started)")
    plan = plan_data(cfg)
    where = resolve_device(device)
    try:   # measured under the numerics the run trained with (portable: oneDNN off), as its evaluations were
        numerics.apply(cfg.train.cpu_numerics, where.type)
    except RuntimeError as exc:
        raise ConfigError(str(exc)) from None
    state = read_checkpoint(checkpoint, where)
    model = build_model(cfg.model, plan.spec.num_classes).to(where)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:   # weights of another model: the config was edited, or the file replaced
        reason = str(exc).strip().splitlines()[0]
        raise ConfigError(f"checkpoint {checkpoint} does not fit the model of {run_dir / 'config.yaml'} "
                          f"({reason})") from None
    if cfg.train.channels_last:   # as the trainer evaluated it: the layout changes the order of float sums
        model = model.to(memory_format=torch.channels_last)
    best = state.get("best") or {}
    return TrainedRun(run_dir, cfg, plan, model.eval(), where, int(state.get("step", 0)), best.get("iter"))
