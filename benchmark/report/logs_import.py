"""Import an official UniMatch training log as a reference results file (the report never reads logs itself).

Both known log variants are accepted:
  2022: `***** Evaluation original ***** >>>> meanIOU: 58.74`, train lines ending `Mask: 0.360`
  2023: `***** Evaluation sliding_window ***** >>>> MeanIoU: 45.44`, train lines ending `Mask ratio: 1.000`
with per-class lines `***** Evaluation ***** >>>> Class [i name] IoU: x` before each mean line, and epochs
announced by `===========> Epoch: N, LR: ..., Previous best: ...`. A resumed log that repeats an epoch keeps
the later evaluation. The config dict printed at the top (Python literal) supplies dataset, backbone, crop
and, when it names the split list, the split.
"""
from __future__ import annotations

import ast
import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from datasets.io import atomic_write_text
from benchmark.report.errors import ReportError
from benchmark.report.labels import published_backbone, slugify
from methods.registry import strongest_baseline

EPOCH_RE = re.compile(r"=+>\s*Epoch:\s*(\d+)")
CLASS_RE = re.compile(r"Class \[(\d+)\s+([^\]]+?)\]\s+IoU:\s*([-+]?\d+(?:\.\d+)?|nan)", re.I)
MEAN_RE = re.compile(r"\*+\s*Evaluation(?:\s+([A-Za-z_]\w*))?\s*\*+\s*>+\s*(meanIOU|MeanIoU|mIoU)\s*:\s*"
                     r"([-+]?\d+(?:\.\d+)?|nan)", re.I)
MASK_RE = re.compile(r"\b(Mask ratio|Mask):\s*[-+]?\d")
CONFIG_START_RE = re.compile(r"\]\[\s*\w+\]\s*(\{.*)$")


@dataclass
class Evaluation:
    epoch: int
    miou: float
    mode: str | None
    per_class: dict[str, float]


@dataclass
class ParsedLog:
    evaluations: list[Evaluation]
    config: dict = field(default_factory=dict)
    mean_key: str | None = None         # "meanIOU" or "MeanIoU": which log variant this is
    mask_key: str | None = None         # "Mask" or "Mask ratio"

    @property
    def best(self) -> Evaluation:
        # First maximum: the epoch the official script would have saved as best.pth.
        return max(self.evaluations, key=lambda e: (e.miou if math.isfinite(e.miou) else -math.inf, -e.epoch))

    @property
    def last(self) -> Evaluation:
        return self.evaluations[-1]


def _num(text: str) -> float:
    return math.nan if text.lower() == "nan" else float(text)


def parse_log(text: str) -> ParsedLog:
    by_epoch: dict[int, Evaluation] = {}
    pending: dict[str, float] = {}
    epoch: int | None = None
    next_implicit = 0
    parsed = ParsedLog([])
    lines = text.splitlines()
    for idx, line in enumerate(lines):
        if not parsed.config and "{" in line:
            parsed.config = _read_config(lines, idx)
        m = EPOCH_RE.search(line)
        if m:
            epoch = int(m.group(1))
            pending = {}
            continue
        m = CLASS_RE.search(line)
        if m:
            pending[m.group(2).strip()] = _num(m.group(3))
            continue
        m = MEAN_RE.search(line)
        if m:
            mode = m.group(1)   # "original", "sliding_window", ... or None
            ep = epoch if epoch is not None else next_implicit
            by_epoch[ep] = Evaluation(ep, _num(m.group(3)), mode, dict(pending))
            parsed.mean_key = parsed.mean_key or m.group(2)
            next_implicit = ep + 1
            pending, epoch = {}, None
            continue
        m = MASK_RE.search(line)
        if m and not parsed.mask_key:
            parsed.mask_key = m.group(1)
    parsed.evaluations = [by_epoch[k] for k in sorted(by_epoch)]
    return parsed


def _read_config(lines: list[str], start: int) -> dict:
    """The pprint'ed config dict that starts on a log line and may span several lines."""
    m = CONFIG_START_RE.search(lines[start])
    if not m:
        return {}
    chunk = m.group(1)
    for nxt in lines[start + 1:start + 80]:
        try:
            value = ast.literal_eval(chunk)
            return value if isinstance(value, dict) else {}
        except (SyntaxError, ValueError):
            chunk += "\n" + nxt
    return {}


def split_from_config(config: dict) -> str | None:
    path = str(config.get("labeled_id_path", ""))
    m = re.search(r"/([^/]+)/labeled\.txt$", path)
    return m.group(1) if m else None


def reference_path(results: Path, dataset: str, split: str, name: str) -> Path:
    return Path(results) / "references" / slugify(dataset) / slugify(split) / f"{slugify(name)}.json"


def import_log(log_path: Path, results: Path, name: str, dataset: str | None = None, split: str | None = None,
               method: str | None = None, backbone: str | None = None) -> tuple[Path, dict]:
    """`method`: the method the log trained; by default the registry's strongest baseline, whose official code
    writes these logs."""
    method = method or strongest_baseline()
    log_path = Path(log_path)
    if not log_path.is_file():
        raise ReportError(f"log file {log_path} not found")
    raw = log_path.read_bytes()
    parsed = parse_log(raw.decode("utf-8", errors="replace"))
    if not parsed.evaluations:
        raise ReportError(f"{log_path}: no evaluation lines found (expected '... Evaluation ... >>>> meanIOU: x' "
                          "or '... MeanIoU: x'); is this an official UniMatch log?")
    cfg = parsed.config
    log_dataset = cfg.get("dataset")
    if dataset and log_dataset and str(log_dataset) != dataset:
        raise ReportError(f"--dataset {dataset} but the log's config says dataset '{log_dataset}'")
    dataset = dataset or (str(log_dataset) if log_dataset else None)
    log_split = split_from_config(cfg)
    if split and log_split and log_split != split:
        raise ReportError(f"--split {split} but the log's config trains on split '{log_split}'")
    split = split or log_split
    if not dataset or not split:
        missing = " and ".join(x for x, v in (("--dataset", dataset), ("--split", split)) if not v)
        raise ReportError(f"{log_path}: the log does not say its {missing.replace('--', '')}; pass {missing}")
    best, last = parsed.best, parsed.last
    record = {
        "kind": "reference_log", "name": name, "method": method, "dataset": dataset, "split": str(split),
        "backbone": backbone or published_backbone(cfg.get("backbone")), "crop_size": cfg.get("crop_size"),
        "source_log": f"{log_path.name} (sha256 {hashlib.sha256(raw).hexdigest()[:16]})",
        "format": {"mean_key": parsed.mean_key, "mask_key": parsed.mask_key,
                   "eval_mode": best.mode},
        "selection": "best on val (max over epochs), as the official tables report",
        "best": {"epoch": best.epoch, "miou": best.miou, "per_class": best.per_class},
        "last": {"epoch": last.epoch, "miou": last.miou, "per_class": last.per_class},
        "curve": [{"epoch": e.epoch, "miou": e.miou} for e in parsed.evaluations],
        "num_evaluations": len(parsed.evaluations),
    }
    out = reference_path(results, dataset, str(split), name)
    atomic_write_text(out, json.dumps(record, indent=1, sort_keys=False) + "\n")
    return out, record
