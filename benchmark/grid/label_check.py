"""After training: the label-preservation check of the grid's reference cells (`grid.references`, e.g. supervised
with all labels), when `grid.label_check` is on (benchmark/diagnostics/label_preservation.py).

Only the runs whose `label_preservation.json` is missing or older than their checkpoint are checked, so a
resumed grid checks what it has not yet, and a retrained run again; the record is written atomically, so a
grid killed during the check leaves none half-written and two grids at once write the same figures. One
`python -m benchmark.diagnostics.label_preservation` process checks them all: the runner loads no model, and a
failure cannot take it down (the report then says "not available" for the runs without a record).
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterable

from benchmark.diagnostics.label_record import is_current
from benchmark.grid.cells import REFERENCE_OVERRIDE, Cell
from benchmark.grid.local import CellResult, child_env, log_tail
from benchmark.grid.plan import CellPlan, RunOptions
from benchmark.train.run_state import CHECKPOINT
from datasets import REPO_ROOT

CHECK_COMMAND: tuple[str, ...] = (sys.executable, "-m", "benchmark.diagnostics.label_preservation", "--no-progress")
LOG_NAME = "label_preservation.log"
FINISHED = ("done", "skipped")


def unchecked(results: Iterable[CellResult], plans: Callable[[Cell], CellPlan]) -> list[Path]:
    """Run folders of the finished reference cells that ask for the check and hold no current record."""
    folders = []
    for result in results:
        if result.status not in FINISHED or REFERENCE_OVERRIDE not in result.cell.overrides:
            continue
        plan = plans(result.cell)
        if (plan.config.grid.label_check and (plan.run_dir / CHECKPOINT).is_file()
                and not is_current(plan.run_dir, CHECKPOINT)):
            folders.append(plan.run_dir)
    return folders


def check_labels(results: Iterable[CellResult], plans: Callable[[Cell], CellPlan], opts: RunOptions) -> None:
    """Check the reference runs that need it; a failed check is a warning with its log's tail."""
    folders = unchecked(results, plans)
    if not folders:
        return
    log = opts.logs_dir / LOG_NAME
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"label-preservation check of {len(folders)} reference run(s); log: {log}", file=sys.stderr, flush=True)
    with open(log, "ab") as out:
        offset = out.tell()
        rc = subprocess.run([*CHECK_COMMAND, *map(str, folders)], cwd=REPO_ROOT, env=child_env(opts), stdout=out,
                            stderr=subprocess.STDOUT).returncode
    if rc != 0:
        print(f"warning: the label-preservation check failed (exit {rc}); the report says 'not available' for "
              f"the runs it did not reach. Log: {log}\n{log_tail(log, offset)}", file=sys.stderr)
