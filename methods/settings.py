"""Plain settings and the method error, shared by the method interface, the registry and the config (no torch
here: the config imports it).

`LossSettings` is both the config's `loss` section and what a method receives in its context; `coerce` is the
one conversion of a YAML/CLI value to a declared type, used for config keys and for method parameters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, get_origin


class MethodError(ValueError):
    """Unknown method or component, or a bad method parameter."""


@dataclass(frozen=True)
class LossSettings:
    criterion: str = "ce"          # "ce" | "ohem" (labeled loss; Cityscapes uses OHEM)
    conf_thresh: float = 0.95      # pseudo-label confidence threshold
    ohem_thresh: float = 0.7
    ohem_min_kept: int = 200000
    # Processes ohem_min_kept is stated per (official Cityscapes: 4); 0 = per process as is. A method's context
    # holds the per-process value with 0 here (benchmark.train.schedule.ohem_min_kept_per_process).
    ohem_min_kept_world_size: int = 0


EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "a list",
            dict: "a mapping"}


def coerce(value: Any, kind: Any, where: str, error: type[Exception]) -> Any:
    """`value` (from YAML or the command line) as type `kind`, or `error` naming the key `where`.

    Lenient where YAML 1.1 and the shell mangle values (1e-4 and 1_000 read as strings, a scalar for a one-item
    list); a kind outside the table above passes the value through."""
    origin = get_origin(kind) or kind
    if origin is bool:
        if isinstance(value, bool):
            return value
    elif origin is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and value.replace("_", "").lstrip("+-").isdigit():
            return int(value)
    elif origin is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):   # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                number = float(value)
            except ValueError:
                number = float("nan")
            if math.isfinite(number):
                return number
    elif origin is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(value)
        if isinstance(value, (str, int)):
            return (value,)
    elif origin is dict:
        if isinstance(value, dict):
            return value
    else:
        return value
    raise error(f"{where} must be {EXPECTED[origin]}, got {value!r}")
