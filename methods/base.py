"""The one method interface: what a semi-supervised segmentation method declares and computes.

A method declares the views it needs, its paper components (switches), its hyper-parameters and any extra
trainable modules; per step it turns a batch into named loss terms. It never touches the optimizer: the
trainer in `benchmark/` owns the one training loop. A method built on another holds an instance of it
(`make_base`) rather than subclassing it, so that every declaration a class shows is its own.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from datasets import IGNORE_INDEX
from methods.registry import get, register  # noqa: F401  (register: plugins write @methods.base.register)
from methods.settings import LossSettings, MethodError, coerce


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
    """Subclass it directly, declare what applies (each declaration defaults to none) and write `losses`.
    A method built on another holds an instance of it (`make_base`)."""
    # Who it is.
    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""                # how reports name it ("" = name)
    description: ClassVar[str] = ""
    Params: ClassVar[type] = NoParams               # dataclass of typed hyper-parameters: method.<key>=...
    views: ClassVar[frozenset[str]] = frozenset()   # subset of registry.VIEW_NAMES; none: labeled images only
    # Its switches (method.components.<name>=true|false), each by name.
    components: ClassVar[dict[str, bool]] = {}      # the default
    component_help: ClassVar[dict[str, str]] = {}   # what it does (train --list)
    # The loss terms it adds or changes: with it off every other term stays bit-identical (test_switches.py).
    component_terms: ClassVar[dict[str, tuple[str, ...]]] = {}
    # The component it acts through: ablation variants equal once this applies are trained once.
    component_requires: ClassVar[dict[str, str]] = {}
    # What it builds on: ablation grids, step-time ratios, the report's significance table and same_run_as.
    base: ClassVar[str] = ""                        # a registered method ("" = none, a baseline)
    own_components: ClassVar[tuple[str, ...] | None] = None   # its paper's switches (None = those base lacks)
    # Own switches off = its base exactly; claimed only where tests/grid/test_same_run.py shows equal weights.
    reduces_to_base: ClassVar[bool] = False
    # How reports treat it.
    from_paper_description: ClassVar[bool] = False  # our reading of an abstract-only paper
    significance_baseline: ClassVar[bool] = False   # every method is tested against it (supervised, unimatch)

    def __init__(self, params: Any, components: dict[str, bool], ctx: MethodContext):
        self.params = params
        self.on = self.resolve_components(components, params)
        self.ctx = ctx

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
        inherited = set(get(cls.base).components) if cls.base else set()
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

    # --- building on another method -----------------------------------------------------------------------
    def resolved_base(self) -> str:
        """The registered method this instance builds on: `base`, unless a parameter chooses it (MaskMatch's
        method.base). Summaries and step-time ratios record it."""
        return self.base

    def settings_for(self, method_cls: type[Method]) -> tuple[Any, dict[str, bool]]:
        """`method_cls`'s parameters and switches as this instance sets them (the same names; others default)."""
        names = [f.name for f in dataclasses.fields(method_cls.Params) if hasattr(self.params, f.name)]
        params = method_cls.Params(**{name: getattr(self.params, name) for name in names})
        return params, {c: self.on[c] for c in method_cls.components if c in self.on}

    def make_base(self, method_cls: type[Method]) -> Method:
        """An instance of the method this one builds on, set as this one sets it: S4MIM and MaskMatch hold a
        UniMatch and add their terms to its forward (a subclass would inherit declarations not its own)."""
        return method_cls(*self.settings_for(method_cls), self.ctx)

    def same_run_as(self) -> SameRun | None:
        """The base run this instance trains exactly, if any: for a method that `reduces_to_base`, with its
        paper components off (as they act), its base with the base's parameters and switches taken from its
        own."""
        effective = self.effective_components(self.on)
        base = self.resolved_base()
        if not self.reduces_to_base or not base:
            return None
        if any(effective[c] for c in self.paper_components()) or self.differs_from_base():
            return None
        base_cls = get(base)
        return SameRun(base_cls.name, *self.settings_for(base_cls))

    def differs_from_base(self) -> bool:
        """A setting outside the components that makes this run differ from its base even with them off."""
        return False

    # --- what the trainer asks ----------------------------------------------------------------------------
    def needs(self) -> frozenset[str]:
        """Views this instance needs; a method may drop views its switched-off components would use."""
        return self.views

    def labeled_batch_size(self, batch_size: int) -> int:
        """Labeled images per step; a method may scale it (the supervised baseline's doubled batch)."""
        return batch_size

    def build_modules(self) -> nn.ModuleDict:
        """The method's own trainable modules (head learning rate), made here and not in `__init__`: the trainer
        calls this once, after seeding and building the model, so their initialisation follows train.seed,
        while planning a run builds methods without drawing a random number."""
        return nn.ModuleDict()

    def losses(self, model: nn.Module, batch: Batch, step: StepInfo) -> LossOutput:
        raise NotImplementedError

    def after_step(self, model: nn.Module, step: StepInfo) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
