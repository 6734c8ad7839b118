"""Run the benchmark grid: methods × label splits × seeds of a profile, then its ablations, then the reports.

A cell's path, each step in one place: **plan** every cell once (`plan_work`: config, method, run folder, hash;
finished? the same run as another cell?), **train** what is left (`train`: a `python -m benchmark.train`
subprocess per cell, locally or as a Slurm array; the trainer holds the run folder's lock and resumes from its
checkpoint), **reuse** finished runs for the variants that train one exactly (`link_same_runs`), **check** the
reference runs' labels under the strong view (`check_labels`, grid.label_check), **record** the closing table
and render the reports (`record`). A crash in one cell cannot take the runner down: a failed cell
is reported with its log tail and the others go on. Ctrl-C stops the running cells cleanly; run the same
command again to resume.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import signal
import subprocess
import sys
import threading
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tabulate import tabulate

from benchmark import plugins
from benchmark.grid import slurm, variants
from benchmark.grid.arguments import build_parser
from benchmark.grid.cells import GRID_PLACEHOLDER_METHOD, Cell, dedupe, grid_cells, load_plan, reference_cells
from benchmark.grid.label_check import check_labels
from benchmark.grid.local import CellResult, fmt_time, run_local, train_argv
from benchmark.grid.plan import CELL_STARTS, TRAIN_COMMAND, CellPlan, CellState, Plans, RunOptions, cell_state, summary_best
from benchmark.grid.same_run import same_run_of, write_pointer
from datasets.io import check_writable
from benchmark.train.config import anchor_override, resolve
from benchmark.train.config_files import ConfigError
from benchmark.train.data_plan import plan_data, resolve_path
from datasets import REPO_ROOT

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def execute(cells: list[Cell], args: argparse.Namespace, jobs: int, title: str = "grid") -> int:
    """Plan, train, reuse, check the references' labels, record. Returns the exit status."""
    opts = run_options(args, jobs)
    if not args.dry_run:
        check_folders(args, opts)
    work = plan_work(dedupe(cells), opts)
    announce(work, title, args, opts, jobs)
    if args.dry_run:
        list_work(work, opts)
        return 0
    try:
        trained = train(work, args, opts, jobs)
    except KeyboardInterrupt as exc:
        return interrupted(work.skipped + getattr(exc, "results", []))
    if trained is None:       # Slurm --no-wait: submitted, nothing more to do now
        return 0
    results = work.skipped + trained
    results += link_same_runs(work.reused, results)
    try:
        check_labels(results, work.plans, opts)
    except KeyboardInterrupt:
        return interrupted(results)
    return record(results, args, opts)


# --- plan ----------------------------------------------------------------------------------------------------

@dataclass
class Work:
    """The cells of one invocation, planned: what is finished, what to train, which variants reuse a run."""
    plans: Plans
    cells: list[Cell]                             # the cells to train or skip (reusing variants left out)
    states: dict[tuple, CellState]
    reused: dict[tuple, tuple[CellPlan, CellPlan]]     # variant key -> (its plan, the plan of the run it reuses)

    @property
    def skipped(self) -> list[CellResult]:
        return [CellResult(c, "skipped", best_miou=summary_best(self.states[c.key].summary)) for c in self.cells
                if self.states[c.key].finished]

    @property
    def todo(self) -> list[Cell]:
        return [c for c in self.cells if not self.states[c.key].finished]


def plan_work(cells: list[Cell], opts: RunOptions) -> Work:
    """Each cell resolved once (every cell checked here, before anything runs); a variant that would train
    another cell's run exactly (S4MIM without MIM = UniMatch) reuses that run instead."""
    plans = Plans(opts)
    reused = {cell.key: (plans(cell), other) for cell in cells if (other := same_run_of(plans(cell), plans))}
    kept = dedupe([cell for cell in cells if cell.key not in reused] + [other.cell for _, other in reused.values()])
    return Work(plans, kept, {cell.key: cell_state(plans(cell)) for cell in kept}, reused)


def run_options(args: argparse.Namespace, jobs: int) -> RunOptions:
    cfg = resolve(profile=args.profile, dataset=args.dataset, method=GRID_PLACEHOLDER_METHOD,
                  overrides=list(args.overrides))
    results = _abs(args.results_dir) if args.results_dir else str(resolve_path(cfg.output.results_dir))
    shared_cpu = jobs > 1 and args.launcher == "local"
    pinned = cfg.train.threads or None
    if cfg.grid.cell_start not in CELL_STARTS:
        raise ConfigError(f"grid.cell_start must be one of {', '.join(CELL_STARTS)}, got {cfg.grid.cell_start!r}")
    # Cells run in the repository folder: the user's relative paths are anchored where the user is.
    return RunOptions(profile=args.profile, results_dir=results, data_root=_abs(args.data_root), device=args.device,
                      overrides=tuple(anchor_override(o) for o in args.overrides), train_command=TRAIN_COMMAND,
                      cell_threads=1 if shared_cpu and not pinned else None,
                      omp_threads=(pinned or 1) if shared_cpu else None, plugins=tuple(load_plugins(args.plugin)),
                      cell_start=cfg.grid.cell_start if args.launcher == "local" else "spawn")


