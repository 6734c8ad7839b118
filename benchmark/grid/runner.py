"""Run the benchmark grid: methods × label splits × seeds of a profile, then its ablations, then the reports.

Every cell is one `python -m benchmark.train ... --no-progress` subprocess, so a crash in one cell cannot take
the runner down. A cell whose summary.json is complete with the same config hash is skipped without starting
a process; an interrupted cell resumes from its checkpoint when run again (the trainer does that); a failed
cell is reported with its log tail and the others go on. Ctrl-C stops the running cells cleanly; run the same
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
from pathlib import Path
from typing import Iterable

from benchmark.grid.plan import CellPlan, Plans
from benchmark.grid.local import (REPO_ROOT, TRAIN_COMMAND, CellResult, RunOptions, cell_state, fmt_time, run_local,
                             summary_best, train_argv)
from benchmark.grid.cells import Cell
from benchmark.io import check_writable

EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

EPILOG = """\
cells and results:
  Each cell runs `python -m benchmark.train --method M --dataset D --split S --seed K --profile P --no-progress`
  in its own process, its output going to RESULTS/logs/<dataset>.<split>.<run>.seed<k>.log (appended to on
  every attempt). Results land in RESULTS/runs/<dataset>/<split>/<run>/seed<k>/ (summary.json etc.).
  An ablation variant that trains exactly another cell's run (S4MIM without mim = UniMatch, MaskMatch with both
  components off = its base; checked on the resolved configs) is not trained twice: its run folder gets
  same_run.json pointing to that run, which the report reads under the variant's name.
  A finished cell (complete summary.json with the same config hash) is skipped; an interrupted one resumes from
  its checkpoint; a failed one is reported (log tail + path) and the rest go on; exit status 1 if any failed.

overrides:
  key=value pairs go to every cell, e.g. train.iters=200 eval.every=50. Settings for one method only go
  under per_method, e.g. per_method.unimatch.weight_fp=0.3. grid.* keys change the grid itself
  (grid.ablations=[feature_perturbation]). Relative --results-dir/--data-root are relative to the current
  folder; relative paths inside profiles are relative to the repository.

parallelism:
  --jobs N runs N cells side by side (default: grid.parallel of the profile; 0 there = one cell per usable
  core). With N > 1 each cell runs the profile's train.threads, or train.threads=1 where the profile does not
  pin it, and OMP_NUM_THREADS likewise (unless you set it), so N cells do not oversubscribe the CPU; with N = 1
  an unpinned cell uses torch's default. Every summary.json records its thread count.

concurrent runners:
  Each run folder is trained by one process at a time (a lease lock, .train.lock, that holds on shared file
  systems and that a killed process does not leave blocking). A cell that another grid, Slurm task or
  `benchmark.train.command` is training shows as "running elsewhere"; once its own cells are done the runner waits
  for those, so its reports include them. A results folder that cannot be written stops the grid before any
  cell starts.

