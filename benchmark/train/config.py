"""Typed configuration: defaults ← dataset ← profile bases ← profile ← --config file ← CLI flags and overrides.

Every key is checked against the dataclasses below (or, under `method.`, against the chosen method's
Params and components); an unknown key is an error that names its dotted path. The resolved config is
saved with every run, and its hash identifies the recipe in reports. Where the layers come from (the dataset's
catalogue entry and YAML, profiles and their bases) is benchmark/train/config_files.py.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

import yaml

from datasets.io import atomic_write_text
from benchmark.numerics import MODES as NUMERICS_MODES
from benchmark.plugins import load_plugins, normalise_all
from benchmark.train.config_files import (ConfigError, Layer, dataset_layers, deep_merge, layer_sources, load_yaml,
                                          merge_layers, profile_layers)
from datasets.draws import DESIGNS as DRAW_DESIGNS
from methods.settings import LossSettings, coerce


@dataclass
class DataConfig:
    dataset: str = "animals"
    root: str = ""            # "" = the dataset's default root
    split_dir: str = ""       # "" = the dataset's default split-list folder
    split: str = ""           # "" = the dataset's lowest label split
    crop_size: int = 0        # 0 = the dataset's default
    workers: int = 0          # DataLoader worker processes
    custom_splits: bool = False  # accept split lists that differ from the pinned official ones (run marked custom)
    # Generated datasets (datasets/draws.py): per_seed = training seed k trains on draw generator_seed + k (its
    # own images and labeled split, shared by every method of that seed); single = every seed on one draw, as
    # the official split lists of the real datasets.
    draws: str = "single"
    generator_seed: int = 0   # the generator's seed (under per_seed: of seed 0's draw, i.e. the family offset)
    custom_data: bool = False   # accept generated data whose digest differs from the pinned one (run marked custom)
    # CutMix source batch: same_ids (official: a second pass of the unlabeled sampler, so the same image ids
    # augmented anew) | independent (an independently sampled stream of other images)
    mix_source: str = "independent"
    # seeded (a pure function of seed and key, leftovers carried into the next epoch) | official (UniMatch's
    # DistributedSampler over train.loss_shards GPUs: shared permutation, padding, drop_last; datasets/official_order.py)
    epoch_order: str = "seeded"


@dataclass
class ModelConfig:
    backbone: str = "resnet_small"   # resnet_small | resnet50 | resnet101
    weights: str = "none"            # none | imagenet | path to a local state dict
    output_stride: int = 16
    dilations: tuple = (6, 12, 18)
    small_width: int = 16            # base width of resnet_small
    deep_stem: bool = False          # the official UniMatch ResNet stem (three 3x3 convs)
    standardize_input: bool = False  # each image's channels at zero mean, unit std before the backbone (not official)


@dataclass
class TrainConfig:
    iters: int = 0            # total steps; 0 = derive from epochs
    epochs: int = 0           # passes over the unlabeled set (labeled set for labeled-only methods)
    batch_size: int = 8       # per process, for each of the labeled and unlabeled batches
    total_batch_size: int = 0  # > 0: the total over all processes; overrides batch_size with total / world size
    loss_shards: int = 1      # losses averaged per shard of the total batch, then over shards (recipe: its GPUs)
    lr: float = 0.01
    lr_multi: float = 10.0    # head learning rate = lr * lr_multi
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    seed: int = 0
    device: str = "auto"      # auto | cpu | cuda | cuda:N
    amp: str = "auto"         # auto (bf16 on CUDA) | bf16 | off
    threads: int = 0          # torch CPU threads; 0 = torch's default
    # pinned: CPU kernels capped at AVX2, so a host's digits do not depend on its instruction set; portable:
    # nor on its CPU model (oneDNN off, MKL COMPATIBLE; slower); native: each library uses the host's best
    # (benchmark/numerics.py). GPU runs are left as they are.
    cpu_numerics: str = "pinned"
    channels_last: bool = False  # NHWC model and images (faster convolutions on tensor cores)
    compile: bool = False     # torch.compile the model (first steps compile; dropout draws differ from eager)
    log_every: int = 20
    checkpoint_every: int = 0  # steps; 0 = at every evaluation
    tensorboard: bool = False  # live curves under <run>/tensorboard/ (needs the optional tensorboard package)


@dataclass
class EvalConfig:
    mode: str = ""            # whole | center_crop | sliding; "" = the dataset's default
    every: int = 0            # steps between evaluations; 0 (and every_epochs 0) = 10 evaluations per run
    every_epochs: int = 0     # epochs between evaluations (official: 1); excludes `every`
    absent: str = "zero"      # a class absent from prediction and ground truth: zero (official) | nan (excluded)
    batch_size: int = 1
    # sliding-window border: truncate (official UniMatch: windows past the border are clipped) | clamp
    # (mmsegmentation: the last window is moved back inside the image)
    border: str = "truncate"


@dataclass
class OutputConfig:
    results_dir: str = "results"
    variant: str = ""         # ablation variant label; "" = the method as configured by default
    save_checkpoint: bool = True
    qualitative_images: int = 4   # fixed val images whose predictions are saved at each new best (0 = none)
    reference: bool = False   # a grid.references cell: the report shows it as a reference column, not a split


def _builtin_methods() -> tuple:
    from methods.registry import builtin_names   # torch: the config stays light for the commands' --help
    return builtin_names()


@dataclass
class GridConfig:
    """What run_all.sh runs for a profile; training itself ignores it."""
    methods: tuple = ("all",)  # all = every registered method in registry order (grid/cells.py); a list = a subset
    splits: tuple = ()        # () = the dataset's first two splits
    seeds: int = 2
    ablations: tuple = ()     # component names to ablate
    ablation_splits: tuple = ()  # () = the grid's lowest split
    ablation_seeds: int = 0      # seeds of the ablation variants; 0 = grid.seeds (never more than the grid's)
    # "method:split" cells also trained for every seed, outside methods × splits, e.g. ["supervised:full"]:
    # the report shows them as reference columns (how much room the labels leave).
    references: tuple = ()
    # After training them, the references' label-preservation check (benchmark/diagnostics/label_preservation.py,
    # about 5 CPU s per cell on the embedded dataset; the report shows it). No references, nothing to check.
    label_check: bool = True
    parallel: int = 0         # cells run side by side on this machine; 0 = one per usable CPU core
    # fork: local cells are forked from one server that imported torch and the trainer once (benchmark/train/
    # forked.py; 4-6 CPU s less per cell, the same bits); spawn: a fresh interpreter per cell. Slurm tasks spawn.
    cell_start: str = "fork"


@dataclass
class Config:
    profile: str = "default"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    loss: LossSettings = field(default_factory=LossSettings)   # the methods layer's type (methods/settings.py)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    # `method` holds name, components and the method's own parameters; checked against the method class.
    method: dict = field(default_factory=lambda: {"name": _builtin_methods()[0]})   # the first registered
    # Per-method settings a profile applies when that method runs, e.g. the supervised doubled batch.
    per_method: dict = field(default_factory=dict)
    # Plugin modules (.py files or module names) imported before the method is looked up; see benchmark/plugins.py.
    plugins: tuple = ()

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def hash(self) -> str:
        """Hash of the recipe: everything but the seed, where data and outputs live, and the device."""
        recipe = self.to_dict()
        # Where and how a run is launched does not change what it computes.
        # Threads change float summation order, not the recipe (docs/architecture.md, "Thread count").
        for section, key in (("train", "seed"), ("train", "device"), ("train", "threads"), ("train", "tensorboard"),
                             ("train", "cpu_numerics"),
                             ("train", "channels_last"), ("train", "compile"), ("data", "root"),
                             ("data", "split_dir"), ("data", "workers"), ("data", "custom_splits"),
                             ("data", "custom_data")):
            recipe[section].pop(key)
        recipe.pop("output")
        recipe.pop("grid")
        recipe.pop("plugins")     # where the method's code lives; its name and settings are in the recipe
        # Keys added later, at their old behaviour: runs that do not set them keep their hash.
        for section, key, old in (("train", "loss_shards", 1), ("data", "epoch_order", "seeded"),
                                  ("data", "draws", "single"), ("data", "generator_seed", 0),
                                  ("model", "standardize_input", False)):
            if recipe[section].get(key, old) == old:
                recipe[section].pop(key, None)
        blob = json.dumps(recipe, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:12]


# --- overrides and resolution ---------------------------------------------------------------------------------

def parse_override(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override {text!r} has an empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    if "_" in raw and isinstance(value, (int, float)):   # YAML 1.1 reads data.split=1_32 as the number 132
        value = raw.strip()
    return key, value


# Paths a user writes (flags, overrides, --config) are relative to the current folder, for every entry point;
# those in the shipped profiles and dataset YAMLs are relative to the repository (benchmark.train.data_plan.resolve_path).
USER_PATH_KEYS = ("data.root", "data.split_dir", "output.results_dir", "model.weights")
NOT_PATHS = ("", "none", "imagenet")


def anchor_path(key: str, value: Any) -> Any:
    if key not in USER_PATH_KEYS or not isinstance(value, str) or value.lower() in NOT_PATHS:
        return value
    return str(Path(value).expanduser().absolute())


def anchor_override(text: str) -> str:
    """`key=value` with a relative path value made absolute against the current folder (for a subprocess that
    runs elsewhere)."""
    key, sep, raw = text.partition("=")
    anchored = anchor_path(key.strip(), raw)
    return f"{key}{sep}{anchored}" if sep and anchored != raw else text


def _anchor_tree(tree: dict[str, Any]) -> dict[str, Any]:
    out = {section: dict(values) if isinstance(values, dict) else values for section, values in tree.items()}
    for dotted in USER_PATH_KEYS:
        section, key = dotted.split(".")
        if isinstance(out.get(section), dict) and key in out[section]:
            out[section][key] = anchor_path(dotted, out[section][key])
    return out


def nest(dotted: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        parts = key.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} goes below a value that is not a section")
        node[parts[-1]] = value
    return tree


def resolve(*, profile: str = "default", dataset: str | None = None, method: str | None = None,
            split: str | None = None, seed: int | None = None, config_file: str | None = None,
            overrides: list[str] = (), plugins: list[str] = (), sources: dict[str, str] | None = None) -> Config:
    """Build the run config. Precedence: CLI overrides > CLI flags > --config > profile > its bases > dataset >
    defaults. `sources`, when given, is filled with where each dotted key's value came from."""
    upper = profile_layers(profile)
    if config_file:
        upper.append(Layer(f"file ({config_file})", _anchor_tree(load_yaml(Path(config_file), "config file"))))
    flags: dict[str, Any] = {"profile": profile}
    if dataset is not None:
        flags["data.dataset"] = dataset
    if method is not None:
        flags["method.name"] = method
    if split is not None:
        flags["data.split"] = split
    if seed is not None:
        flags["train.seed"] = seed
    upper.append(Layer("CLI", _anchor_tree(deep_merge(nest(flags), nest(dict(parse_override(o) for o in overrides))))))

    dataset_name = merge_layers(upper).get("data", {}).get("dataset", DataConfig.dataset)
    layers = dataset_layers(dataset_name) + upper
    tree = merge_layers(layers)
    if sources is not None:
        sources.update(layer_sources(layers))
    if plugins:   # --plugin flags add to the config's list rather than replace it
        listed = tree.get("plugins") or []
        tree["plugins"] = list(listed if isinstance(listed, (list, tuple)) else [listed]) + list(plugins)
    return build(tree)


