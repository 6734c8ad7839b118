"""How the report names, marks and orders what it shows: method display names and their marks († paper
description, § user-supplied, ¶ custom data) with the notes that explain them, the order of methods and splits,
slugs for file names, official logs' backbone names."""
from __future__ import annotations

import math
import re

from methods.base import MethodError
from methods.registry import all_methods, builtin_names

PAPER_DESCRIPTION_MARK = "†"
PAPER_DESCRIPTION_NOTE = (f"{PAPER_DESCRIPTION_MARK} our implementation from the paper's description "
                          "(only the abstract is available; choices are listed in the interpretation register).")

USER_SUPPLIED_MARK = "§"
USER_SUPPLIED_NOTE = (f"{USER_SUPPLIED_MARK} user-supplied method: a plugin loaded with `--plugin` or an installed "
                      "package's entry point, not one of the suite's methods (see docs/adding-a-method.md).")

CUSTOM_DATA_MARK = "¶"
CUSTOM_DATA_NOTE = (f"{CUSTOM_DATA_MARK} trained on custom data: split lists other than the pinned official ones "
                    "(`data.custom_splits=true`), or embedded data whose digest differs from the pinned one and that "
                    "the user accepted (`data_draw` in summary.json); not comparable with other results.")

DASH = "—"   # a missing cell


def registered_method(method: str):
    """The method's class where this process knows it (None: e.g. a plugin not loaded here). Its display name
    and flags stand in for what summaries written before they were recorded lack."""
    try:
        return all_methods().get(method)
    except MethodError:
        return None


def display_name(method: str, from_paper_description: bool = False, user_supplied: bool = False,
                 shown: str | None = None) -> str:
    """`shown`: the name a run's summary records; else the registered class's; else the method name."""
    cls = registered_method(method)
    name = shown or (cls.display_name if cls is not None and cls.display_name else method)
    name = name + PAPER_DESCRIPTION_MARK if from_paper_description else name
    return name + USER_SUPPLIED_MARK if user_supplied else name


def method_sort_key(method: str) -> tuple[int, str]:
    """The suite's methods in registry order (baselines first), anything else after them alphabetically."""
    order, m = builtin_names(), method.lower()
    return (order.index(m), m) if m in order else (len(order), m)


def split_sort_key(split: str) -> tuple[int, float, str]:
    """Order splits by labelled fraction / count, fewest labels first ("92" < "183"; "1_16" < "1_8")."""
    s = str(split)
    m = re.fullmatch(r"(\d+)_(\d+)", s)
    if m and int(m.group(2)):
        return (1, int(m.group(1)) / int(m.group(2)), s)
    if s.isdigit():
        return (0, float(s), s)
    m = re.search(r"(\d+)_(\d+)$", s)      # e.g. u2pl_1_16: after the plain splits, same inner order
    if m and int(m.group(2)):
        return (2, int(m.group(1)) / int(m.group(2)), s)
    return (3, 0.0, s)


def same_run_suffix(runs) -> str:
    """' (= <method> run)' for rows whose runs reuse another method's run (see benchmark/grid/same_run.py)."""
    reused = sorted({r.same_run_as for r in runs if r.same_run_as})
    return f" (= {', '.join(reused)} run)" if reused else ""


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9_]+", "-", str(text).lower()).strip("-_")
    return slug or "unnamed"


def is_finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


# UniMatch's COCO config says `backbone: xception`; its paper and our published tables call it Xception-65.
OFFICIAL_LOG_BACKBONES = {"xception": "xception65"}


def published_backbone(name: str | None) -> str | None:
    """The published tables' name for a backbone an official log names otherwise."""
    return OFFICIAL_LOG_BACKBONES.get(name, name) if name else name
