"""Methods from outside the suite: plugin modules imported by path or by name before any method is looked up.

A plugin is a Python file (`--plugin path/to/my_method.py`) or an importable module (`--plugin mypkg.methods`)
whose import registers one or more methods with `@methods.base.register`, in the manner of mmengine's
`custom_imports`. Plugins come from `--plugin` flags and from the config's top-level `plugins` list; the
resolved config saved with every run lists them all (files by absolute path), so a cell, a Slurm task or a
resumed run imports the same code again. Installed packages may also advertise methods through the entry-point
group `ssseg_bench.methods` (see `methods/registry.py`).

A plugin that fails to import stops everything with one line naming it: a method silently missing from a
grid would be worse.
"""
from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Iterable

from benchmark.errors import ConfigError

_LOADED: dict[str, str] = {}   # normalised spec -> module name in sys.modules


def is_path(spec: str) -> bool:
    return spec.endswith(".py") or "/" in spec or "\\" in spec


def normalise(spec: str) -> str:
    """Files become absolute paths (the saved config must work from any folder); module names stay as given."""
    spec = str(spec).strip()
    if not spec:
        raise ConfigError("empty plugin name (give a .py file or a module name)")
    return str(Path(spec).expanduser().resolve()) if is_path(spec) else spec


def normalise_all(specs: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(normalise(s) for s in specs))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import_file(path: Path) -> str:
    if not path.is_file():
        raise ConfigError(f"plugin file {path} not found")
    # A name unique per file, so two plugins called `method.py` in different folders do not collide.
    name = f"ssseg_plugin_{path.stem}_{hashlib.sha1(str(path).encode()).hexdigest()[:8]}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"plugin {path} is not an importable Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return name


def load_plugin(spec: str) -> str:
    """Import one plugin once; returns its module name. Any failure is one ConfigError naming the plugin."""
    key = normalise(spec)
    if key in _LOADED:
        return _LOADED[key]
    try:
        name = _import_file(Path(key)) if is_path(key) else importlib.import_module(key).__name__
    except Exception as exc:
        if isinstance(exc, ConfigError):
            raise
        raise ConfigError(f"plugin {key} cannot be imported: {_first_line(exc)}") from None
    _LOADED[key] = name
    return name


def load_plugins(specs: Iterable[str]) -> list[str]:
    return [load_plugin(s) for s in specs]


def is_user_supplied(method_cls: type) -> bool:
    """A method not defined in the suite's own `methods` package (a plugin or an installed package)."""
    module = getattr(method_cls, "__module__", "") or ""
    return not (module == "methods" or module.startswith("methods."))
