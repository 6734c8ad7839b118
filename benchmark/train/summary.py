"""What a run records about itself: provenance, compute figures, the summary, and the process group."""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import resource
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy
import torch
import torchvision

from benchmark.plugins import is_user_supplied
from benchmark.train.config import Config
from datasets import REPO_ROOT
from datasets.splits import split_paths


@dataclass
class DistInfo:
    """Single process unless torchrun's environment says otherwise (see benchmark/train/distributed.py)."""
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        return model

    def broadcast_parameters(self, modules: list) -> None:
        pass

    def average_gradients(self, parameters: list) -> None:
        pass

    def barrier(self) -> None:
        pass


def git_commit() -> str:
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+dirty" if dirty else "")) if commit else "unknown"


def versions() -> dict[str, str]:
    return {"python": sys.version.split()[0], "torch": torch.__version__, "torchvision": torchvision.__version__,
            "numpy": numpy.__version__, "platform": platform.platform()}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Process-wide peak resident set (includes data and Python), the honest figure on CPU.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def read_summary(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def method_identity(cfg: Config, method) -> dict[str, Any]:
    """What identifies a run's method in its results (summary.json, and same_run.json of a reusing variant)."""
    return {
        "method": method.name, "variant": cfg.output.variant or None,
        "components": dict(method.on),
        "overrides": {k: v for k, v in cfg.method.items() if k not in ("name", "components")},
        "params": dataclasses.asdict(method.params),
        "display_name": method.display_name or method.name,
        "from_paper_description": method.from_paper_description,
        "significance_baseline": method.significance_baseline,
        "user_supplied": is_user_supplied(type(method)), "base": method.resolved_base() or None,
    }


def summary(cfg: Config, method, plan, best: dict, last: dict, iters: int, wall_time: float,
            step_time: float, images_per_step: int, device: torch.device,
            facts: dict[str, Any] | None = None) -> dict[str, Any]:
    """`facts`: the recipe as trained (batch per process and total, world size, evaluations, precision)."""
    return {
        "status": "complete",
        "dataset": plan.spec.name, "split": plan.split, **method_identity(cfg, method),
        "seed": cfg.train.seed, "profile": cfg.profile,
        "best": best, "last": last, "selection": "best on val",
        "iters": iters, "wall_time_s": round(wall_time, 2), "step_time_s": round(step_time, 5),
        "images_per_s": round(images_per_step / step_time, 2) if step_time > 0 else None,
        "peak_memory_mb": round(peak_memory_mb(device), 1), "device": device_name(device),
        "world_size": int(os.environ.get("WORLD_SIZE", 1)),
        "versions": versions(), "git_commit": git_commit(), "config_hash": cfg.hash(),
        "class_names": list(plan.spec.class_names), "num_labeled": num_labeled(plan),
        "data_draw": plan.draw.to_dict() if plan.draw else None, **(facts or {}),
    }


def num_labeled(plan) -> int | None:
    """Labeled images of the run's split (the report's headline says '8 labels' rather than '1_128')."""
    try:
        return sum(1 for line in split_paths(plan.split_dir, plan.split)[0].read_text().splitlines() if line.strip())
    except OSError:
        return None
