"""What to run: the cells of the benchmark grid, of component ablations and of parameter sweeps.

A *cell* is one `python -m benchmark.train` run: method × dataset × label split × seed, plus an optional
ablation `variant` with the overrides that define it. This module only decides which cells exist;
`benchmark/grid/runner.py` decides how they run (subprocesses here, a Slurm job array there).

    grid      = methods × splits × seeds of a profile's `grid` section (CLI flags override it)
    ablation  = for a component: the plain method cell, the method without the component, and, when the
                method adds several paper components over its base, leave-one-out for each plus all-off
    sweep     = one cell per value of one config key, variant `key=value`

"Paper components" of a method are the ones its class declares its own (`Method.paper_components`: its
`own_components`, else those its declared `base` lacks). No method is named here.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Iterable

from benchmark.train.run_setup import run_name

# Keys a sweep may not vary: they define which cell a run is, not its recipe.
_CELL_KEYS = ("method.name", "train.seed", "data.dataset", "data.split", "profile")
_CELL_SECTIONS = ("output.", "grid.")
# The grid section does not depend on the method; resolving it needs some method name (checked per cell later).
GRID_PLACEHOLDER_METHOD = "(grid)"
_SAFE_VARIANT = re.compile(r"^[A-Za-z0-9_.=,+\-\[\]:]+$")


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


@dataclass(frozen=True)
class Variant:
    name: str
    switches: tuple[tuple[str, bool], ...]   # (component, on) pairs that differ from the method's default

    def overrides(self) -> tuple[str, ...]:
        return tuple(f"method.components.{c}={'true' if on else 'false'}" for c, on in self.switches)


@dataclass(frozen=True)
class Sweep:
    key: str
    values: tuple[str, ...]   # as typed; parsed like any `key=value` override


# --- the grid ------------------------------------------------------------------------------------------------

def _config_error(message: str) -> Exception:
    from benchmark.train.config import ConfigError
    return ConfigError(message)


def load_plan(profile: str, overrides: Iterable[str] = (), *, dataset: str | None = None,
              methods: Iterable[str] | None = None, splits: Iterable[str] | None = None,
              seeds: int | None = None, ablation_seeds: int | None = None) -> GridPlan:
    """The profile's grid section (after `grid.*` overrides) with CLI flags on top; names are checked.
    `ablation_seeds` (benchmark.ablate --seeds) overrides grid.ablation_seeds, which is capped at the seeds."""
    from benchmark.train.config import resolve
    from datasets.catalog import get_spec
    from datasets.errors import DataError
    from methods import registry

    cfg = resolve(profile=profile, dataset=dataset, method=GRID_PLACEHOLDER_METHOD, overrides=list(overrides))
    spec = get_spec(cfg.data.dataset)
    grid = cfg.grid
    methods = tuple(methods) if methods else tuple(grid.methods)
    for name in methods:
        registry.get(name)   # unknown → MethodError listing the known methods
    if not methods:
        raise _config_error("no methods to run (grid.methods is empty and --methods was not given)")
    splits = tuple(splits) if splits else (tuple(grid.splits) or spec.splits[:2])
    ablation_splits = tuple(grid.ablation_splits)
    for split in splits + ablation_splits:
        if split not in spec.splits:
            raise DataError(f"unknown split {split!r} for dataset {spec.name}; known splits: {', '.join(spec.splits)}")
    # The grid's lowest split in the dataset's own order (lowest label count first).
    ablation_splits = ablation_splits or (min(splits, key=spec.splits.index),)
    seeds = grid.seeds if seeds is None else seeds
    if seeds < 1:
        raise _config_error(f"seeds must be at least 1, got {seeds}")
    if grid.ablation_seeds < 0:
        raise _config_error(f"grid.ablation_seeds must be 0 (= seeds) or positive, got {grid.ablation_seeds}")
    ablation_seeds = ablation_seeds or min(grid.ablation_seeds or seeds, seeds)
    if grid.parallel < 0:
        raise _config_error(f"grid.parallel must be 0 (one cell per usable core) or positive, got {grid.parallel}")
    references = tuple(dict.fromkeys(parse_reference(text, spec) for text in grid.references))
    return GridPlan(profile=profile, dataset=spec.name, methods=_unique(methods), splits=_unique(splits),
                    seeds=seeds, ablations=_unique(grid.ablations), ablation_splits=_unique(ablation_splits),
                    parallel=grid.parallel or usable_cores(), references=references, ablation_seeds=ablation_seeds)


def usable_cores() -> int:
    """Cores this process may run on (a Slurm allocation or taskset, not the whole machine)."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:   # not on Linux
        return os.cpu_count() or 1


