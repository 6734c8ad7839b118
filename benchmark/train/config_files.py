"""Where config values come from: the dataset's facts, the shipped profiles and the profiles they build on.

Each source is a `Layer` (its label says which kind and which file, for `--print-config`); benchmark/train/config.py
merges them in precedence order and types the result. Each fact has one home: a dataset's crop size and
evaluation mode its catalogue entry (datasets/catalog.py), the loss it is trained with its YAML
(configs/datasets/<name>.yaml); a profile states only its recipe, and a variant names its `base:`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmark.errors import ConfigError
from datasets.catalog import all_specs

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"   # benchmark/configs


def load_yaml(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"malformed YAML in {path}{where}: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of config sections, found {type(data).__name__}")
    return data


def available(kind: str) -> list[str]:
    """Names to choose from; a name starting with "_" is only a base for others (e.g. _unimatch_official)."""
    return sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml") if not p.stem.startswith("_"))


def named_yaml(kind: str, name: str) -> dict[str, Any]:
    path = CONFIG_DIR / kind / f"{name}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown {kind[:-1]} {name!r}; known: {', '.join(available(kind))}")
    return load_yaml(path, f"{kind[:-1]} file")


@dataclass(frozen=True)
class Layer:
    """One source of config values, in precedence order (later layers win)."""
    source: str                # default | dataset | base | profile | file | CLI, with the file it comes from
    tree: dict[str, Any]


def dataset_layers(name: str) -> list[Layer]:
    """The dataset's facts: crop size and evaluation mode from its catalogue entry (their one home), then its
    YAML (the loss it is trained with), if it has one."""
    if name not in all_specs():
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(all_specs()))}")
    spec = all_specs()[name]
    layers = [Layer("dataset (datasets/catalog.py)",
                    {"data": {"crop_size": spec.crop_size}, "eval": {"mode": spec.eval_mode}})]
    if (CONFIG_DIR / "datasets" / f"{name}.yaml").is_file():
        layers.append(Layer(f"dataset (configs/datasets/{name}.yaml)", named_yaml("datasets", name)))
    return layers


# Keys of a profile file that are not config keys: the profile it builds on, and the note the report shows
# under the tables of the profile's runs (read from the profile, never from a run's config).
PROFILE_META_KEYS = ("base", "report_note")


def profile_chain(name: str) -> list[tuple[str, dict[str, Any]]]:
    """The profile and the profiles it builds on (`base:`, as mmsegmentation's `_base_`), deepest base first,
    each as (name, tree with the meta keys)."""
    chain: list[tuple[str, dict[str, Any]]] = []
    while True:
        if name in [seen for seen, _ in chain]:
            raise ConfigError(f"profile {name!r} is its own base: {' -> '.join(n for n, _ in chain)} -> {name}")
        tree = named_yaml("profiles", name)
        chain.append((name, tree))
        base = tree.get("base")
        if base is None:
            return chain[::-1]
        if not isinstance(base, str) or not base:
            raise ConfigError(f"profile {name!r}: base must name another profile, got {base!r}")
        name = base


def profile_layers(name: str) -> list[Layer]:
    chain = profile_chain(name)
    return [Layer(f"{'profile' if i == len(chain) - 1 else 'base'} (configs/profiles/{n}.yaml)",
                  {k: v for k, v in tree.items() if k not in PROFILE_META_KEYS}) for i, (n, tree) in enumerate(chain)]


def profile_report_note(name: str) -> str:
    """The report note of a profile (inherited from its base); "" for none, or for a profile this checkout does
    not ship (runs trained elsewhere)."""
    if name not in available("profiles"):
        return ""
    notes = [str(tree["report_note"]) for _, tree in profile_chain(name) if tree.get("report_note")]
    return notes[-1] if notes else ""


def deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def merge_layers(layers: list[Layer]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for layer in layers:
        tree = deep_merge(tree, layer.tree)
    return tree


def _leaf_keys(tree: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for key, value in tree.items():
        keys += _leaf_keys(value, f"{prefix}{key}.") if isinstance(value, dict) and value else [f"{prefix}{key}"]
    return keys


def layer_sources(layers: list[Layer]) -> dict[str, str]:
    """Dotted key -> the source of the last layer that sets it."""
    sources: dict[str, str] = {}
    for layer in layers:
        sources.update(dict.fromkeys(_leaf_keys(layer.tree), layer.source))
    return sources


def source_of(sources: dict[str, str], dotted: str) -> str:
    """Where a dotted key's value came from: the layer that set it or a section above it, else the defaults."""
    parts = dotted.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in sources:
            return sources[".".join(parts[:end])]
    return "default"


def annotated_yaml(tree: dict[str, Any], sources: dict[str, str]) -> str:
    """`tree` as YAML, each value followed by a comment naming its source (what `--print-config` shows)."""
    rows: list[tuple[str, str | None]] = []

    def walk(node: dict[str, Any], prefix: str, indent: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict) and value:
                rows.append((f"{indent}{key}:", None))
                walk(value, f"{prefix}{key}.", indent + "  ")
            else:
                flow = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...")
                rows.append((f"{indent}{key}: {flow.strip()}", source_of(sources, prefix + key)))

    walk(tree, "", "")
    width = min(max(len(text) for text, source in rows if source), 48)   # long lists push only their own comment
    return "\n".join(text if source is None else f"{text.ljust(width)}  # {source}" for text, source in rows)
