"""What a run is before it trains: its config resolved from a request (`run_config`), its method built from that
config (`build_method`), and its folder (`run_name`, `run_dir_for`, the one place a run folder's name is built).
The grid plans its cells with these and the train command and trainer start from them, so planning a cell needs
no trainer and training needs no grid.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from benchmark.train.config import Config, ConfigError, resolve
from benchmark.train.data_plan import resolve_path
from benchmark.train.schedule import loss_shards_per_process, ohem_min_kept_per_process
from datasets import IGNORE_INDEX
from methods import registry
from methods.base import Method, MethodContext


def run_config(*, profile: str, method=None, dataset=None, split=None, seed=None, config_file=None,
               data_root=None, results_dir=None, device=None, overrides=(), plugins=(), sources=None):
    """The run's config from the train CLI's flags (the runner's cells resolve theirs here too); `sources`,
    when given, gets where each value came from."""
    overrides = list(overrides)
    for flag, key in ((data_root, "data.root"), (results_dir, "output.results_dir"), (device, "train.device")):
        if flag is not None:
            overrides.insert(0, f"{key}={flag}")
    return resolve(profile=profile, dataset=dataset, method=method, split=split, seed=seed,
                   config_file=config_file, overrides=overrides, plugins=plugins, sources=sources)


def run_name(method: str, variant: str | None = "") -> str:
    """The name of a run's folder (the one place it is built): `method`, or `method__variant` for a variant."""
    return f"{method}__{variant}" if variant else method


def run_dir_for(cfg: Config) -> Path:
    return (resolve_path(cfg.output.results_dir) / "runs" / cfg.data.dataset / cfg.data.split /
            run_name(cfg.method["name"], cfg.output.variant) / f"seed{cfg.train.seed}")


def build_method(cfg: Config, num_classes: int, world_size: int = 1) -> Method:
    method_cls = registry.get(cfg.method["name"])
    values = dict(cfg.per_method.get(method_cls.name, {}))
    values.update({k: v for k, v in cfg.method.items() if k != "name"})
    components = values.pop("components", None) or {}
    if not isinstance(components, dict):
        raise ConfigError(f"method.components must be a mapping of component: true/false, got {components!r}")
    loss = dataclasses.replace(cfg.loss, ohem_min_kept=ohem_min_kept_per_process(cfg, world_size),
                               ohem_min_kept_world_size=0)   # already per process
    context = MethodContext(num_classes, IGNORE_INDEX, loss, loss_shards=loss_shards_per_process(cfg.train, world_size))
    return method_cls(method_cls.make_params(values), components, context)
