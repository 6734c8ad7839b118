"""Each cell planned once: its config, method, run folder and config hash, and whether its run folder holds
it finished. Every later step of the runner (same run as another?, data to prepare, the pointer to write, the
ablation's defaults) reads the plan instead of resolving the cell again.

The trainer subprocess of a cell resolves the same config from the same request: `cell_request` is the one
place that turns a cell and the run options into it, rendered as `python -m benchmark.train` arguments by
`local.train_argv` and resolved here by `benchmark.train.run_setup.run_config`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.grid.cells import Cell
from benchmark.train.config import Config
from benchmark.train.run_setup import build_method, run_config, run_dir_for
from benchmark.train.summary import read_summary
from datasets.catalog import get_spec
from methods.base import Method

TRAIN_COMMAND: tuple[str, ...] = (sys.executable, "-m", "benchmark.train")   # what a cell runs (tests swap it)
CELL_STARTS = ("fork", "spawn")   # grid.cell_start: how a local cell's process starts (benchmark/grid/local.py)


@dataclass(frozen=True)
class RunOptions:
    """How every cell runs; picklable, so Slurm array tasks get the very same options."""
    profile: str
    results_dir: str                        # absolute
    data_root: str | None = None            # absolute
    device: str | None = None
    overrides: tuple[str, ...] = ()         # the user's key=value pairs, for every cell
    train_command: tuple[str, ...] = TRAIN_COMMAND
    # Torch threads per cell (a train.threads override) when cells share the CPU and the profile does not pin
    # train.threads; None = the profile's, else torch's default.
    cell_threads: int | None = None
    omp_threads: int | None = None          # OMP_NUM_THREADS for children (set when cells share the CPU)
    wait_elsewhere: bool = False            # a cell another process is training is waited for (train --wait)
    plugins: tuple[str, ...] = ()           # --plugin modules, passed on to every cell (files: absolute paths)
    cell_start: str = "spawn"               # grid.cell_start (CELL_STARTS); the runner sets it for local cells

    @property
    def logs_dir(self) -> Path:
        return Path(self.results_dir) / "logs"


def cell_request(cell: Cell, opts: RunOptions) -> dict[str, Any]:
    """What a cell asks `benchmark.train.command` for (flags by name, then the overrides in the order they apply)."""
    overrides = [f"train.threads={opts.cell_threads}"] if opts.cell_threads else []   # the user's win
    overrides += [*opts.overrides, *cell.overrides]
    if cell.variant:
        overrides.append(f"output.variant={cell.variant}")
    return {"method": cell.method, "dataset": cell.dataset, "split": cell.split, "seed": cell.seed,
            "profile": opts.profile, "results_dir": opts.results_dir, "data_root": opts.data_root or None,
            "device": opts.device or None, "plugins": list(opts.plugins), "overrides": overrides}


@dataclass(frozen=True)
class CellPlan:
    cell: Cell
    config: Config        # as the cell's trainer resolves it
    method: Method        # built (a bad method key fails here, before any process starts)
    run_dir: Path
    config_hash: str


def plan_cell(cell: Cell, opts: RunOptions) -> CellPlan:
    cfg = run_config(**cell_request(cell, opts))
    method = build_method(cfg, get_spec(cfg.data.dataset).num_classes)
    return CellPlan(cell, cfg, method, run_dir_for(cfg), cfg.hash())


class Plans:
    """The plans of one runner invocation, by run folder key: a cell asked for twice is resolved once."""

    def __init__(self, opts: RunOptions):
        self.opts = opts
        self._plans: dict[tuple, CellPlan] = {}

    def __call__(self, cell: Cell) -> CellPlan:
        plan = self._plans.get(cell.key)
        if plan is None or plan.cell != cell:
            plan = self._plans[cell.key] = plan_cell(cell, self.opts)
        return plan


@dataclass
class CellState:
    run_dir: Path
    config_hash: str
    total_iters: int
    finished: bool
    summary: dict[str, Any] | None = None


    def reread(self) -> CellState:
        """The state now: another runner may have finished the cell since it was planned."""
        return read_state(self.run_dir, self.config_hash, self.total_iters)


def cell_state(plan: CellPlan) -> CellState:
    return read_state(plan.run_dir, plan.config_hash, plan.config.train.iters)


def read_state(run_dir: Path, config_hash: str, total_iters: int) -> CellState:
    """Whether the run folder holds the cell finished: a complete summary.json with the same config hash."""
    summary = read_summary(run_dir / "summary.json")
    finished = bool(summary and summary.get("status") == "complete" and summary.get("config_hash") == config_hash)
    return CellState(run_dir, config_hash, total_iters, finished, summary)


def summary_best(summary: dict | None) -> float | None:
    try:
        return float(summary["best"]["miou"])   # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None
