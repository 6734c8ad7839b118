"""Variants of a method: the cells of component ablations and of parameter sweeps.

    ablation  = for a component: the plain method cell, the method without the component, and, when the
                method adds several paper components over its base, leave-one-out for each plus all-off
    sweep     = one cell per value of one config key, variant `key=value`

"Paper components" of a method are the ones its class declares its own (`Method.paper_components`: its
`own_components`, else those its declared `base` lacks). No method is named here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable

from benchmark.grid.cells import Cell, GridPlan, load_plan
from benchmark.grid.plan import RunOptions, plan_cell
from benchmark.train.config import ConfigError, parse_override
from methods import registry
from methods.base import MethodError

# Keys a sweep may not vary: they define which cell a run is, not its recipe.
_CELL_KEYS = ("method.name", "train.seed", "data.dataset", "data.split", "profile")
_CELL_SECTIONS = ("output.", "grid.")
_SAFE_VARIANT = re.compile(r"^[A-Za-z0-9_.=,+\-\[\]:]+$")


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


# --- components and ablation variants ------------------------------------------------------------------------

def known_components() -> list[str]:
    return sorted({c for cls in registry.all_methods().values() for c in cls.components})


def component_owners(component: str, method: str | None = None) -> list[type]:
    """The method(s) to ablate `component` in: those whose paper component it is (else every method that
    declares it), or just `method` when given."""
    declared = registry.owner_of_component(component)
    if not declared:
        raise MethodError(f"unknown component {component!r}; known components: {', '.join(known_components())}")
    if method is not None:
        cls = registry.get(method)
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
        raise ConfigError(f"bad sweep {text!r}: no '='; {usage}")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key or "." not in key or any(not part for part in key.split(".")):
        raise ConfigError(f"bad sweep {text!r}: the key must be a dotted config key; {usage}")
    if key in _CELL_KEYS or key.startswith(_CELL_SECTIONS):
        raise ConfigError(f"cannot sweep {key}: it selects the cell, not the recipe "
                            f"(use --method/--splits/--seeds/--results-dir instead)")
    if not raw.strip():
        raise ConfigError(f"bad sweep {text!r}: no values; {usage}")
    values = _split_values(raw)
    if any(not v for v in values):
        raise ConfigError(f"bad sweep {text!r}: an empty value; {usage}")
    if len(set(values)) != len(values):
        raise ConfigError(f"bad sweep {text!r}: a value is repeated")
    for v in values:
        if not _SAFE_VARIANT.match(f"{key}={v}"):
            raise ConfigError(f"bad sweep value {v!r}: a variant name becomes a folder name, so only letters, "
                                f"digits and _ . = , + - [ ] : are allowed")
    return Sweep(key, tuple(values))


def sweep_variants(sweep: Sweep, default: Any = None, has_default: bool = False) -> list[tuple[str, tuple[str, ...]]]:
    """(variant, overrides) per value; a value equal to the configured default maps to the plain cell
    (variant "") — the report adds the full method's own value as the sweep's default point."""
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


# --- what `benchmark.ablate` asks for ------------------------------------------------------------------------

def describe_components() -> str:
    lines = ["Components per method (paper = added over its base; the rest are inherited):"]
    for name, cls in registry.all_methods().items():
        paper = cls.paper_components()
        inherited = [c for c in cls.components if c not in paper]
        lines.append(f"  {name:<11} paper: {', '.join(paper) or '-'}"
                     + (f"; inherited: {', '.join(inherited)}" if inherited else ""))
    return "\n".join(lines)


def requested_cells(args, opts: RunOptions) -> tuple[GridPlan, list[Cell]]:
    """The plan and the cells that `benchmark.ablate --component / --sweep` ask for."""
    sweeps = [parse_sweep(text) for text in args.sweep]
    if sweeps and not args.method:
        raise ConfigError("--sweep needs --method (the method whose runs the sweep varies)")
    owners = {component: [cls.name for cls in component_owners(component, args.method)]
              for component in args.component}
    methods = list(dict.fromkeys([m for names in owners.values() for m in names]
                                 + ([registry.get(args.method).name] if args.method else [])))
    plan = load_plan(args.profile, args.overrides, dataset=args.dataset, methods=methods, splits=args.splits,
                     seeds=args.seeds, ablation_seeds=args.seeds)
    splits = tuple(args.splits) if args.splits else plan.ablation_splits
    cells: list[Cell] = []
    for component in args.component:
        cells += ablation_cells(plan, component, method=args.method, splits=splits)
    if sweeps:
        base = plan_cell(Cell(args.method, plan.dataset, splits[0], 0), opts)
        for sweep in sweeps:
            found, default = config_value(base.config, base.method, sweep.key)
            cells += sweep_cells(plan, args.method, sweep, splits=splits, default=default, has_default=found)
    return plan, cells
