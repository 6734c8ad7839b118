"""grid.cell_start: fork. Cells forked from the preloaded server (benchmark/train/forked.py) train bit for bit
like fresh `python -m benchmark.train` processes, and keep their exit codes, one-line errors, logs and stops; a
cell the server cannot serve as a fresh process would (native numerics) replaces itself with a fresh one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmark.grid.cells import Cell
from benchmark.grid.local import ProcessSet, forks_cells, run_cell
from benchmark.grid.plan import RunOptions
from benchmark.numerics import label as numerics_label

TIMING = {"wall_time_s", "step_time_s", "images_per_s", "peak_memory_mb", "elapsed_s"}
CELL = Cell("fixmatch", "animals_tiny", "1_16", 0)


def without_timing(value):
    if isinstance(value, dict):
        return {k: without_timing(v) for k, v in value.items() if k not in TIMING}
    if isinstance(value, list):
        return [without_timing(v) for v in value]
    return value


def summary_of(results: Path, cell: Cell = CELL) -> dict:
    return json.loads(next(results.glob(f"runs/*/{cell.split}/{cell.method}/seed{cell.seed}/summary.json")).read_text())


def options(results: Path, start: str, *overrides: str) -> RunOptions:
    return RunOptions(profile="smoke", results_dir=str(results), cell_start=start, overrides=overrides)


@pytest.mark.parametrize("numerics", ["pinned", "portable"])
def test_a_forked_cell_trains_bit_for_bit_like_a_fresh_process(tmp_path, numerics):
    # Portable cells are served by the server too: what they change (MKL's branch, oneDNN and NNPACK off) the
    # child sets before its first tensor.
    summaries = {}
    for start in ("fork", "spawn"):
        opts = options(tmp_path / start, start, f"train.cpu_numerics={numerics}")
        assert forks_cells(opts) == (start == "fork")
        result = run_cell(CELL, opts)
        assert result.status == "done", result.tail
        summaries[start] = summary_of(tmp_path / start)
    assert summaries["fork"]["status"] == "complete"
    assert without_timing(summaries["fork"]) == without_timing(summaries["spawn"])
    assert summaries["fork"]["cpu_numerics"]["onednn_enabled"] is (numerics == "pinned")
    assert summaries["fork"]["cpu_numerics"]["sessions"] == [numerics_label({"mode": numerics})]


def test_a_forked_cell_keeps_the_one_line_error_and_exit_2(tmp_path):
    result = run_cell(Cell("fixmatch", "animals_tiny", "1_16", 0, overrides=("method.components.nope=true",)),
                      options(tmp_path, "fork"))
    assert result.status == "failed" and result.returncode == 2
    assert "error:" in result.tail and "nope" in result.tail and "Traceback" not in result.tail


def test_a_native_numerics_cell_runs_in_a_fresh_interpreter(tmp_path):
    # The server imported torch under the pin; a native cell must not inherit it (forked.py execs a fresh one).
    result = run_cell(CELL, options(tmp_path, "fork", "train.cpu_numerics=native"))
    assert result.status == "done", result.tail
    fresh = subprocess.run([sys.executable, "-c", "import torch; print(torch.backends.cpu.get_cpu_capability())"],
                           capture_output=True, text=True, check=True,
                           env={k: v for k, v in os.environ.items() if not k.startswith(("ATEN_", "ONEDNN_", "MKL_CBWR",
                                                                                          "_SSSEG"))})
    numerics = summary_of(tmp_path)["cpu_numerics"]
    assert numerics["mode"] == "native" and numerics["aten_in_force"] == fresh.stdout.strip()


def test_stopping_the_runner_interrupts_a_forked_cell_at_a_checkpoint(tmp_path):
    procs = ProcessSet()
    opts = options(tmp_path, "fork", "train.iters=5000", "eval.every=5000", "train.checkpoint_every=1")
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("result", run_cell(CELL, opts, procs)))
    worker.start()
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob("runs/**/checkpoint*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    procs.stop()
    worker.join(60)
    result = outcome["result"]
    # 130: stopped by SIGINT, as on Ctrl-C; where SIGINT is ignored (under nohup) the runner's SIGTERM follows.
    assert result.status == "interrupted" and result.returncode in (130, -signal.SIGTERM), result.tail
    if result.returncode == 130:
        assert "rerun the same command to resume" in Path(result.log).read_text()
    assert not list(tmp_path.glob("runs/**/summary.json")) or summary_of(tmp_path)["status"] != "complete"