# Keys that runs saved before they were retired: the report note now lives in the profile file.
RETIRED_KEYS = (("output", "report_note"),)


def load_run_config(path: Path) -> Config:
    """A run's saved config.yaml, built again (keys retired since the run was trained are dropped)."""
    tree = load_yaml(path, "run config")
    for section, key in RETIRED_KEYS:
        if isinstance(tree.get(section), dict):
            tree[section].pop(key, None)
    return build(tree)


def build(tree: dict[str, Any]) -> Config:
    config = _from_dict(Config, tree, "")
    if not isinstance(config.method.get("name"), str):
        raise ConfigError("method.name must be a method name")
    for key, value, choices in (("train.cpu_numerics", config.train.cpu_numerics, NUMERICS_MODES),
                                ("data.draws", config.data.draws, DRAW_DESIGNS)):
        if value not in choices:
            raise ConfigError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    config.plugins = tuple(normalise_all(config.plugins))
    load_plugins(config.plugins)
    return config


def _from_dict(cls: type, values: dict[str, Any], prefix: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a section (mapping), got {values!r}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in names:
            raise ConfigError(f"unknown config key {prefix}{key}; known keys in "
                              f"{prefix.rstrip('.') or 'the top level'}: {', '.join(sorted(names))}")
    kwargs = {}
    for key, value in values.items():
        kind = hints[key]
        where = f"{prefix}{key}"
        if dataclasses.is_dataclass(kind):
            kwargs[key] = _from_dict(kind, value, where + ".")
        else:
            kwargs[key] = coerce(value, kind, where, ConfigError)
    return cls(**kwargs)


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def save_yaml(data: dict[str, Any], path: Path) -> None:
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
