"""Run cells as one Slurm job array through submitit.

Each array task runs one cell through the very same cell function as the local runner
(`benchmark.grid.local.run_cell`: a `python -m benchmark.train` subprocess with its log in RESULTS/logs/), so
results land in the same results store. The task is checkpointable in submitit's sense: on timeout or
preemption submitit requeues it with the same arguments, and the trainer resumes from the run's
checkpoint.pt. `--slurm-executor local` swaps in submitit's LocalExecutor, which runs the same submission on
this machine (every cell at once: it is meant for tests, not for work).
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import submitit
from tqdm import tqdm

from benchmark.grid.cells import Cell
from benchmark.grid.local import CellResult, fill_best, log_tail, run_cell
from benchmark.grid.plan import CellState, RunOptions
from benchmark.train.config import ConfigError
from datasets import REPO_ROOT


@dataclass(frozen=True)
class SlurmOptions:
    executor: str = "slurm"              # slurm | local (submitit's LocalExecutor)
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    gpus_per_task: int = 1
    cpus_per_task: int = 8
    mem_gb: int | None = None
    time_min: int = 1440
    array_parallelism: int | None = None
    wait: bool = True
    job_name: str = "semiseg-bench"
    max_requeues: int = 3                # timeouts/preemptions survived per cell (the trainer resumes)
    signal_delay_s: int | None = None    # how long before its time limit a task is told (None: submitit's)


def options_from_args(args: Any) -> SlurmOptions:
    return SlurmOptions(executor=args.slurm_executor, partition=args.slurm_partition, account=args.slurm_account,
                        qos=args.slurm_qos, constraint=args.slurm_constraint, gpus_per_task=args.slurm_gpus_per_task,
                        cpus_per_task=args.slurm_cpus_per_task, mem_gb=args.slurm_mem, time_min=args.slurm_time,
                        array_parallelism=args.slurm_array_parallelism, wait=not args.no_wait)


class CellTask(submitit.helpers.Checkpointable):
    """The array task: one cell. `checkpoint()` (inherited) resubmits the same call on timeout/preemption."""

    def __init__(self, cell_fn: Callable[..., CellResult] = run_cell):
        self.cell_fn = cell_fn

    def __call__(self, cell: Cell, opts: RunOptions) -> CellResult:
        return self.cell_fn(cell, opts)


def task_options(opts: RunOptions, sopts: SlurmOptions) -> RunOptions:
    """Several GPUs per cell: the cell runs under torchrun, one process per GPU (benchmark/train/distributed.py)."""
    if sopts.gpus_per_task > 1 and opts.train_command[1:] == ("-m", "benchmark.train"):
        return replace(opts, train_command=(opts.train_command[0], "-m", "torch.distributed.run", "--standalone",
                                            f"--nproc_per_node={sopts.gpus_per_task}", "-m", "benchmark.train"))
    return opts


def make_executor(sopts: SlurmOptions, folder: Path) -> submitit.Executor:
    if sopts.executor == "slurm" and shutil.which("sbatch") is None:
        raise ConfigError("--launcher slurm needs Slurm's sbatch on PATH (run from a login node), or "
                          "--slurm-executor local to try the submission on this machine")
    executor = submitit.AutoExecutor(folder=folder, cluster=sopts.executor, slurm_max_num_timeout=sopts.max_requeues,
                                     local_max_num_timeout=sopts.max_requeues)
    params: dict[str, Any] = dict(name=sopts.job_name, timeout_min=sopts.time_min, nodes=1, tasks_per_node=1,
                                  gpus_per_node=sopts.gpus_per_task, cpus_per_task=sopts.cpus_per_task)
    if sopts.mem_gb:
        params["mem_gb"] = sopts.mem_gb
    if sopts.executor == "slurm":
        for key in ("partition", "account", "qos", "constraint", "array_parallelism"):
            value = getattr(sopts, key)
            if value is not None:
                params[f"slurm_{key}"] = value
    if sopts.signal_delay_s is not None and sopts.executor == "slurm":
        params["slurm_signal_delay_s"] = sopts.signal_delay_s
    executor.update_parameters(**params)
    if sopts.signal_delay_s is not None and sopts.executor == "local":
        # AutoExecutor does not pass this one on to the LocalExecutor, which reads it from the shared parameters.
        executor.parameters["signal_delay_s"] = sopts.signal_delay_s
    return executor


def submit(cells: list[Cell], opts: RunOptions, sopts: SlurmOptions,
           cell_fn: Callable[..., CellResult] = run_cell) -> list[submitit.Job]:
    """Submit `cells` as one job array; returns one job per cell, in order."""
    # Array tasks unpickle benchmark.* by reference: make this checkout importable wherever they start.
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    folder = Path(opts.results_dir) / "slurm" / "%j"
    executor = make_executor(sopts, folder)
    task_opts = task_options(opts, sopts)
    return executor.map_array(CellTask(cell_fn), cells, [task_opts] * len(cells))


def job_outcome(job: submitit.Job, cell: Cell, opts: RunOptions) -> CellResult:
    """The cell's result from its finished job; a job that died (time limit after all requeues, node failure,
    cancelled) counts as a failed cell, with submitit's stderr as the log."""
    try:
        return job.result()
    except Exception as exc:   # submitit raises FailedJobError / UncompletedJobError with the job's traceback
        stderr = Path(job.paths.stderr)
        tail = log_tail(stderr) if stderr.exists() else str(exc)[-3000:]
        cell_log = opts.logs_dir / cell.log_name
        return CellResult(cell, "failed", None, 0.0, str(stderr), tail=tail,
                          note=f"job {job.job_id} {job.state}; cell log {cell_log}")


