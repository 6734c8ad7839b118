"""Ablation variants that train exactly another cell's run, so the grid runs it once.

S4MIM with `mim` off is UniMatch, MaskMatch with both components off is its base: the method says so
(`Method.same_run_as`), and this module checks it against the other cell's resolved config (every section
but the method's, then the method's parameters and switches). Only when all of it agrees does the variant
become a pointer, `same_run.json` in its own run folder, to the other cell's run folder; the report reads the
pointed-to run under the variant's name. On a GPU profile this saves whole training runs per seed.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmark.grid import Cell

POINTER = "same_run.json"
# Sections that name the run rather than define what it computes.
_IGNORED_SECTIONS = ("method", "output", "grid")


def _recipe(cfg) -> dict[str, Any]:
    recipe = cfg.to_dict()
    for section in _IGNORED_SECTIONS:
        recipe.pop(section, None)
    return recipe


def same_run_cell(cell: Cell, opts) -> Cell | None:
    """The plain cell whose run `cell` would repeat exactly, or None. Only ablation variants qualify: a grid
    cell is a method's own row and always runs."""
    if not cell.variant:
        return None
    from benchmark.cells import cell_config
    from benchmark.trainer import build_method
    from datasets.catalog import get_spec
    cfg = cell_config(cell, opts)
    num_classes = get_spec(cfg.data.dataset).num_classes
    claim = build_method(cfg, num_classes).same_run_as()
    if claim is None:
        return None
    other = Cell(claim.method, cell.dataset, cell.split, cell.seed)
    other_cfg = cell_config(other, opts)
    if _recipe(other_cfg) != _recipe(cfg):
        return None
    other_method = build_method(other_cfg, num_classes)
    if other_method.params != claim.params or other_method.on != claim.components:
        return None
    return other


def write_pointer(cell: Cell, other: Cell, opts) -> Path:
    """Record in `cell`'s run folder that its run is `other`'s, with the variant's own identity (the fields
    the report reads from a summary). Atomic; replaces an earlier pointer."""
    from benchmark.cells import cell_config
    from benchmark.io import atomic_write_json
    from benchmark.runinfo import method_identity
    from benchmark.trainer import build_method, run_dir_for
    from datasets.catalog import get_spec
    cfg, other_cfg = cell_config(cell, opts), cell_config(other, opts)
    method = build_method(cfg, get_spec(cfg.data.dataset).num_classes)
    run_dir, other_dir = run_dir_for(cfg), run_dir_for(other_cfg)
    pointer = run_dir / POINTER
    atomic_write_json(pointer, {
        "same_run_as": os.path.relpath(other_dir, run_dir),
        "config_hash": other_cfg.hash(),      # the pointed-to run's; a rerun with another recipe voids this
        "dataset": cfg.data.dataset, "split": cfg.data.split, "seed": cfg.train.seed,
        **method_identity(cfg, method),
        "why": f"{method.name} with {', '.join(cell.overrides) or 'these settings'} trains exactly the "
               f"{other.method} run (methods/{method.name}.py same_run_as, checked against its resolved config)",
    })
    return pointer
