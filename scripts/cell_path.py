"""A cell's path through the orchestration, traced: which `benchmark` functions the runner calls, across which
modules, for the smoke grid of the lower-bound method, one seed (`--no-report`; the cell's own training runs in its subprocess and is not traced).

    python scripts/cell_path.py [--entry benchmark.grid.runner:execute] [--list]

Counts, from the entry function's call until it returns:
- stops: distinct cross-module calls (caller function -> callee function in another `benchmark` module);
- modules: the `benchmark` modules visited;
- upward hops: stops from a lower layer into a higher one (`LAYERS`: shared infrastructure < training < grid
  planning < running cells < the runner and command lines); a layered path only goes down;
- entries per module: stops that enter it.
Dataclass-generated methods and properties are data access, not stops. Modules are named as after #27; the
names before it (`OLD_NAMES`) are mapped so that both layouts are counted alike.
"""
from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
LEAVE_OUT = ("benchmark.report", "benchmark.errors")
LAYERS = {"datasets.io": 0, "benchmark.plugins": 0, "benchmark.numerics": 0, "benchmark.train.config": 0,
          "benchmark.train.config_files": 0, "benchmark.train": 1, "benchmark.grid.cells": 2, "benchmark.grid.plan": 3,
          "benchmark.grid": 4, "benchmark.grid.runner": 5, "benchmark.train.command": 5, "benchmark.ablate": 5}
OLD_NAMES = {"grid": "grid.cells", "cell_plan": "grid.plan", "cells": "grid.local", "runner": "grid.runner",
             "same_run": "grid.same_run", "slurm": "grid.slurm", "train": "train.command", "data": "train.data_plan",
             "runinfo": "train.summary", "qualitative": "train.sample_images",
             **{m: f"train.{m}" for m in ("config", "config_files", "model", "trainer", "evaluate", "schedule",
                                          "run_state", "runlock", "split_lists", "distributed", "tensorboard_log")}}


def layer(module: str) -> int:
    """The layer of a module: its own entry, else its package's."""
    while module not in LAYERS:
        module = module.rpartition(".")[0]
    return LAYERS[module]


def new_name(module: str) -> str:
    head, _, rest = module.partition(".")
    return f"{head}.{OLD_NAMES[rest]}" if rest in OLD_NAMES else module


def is_data_access(frame) -> bool:
    code = frame.f_code
    if "__create_fn__" in code.co_qualname or code.co_name.startswith("__"):
        return True
    owner = sys.modules.get(frame.f_globals.get("__name__", ""))
    *path, name = code.co_qualname.split(".")
    for part in path:
        owner = getattr(owner, part, None)
    return isinstance(getattr(owner, "__dict__", {}).get(name), property)


def module_of(frame) -> str | None:
    name = frame.f_globals.get("__name__", "")
    if name == "__main__" or not name.startswith("benchmark") or name.startswith(LEAVE_OUT):
        return None
    return name


def trace(entry: str, argv: list[str]) -> list[tuple[str, str, str, bool]]:
    """(caller module.function, callee module.function, callee module, upward) for every cross-module call."""
    module_name, function = entry.split(":")
    module = importlib.import_module(module_name)
    target = getattr(module, function).__code__
    calls, active = [], [False]

    def profile(frame, event, arg):
        if event != "call":
            return
        if frame.f_code is target:
            active[0] = True
        if not active[0]:
            return
        callee = module_of(frame)
        caller = module_of(frame.f_back) if frame.f_back else None
        if callee and caller and callee != caller and not is_data_access(frame):
            callee, caller = new_name(callee), new_name(caller)
            calls.append((f"{caller}.{frame.f_back.f_code.co_qualname}", f"{callee}.{frame.f_code.co_qualname}",
                          callee, layer(callee) > layer(caller)))

    main = importlib.import_module(module_name).main
    sys.setprofile(profile)
    threading.setprofile(profile)   # cells run in a thread pool
    try:
        main(argv)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
    return calls


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entry", default="benchmark.grid.runner:execute", help="module:function to trace from")
    parser.add_argument("--list", action="store_true", help="print every stop")
    args = parser.parse_args()
    from methods import registry   # after sys.path holds the checkout
    with tempfile.TemporaryDirectory() as tmp:
        argv = ["--profile", "smoke", "--methods", registry.lower_bound(), "--seeds", "1", "--no-ablations", "--no-report",
                "--results-dir", tmp]
        calls = trace(args.entry, argv)
    stops = list(dict.fromkeys((a, b, m, up) for a, b, m, up in calls))
    modules = {m for _, _, m, _ in stops} | {a.rsplit(".", 1)[0] for a, *_ in stops}
    entries = Counter(m for _, _, m, _ in stops)
    print(f"stops {len(stops)}, modules {len(modules)}, upward hops {sum(up for *_, up in stops)}; entries: "
          + ", ".join(f"{m} {n}" for m, n in entries.most_common()))
    if args.list:
        for caller, callee, _, up in stops:
            print(f"  {caller} -> {callee}{'   (upward)' if up else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