def wait_for(jobs: list[submitit.Job], cells: list[Cell], opts: RunOptions, sopts: SlurmOptions,
             states: dict[tuple, CellState] | None = None, done_before: int = 0,
             total: int | None = None) -> list[CellResult]:
    """Wait for the jobs under a progress bar; Ctrl-C cancels them (rerunning resumes) and re-raises with the
    results so far attached as `results`."""
    total = total if total is not None else len(cells)
    pending = dict(zip(jobs, cells))
    results: list[CellResult] = []
    poll = 1.0 if sopts.executor == "local" else 15.0
    bar = tqdm(total=total, initial=done_before, desc="cells (slurm)", unit="cell", dynamic_ncols=True, disable=None)
    try:
        while pending:
            for job, cell in list(pending.items()):
                if job.done():
                    del pending[job]
                    result = fill_best(job_outcome(job, cell, opts), states or {})
                    results.append(result)
                    bar.update(1)
                    bar.write(f"[{done_before + len(results)}/{total}] {result.status:<11} {cell.label}"
                              f"  (job {job.job_id})", file=sys.stderr)
            if pending:
                states_seen: dict[str, int] = {}
                for job in pending:
                    states_seen[job.state] = states_seen.get(job.state, 0) + 1
                bar.set_postfix_str(", ".join(f"{n} {s.lower()}" for s, n in sorted(states_seen.items())))
                time.sleep(poll)
    except KeyboardInterrupt as exc:
        bar.write(f"cancelling {len(pending)} job(s) ...", file=sys.stderr)
        for job, cell in pending.items():
            try:
                job.cancel(check=False)
            except Exception:   # already gone
                pass
            results.append(CellResult(cell, "interrupted", note=f"job {job.job_id} cancelled"))
        bar.close()
        exc.results = results   # type: ignore[attr-defined]
        raise
    bar.close()
    return results


def run_slurm(cells: list[Cell], opts: RunOptions, sopts: SlurmOptions, states: dict[tuple, CellState] | None = None,
              done_before: int = 0, total: int | None = None,
              cell_fn: Callable[..., CellResult] = run_cell) -> list[CellResult] | None:
    """Submit, then wait (None with --no-wait)."""
    jobs = submit(cells, opts, sopts, cell_fn)
    array_id = str(jobs[0].job_id).split("_")[0] if jobs else "?"
    print(f"submitted {len(jobs)} cell(s) as job array {array_id} ({sopts.executor} executor); "
          f"job logs: {Path(opts.results_dir) / 'slurm'}; cell logs: {opts.logs_dir}", file=sys.stderr, flush=True)
    if not sopts.wait:
        print(f"not waiting (--no-wait). Follow with `squeue -j {array_id}`; when the jobs have ended, rerun the "
              f"same command without --no-wait: finished cells are skipped and the reports are rendered.",
              file=sys.stderr)
        return None
    return wait_for(jobs, cells, opts, sopts, states, done_before, total)