def _abs(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def check_folders(args: argparse.Namespace, opts: RunOptions) -> None:
    """First, finished cells or not: the reports (and any cell) write there."""
    check_writable(Path(opts.results_dir))
    if not args.no_report:
        check_writable(reports_dir_for(args, opts))


def reports_dir_for(args: argparse.Namespace, opts: RunOptions) -> Path:
    if args.reports_dir:
        return Path(_abs(args.reports_dir))
    if Path(opts.results_dir) == REPO_ROOT / "results":
        return REPO_ROOT / "reports"
    return Path(opts.results_dir) / "reports"


def announce(work: Work, title: str, args: argparse.Namespace, opts: RunOptions, jobs: int) -> None:
    where = "this machine" if args.launcher == "local" else f"Slurm ({args.slurm_executor} executor)"
    reused = f", {len(work.reused)} more reuse one of these runs" if work.reused else ""
    print(f"{title}: {len(work.cells)} cells ({len(work.skipped)} finished, {len(work.todo)} to run{reused}) on "
          f"{where}" + (f", {jobs} at a time" if args.launcher == "local" else "")
          + f"; results: {opts.results_dir}; logs: {opts.logs_dir}", file=sys.stderr, flush=True)
    for cell in work.todo:
        state = work.states[cell.key]
        if state.summary and state.summary.get("status") == "complete":
            print(f"warning: {state.run_dir} holds a finished run of another config (hash "
                  f"{state.summary.get('config_hash')} != {state.config_hash}); {cell.label} will fail on its "
                  f"checkpoint (the trainer refuses another config's) unless you pick another --results-dir or "
                  f"remove that folder", file=sys.stderr)


def list_work(work: Work, opts: RunOptions) -> None:
    """--dry-run: every cell, finished or not, with its train command."""
    for cell in work.cells:
        print(f"{'finished' if work.states[cell.key].finished else 'to run  '}  {cell.label:<48} "
              f"{shlex.join(train_argv(cell, opts))}")
    for plan, other in work.reused.values():
        print(f"same run  {plan.cell.label:<48} reuses {other.cell.label}")


# --- train ---------------------------------------------------------------------------------------------------

def train(work: Work, args: argparse.Namespace, opts: RunOptions, jobs: int) -> list[CellResult] | None:
    """The unfinished cells, on this machine or as one Slurm array (None: submitted with --no-wait)."""
    todo = work.todo
    if not todo:
        return []
    done_before, total = len(work.skipped), len(work.cells)
    if args.launcher != "local":
        return slurm.run_slurm(todo, opts, slurm.options_from_args(args), states=work.states,
                               done_before=done_before, total=total)
    prepare_data(work.plans(cell) for cell in todo)
    results = run_local(todo, opts, jobs, work.states, done_before=done_before, total=total)
    try:
        return wait_for_elsewhere(results, opts, jobs, work.states)
    except KeyboardInterrupt as exc:   # the table then shows the cells that ended before the wait too
        exc.results = results + getattr(exc, "results", [])   # type: ignore[attr-defined]
        raise


def prepare_data(plans: Iterable[CellPlan]) -> None:
    """Make each dataset available once (the embedded one is generated on first use) before cells start side
    by side, and fail early with one message if the data are missing."""
    seen = set()
    for plan in plans:
        if plan.cell.dataset not in seen:
            seen.add(plan.cell.dataset)
            plan_data(plan.config)


def wait_for_elsewhere(results: list[CellResult], opts: RunOptions, jobs: int,
                       states: dict) -> list[CellResult]:
    """Cells another process was training: wait for each to end (it has finished them, or it died and this
    runner resumes them), so that the reports include them."""
    elsewhere = [r for r in results if r.status == "running elsewhere"]
    if not elsewhere:
        return results
    print(f"waiting for {len(elsewhere)} cell(s) that another process is training (Ctrl-C stops waiting; "
          f"they go on there)", file=sys.stderr, flush=True)
    kept = [r for r in results if r.status != "running elsewhere"]
    waited = run_local([r.cell for r in elsewhere], dataclasses.replace(opts, wait_elsewhere=True), jobs, states,
                       done_before=len(kept), total=len(results))
    for r in waited:
        r.note = r.note or ("was running elsewhere; waited for it" if r.status == "done" else "")
    return kept + waited


def interrupted(results: list[CellResult]) -> int:
    print("\n" + results_table(results), file=sys.stderr)
    print("\ninterrupted; rerun the same command to resume (finished cells are skipped, interrupted ones "
          "resume from their last checkpoint)", file=sys.stderr)
    return EXIT_INTERRUPTED


# --- reuse ---------------------------------------------------------------------------------------------------

def link_same_runs(same: dict[tuple, tuple[CellPlan, CellPlan]], results: list[CellResult]) -> list[CellResult]:
    """Point each reusing variant at its run once that run is finished (`same_run.json` in its folder)."""
    outcome = {r.cell.key: r for r in results}
    linked = []
    for plan, other in same.values():
        cell, result = plan.cell, outcome.get(other.cell.key)
        if result is not None and result.status in ("done", "skipped"):
            write_pointer(plan, other)
            linked.append(CellResult(cell, "same run", best_miou=result.best_miou,
                                     note=f"the {other.cell.label} run (identical training)"))
        else:
            linked.append(CellResult(cell, "not started", note=f"reuses {other.cell.label}, which did not finish"))
    return linked


# --- record --------------------------------------------------------------------------------------------------

def record(results: list[CellResult], args: argparse.Namespace, opts: RunOptions) -> int:
    """The closing table, the failures' log tails, the reports; the exit status."""
    print("\n" + results_table(results), file=sys.stderr)
    code = 0
    details = failure_details(results)
    if details:
        print("\n" + details, file=sys.stderr)
        code = EXIT_FAILED
    if any(r.status in ("interrupted", "not started") for r in results):
        code = code or EXIT_INTERRUPTED
    if not args.no_report:
        rc, message = render_reports(Path(opts.results_dir), reports_dir_for(args, opts))
        print(message, file=sys.stdout if rc == 0 else sys.stderr)
        if rc not in (0, None):
            code = code or EXIT_FAILED
    return code


def results_table(results: list[CellResult]) -> str:
    order = {"failed": 0, "interrupted": 1, "not started": 2, "running elsewhere": 3, "done": 4, "skipped": 5,
             "same run": 6}
    rows = []
    for r in sorted(results, key=lambda r: (order.get(r.status, 9),)):
        rows.append([r.cell.label, r.status, fmt_time(r.seconds) if r.seconds else "",
                     r.best_miou,
                     r.note or (r.log if r.status not in ("done", "skipped") else "")])
    table = tabulate(rows, headers=["cell", "status", "time", "best mIoU", "log / note"], tablefmt="simple",
                     floatfmt=".2f", missingval="")
    counts = Counter(r.status for r in results)
    statuses = ("done", "skipped", "same run", "running elsewhere", "failed", "interrupted", "not started")
    line = ", ".join(f"{counts[s]} {s}" for s in statuses if counts[s])
    return f"{table}\n\n{len(results)} cells: {line}"


def failure_details(results: list[CellResult]) -> str:
    parts = []
    for r in results:
        if r.status == "failed":
            parts.append(f"--- {r.cell.label} failed (exit {r.returncode}); log: {r.log}\n{r.tail}".rstrip())
    return "\n\n".join(parts)


def render_reports(results_dir: Path, reports_dir: Path) -> tuple[int | None, str]:
    """`python -m benchmark.report` in a subprocess. Returns (exit status or None when the report package is
    absent, message)."""
    if not (REPO_ROOT / "benchmark" / "report" / "__main__.py").is_file():
        return None, ("reports not rendered: the benchmark.report package is not available in this checkout; "
                      f"render later with: python -m benchmark.report --results {results_dir} --out {reports_dir}")
    cmd = [sys.executable, "-m", "benchmark.report", "--results", str(results_dir), "--out", str(reports_dir)]
    print(f"rendering reports: {shlex.join(cmd)}", file=sys.stderr, flush=True)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", ""))
                                                      if p))
    rc = subprocess.run(cmd, cwd=REPO_ROOT, env=env).returncode
    if rc != 0:
        return rc, f"report rendering failed (exit {rc}); rerun: {shlex.join(cmd)}"
    return 0, f"reports: {reports_dir / 'report.md'} and {reports_dir / 'report.pdf'}"


# --- entry ---------------------------------------------------------------------------------------------------

def stop_on_sigterm() -> None:
    """`kill <runner>` (or a job scheduler ending it) stops the cells like Ctrl-C does."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def load_plugins(specs) -> list[str]:
    """Import the --plugin modules (so the grid knows their methods); returns them as cells get them."""
    plugins.load_plugins(specs)
    return plugins.normalise_all(specs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)
    load_plugins(args.plugin)
    plan = load_plan(args.profile, args.overrides, dataset=args.dataset, methods=args.methods,
                          splits=args.splits, seeds=args.seeds)
    cells = grid_cells(plan) + reference_cells(plan)
    if not args.no_ablations:
        for component in plan.ablations:
            cells += variants.ablation_cells(plan, component, methods_filter=args.methods)
    stop_on_sigterm()
    return execute(cells, args, jobs=args.jobs or plan.parallel)
