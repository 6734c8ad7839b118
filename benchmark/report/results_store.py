"""Reading the results tree: run folders (summary.json, metrics.jsonl, config.yaml) and imported reference logs.

A malformed run folder never stops the report: it becomes a `Skipped` entry that the report lists by path.
Only the summary's own fields identify a run (dataset, split, method, variant, seed); folder names are
never parsed.
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import yaml

from benchmark.numerics import sessions_label
from benchmark.report.errors import ReportError
from benchmark.report.labels import is_finite, published_backbone, registered_method
from benchmark.report.records import EvalPoint, ReferenceRecord, ResultsStore, RunRecord, Skipped
# An ablation variant that trains exactly another cell's run holds this pointer instead of its own run.
from benchmark.grid.same_run import POINTER as SAME_RUN_POINTER
from methods.registry import strongest_baseline

# Statuses whose numbers are reported. A diverged run keeps its row so the table can say "NaN (diverged)".
REPORTED_STATUSES = {"complete", "diverged"}


# ----------------------------------------------------------------------------------------------------------
def load_results(root: Path) -> ResultsStore:
    root = Path(root)
    if not root.exists():
        raise ReportError(f"results folder {root} does not exist (train something first, or pass --results)")
    if not root.is_dir():
        raise ReportError(f"--results {root} is not a folder")
    runs, skipped = _load_runs(root / "runs")
    references, ref_skipped = _load_references(root / "references")
    return ResultsStore(root, runs, references, skipped + ref_skipped)


def _load_runs(runs_root: Path) -> tuple[list[RunRecord], list[Skipped]]:
    runs: list[RunRecord] = []
    skipped: list[Skipped] = []
    seen: dict[tuple, Path] = {}
    if not runs_root.is_dir():
        return runs, skipped
    for folder in sorted(_run_folders(runs_root)):
        try:
            run = parse_run_folder(folder)
        except _Malformed as exc:
            skipped.append(Skipped(folder, str(exc)))
            continue
        key = (run.dataset, run.split, run.label, run.seed)
        if key in seen:    # the same seed twice would be counted twice in the mean
            skipped.append(Skipped(folder, f"duplicate of {seen[key]} (same dataset, split, run, seed)"))
            continue
        seen[key] = folder
        runs.append(run)
    return runs, skipped


def _run_folders(runs_root: Path) -> set[Path]:
    """Leaf folders that hold any run artefact; one with metrics but no summary is an unfinished run."""
    folders = set()
    for name in ("summary.json", "metrics.jsonl", "checkpoint.pt", SAME_RUN_POINTER):
        folders.update(p.parent for p in runs_root.rglob(name))
    return folders


class _Malformed(Exception):
    pass


def _number(value: Any, where: str) -> float:
    # JSON has no NaN literal in the standard, but Python writes/reads `NaN`; null is accepted as NaN too.
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Malformed(f"summary.json: {where} must be a number, got {value!r}")
    return float(value)


def _eval_point(raw: Any, where: str, required: bool) -> EvalPoint:
    if raw is None and not required:
        return EvalPoint(None, math.nan, {})
    if not isinstance(raw, dict) or "miou" not in raw:
        raise _Malformed(f"summary.json: {where} must be an object with 'miou'")
    miou = _number(raw.get("miou"), f"{where}.miou")
    it = raw.get("iter")
    if it is not None and (isinstance(it, bool) or not isinstance(it, int)):
        raise _Malformed(f"summary.json: {where}.iter must be an integer, got {it!r}")
    per_class_raw = raw.get("per_class") or {}
    if not isinstance(per_class_raw, dict):
        raise _Malformed(f"summary.json: {where}.per_class must be an object")
    per_class = {str(k): _number(v, f"{where}.per_class[{k}]") for k, v in per_class_raw.items()}
    return EvalPoint(it, miou, per_class)


def parse_run_folder(folder: Path) -> RunRecord:
    summary_path = folder / "summary.json"
    if not summary_path.exists() and (folder / SAME_RUN_POINTER).exists():
        return _parse_same_run(folder)
    if not summary_path.exists():
        # The trainer writes summary.json last; without it the run is in progress, was interrupted, or
        # failed (a NaN loss stops training): its own log says which.
        raise _Malformed("no summary.json (run in progress, interrupted or failed; see the run's log)")
    s = _read_summary(summary_path)
    status = str(s.get("status", "complete"))
    best = _eval_point(s.get("best"), "best", required=True)
    last = _eval_point(s.get("last"), "last", required=False)
    diverged = not math.isfinite(best.miou) or not math.isfinite(last.miou)
    if status not in REPORTED_STATUSES and not diverged:
        raise _Malformed(f"status is {status!r}, not 'complete'")
    return _run_record(folder, s, status, best, last)


def _read_summary(summary_path: Path) -> dict:
    """summary.json as a dict with the fields that identify the run (dataset, method, split, seed)."""
    try:
        s = json.loads(summary_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Malformed(f"summary.json is not valid JSON ({exc})") from None
    if not isinstance(s, dict):
        raise _Malformed("summary.json is not a JSON object")
    for key, kind in (("dataset", str), ("method", str)):
        if not isinstance(s.get(key), kind) or not s[key]:
            raise _Malformed(f"summary.json: missing or empty '{key}'")
    if not isinstance(s.get("split"), (str, int)) or isinstance(s.get("split"), bool):
        raise _Malformed("summary.json: missing 'split'")
    if not isinstance(s.get("seed"), int) or isinstance(s.get("seed"), bool):
        raise _Malformed("summary.json: missing or non-integer 'seed'")
    return s


def _run_record(folder: Path, s: dict, status: str, best: EvalPoint, last: EvalPoint) -> RunRecord:
    """The run's record from its checked summary; fields a summary lacks are None, empty or the class's."""
    variant = s.get("variant")
    method = s["method"]
    cls = registered_method(method)
    return RunRecord(
        path=folder, dataset=s["dataset"], split=str(s["split"]), method=method,
        variant=str(variant) if variant not in (None, "") else None, seed=s["seed"], status=status,
        best=best, last=last,
        components=_dict(s.get("components"), "components"), overrides=_dict(s.get("overrides"), "overrides"),
        profile=_opt_str(s.get("profile")), iters=s.get("iters") if isinstance(s.get("iters"), int) else None,
        wall_time_s=_opt_float(s.get("wall_time_s")), step_time_s=_opt_float(s.get("step_time_s")),
        images_per_s=_opt_float(s.get("images_per_s")), peak_memory_mb=_opt_float(s.get("peak_memory_mb")),
        device=_opt_str(s.get("device")), versions=s.get("versions") if isinstance(s.get("versions"), dict) else {},
        git_commit=_opt_str(s.get("git_commit")), config_hash=_opt_str(s.get("config_hash")),
        backbone=_opt_str(s.get("backbone")) or _backbone_from_config(folder),
        from_paper_description=_flag(s, "from_paper_description", cls),
        significance_baseline=_flag(s, "significance_baseline", cls),
        display_name=_opt_str(s.get("display_name")),
        params=_dict(s.get("params"), "params"),
        class_names=[str(c) for c in s["class_names"]] if isinstance(s.get("class_names"), list) else [],
        custom_splits=isinstance(s.get("split_lists"), dict) and s["split_lists"].get("custom") is True,
        custom_data=isinstance(s.get("data_draw"), dict) and s["data_draw"].get("custom") is True,
        world_size=_opt_int(s.get("world_size")), labeled_total_batch_size=_opt_int(s.get("labeled_total_batch_size")),
        labeled_batch_per_process=_opt_int(s.get("labeled_batch_per_process")),
        evaluations=_opt_int(s.get("evaluations")), precision=_opt_str(s.get("precision")),
        user_supplied=s.get("user_supplied") is True,
        base=_opt_str(s["base"]) if "base" in s else (cls.base or None if cls is not None else None),
        reference=config_value(folder, "output.reference") is True,
        num_labeled=s["num_labeled"] if isinstance(s.get("num_labeled"), int) else None,
        numerics=sessions_label(s.get("cpu_numerics")),
        draw_design=_opt_str(_draw(s).get("design")), draw_digest=_opt_str(_draw(s).get("digest")),
    )


def _draw(summary: dict) -> dict:
    draw = summary.get("data_draw")
    return draw if isinstance(draw, dict) else {}


def _parse_same_run(folder: Path) -> RunRecord:
    """The pointed-to run's numbers under the variant's own identity (method, variant, switches)."""
    try:
        pointer = json.loads((folder / SAME_RUN_POINTER).read_text(encoding="utf-8"))
        target = (folder / pointer["same_run_as"]).resolve()
        identity = {key: pointer[key] for key in ("method", "variant", "components", "overrides", "params")}
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise _Malformed(f"{SAME_RUN_POINTER} is unreadable ({type(exc).__name__}: {exc})") from None
    try:
        run = parse_run_folder(target)
    except _Malformed as exc:
        raise _Malformed(f"reuses the run in {target}, which is not usable: {exc}") from None
    if pointer.get("config_hash") != run.config_hash:
        raise _Malformed(f"reuses the run in {target}, which has since been redone with another recipe "
                         f"(config hash {run.config_hash}, expected {pointer.get('config_hash')}); rerun the ablation")
    if any(not isinstance(identity[key], dict) for key in ("components", "overrides", "params")):
        raise _Malformed(f"{SAME_RUN_POINTER}: components, overrides and params must be objects")
    cell = (pointer.get("dataset"), str(pointer.get("split")), pointer.get("seed"))
    if cell != (run.dataset, run.split, run.seed):
        raise _Malformed(f"{SAME_RUN_POINTER} names {cell} but the run in {target} is "
                         f"{(run.dataset, run.split, run.seed)}")
    cls = registered_method(str(identity["method"]))
    # `path` stays the reused run's folder: its metrics.jsonl and config.yaml are this variant's too.
    return dataclasses.replace(
        run, method=str(identity["method"]), variant=str(identity["variant"] or "") or None,
        components=identity["components"], overrides=identity["overrides"], params=identity["params"],
        from_paper_description=_flag(pointer, "from_paper_description", cls),
        significance_baseline=_flag(pointer, "significance_baseline", cls),
        display_name=_opt_str(pointer.get("display_name")),
        user_supplied=pointer.get("user_supplied") is True, base=_opt_str(pointer.get("base")),
        same_run_as=run.label)


def _flag(summary: dict, key: str, cls) -> bool:
    """A method flag from the summary; one written before the flag was recorded takes the class's."""
    value = summary.get(key)
    if isinstance(value, bool):
        return value
    return bool(getattr(cls, key, False)) if cls is not None else False