# A reference cell says so in its run folder's config (output.* is not part of the recipe hash).
REFERENCE_OVERRIDE = "output.reference=true"


def parse_reference(text: str, spec) -> tuple[str, str]:
    """`method:split` of grid.references → (method, split), both checked."""
    from datasets.errors import DataError
    from methods import registry
    method, sep, split = str(text).partition(":")
    if not sep or not method.strip() or not split.strip():
        raise _config_error(f"bad grid.references entry {text!r}: expected method:split, e.g. supervised:full")
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
            raise _config_error(f"two different cells would share the run folder of {cell.label}: "
                                f"{list(previous.overrides)} vs {list(cell.overrides)}")
    return list(seen.values())


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# --- components and ablation variants ------------------------------------------------------------------------

def known_components() -> list[str]:
    from methods.registry import all_methods
    return sorted({c for cls in all_methods().values() for c in cls.components})


def component_owners(component: str, method: str | None = None) -> list[type]:
    """The method(s) to ablate `component` in: those whose paper component it is (else every method that
    declares it), or just `method` when given."""
    from methods.base import MethodError
    from methods.registry import get, owner_of_component

    declared = owner_of_component(component)
    if not declared:
        raise MethodError(f"unknown component {component!r}; known components: {', '.join(known_components())}")
    if method is not None:
        cls = get(method)
        if component not in cls.components:
            raise MethodError(f"method {method!r} has no component {component!r}; its components: "
                              f"{', '.join(sorted(cls.components)) or 'none'}")
        return [cls]
    introducing = [cls for cls in declared if component in cls.paper_components()]
    return introducing or declared


def component_variants(method_cls: type, component: str) -> list[Variant]:
    """Variants that ablate `component` in `method_cls` (the full method is the plain cell, not listed):
    the method without it; for a method with several paper components (of which this is one), leave-one-out
    for every paper component plus all of them off. A component that is off by default is switched on
    instead (`with_<c>`)."""
    defaults = dict(method_cls.components)
    paper = method_cls.paper_components()

    def toggle(c: str) -> Variant:
        return Variant(f"{'no' if defaults[c] else 'with'}_{c}", ((c, not defaults[c]),))

    if component not in paper or len(paper) < 2:
        return [toggle(component)]
    candidates = [toggle(c) for c in paper]
    all_off = tuple((c, False) for c in paper if defaults[c])
    if all_off:
        candidates.append(Variant("all_off", all_off))
    # Variants that run the same switches once the method's requirements apply (S4MIM: all_off = no_mim)
    # train the same thing: keep the first.
    variants, seen = [], set()
    for variant in candidates:
        effective = tuple(sorted(method_cls.effective_components({**defaults, **dict(variant.switches)}).items()))
        if effective not in seen:
            seen.add(effective)
            variants.append(variant)
    return variants


