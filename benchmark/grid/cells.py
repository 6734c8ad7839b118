"""What to run: the cells of the benchmark grid.

A *cell* is one `python -m benchmark.train` run: method × dataset × label split × seed, plus an optional
`variant` with the overrides that define it (`variants.py`: component ablations and parameter sweeps). This
module only decides which cells exist; `runner.py` decides how they run.

    grid      = methods × splits × seeds of a profile's `grid` section (CLI flags override it); `methods: all`
                (the default) is every registered method in the registry's order, a list chooses a subset
    references = grid.references `method:split` cells for every seed (how much room the labels leave)

No method is named here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

from benchmark.train.config import ConfigError, resolve
from benchmark.train.run_setup import run_name
from datasets.catalog import DatasetSpec, get_spec
from datasets.errors import DataError
from methods import registry

# The grid section does not depend on the method; resolving it needs some method name (checked per cell later).
GRID_PLACEHOLDER_METHOD = "(grid)"
ALL_METHODS = "all"   # grid.methods: every registered method, in the registry's order


@dataclass(frozen=True)
class Cell:
    method: str
    dataset: str
    split: str
    seed: int
    variant: str = ""
    overrides: tuple[str, ...] = ()   # the cell's own `key=value` overrides (the ablation switches)

    @property
    def run_name(self) -> str:
        return run_name(self.method, self.variant)

    @property
    def key(self) -> tuple[str, str, str, int]:
        return (self.dataset, self.split, self.run_name, self.seed)

    @property
    def label(self) -> str:
        return f"{self.run_name} {self.dataset}/{self.split} seed{self.seed}"

    @property
    def log_name(self) -> str:
        return f"{self.dataset}.{self.split}.{self.run_name}.seed{self.seed}.log"


@dataclass(frozen=True)
class GridPlan:
    """A profile's grid section after CLI flags: everything needed to list cells."""
    profile: str
    dataset: str
    methods: tuple[str, ...]
    splits: tuple[str, ...]
    seeds: int
    ablations: tuple[str, ...]
    ablation_splits: tuple[str, ...]
    parallel: int
    references: tuple[tuple[str, str], ...] = ()   # (method, split) reference cells, every seed
    ablation_seeds: int = 0                        # 0 = seeds


# --- the grid ------------------------------------------------------------------------------------------------

def load_plan(profile: str, overrides: Iterable[str] = (), *, dataset: str | None = None,
              methods: Iterable[str] | None = None, splits: Iterable[str] | None = None,
              seeds: int | None = None, ablation_seeds: int | None = None) -> GridPlan:
    """The profile's grid section (after `grid.*` overrides) with CLI flags on top; names are checked.
    `ablation_seeds` (benchmark.ablate --seeds) overrides grid.ablation_seeds, which is capped at the seeds."""
    cfg = resolve(profile=profile, dataset=dataset, method=GRID_PLACEHOLDER_METHOD, overrides=list(overrides))
    spec = get_spec(cfg.data.dataset)
    grid = cfg.grid
    methods = tuple(methods) if methods else grid_methods(grid.methods)
    for name in methods:
        registry.get(name)   # unknown → MethodError listing the known methods
    if not methods:
        raise ConfigError("no methods to run (grid.methods is empty and --methods was not given)")
    splits = tuple(splits) if splits else (tuple(grid.splits) or spec.splits[:2])
    ablation_splits = tuple(grid.ablation_splits)
    for split in splits + ablation_splits:
        if split not in spec.splits:
            raise DataError(f"unknown split {split!r} for dataset {spec.name}; known splits: {', '.join(spec.splits)}")
    # The grid's lowest split in the dataset's own order (lowest label count first).
    ablation_splits = ablation_splits or (min(splits, key=spec.splits.index),)
    seeds = grid.seeds if seeds is None else seeds
    if seeds < 1:
        raise ConfigError(f"seeds must be at least 1, got {seeds}")
    if grid.ablation_seeds < 0:
        raise ConfigError(f"grid.ablation_seeds must be 0 (= seeds) or positive, got {grid.ablation_seeds}")
    ablation_seeds = ablation_seeds or min(grid.ablation_seeds or seeds, seeds)
    if grid.parallel < 0:
        raise ConfigError(f"grid.parallel must be 0 (one cell per usable core) or positive, got {grid.parallel}")
    references = tuple(dict.fromkeys(parse_reference(text, spec) for text in grid.references))
    return GridPlan(profile=profile, dataset=spec.name, methods=_unique(methods), splits=_unique(splits),
                    seeds=seeds, ablations=_unique(grid.ablations), ablation_splits=_unique(ablation_splits),
                    parallel=grid.parallel or usable_cores(), references=references, ablation_seeds=ablation_seeds)


def grid_methods(listed: Iterable[str]) -> tuple[str, ...]:
    """grid.methods as names: `all` is every registered method (the suite's in registry order, then those of
    plugins and entry points), else the subset listed."""
    listed = tuple(listed)
    if listed != (ALL_METHODS,):
        return listed
    own = registry.builtin_names()
    return own + tuple(name for name in registry.all_methods() if name not in own)


def usable_cores() -> int:
    """Cores this process may run on (a Slurm allocation or taskset, not the whole machine)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


# A reference cell says so in its run folder's config (output.* is not part of the recipe hash).
REFERENCE_OVERRIDE = "output.reference=true"


def parse_reference(text: str, spec: DatasetSpec) -> tuple[str, str]:
    """`method:split` of grid.references → (method, split), both checked."""
    method, sep, split = str(text).partition(":")
    if not sep or not method.strip() or not split.strip():
        raise ConfigError(f"bad grid.references entry {text!r}: expected method:split, e.g. supervised:full")
    method, split = method.strip(), split.strip()
    registry.get(method)
    if split not in spec.splits:
        raise DataError(f"grid.references entry {text!r}: unknown split {split!r} for dataset {spec.name}; "
                        f"known splits: {', '.join(spec.splits)}")
    return method, split


def reference_cells(plan: GridPlan) -> list[Cell]:
    """The grid.references cells for every seed, for the references whose method the grid runs (so
    `--methods` limits them too); a reference the grid already runs is not repeated."""
    in_grid = {(m, s) for m in plan.methods for s in plan.splits}
    return [Cell(method, plan.dataset, split, seed, overrides=(REFERENCE_OVERRIDE,))
            for seed in range(plan.seeds) for method, split in plan.references
            if method in plan.methods and (method, split) not in in_grid]


def grid_cells(plan: GridPlan) -> list[Cell]:
    """methods × splits × seeds, seed-major: all of seed 0 first, so early results already fill the tables."""
    return [Cell(method, plan.dataset, split, seed)
            for seed in range(plan.seeds) for split in plan.splits for method in plan.methods]


def dedupe(cells: Iterable[Cell]) -> list[Cell]:
    """One cell per run folder, first occurrence kept (an ablation's plain cell is the grid's cell)."""
    seen: dict[tuple, Cell] = {}
    for cell in cells:
        previous = seen.setdefault(cell.key, cell)
        if previous.overrides != cell.overrides:
            raise ConfigError(f"two different cells would share the run folder of {cell.label}: "
                                f"{list(previous.overrides)} vs {list(cell.overrides)}")
    return list(seen.values())


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))
