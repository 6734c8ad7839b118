"""Issue 26: a cell killed by its time limit under submitit's LocalExecutor is requeued, resumes from its
checkpoint and gives the uninterrupted result; the grid waits for it and renders the reports once."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from benchmark.grid import runner

from benchmark.grid import slurm
from test_errors_io import exit_and_err

ITERS = 8
CELL = ["--profile", "smoke", "--methods", "supervised", "--splits", "1_128", "--seeds", "1", "--no-ablations",
        "grid.references=[]", f"train.iters={ITERS}", "eval.every=1", "--launcher", "slurm",
        "--slurm-executor", "local", "--slurm-gpus-per-task", "0", "--slurm-cpus-per-task", "1",
        # Under 10 minutes submitit counts any timeout signal as the time limit (none is guaranteed running time).
        "--slurm-time", "10"]


def descendants(pid: int) -> list[int]:
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
    return children + [d for c in children for d in descendants(c)]


def submitit_tasks(job) -> list[int]:
    """The job's task processes (what submitit's local controller signals at the time limit)."""
    found = []
    for pid in descendants(job._process.pid):
        try:
            if b"submitit.core._submit" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            pass
    return found


def time_limit_once_a_checkpoint_exists(results: Path, jobs: list) -> threading.Thread:
    """Send the task the signal submitit's controller sends at the time limit, once the cell has a checkpoint
    (not at a fixed time: on a loaded machine the first attempt may not have trained yet)."""
    def watch():
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if next(results.rglob("checkpoint.pt"), None) is not None and not next(results.rglob("summary.json"), None):
                for pid in submitit_tasks(jobs[0]):
                    os.kill(pid, signal.SIGUSR2)
                return
            time.sleep(0.1)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def grid(results: Path, monkeypatch, capsys, cut: bool):
    rendered = []

    def render(results_dir, reports_dir):
        summary = next(results_dir.rglob("summary.json"), None)
        rendered.append(summary is not None and json.loads(summary.read_text())["status"] == "complete")
        return 0, "ok"
    monkeypatch.setattr(runner, "render_reports", render)
    real_submit = slurm.submit

    def submit(cells, opts, sopts, cell_fn=slurm.run_cell):
        jobs = real_submit(cells, opts, dataclasses.replace(sopts, max_requeues=3), cell_fn)
        if cut:
            time_limit_once_a_checkpoint_exists(results, jobs)
        return jobs
    monkeypatch.setattr(slurm, "submit", submit)
    code, err = exit_and_err(lambda: runner.main(CELL + ["--results-dir", str(results)]), capsys)
    summary = next(results.rglob("summary.json"), None)
    log = "".join(p.read_text() for p in (results / "logs").glob("*.log"))
    job_err = "".join(p.read_text() for p in (results / "slurm").rglob("*_log.*"))
    assert code == 0 and summary is not None, err + log[-3000:] + job_err[-3000:]
    return rendered, json.loads(summary.read_text()), log, job_err


@pytest.mark.slow
def test_a_cell_past_its_time_limit_is_requeued_resumes_and_matches(tmp_path, monkeypatch, capsys):
    _, plain, _, _ = grid(tmp_path / "plain", monkeypatch, capsys, cut=False)
    rendered, cut, log, job_err = grid(tmp_path / "cut", monkeypatch, capsys, cut=True)
    assert "this job is timed-out" in job_err
    resumed_at = [int(line.split("at step ")[1].split("/")[0]) for line in log.splitlines() if "resuming " in line]
    assert log.count("### ") == 2 and len(resumed_at) == 1 and 0 < resumed_at[0] < ITERS, log[-3000:]
    assert rendered == [True]        # once, after the requeued cell had finished
    assert scores(cut) == scores(plain)


def scores(summary: dict) -> dict:
    """What must reproduce exactly (not the timings inside the evaluation records)."""
    points = {k: {key: v for key, v in summary[k].items() if key != "elapsed_s"} for k in ("best", "last")}
    return {**points, **{k: summary[k] for k in ("status", "iters", "evaluations")}}
