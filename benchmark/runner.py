"""Run the benchmark grid: methods × label splits × seeds of a profile, then its ablations, then the reports.

Every cell is one `python -m benchmark.train ... --no-progress` subprocess, so a crash in one cell cannot take
the runner down. A cell whose summary.json is complete with the same config hash is skipped without starting
a process; an interrupted cell resumes from its checkpoint when run again (the trainer does that); a failed
cell is reported with its log tail and the others go on. Ctrl-C stops the running cells cleanly; run the same
command again to resume.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterable

from benchmark.grid import Cell

REPO_ROOT = Path(__file__).resolve().parent.parent
TRAIN_COMMAND: tuple[str, ...] = (sys.executable, "-m", "benchmark.train")   # what a cell runs (tests swap it)
TAIL_LINES = 25
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

EPILOG = """\
cells and results:
  Each cell runs `python -m benchmark.train --method M --dataset D --split S --seed K --profile P --no-progress`
  in its own process, its output going to RESULTS/logs/<dataset>.<split>.<run>.seed<k>.log (appended to on
  every attempt). Results land in RESULTS/runs/<dataset>/<split>/<run>/seed<k>/ (summary.json etc.).
  A finished cell (complete summary.json with the same config hash) is skipped; an interrupted one resumes from
  its checkpoint; a failed one is reported (log tail + path) and the rest go on; exit status 1 if any failed.

overrides:
  key=value pairs go to every cell, e.g. train.iters=200 eval.every=50. Settings for one method only go
  under per_method, e.g. per_method.unimatch.weight_fp=0.3. grid.* keys change the grid itself
  (grid.ablations=[feature_perturbation]). Relative --results-dir/--data-root are relative to the current
  folder; relative paths inside profiles are relative to the repository.

parallelism:
  --jobs N runs N cells side by side; each child then gets OMP_NUM_THREADS = cores / N (unless you set
  OMP_NUM_THREADS yourself), so N cells do not oversubscribe the CPU. Profiles may pin train.threads.

