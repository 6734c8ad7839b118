"""Ablation variants that train exactly another cell's run, so the grid runs it once.

A method declares its `base` and its own components (`methods/base.py`); with those components off it claims
to be its base (`Method.same_run_as`: S4MIM without `mim` is UniMatch, MaskMatch with both components off
is its base). This module checks the claim against the other cell's resolved plan (every section but the
method's, then the method's parameters and switches). Only when all of it agrees does the variant become
an alias: `same_run.json` in its own run folder names the other run folder, which the report reads under the
variant's name. On a GPU profile this saves whole training runs per seed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmark.grid.cells import Cell
from benchmark.grid.plan import CellPlan, Plans
from datasets.io import atomic_write_json
from benchmark.train.summary import method_identity

POINTER = "same_run.json"
# Sections that name the run rather than define what it computes.
_IGNORED_SECTIONS = ("method", "output", "grid")


def _recipe(cfg) -> dict[str, Any]:
    recipe = cfg.to_dict()
    for section in _IGNORED_SECTIONS:
        recipe.pop(section, None)
    return recipe


def same_run_of(plan: CellPlan, plans: Plans) -> CellPlan | None:
    """The plan of the plain cell whose run `plan`'s cell would repeat exactly, or None. Only ablation
    variants qualify: a grid cell is a method's own row and always runs."""
    cell = plan.cell
    claim = plan.method.same_run_as() if cell.variant else None
    if claim is None:
        return None
    other = plans(Cell(claim.method, cell.dataset, cell.split, cell.seed))
    if _recipe(other.config) != _recipe(plan.config):
        return None
    if other.method.params != claim.params or other.method.on != claim.components:
        return None
    return other


def write_pointer(plan: CellPlan, other: CellPlan) -> Path:
    """Record in `plan`'s run folder that its run is `other`'s, with the variant's own identity (the fields
    the report reads from a summary). Atomic; replaces an earlier pointer."""
    cfg, method = plan.config, plan.method
    pointer = plan.run_dir / POINTER
    atomic_write_json(pointer, {
        "same_run_as": os.path.relpath(other.run_dir, plan.run_dir),
        "config_hash": other.config_hash,      # the pointed-to run's; a rerun with another recipe voids this
        "dataset": cfg.data.dataset, "split": cfg.data.split, "seed": cfg.train.seed,
        **method_identity(cfg, method),
        "why": f"{method.name} with {', '.join(plan.cell.overrides) or 'these settings'} trains exactly the "
               f"{other.cell.method} run (its declared base, checked against the resolved config)",
    })
    return pointer