slurm:
  --launcher slurm submits the cells that are not finished as one Slurm job array through submitit; each array
  task runs one cell through the same cell function, and is requeued on timeout/preemption (the trainer resumes
  from its checkpoint). The runner waits for the array (--no-wait: it prints the job id and exits; rerun the same
  command after the jobs end to render the report — finished cells are skipped). Job logs: RESULTS/slurm/.
  --slurm-executor local runs the same submission on this machine (submitit's LocalExecutor; for tests).

exit status: 0 all cells done or skipped, 1 a cell (or the report) failed, 2 bad input, 130 interrupted."""


# --- reports and the closing table ---------------------------------------------------------------------------

def results_table(results: list[CellResult]) -> str:
    from tabulate import tabulate
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


def link_same_runs(same: dict[tuple, tuple[CellPlan, CellPlan]], results: list[CellResult]) -> list[CellResult]:
    """Point each reusing variant at its run once that run is finished (`same_run.json` in its folder)."""
    from benchmark.grid.same_run import write_pointer
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


# --- command line --------------------------------------------------------------------------------------------

def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by the grid runner and benchmark.ablate: what data, where results go, how cells run."""
    g = parser.add_argument_group("what to run")
    g.add_argument("--profile", default="default",
                   help="profile under benchmark/configs/profiles (default: default; smoke = tiny CI-sized grid)")
    g.add_argument("--dataset", help="dataset (default: the profile's)")
    g.add_argument("--splits", type=_csv, action="extend", metavar="S1,S2",
                   help="comma-separated label splits (default: grid.splits of the profile, else the dataset's "
                        "first two)")
    g.add_argument("--seeds", type=_positive, metavar="N", help="number of seeds: runs seeds 0..N-1 (default: grid.seeds)")
    g.add_argument("--data-root", metavar="DIR", help="dataset root folder (default: the dataset's)")
    g.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the profile's train.device)")
    g.add_argument("--plugin", action="append", default=[], metavar="FILE_OR_MODULE",
                   help="import a method plugin (a .py file or a module name) here and in every cell; repeatable")
    g.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides for every cell")

    o = parser.add_argument_group("where results go")
    o.add_argument("--results-dir", metavar="DIR", help="results folder (default: the profile's output.results_dir, results/)")
    o.add_argument("--reports-dir", metavar="DIR", help="reports folder (default: reports/ for the default results folder, "
                                         "else RESULTS_DIR/reports)")
    o.add_argument("--no-report", action="store_true", help="do not render the reports at the end")
    o.add_argument("--dry-run", action="store_true", help="list the cells and whether they are finished; run nothing")

    h = parser.add_argument_group("how cells run")
    h.add_argument("--launcher", choices=("local", "slurm"), default="local",
                   help="local: subprocesses on this machine (default); slurm: one Slurm job array via submitit")
    h.add_argument("--jobs", type=_positive, metavar="N", help="cells side by side on this machine (default: grid.parallel)")

    s = parser.add_argument_group("slurm (--launcher slurm)")
    s.add_argument("--slurm-executor", choices=("slurm", "local"), default="slurm",
                   help="slurm (default), or local: submitit's LocalExecutor on this machine (tests)")
    s.add_argument("--slurm-partition", metavar="P", help="partition")
    s.add_argument("--slurm-account", metavar="A", help="account")
    s.add_argument("--slurm-qos", metavar="Q", help="quality of service")
    s.add_argument("--slurm-gpus-per-task", metavar="G", type=int, default=1,
                   help="GPUs per cell (default 1; >1 runs the cell with torchrun, one process per GPU)")
    s.add_argument("--slurm-cpus-per-task", metavar="C", type=_positive, default=8, help="CPU cores per cell (default 8)")
    s.add_argument("--slurm-mem", metavar="GB", type=_positive, help="memory per cell in GB (default: the partition's)")
    s.add_argument("--slurm-time", metavar="MIN", type=_positive, default=1440,
                   help="time limit per cell in minutes (default 1440); a cell that runs out is requeued and "
                        "resumes from its checkpoint (up to 3 times)")
    s.add_argument("--slurm-array-parallelism", metavar="N", type=_positive,
                   help="at most this many cells running at once (default: all)")
    s.add_argument("--slurm-constraint", metavar="C", help="node constraint, e.g. a GPU type")
    s.add_argument("--no-wait", action="store_true",
                   help="submit and exit; rerun the same command after the jobs end to render the reports")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run_all.sh",
        usage="bash run_all.sh [options] [key=value ...]    (the same as: python -m benchmark.grid ...)",
        description="Run the benchmark grid (methods × label splits × seeds of a profile), then the ablations "
                    "listed in the profile's grid.ablations, then render the reports (python -m benchmark.report)."
                    "\n\nexamples:\n"
                    "  bash run_all.sh                                   # default profile, this machine\n"
                    "  bash run_all.sh --profile smoke                   # tiny: the whole pipeline in minutes\n"
                    "  bash run_all.sh --profile pascal --data-root /data/VOC2012 --seeds 3\n"
                    "  bash run_all.sh --methods unimatch,fixmatch --splits 1_16 train.iters=200\n"
                    "  bash run_all.sh --launcher slurm --profile pascal --data-root /data/VOC2012 \\\n"
                    "      --slurm-partition gpu --slurm-gpus-per-task 1 --slurm-time 1440\n"
                    "  bash run_all.sh --dry-run                         # what would run, what is finished",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", type=_csv, action="extend", metavar="M1,M2",
                        help="comma-separated methods (default: grid.methods of the profile); ablations then only "
                             "run for components of these methods")
    parser.add_argument("--no-ablations", action="store_true", help="skip the profile's grid.ablations")
    add_run_arguments(parser)
    return parser


def _abs(path: str | None) -> str | None:
    return str(Path(path).expanduser().resolve()) if path else None


def run_options(args: argparse.Namespace, jobs: int) -> RunOptions:
    from benchmark.train.config import anchor_override, resolve
    from benchmark.train.data_plan import resolve_path
    from benchmark.grid.cells import GRID_PLACEHOLDER_METHOD
    cfg = resolve(profile=args.profile, dataset=args.dataset, method=GRID_PLACEHOLDER_METHOD,
                  overrides=list(args.overrides))
    results = _abs(args.results_dir) if args.results_dir else str(resolve_path(cfg.output.results_dir))
    shared_cpu = jobs > 1 and args.launcher == "local"
    pinned = cfg.train.threads or None
    # Cells run in the repository folder: the user's relative paths are anchored where the user is.
    return RunOptions(profile=args.profile, results_dir=results, data_root=_abs(args.data_root), device=args.device,
                      overrides=tuple(anchor_override(o) for o in args.overrides), train_command=TRAIN_COMMAND,
                      cell_threads=1 if shared_cpu and not pinned else None,
                      omp_threads=(pinned or 1) if shared_cpu else None, plugins=tuple(load_plugins(args.plugin)))


def reports_dir_for(args: argparse.Namespace, opts: RunOptions) -> Path:
    if args.reports_dir:
        return Path(_abs(args.reports_dir))
    from benchmark.train.config import REPO_ROOT as ROOT
    if Path(opts.results_dir) == ROOT / "results":
        return ROOT / "reports"
    return Path(opts.results_dir) / "reports"


