"""Published numbers (benchmark/data/published.yaml) and the interpretation register (methods/interpretations/,
one YAML list per method).

Both are user-editable YAML. The published file is product data: a broken one is an error naming the group.
The register may not exist yet: the report then says "register not found" instead of failing.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from benchmark.report.errors import ReportError
from datasets import REPO_ROOT

DEFAULT_PUBLISHED = REPO_ROOT / "benchmark" / "data" / "published.yaml"
DEFAULT_REGISTER = REPO_ROOT / "methods" / "interpretations"
REGISTER_FIELDS = ("id", "method", "topic", "paper_says", "we_chose", "why", "config_key")


@dataclass(frozen=True)
class PublishedEntry:
    dataset: str
    split: str
    method: str
    miou: float | None         # None: not available (never guessed)
    backbone: str | None
    crop: int | None
    source: str


def load_published(path: Path) -> list[PublishedEntry]:
    path = Path(path)
    if not path.exists():
        raise ReportError(f"published numbers file {path} not found (pass --published)")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReportError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    groups = data.get("groups") if isinstance(data, dict) else None
    if not isinstance(groups, list):
        raise ReportError(f"{path}: expected a top-level 'groups:' list")
    entries: list[PublishedEntry] = []
    for i, group in enumerate(groups):
        where = f"{path}: groups[{i}]"
        if not isinstance(group, dict):
            raise ReportError(f"{where} is not a mapping")
        for key in ("source", "dataset", "miou"):
            if key not in group:
                raise ReportError(f"{where} lacks '{key}'")
        crop = group.get("crop")
        if crop is not None and (isinstance(crop, bool) or not isinstance(crop, int)):
            raise ReportError(f"{where}.crop must be an integer or null, got {crop!r}")
        if not isinstance(group["miou"], dict):
            raise ReportError(f"{where}.miou must map method -> split -> value")
        for method, by_split in group["miou"].items():
            if not isinstance(by_split, dict):
                raise ReportError(f"{where}.miou.{method} must map split -> value")
            for split, value in by_split.items():
                if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                    raise ReportError(f"{where}.miou.{method}.{split} must be a number or null, got {value!r}")
                entries.append(PublishedEntry(
                    dataset=str(group["dataset"]), split=str(split), method=str(method),
                    miou=float(value) if value is not None else None,
                    backbone=str(group["backbone"]) if group.get("backbone") is not None else None,
                    crop=crop, source=str(group["source"])))
    return entries


@dataclass(frozen=True)
class RegisterState:
    path: Path
    entries: list[dict[str, Any]]
    problem: str | None         # "register not found" or a parse problem; None when read fine


def load_register(path: Path) -> RegisterState:
    """A folder of YAML lists of entries (one file per method, as methods/interpretations/), or one such file."""
    path = Path(path)
    if not path.exists():
        return RegisterState(path, [], f"register not found ({path})")
    files = sorted(path.glob("*.y*ml")) if path.is_dir() else [path]
    entries: list[dict[str, Any]] = []
    problems: list[str] = []
    for f in files:
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            problems.append(f"register file {f} is not valid YAML: {' '.join(str(exc).split())}")
            continue
        if data is None:
            continue
        if not isinstance(data, list):
            problems.append(f"register file {f} is not a YAML list of entries")
            continue
        entries += [e for e in data if isinstance(e, dict)]
        if any(not isinstance(e, dict) for e in data):
            problems.append(f"{f}: {sum(not isinstance(e, dict) for e in data)} item(s) are not mappings")
    return RegisterState(path, entries, "; ".join(problems) or None)
