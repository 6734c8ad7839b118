"""Registration and look-up of methods. Method modules are imported explicitly: a broken import fails loudly.

Besides the suite's own modules, installed packages may advertise methods through the entry-point group
`ssseg_bench.methods` (in pyproject.toml: `[project.entry-points."ssseg_bench.methods"] mymethod =
"mypkg.mymethod"`); loading the entry point imports the module, whose `@register` adds the method.
Plugin files and modules named on the command line or in a config are imported by `benchmark/plugins.py`.
"""
from __future__ import annotations

import importlib
import sys
from importlib import metadata
from typing import TYPE_CHECKING

from methods.settings import MethodError

if TYPE_CHECKING:   # methods.base imports this module: the interface looks its base methods up here
    from methods.base import Method

# One module per method; the order is the order of the report's tables.
METHOD_MODULES = ("supervised", "fixmatch", "unimatch", "s4mim", "maskmatch")
ENTRY_POINT_GROUP = "ssseg_bench.methods"
# The augmented views a method may ask for (`Method.views`); the data pipeline builds exactly these.
VIEW_NAMES = frozenset({"strong1", "strong2", "box1", "box2", "mix"})
_REGISTRY: dict[str, type[Method]] = {}
_loaded_entry_points: set[str] = set()
# The sys.path the entry points were last scanned on: the report asks the registry many times and a scan reads
# every installed distribution, so it is repeated only when sys.path (where distributions are found) changes.
_scanned_path: tuple[str, ...] | None = None


def register(cls: type[Method]) -> type[Method]:
    """Class decorator (`@methods.base.register`): adds the method under its `name`; a second class of that
    name, or a view outside VIEW_NAMES, is an error."""
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


def _load() -> None:
    global _scanned_path
    for module in METHOD_MODULES:
        importlib.import_module(f"methods.{module}")
    if tuple(sys.path) == _scanned_path:
        return
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if entry.value in _loaded_entry_points:
            continue
        try:
            entry.load()
        except Exception as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise MethodError(f"method plugin {entry.name!r} ({entry.value}) of an installed package cannot be "
                              f"imported: {type(exc).__name__}" + (f": {reason}" if reason else "")) from None
        _loaded_entry_points.add(entry.value)
    _scanned_path = tuple(sys.path)   # only after a scan without a broken entry point, which raises each time


def all_methods() -> dict[str, type[Method]]:
    _load()
    return dict(_REGISTRY)


def builtin_names() -> tuple[str, ...]:
    """The suite's own methods, in the order of METHOD_MODULES (the default grid, the report's tables)."""
    _load()
    modules = {f"methods.{module}": i for i, module in enumerate(METHOD_MODULES)}
    own = [cls for cls in _REGISTRY.values() if cls.__module__ in modules]
    return tuple(cls.name for cls in sorted(own, key=lambda cls: modules[cls.__module__]))


def lower_bound() -> str | None:
    """The first significance baseline in registry order (the supervised lower bound): gains and ratios are
    taken against it."""
    return next((name for name in builtin_names() if _REGISTRY[name].significance_baseline), None)


def strongest_baseline() -> str | None:
    """The last significance baseline in registry order (UniMatch, the framework the paper methods build on):
    the method whose step the GPU diagnostics time and whose official logs the report imports."""
    return next((name for name in reversed(builtin_names()) if _REGISTRY[name].significance_baseline), None)


def baselines() -> tuple[str, ...]:
    """The suite's methods that are not our reading of a paper's description (the published baselines)."""
    return tuple(name for name in builtin_names() if not _REGISTRY[name].from_paper_description)


def semi_supervised_baselines() -> tuple[str, ...]:
    """The published baselines that learn from unlabeled images: `baselines()` without the lower bound."""
    return tuple(name for name in baselines() if name != lower_bound())


def get(name: str) -> type[Method]:
    methods = all_methods()
    if name not in methods:
        raise MethodError(f"unknown method {name!r}; known methods: {', '.join(methods)}")
    return methods[name]


def owner_of_component(component: str) -> list[type[Method]]:
    """Methods that declare `component` (a component name may be shared, e.g. by a base and its extension)."""
    return [m for m in all_methods().values() if component in m.components]
