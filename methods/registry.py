"""Look-up of registered methods. Method modules are imported explicitly: a broken import fails loudly."""
from __future__ import annotations

import importlib

from methods.base import _REGISTRY, Method, MethodError

# One module per method; the order is the order of the report's tables.
METHOD_MODULES = ("supervised", "fixmatch", "unimatch", "s4mim", "maskmatch")


def _load() -> None:
    for module in METHOD_MODULES:
        importlib.import_module(f"methods.{module}")


def all_methods() -> dict[str, type[Method]]:
    _load()
    return dict(_REGISTRY)


def get(name: str) -> type[Method]:
    methods = all_methods()
    if name not in methods:
        raise MethodError(f"unknown method {name!r}; known methods: {', '.join(methods)}")
    return methods[name]


def owner_of_component(component: str) -> list[type[Method]]:
    """Methods that declare `component` (a component name may be shared, e.g. by a base and its extension)."""
    return [m for m in all_methods().values() if component in m.components]
