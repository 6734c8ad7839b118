"""The one method interface: what a semi-supervised segmentation method declares and computes.

A method declares the views it needs, its paper components (switches), its hyper-parameters and any extra
trainable modules; per step it turns a batch into named loss terms. It never touches the optimizer: the
trainer in `benchmark/` owns the one training loop.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from datasets import IGNORE_INDEX
from methods.settings import LossSettings, coerce

VIEW_NAMES = frozenset({"strong1", "strong2", "box1", "box2", "mix"})


class MethodError(ValueError):
    """Unknown method or component, or a bad method parameter."""


@dataclass(frozen=True)
class MethodContext:
    num_classes: int
    ignore_index: int = IGNORE_INDEX
    loss: LossSettings = field(default_factory=LossSettings)
    # Virtual shards of this process's batch: each loss is averaged per shard, then over the shards, as the
    # official code's per-GPU means averaged by DDP (the trainer derives it from `train.loss_shards`).
    loss_shards: int = 1


@dataclass(frozen=True)
class StepInfo:
    step: int
    total_steps: int


@dataclass
class Batch:
    labeled: dict[str, Any]
    unlabeled: dict[str, Any] | None = None
    mix: dict[str, Any] | None = None   # independent unlabeled batch: the CutMix source


@dataclass
class LossOutput:
    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    scalars: dict[str, float] = field(default_factory=dict)


@dataclass
class NoParams:
    pass


@dataclass(frozen=True)
class SameRun:
    """Another registered method that, with these parameters and switches, trains exactly what this instance
    trains (same forwards, losses, modules and random draws). The runner then reuses that run instead of
    training the same thing twice."""
    method: str
    params: Any
    components: dict[str, bool]


class Method:
    name: ClassVar[str] = ""
    # How reports name the method ("" = `name`), written into summary.json with the flags below.
    display_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    views: ClassVar[frozenset[str]] = frozenset()
    components: ClassVar[dict[str, bool]] = {}
    component_help: ClassVar[dict[str, str]] = {}
    # component -> the loss terms it adds or changes; with it off every other term stays bit-identical
    # (tests/methods/test_switches.py checks this for each registered method's own components).
    component_terms: ClassVar[dict[str, tuple[str, ...]]] = {}
    # component -> the component it acts through: with the latter off, the former has no effect (the grid uses
    # this to skip ablation variants that would train exactly the same thing twice).
    component_requires: ClassVar[dict[str, str]] = {}
    Params: ClassVar[type] = NoParams
    # Our reading of an abstract-only paper: reports label its results accordingly.
    from_paper_description: ClassVar[bool] = False
    # The registered method this one builds on ("" = none, a baseline). An instance may take it from its
    # parameters (MaskMatch's method.base). Ablation grids, step-time ratios, the report's significance table
    # and the same-run rule below all read it.
    base: ClassVar[str] = ""
    # The paper's own components (the ablation grid's leave-one-out set); None = the components the base
    # does not declare (all of them for a method without a base).
    own_components: ClassVar[tuple[str, ...] | None] = None
    # With its own components off (as they act) this method trains its base exactly: the runner then reuses
    # the base's run for such an ablation variant (`same_run_as`). Claimed only where tests/grid/test_same_run.py
    # shows identical weights after training.
    reduces_to_base: ClassVar[bool] = False
    # The report tests every method against this one (the supervised lower bound, the strongest baseline).
    # Never inherited: a method built by subclassing a baseline (S4MIM on UniMatch) is not a baseline itself.
    significance_baseline: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "significance_baseline" not in cls.__dict__:
            cls.significance_baseline = False

    def __init__(self, params: Any, components: dict[str, bool], ctx: MethodContext):
        self.params = params
        self.on = self.resolve_components(components, params)
        self.ctx = ctx
        self._modules = nn.ModuleDict()

    # --- declarations -------------------------------------------------------------------------------------
    @classmethod
    def default_components(cls, params: Any = None) -> dict[str, bool]:
        """The switches' defaults; a method whose defaults follow a parameter (MaskMatch's base) says so."""
        return dict(cls.components)

    @classmethod
    def resolve_components(cls, overrides: dict[str, Any] | None, params: Any = None) -> dict[str, bool]:
        resolved = cls.default_components(params)
        for key, value in (overrides or {}).items():
            if key not in cls.components:
                known = ", ".join(sorted(cls.components)) or "none"
                raise MethodError(f"method {cls.name!r} has no component {key!r}; its components: {known}")
            if not isinstance(value, bool):
                raise MethodError(f"component {cls.name}.{key} must be true or false, got {value!r}")
            resolved[key] = value
        return resolved

    @classmethod
    def paper_components(cls) -> tuple[str, ...]:
        """The components this method's paper adds over its base (`own_components`, else inferred)."""
        if cls.own_components is not None:
            return tuple(cls.own_components)
        inherited = set(_registered(cls.base).components) if cls.base else set()
        return tuple(c for c in cls.components if c not in inherited)

    @classmethod
    def effective_components(cls, on: dict[str, bool]) -> dict[str, bool]:
        """`on` with every component whose required component is off switched off too (what actually runs)."""
        effective = dict(on)
        for component in effective:
            needed = cls.component_requires.get(component)
            while needed is not None and effective[component]:
                effective[component] = effective.get(needed, False)
                needed = cls.component_requires.get(needed)
        return effective

    @classmethod
    def make_params(cls, values: dict[str, Any] | None) -> Any:
        """Typed construction of `Params` from a plain dict; unknown names and wrong types are errors."""
        values = dict(values or {})
        fields = {f.name: f for f in dataclasses.fields(cls.Params)}
        for key in values:
            if key not in fields:
                known = ", ".join(sorted(fields)) or "none"
                raise MethodError(f"unknown key method.{key} for method {cls.name!r}; its keys: {known}")
        defaults = cls.Params()
        typed = {}
        for key, value in values.items():
            typed[key] = coerce(value, type(getattr(defaults, key)), f"method.{key}", MethodError)
        return dataclasses.replace(defaults, **typed)

    def same_run_as(self) -> SameRun | None:
        """The base run this instance trains exactly, if any: for a method that `reduces_to_base`, with its
        paper components off (as they act), its base with the base's parameters and switches taken from its
        own."""
        effective = self.effective_components(self.on)
        if not self.reduces_to_base or not self.base or any(effective[c] for c in self.paper_components()) or self.differs_from_base():
            return None
        base_cls = _registered(self.base)
        names = [f.name for f in dataclasses.fields(base_cls.Params) if hasattr(self.params, f.name)]
        params = base_cls.Params(**{name: getattr(self.params, name) for name in names})
        return SameRun(base_cls.name, params, {c: self.on[c] for c in base_cls.components})

    def differs_from_base(self) -> bool:
        """A setting outside the components that makes this run differ from its base even with them off."""
        return False

    def needs(self) -> frozenset[str]:
        """Views this instance needs; a method may drop views its switched-off components would use."""
        return self.views

    def labeled_batch_size(self, batch_size: int) -> int:
        """Labeled images per step; a method may scale it (the supervised baseline's doubled batch)."""
        return batch_size

    # --- per step -----------------------------------------------------------------------------------------
    def trainable_modules(self) -> nn.ModuleDict:
        return self._modules

    def losses(self, model: nn.Module, batch: Batch, step: StepInfo) -> LossOutput:
        raise NotImplementedError

    def after_step(self, model: nn.Module, step: StepInfo) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


_REGISTRY: dict[str, type[Method]] = {}


def _registered(name: str) -> type[Method]:
    from methods.registry import get
    return get(name)


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise MethodError(f"{cls.__qualname__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise MethodError(f"method name {cls.name!r} registered twice ({_REGISTRY[cls.name].__module__} "
                          f"and {cls.__module__})")
    unknown_views = set(cls.views) - VIEW_NAMES
    if unknown_views:
        raise MethodError(f"method {cls.name!r} declares unknown views {sorted(unknown_views)}")
    _REGISTRY[cls.name] = cls
    return cls
