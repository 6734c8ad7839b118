"""What a run carries across sessions: its checkpoint (the file, read back), the last evaluation (so a summary
rebuilt from a checkpoint at the last step needs nothing else), the torch thread counts of its sessions and
the random generators' states."""
from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmark.train.config_files import ConfigError
from datasets.io import read_jsonl

CHECKPOINT = "checkpoint.pt"   # in the run folder: weights, optimizer, step, RNG states (Trainer._save_checkpoint)


def read_checkpoint(path: Path, map_location: Any, hint: str = "") -> dict[str, Any]:
    """A checkpoint's state. Tensors and plain Python only (RNG states included), so loading one never runs
    code; a torn or foreign file is a ConfigError naming it, followed by `hint` (what to do about it)."""
    then = f"; {hint}" if hint else ""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a torn or foreign file: say so rather than go on from a wrong state
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"checkpoint {path} cannot be read ({reason}){then}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise ConfigError(f"checkpoint {path} holds no model weights (not a benchmark.train checkpoint){then}")
    return state


def final_evaluation(state: dict, run_dir: Path) -> dict | None:
    """The last evaluation of a run resumed from a checkpoint at its last step."""
    if state.get("last") is not None:
        return state["last"]
    # A checkpoint from before it carried "last": the evaluation line it was written after.
    return next((r for r in read_jsonl(run_dir / "metrics.jsonl") if r.get("iter") == state["step"]), None)


def threads_record(state: dict | None, run_dir: Path) -> list[int]:
    """Torch threads of every session of this run. Not in the config hash (docs/architecture.md), so a
    resume under another count is allowed but recorded, and said."""
    used = list(state.get("threads") or []) if state else []
    now = torch.get_num_threads()
    if used and now not in used:
        print(f"warning: {run_dir} resumes with {now} torch threads after {used[-1]}; its summary "
              f"records both (results can differ in the last digits)", file=sys.stderr)
    return used + [now] if now not in used else used


def numerics_record(state: dict | None, run_dir: Path, now: str) -> list[str]:
    """The CPU numerics (benchmark.numerics.label) of every session of this run: a resume under others is
    allowed, recorded and said, as for threads; the report flags such a run."""
    used = list(state.get("cpu_numerics") or []) if state else []
    if used and now not in used:
        print(f"warning: {run_dir} resumes under {now} numerics after {used[-1]}; its summary records both "
              f"(the result is then no longer pinned)", file=sys.stderr)
    return used + [now] if now not in used else used


# Logged scalars renamed since: old name -> new (`mask_ratio` was the share of confident pixels, not to be read
# as MaskMatch's method.mask_ratio, the share of masked patches).
RENAMED_SCALARS = {"mask_ratio": "confident_ratio"}


def read_train_log(path: Path) -> list[dict]:
    """train_log.jsonl records under today's scalar names, whatever version of the trainer wrote them."""
    return [{RENAMED_SCALARS.get(key, key): value for key, value in record.items()} for record in read_jsonl(path)]


def _numpy_state_to_tensors(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _numpy_state_from_tensors(state: dict[str, Any]) -> tuple:
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    return (state["name"], keys, state["pos"], state["has_gauss"], state["cached_gaussian"])


def rng_states() -> dict[str, Any]:
    """Every random generator a run draws from, as tensors and plain Python (a checkpoint loads them with
    weights_only=True)."""
    return {"python": random.getstate(), "numpy": _numpy_state_to_tensors(np.random.get_state()),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def restore_rng_states(rng: dict[str, Any]) -> None:
    random.setstate(rng["python"])
    np.random.set_state(_numpy_state_from_tensors(rng["numpy"]))
    torch.set_rng_state(rng["torch"].cpu())
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