def prepare_data(plans: Iterable[CellPlan]) -> None:
    """Make each dataset available once (the embedded one is generated on first use) before cells start side
    by side, and fail early with one message if the data are missing."""
    from benchmark.train.data_plan import plan_data
    seen = set()
    for plan in plans:
        if plan.cell.dataset in seen:
            continue
        seen.add(plan.cell.dataset)
        plan_data(plan.config)


def execute(cells: list[Cell], args: argparse.Namespace, jobs: int, title: str = "grid") -> int:
    """Pre-check, run (local or Slurm), print the table, render the reports. Returns the exit status."""
    from benchmark.grid.cells import dedupe
    from benchmark.grid.same_run import same_run_of
    cells = dedupe(cells)
    opts = run_options(args, jobs)
    if not args.dry_run:   # first, finished cells or not: the reports (and any cell) write there
        check_writable(Path(opts.results_dir))
        if not args.no_report:
            check_writable(reports_dir_for(args, opts))
    plans = Plans(opts)   # each cell resolved once (config, method, run folder, hash), every cell checked here
    # Variants that would train another cell's run exactly (S4MIM without MIM = UniMatch) point to that run.
    same = {cell.key: (plans(cell), other) for cell in cells if (other := same_run_of(plans(cell), plans))}
    pointers = [cell for cell in cells if cell.key in same]
    cells = dedupe([cell for cell in cells if cell.key not in same] + [other.cell for _, other in same.values()])
    states = {cell.key: cell_state(plans(cell)) for cell in cells}
    skipped = [CellResult(c, "skipped", best_miou=summary_best(states[c.key].summary)) for c in cells
               if states[c.key].finished]
    todo = [c for c in cells if not states[c.key].finished]
    where = "this machine" if args.launcher == "local" else f"Slurm ({args.slurm_executor} executor)"
    reused = f", {len(pointers)} more reuse one of these runs" if pointers else ""
    print(f"{title}: {len(cells)} cells ({len(skipped)} finished, {len(todo)} to run{reused}) on {where}"
          + (f", {jobs} at a time" if args.launcher == "local" else "")
          + f"; results: {opts.results_dir}; logs: {opts.logs_dir}", file=sys.stderr, flush=True)
    for cell in todo:
        old = states[cell.key].summary
        if old and old.get("status") == "complete":
            print(f"warning: {states[cell.key].run_dir} holds a finished run of another config (hash "
                  f"{old.get('config_hash')} != {states[cell.key].config_hash}); {cell.label} will fail on its "
                  f"checkpoint (the trainer refuses another config's) unless you pick another --results-dir or "
                  f"remove that folder", file=sys.stderr)
    if args.dry_run:
        for cell in cells:
            state = states[cell.key]
            print(f"{'finished' if state.finished else 'to run  '}  {cell.label:<48} "
                  f"{shlex.join(train_argv(cell, opts))}")
        for cell in pointers:
            print(f"same run  {cell.label:<48} reuses {same[cell.key][1].cell.label}")
        return 0

    results = list(skipped)
    code = 0
    try:
        if todo and args.launcher == "local":
            prepare_data(plans(cell) for cell in todo)
            results += run_local(todo, opts, jobs, states, done_before=len(skipped), total=len(cells))
            results = wait_for_elsewhere(results, opts, jobs, states)
        elif todo:
            from benchmark.grid import slurm
            outcome = slurm.run_slurm(todo, opts, slurm.options_from_args(args), states=states,
                                      done_before=len(skipped), total=len(cells))
            if outcome is None:       # --no-wait: submitted, nothing more to do now
                return 0
            results += outcome
    except KeyboardInterrupt as exc:
        results += getattr(exc, "results", [])
        print("\n" + results_table(results), file=sys.stderr)
        print("\ninterrupted; rerun the same command to resume (finished cells are skipped, interrupted ones "
              "resume from their last checkpoint)", file=sys.stderr)
        return EXIT_INTERRUPTED
    results += link_same_runs(same, results)
    print("\n" + results_table(results), file=sys.stderr)
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


def stop_on_sigterm() -> None:
    """`kill <runner>` (or a job scheduler ending it) stops the cells like Ctrl-C does."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def load_plugins(specs) -> list[str]:
    """Import the --plugin modules (so the grid knows their methods); returns them as cells get them."""
    from benchmark import plugins
    plugins.load_plugins(specs)
    return plugins.normalise_all(specs)


def main(argv: list[str] | None = None) -> int:
    from benchmark.grid import cells as grid
    args = build_parser().parse_intermixed_args(argv)
    load_plugins(args.plugin)
    plan = grid.load_plan(args.profile, args.overrides, dataset=args.dataset, methods=args.methods,
                          splits=args.splits, seeds=args.seeds)
    cells = grid.grid_cells(plan) + grid.reference_cells(plan)
    if not args.no_ablations:
        for component in plan.ablations:
            cells += grid.ablation_cells(plan, component, methods_filter=args.methods)
    stop_on_sigterm()
    return execute(cells, args, jobs=args.jobs or plan.parallel)