slurm:
  --launcher slurm submits the cells that are not finished as one Slurm job array through submitit; each array
  task runs one cell through the same cell function, and is requeued on timeout/preemption (the trainer resumes
  from its checkpoint). The runner waits for the array (--no-wait: it prints the job id and exits; rerun the same
  command after the jobs end to render the report — finished cells are skipped). Job logs: RESULTS/slurm/.
  --slurm-executor local runs the same submission on this machine (submitit's LocalExecutor; for tests).

exit status: 0 all cells done or skipped, 1 a cell (or the report) failed, 2 bad input, 130 interrupted."""


# --- options and cell commands -------------------------------------------------------------------------------

@dataclass(frozen=True)
class RunOptions:
    """How every cell runs; picklable, so Slurm array tasks get the very same options."""
    profile: str
    results_dir: str                        # absolute
    data_root: str | None = None            # absolute
    device: str | None = None
    overrides: tuple[str, ...] = ()         # the user's key=value pairs, for every cell
    train_command: tuple[str, ...] = TRAIN_COMMAND
    omp_threads: int | None = None          # OMP_NUM_THREADS for children (set when cells share the CPU)

    @property
    def logs_dir(self) -> Path:
        return Path(self.results_dir) / "logs"


@dataclass
class CellResult:
    cell: Cell
    status: str                     # done | skipped | failed | interrupted | not started
    returncode: int | None = None
    seconds: float = 0.0
    log: str | None = None
    tail: str = ""
    best_miou: float | None = None
    note: str = ""


def train_argv(cell: Cell, opts: RunOptions) -> list[str]:
    """The `benchmark.train` arguments of a cell (without the interpreter)."""
    argv = ["--method", cell.method, "--dataset", cell.dataset, "--split", cell.split, "--seed", str(cell.seed),
            "--profile", opts.profile, "--no-progress", "--results-dir", opts.results_dir]
    if opts.data_root:
        argv += ["--data-root", opts.data_root]
    if opts.device:
        argv += ["--device", opts.device]
    argv += list(opts.overrides) + list(cell.overrides)
    if cell.variant:
        argv.append(f"output.variant={cell.variant}")
    return argv


def cell_command(cell: Cell, opts: RunOptions) -> list[str]:
    return [*opts.train_command, *train_argv(cell, opts)]


def cell_config(cell: Cell, opts: RunOptions):
    """The config the cell's trainer will resolve: the train CLI's own parsing of the cell's arguments."""
    from benchmark.train import config_from_args, parse_args
    return config_from_args(parse_args(train_argv(cell, opts)))


@dataclass
class CellState:
    run_dir: Path
    config_hash: str
    total_iters: int
    finished: bool
    summary: dict[str, Any] | None = None


def cell_state(cell: Cell, opts: RunOptions, validate: bool = True) -> CellState:
    """Where the cell's run folder is and whether it is finished (complete summary.json, same config hash).
    With `validate`, the method is built too, so a bad method key fails here rather than in N processes."""
    from benchmark.runinfo import read_summary
    from benchmark.trainer import build_method, run_dir_for
    from datasets.catalog import get_spec
    cfg = cell_config(cell, opts)
    if validate:
        build_method(cfg, get_spec(cfg.data.dataset).num_classes)
    run_dir = run_dir_for(cfg)
    summary = read_summary(run_dir / "summary.json")
    digest = cfg.hash()
    finished = bool(summary and summary.get("status") == "complete" and summary.get("config_hash") == digest)
    return CellState(run_dir, digest, cfg.train.iters, finished, summary)


def child_env(opts: RunOptions) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    if opts.omp_threads and "OMP_NUM_THREADS" not in os.environ:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(opts.omp_threads)
    return env


def log_tail(path: Path, offset: int = 0, lines: int = TAIL_LINES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    # tqdm-style carriage returns: keep what a terminal would show last on each line.
    shown = [line.rstrip("\r").rsplit("\r", 1)[-1] for line in text.rstrip("\n").split("\n")] if text else []
    return "\n".join(shown[-lines:])


# --- the cell function (local and Slurm) ---------------------------------------------------------------------

class ProcessSet:
    """Child processes of the runner; once stopped, no new child starts and running ones are interrupted."""

    def __init__(self):
        self._lock = threading.Lock()
        self._procs: set[subprocess.Popen] = set()
        self.stopped = False

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen | None:
        with self._lock:
            if self.stopped:
                return None
            proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
            self._procs.add(proc)
            return proc

    def discard(self, proc: subprocess.Popen) -> None:
        with self._lock:
            self._procs.discard(proc)

    def stop(self) -> None:
        """No new child starts; the running ones are stopped (see `stop_processes`)."""
        with self._lock:
            self.stopped = True
            procs = list(self._procs)
        stop_processes(procs)


def stop_processes(procs: list[subprocess.Popen], grace_s: float = 5.0, term_s: float = 10.0) -> None:
    """SIGINT to each child's process group (the trainer stops as on Ctrl-C); SIGTERM after grace_s (a child
    that inherited an ignored SIGINT, e.g. from `nohup` or `&`, would not stop otherwise); SIGKILL after another
    term_s. Results and checkpoints are written atomically, so any of these leaves a resumable run."""
    try:
        for sig, wait_s in ((signal.SIGINT, grace_s), (signal.SIGTERM, term_s), (signal.SIGKILL, 5.0)):
            for proc in procs:
                _signal_group(proc, sig)
            deadline = time.monotonic() + wait_s
            for proc in procs:
                try:
                    proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
                except subprocess.TimeoutExpired:
                    pass
            if all(p.poll() is not None for p in procs):
                return
    except KeyboardInterrupt:   # an impatient second Ctrl-C: no more grace
        for proc in procs:
            _signal_group(proc, signal.SIGKILL)


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def run_cell(cell: Cell, opts: RunOptions, procs: ProcessSet | None = None) -> CellResult:
    """Run one cell as a `benchmark.train` subprocess, its output appended to its log; never raises for a
    failing cell. Used by the local pool and, unchanged, by every Slurm array task."""
    log = opts.logs_dir / cell.log_name
    log.parent.mkdir(parents=True, exist_ok=True)
    argv = cell_command(cell, opts)
    procs = procs or ProcessSet()
    if procs.stopped:
        return CellResult(cell, "not started")
    start = time.monotonic()
    with open(log, "ab") as fh:
        offset = fh.tell()
        host = os.uname().nodename
        fh.write(f"### {datetime.now().isoformat(timespec='seconds')} on {host}: {shlex.join(argv)}\n".encode())
        fh.flush()
        proc = procs.start(argv, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=REPO_ROOT,
                           env=child_env(opts))
        if proc is None:
            fh.write(b"### not started: the runner was stopping\n")
            return CellResult(cell, "not started")
        try:
            rc = proc.wait()
        finally:
            if proc.poll() is None:       # we are being torn down (e.g. a Slurm timeout signal): stop the child
                stop_processes([proc])
            procs.discard(proc)
    seconds = time.monotonic() - start
    if rc == 0:
        return CellResult(cell, "done", rc, seconds, str(log))
    status = "interrupted" if procs.stopped else "failed"
    return CellResult(cell, status, rc, seconds, str(log), tail=log_tail(log, offset))


def fill_best(result: CellResult, states: dict[tuple, CellState]) -> CellResult:
    """Best mIoU of a finished cell, from its summary.json (for the closing table only)."""
    state = states.get(result.cell.key)
    if result.status == "done" and state is not None:
        from benchmark.runinfo import read_summary
        result.best_miou = _summary_best(read_summary(state.run_dir / "summary.json"))
    return result


def _progress_of(state: CellState | None) -> str:
    """`step/total` of a running cell from its train_log.jsonl (written every train.log_every steps)."""
    if state is None or not state.total_iters:
        return ""
    path = state.run_dir / "train_log.jsonl"
    try:
        with open(path, "rb") as fh:
            fh.seek(max(path.stat().st_size - 4096, 0))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
        import json
        step = json.loads(lines[-1])["iter"]
        return f"@{step}/{state.total_iters}"
    except (OSError, IndexError, KeyError, ValueError):
        return ""


# --- running a list of cells on this machine -----------------------------------------------------------------

def run_local(cells: list[Cell], opts: RunOptions, jobs: int, states: dict[tuple, CellState] | None = None,
              cell_fn: Callable[..., CellResult] = run_cell, done_before: int = 0,
              total: int | None = None) -> list[CellResult]:
    """Run `cells` with up to `jobs` side by side under one progress bar. Ctrl-C (or SIGTERM) interrupts the
    running cells (they keep their last checkpoint) and raises KeyboardInterrupt after collecting results,
    available as the exception's `results` attribute."""
    from tqdm import tqdm

    states = states or {}
    procs = ProcessSet()
    total = total if total is not None else len(cells)
    results: list[CellResult] = []
    bar = tqdm(total=total, initial=done_before, desc="cells", unit="cell", dynamic_ncols=True,
               disable=None, leave=True)
    pool = ThreadPoolExecutor(max_workers=max(jobs, 1), thread_name_prefix="cell")
    futures: dict[Future, Cell] = {}
    noted: set[Future] = set()

    def outcome(fut: Future) -> CellResult:
        try:
            return fut.result()
        except Exception as exc:   # the cell function itself broke (e.g. cannot start a process)
            return CellResult(futures[fut], "failed", tail=f"{type(exc).__name__}: {exc}")

    def note(fut: Future) -> None:
        noted.add(fut)
        result = fill_best(outcome(fut), states)
        results.append(result)
        bar.update(1)
        n = done_before + len(results)
        extra = f"  best {result.best_miou:.2f} mIoU" if result.best_miou is not None else ""
        where = f"  log: {result.log}" if result.status != "done" else ""
        bar.write(f"[{n}/{total}] {result.status:<11} {result.cell.label}  {_fmt_time(result.seconds)}"
                  f"{extra}{where}", file=sys.stderr)

    try:
        for cell in cells:
            futures[pool.submit(cell_fn, cell, opts, procs)] = cell
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                note(fut)
            running = [f for f in pending if f.running()]
            labels = [f"{futures[f].label}{_progress_of(states.get(futures[f].key))}" for f in running]
            bar.set_postfix_str(" | ".join(labels), refresh=True)
    except KeyboardInterrupt as exc:
        bar.write("interrupting the running cells (a second Ctrl-C kills them) ...", file=sys.stderr)
        procs.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        for fut, cell in futures.items():
            if fut.cancelled():
                results.append(CellResult(cell, "not started"))
            elif fut not in noted:
                results.append(outcome(fut))
        bar.close()
        exc.results = results   # type: ignore[attr-defined]
        raise
    pool.shutdown(wait=True)
    bar.close()
    return results


def _fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


# --- reports and the closing table ---------------------------------------------------------------------------

def results_table(results: list[CellResult]) -> str:
    from tabulate import tabulate
    order = {"failed": 0, "interrupted": 1, "not started": 2, "done": 3, "skipped": 4}
    rows = []
    for r in sorted(results, key=lambda r: (order.get(r.status, 9),)):
        rows.append([r.cell.label, r.status, _fmt_time(r.seconds) if r.seconds else "",
                     r.best_miou,
                     r.note or (r.log if r.status not in ("done", "skipped") else "")])
    table = tabulate(rows, headers=["cell", "status", "time", "best mIoU", "log / note"], tablefmt="simple",
                     floatfmt=".2f", missingval="")
    counts = Counter(r.status for r in results)
    line = ", ".join(f"{counts[s]} {s}" for s in ("done", "skipped", "failed", "interrupted", "not started")
                     if counts[s])
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
        usage="bash run_all.sh [options] [key=value ...]    (the same as: python -m benchmark.runner ...)",
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
    from benchmark.config import resolve
    from benchmark.data import resolve_path
    if args.results_dir:
        results = _abs(args.results_dir)
    else:
        from benchmark.grid import GRID_PLACEHOLDER_METHOD
        cfg = resolve(profile=args.profile, dataset=args.dataset, method=GRID_PLACEHOLDER_METHOD,
                      overrides=list(args.overrides))
        results = str(resolve_path(cfg.output.results_dir))
    cores = os.cpu_count() or 1
    return RunOptions(profile=args.profile, results_dir=results, data_root=_abs(args.data_root), device=args.device,
                      overrides=tuple(args.overrides), train_command=TRAIN_COMMAND,
                      omp_threads=max(cores // jobs, 1) if jobs > 1 and args.launcher == "local" else None)


def reports_dir_for(args: argparse.Namespace, opts: RunOptions) -> Path:
    if args.reports_dir:
        return Path(_abs(args.reports_dir))
    from benchmark.config import REPO_ROOT as ROOT
    if Path(opts.results_dir) == ROOT / "results":
        return ROOT / "reports"
    return Path(opts.results_dir) / "reports"


def prepare_data(cells: Iterable[Cell], opts: RunOptions) -> None:
    """Make each dataset available once (the embedded one is generated on first use) before cells start side
    by side, and fail early with one message if the data are missing."""
    from benchmark.data import plan_data
    seen = set()
    for cell in cells:
        if cell.dataset in seen:
            continue
        seen.add(cell.dataset)
        plan_data(cell_config(cell, opts))


def execute(cells: list[Cell], args: argparse.Namespace, jobs: int, title: str = "grid") -> int:
    """Pre-check, run (local or Slurm), print the table, render the reports. Returns the exit status."""
    from benchmark.grid import dedupe
    cells = dedupe(cells)
    opts = run_options(args, jobs)
    states = {cell.key: cell_state(cell, opts) for cell in cells}   # validates every cell before anything runs
    skipped = [CellResult(c, "skipped", best_miou=_summary_best(states[c.key].summary)) for c in cells
               if states[c.key].finished]
    todo = [c for c in cells if not states[c.key].finished]
    where = "this machine" if args.launcher == "local" else f"Slurm ({args.slurm_executor} executor)"
    print(f"{title}: {len(cells)} cells ({len(skipped)} finished, {len(todo)} to run) on {where}"
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
        return 0

    results = list(skipped)
    code = 0
    try:
        if todo and args.launcher == "local":
            prepare_data(todo, opts)
            results += run_local(todo, opts, jobs, states, done_before=len(skipped), total=len(cells))
        elif todo:
            from benchmark import slurm
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


def _summary_best(summary: dict | None) -> float | None:
    try:
        return float(summary["best"]["miou"])   # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None


def stop_on_sigterm() -> None:
    """`kill <runner>` (or a job scheduler ending it) stops the cells like Ctrl-C does."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    from benchmark import grid
    args = build_parser().parse_args(argv)
    plan = grid.load_plan(args.profile, args.overrides, dataset=args.dataset, methods=args.methods,
                          splits=args.splits, seeds=args.seeds)
    cells = grid.grid_cells(plan)
    if not args.no_ablations:
        for component in plan.ablations:
            cells += grid.ablation_cells(plan, component, methods_filter=args.methods)
    stop_on_sigterm()
    return execute(cells, args, jobs=args.jobs or plan.parallel)


if __name__ == "__main__":
    build_parser().parse_args(sys.argv[1:])   # --help and bad flags answered before torch is imported
    from benchmark.cli import run_main
    run_main(lambda: main(sys.argv[1:]))