def ablation_cells(plan: GridPlan, component: str, *, method: str | None = None,
                   splits: Iterable[str] | None = None, methods_filter: Iterable[str] | None = None) -> list[Cell]:
    """Plain + variant cells ablating `component`, over the ablation splits and the plan's ablation seeds.
    `methods_filter` drops owners outside it (run_all.sh --methods)."""
    owners = component_owners(component, method)
    if methods_filter is not None:
        allowed = set(methods_filter)
        owners = [cls for cls in owners if cls.name in allowed]
    splits = tuple(splits) if splits else plan.ablation_splits
    cells = []
    for seed in range(plan.ablation_seeds or plan.seeds):
        for split in splits:
            for cls in owners:
                cells.append(Cell(cls.name, plan.dataset, split, seed))
                for v in component_variants(cls, component):
                    cells.append(Cell(cls.name, plan.dataset, split, seed, v.name, v.overrides()))
    return cells


# --- sweeps -------------------------------------------------------------------------------------------------

def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets, so list values like [6,12,18] stay whole."""
    values, depth, current = [], 0, ""
    for ch in text:
        if ch in "[{(":
            depth += 1
        elif ch in "]})":
            depth -= 1
        if ch == "," and depth == 0:
            values.append(current)
            current = ""
        else:
            current += ch
    values.append(current)
    return [v.strip() for v in values]


def parse_sweep(text: str) -> Sweep:
    """`section.key=v1,v2,...` → Sweep; malformed input raises ConfigError saying what is wrong."""
    usage = "a sweep looks like section.key=v1,v2,... (e.g. method.mask_ratio=0.3,0.5,0.7)"
    if "=" not in text:
        raise _config_error(f"bad sweep {text!r}: no '='; {usage}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or "." not in key or any(not part for part in key.split(".")):
        raise _config_error(f"bad sweep {text!r}: the key must be a dotted config key; {usage}")
    if key in _CELL_KEYS or key.startswith(_CELL_SECTIONS):
        raise _config_error(f"cannot sweep {key}: it selects the cell, not the recipe "
                            f"(use --method/--splits/--seeds/--results-dir instead)")
    if not raw.strip():
        raise _config_error(f"bad sweep {text!r}: no values; {usage}")
    values = _split_values(raw)
    if any(not v for v in values):
        raise _config_error(f"bad sweep {text!r}: an empty value; {usage}")
    if len(set(values)) != len(values):
        raise _config_error(f"bad sweep {text!r}: a value is repeated")
    for v in values:
        if not _SAFE_VARIANT.match(f"{key}={v}"):
            raise _config_error(f"bad sweep value {v!r}: a variant name becomes a folder name, so only letters, "
                                f"digits and _ . = , + - [ ] : are allowed")
    return Sweep(key, tuple(values))


def sweep_variants(sweep: Sweep, default: Any = None, has_default: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """(variant, overrides) per value; a value equal to the configured default maps to the plain cell
    (variant "") — the report adds the full method's own value as the sweep's default point."""
    from benchmark.train.config import parse_override
    out = []
    for value in sweep.values:
        override = f"{sweep.key}={value}"
        if has_default and parse_override(override)[1] == default:
            out.append(("", ()))
        else:
            out.append((override, (override,)))
    return out


def sweep_cells(plan: GridPlan, method: str, sweep: Sweep, *, splits: Iterable[str] | None = None,
                default: Any = None, has_default: bool = False) -> list[Cell]:
    splits = tuple(splits) if splits else plan.ablation_splits
    variants = sweep_variants(sweep, default, has_default)
    return [Cell(method, plan.dataset, split, seed, variant, overrides)
            for seed in range(plan.ablation_seeds or plan.seeds) for split in splits for variant, overrides in variants]


def config_value(cfg, method_obj, key: str) -> tuple[bool, Any]:
    """The value `key` has in a resolved config (method keys: the built method's params/components).
    Returns (found, value)."""
    parts = key.split(".")
    if parts[0] == "method" and len(parts) == 2 and hasattr(method_obj.params, parts[1]):
        return True, getattr(method_obj.params, parts[1])
    if parts[:2] == ["method", "components"] and len(parts) == 3 and parts[2] in method_obj.on:
        return True, method_obj.on[parts[2]]
    node: Any = cfg.to_dict()
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node