def _dict(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _Malformed(f"summary.json: '{where}' must be an object, got {type(value).__name__}")
    return value


def _opt_float(value: Any) -> float | None:
    return float(value) if is_finite(value) else None


def _opt_int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_str(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _backbone_from_config(folder: Path) -> str | None:
    value = config_value(folder, "model.backbone")
    return str(value) if value is not None else None


def config_value(folder: Path, dotted_key: str) -> Any:
    """A value from the run's resolved config.yaml (None when absent or unreadable: it is only a label)."""
    path = folder / "config.yaml"
    if not path.exists():
        return None
    try:
        node = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    for part in dotted_key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def load_curve(run: RunRecord) -> tuple[list[tuple[int, float]], str | None]:
    """(iter, mIoU) pairs from metrics.jsonl, and a problem description if some lines were unusable."""
    path = run.path / "metrics.jsonl"
    if not path.exists():
        return [], "no metrics.jsonl"
    points, bad = [], 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            it, miou = rec["iter"], rec["miou"]
            points.append((int(it), float(miou) if miou is not None else math.nan))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            bad += 1   # a torn last line from a killed run must not hide the rest of the curve
    return sorted(points), (f"{bad} unreadable line(s) in metrics.jsonl" if bad else None)


# ----------------------------------------------------------------------------------------------------------
def _load_references(ref_root: Path) -> tuple[list[ReferenceRecord], list[Skipped]]:
    refs, skipped = [], []
    if not ref_root.is_dir():
        return refs, skipped
    for path in sorted(ref_root.rglob("*.json")):
        try:
            refs.append(parse_reference(path))
        except _Malformed as exc:
            skipped.append(Skipped(path, str(exc)))
    return refs, skipped


def parse_reference(path: Path) -> ReferenceRecord:
    try:
        r = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise _Malformed(f"not valid JSON ({exc})") from None
    if not isinstance(r, dict) or r.get("kind") != "reference_log":
        raise _Malformed("not a reference-log file (kind != 'reference_log')")
    try:
        def point(raw):
            return EvalPoint(raw.get("epoch"), float(raw["miou"]),
                             {str(k): float(v) for k, v in (raw.get("per_class") or {}).items()})
        return ReferenceRecord(
            path=path, name=str(r["name"]), dataset=str(r["dataset"]), split=str(r["split"]),
            method=str(r.get("method", strongest_baseline())), backbone=published_backbone(_opt_str(r.get("backbone"))),
            best=point(r["best"]), last=point(r["last"]),
            curve=[(int(p["epoch"]), float(p["miou"])) for p in r.get("curve", [])],
            source_log=str(r.get("source_log", "")))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise _Malformed(f"reference file is missing or has a bad field ({exc!r})") from None


def require_results(store: ResultsStore) -> None:
    if store.runs or store.references:
        return
    where = store.root / "runs"
    detail = f"; {len(store.skipped)} folder(s) skipped as malformed" if store.skipped else ""
    first = f" (first: {store.skipped[0].path}: {store.skipped[0].reason})" if store.skipped else ""
    raise ReportError(f"no results to report: no completed run under {where} and no imported reference log "
                      f"under {store.root / 'references'}{detail}{first}")
