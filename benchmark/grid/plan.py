"""Each cell resolved once: its config, method, run folder and config hash, which every step of the runner
(finished?, same run as another?, data to prepare, the pointer to write, the ablation's defaults) reads
instead of resolving the cell again.

The trainer subprocess of a cell resolves the same config from the same request: `cell_request` is the one
place that turns a cell and the run options into it, rendered as `benchmark.train.command` arguments by
`cells.train_argv` and resolved here by `benchmark.train.run_setup.run_config`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmark.grid.cells import Cell


def cell_request(cell: Cell, opts) -> dict[str, Any]:
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
    config: Any           # benchmark.train.config.Config, as the cell's trainer resolves it
    method: Any           # the built method (a bad method key fails here, before any process starts)
    run_dir: Path
    config_hash: str


def plan_cell(cell: Cell, opts) -> CellPlan:
    from benchmark.train.run_setup import build_method, run_config, run_dir_for
    from datasets.catalog import get_spec
    cfg = run_config(**cell_request(cell, opts))
    method = build_method(cfg, get_spec(cfg.data.dataset).num_classes)
    return CellPlan(cell, cfg, method, run_dir_for(cfg), cfg.hash())


class Plans:
    """The plans of one runner invocation, by run folder key: a cell asked for twice is resolved once."""

    def __init__(self, opts):
        self.opts = opts
        self._plans: dict[tuple, CellPlan] = {}

    def __call__(self, cell: Cell) -> CellPlan:
        plan = self._plans.get(cell.key)
        if plan is None or plan.cell != cell:
            plan = self._plans[cell.key] = plan_cell(cell, self.opts)
        return plan
