"""How one cell trains: its `python -m benchmark.train` command, the subprocess that runs it (own process
group, log appended to), and a pool that runs a list of cells side by side with a progress bar. The runner
(`runner.py`) and every Slurm array task (`slurm.py`) train cells through `run_cell`.
"""
from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import multiprocessing.forkserver
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from benchmark.grid.cells import Cell
from benchmark.grid.plan import TRAIN_COMMAND, CellState, RunOptions, cell_request, summary_best
from benchmark.train import forked
from benchmark.errors import EXIT_RUNNING_ELSEWHERE
from benchmark.train.runlock import LOCK_NAME, looks_held
from datasets import REPO_ROOT
TAIL_LINES = 25


# --- options and cell commands -------------------------------------------------------------------------------

@dataclass
class CellResult:
    cell: Cell
    status: str                     # done | skipped | failed | interrupted | not started | running elsewhere
    returncode: int | None = None
    seconds: float = 0.0
    log: str | None = None
    tail: str = ""
    best_miou: float | None = None
    note: str = ""


def train_argv(cell: Cell, opts: RunOptions) -> list[str]:
    """The `benchmark.train.command` arguments of a cell (without the interpreter): its `cell_request` as flags."""
    request = cell_request(cell, opts)
    argv = ["--method", cell.method, "--dataset", cell.dataset, "--split", cell.split, "--seed", str(cell.seed),
            "--profile", opts.profile, "--no-progress", "--results-dir", request["results_dir"]]
    for key in ("data_root", "device"):
        if request[key] is not None:
            argv += [f"--{key.replace('_', '-')}", request[key]]
    if opts.wait_elsewhere:
        argv.append("--wait")
    for plugin in request["plugins"]:
        argv += ["--plugin", plugin]
    return argv + request["overrides"]


def cell_command(cell: Cell, opts: RunOptions) -> list[str]:
    return [*opts.train_command, *train_argv(cell, opts)]


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
        self._procs: set[subprocess.Popen | ForkedCell] = set()
        self._context = None
        self.stopped = False

    def start(self, argv: list[str], **kwargs) -> subprocess.Popen | None:
        with self._lock:
            if self.stopped:
                return None
            proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
            self._procs.add(proc)
            return proc

    def fork(self, argv: list[str], log: Path, env: dict[str, str]) -> ForkedCell | None:
        """`benchmark.train ARGV` forked from the preloaded server (benchmark/train/forked.py), started on first use."""
        with self._lock:
            if self.stopped:
                return None
            if self._context is None:
                self._context = _forkserver(env)
            process = self._context.Process(target=forked.run_cell_command, args=(argv, str(log), env, str(REPO_ROOT)),
                                            name=f"cell {log.stem}")
            process.start()
            proc = ForkedCell(process)
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


class ForkedCell:
    """A forked cell behind the part of `subprocess.Popen` the runner uses: pid (its process group), poll, wait."""

    def __init__(self, process):
        self._process = process
        self._lock = threading.Lock()
        self.pid = process.pid

    def poll(self) -> int | None:
        return self._exit_code(0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._exit_code(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(f"cell {self.pid}", timeout)
        return code

    def _exit_code(self, timeout: float | None) -> int | None:
        """Negative for a signal, as Popen's. The server sends the code once: the cell's thread and a stopping
        runner may both be waiting, so only one of them reads it (the other would read the end of the pipe)."""
        if not multiprocessing.connection.wait([self._process.sentinel], timeout):
            return None
        with self._lock:
            return self._process.exitcode


def _forkserver(env: dict[str, str]):
    """The multiprocessing forkserver context with the trainer preloaded. The server starts under the cells'
    environment (OMP_NUM_THREADS and the numerics pin are read when torch loads, in the server)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(list(forked.PRELOAD))
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        multiprocessing.forkserver.ensure_running()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return context


def forks_cells(opts: RunOptions) -> bool:
    """`grid.cell_start: fork` for the real trainer (tests swap in other commands, which always spawn)."""
    return opts.cell_start == "fork" and tuple(opts.train_command) == TRAIN_COMMAND


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
    """Run one cell as a `benchmark.train.command` subprocess, its output appended to its log; never raises for a
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
        if forks_cells(opts):
            proc = procs.fork(train_argv(cell, opts), log, child_env(opts))
        else:
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
    if rc == EXIT_RUNNING_ELSEWHERE:
        return CellResult(cell, "running elsewhere", rc, seconds, str(log), note=log_tail(log, offset, lines=1))
    status = "interrupted" if procs.stopped else "failed"
    return CellResult(cell, status, rc, seconds, str(log), tail=log_tail(log, offset))


def fill_best(result: CellResult, states: dict[tuple, CellState]) -> CellResult:
    """Best mIoU of a finished cell, from its summary.json (for the closing table only)."""
    state = states.get(result.cell.key)
    if result.status == "done" and state is not None:
        result.best_miou = summary_best(state.reread().summary)
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
    pool = LocalPool(opts, jobs, states or {}, cell_fn, done_before, total if total is not None else len(cells))
    return pool.run(cells)


class LocalPool:
    """Cells side by side in threads, each a child process; one progress bar and one line per finished cell."""

    def __init__(self, opts: RunOptions, jobs: int, states: dict[tuple, CellState], cell_fn: Callable[..., CellResult],
                 done_before: int, total: int):
        self.opts, self.jobs, self.states, self.cell_fn = opts, jobs, states, cell_fn
        self.done_before, self.total = done_before, total
        self.procs = ProcessSet()
        self.results: list[CellResult] = []
        self.futures: dict[Future, Cell] = {}
        self.noted: set[Future] = set()
        self.bar = None

    def run(self, cells: list[Cell]) -> list[CellResult]:
        self.bar = tqdm(total=self.total, initial=self.done_before, desc="cells", unit="cell", dynamic_ncols=True,
                        disable=None, leave=True)
        pool = ThreadPoolExecutor(max_workers=max(self.jobs, 1), thread_name_prefix="cell")
        try:
            for cell in cells:
                self.futures[pool.submit(self.attempt, cell)] = cell
            pending = set(self.futures)
            while pending:
                finished, pending = wait(pending, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in finished:
                    self.note(fut)
                self.show_running(pending)
        except KeyboardInterrupt as exc:
            self.interrupt(pool)
            exc.results = self.results   # type: ignore[attr-defined]
            raise
        pool.shutdown(wait=True)
        self.bar.close()
        return self.results

    def attempt(self, cell: Cell) -> CellResult:
        # Another runner may have finished or started this cell since the grid was listed: no process for it.
        state = self.states.get(cell.key)
        if state is not None:
            now = state.reread()
            if now.finished:
                return CellResult(cell, "skipped", best_miou=summary_best(now.summary), note="finished elsewhere")
            if not self.opts.wait_elsewhere and looks_held(state.run_dir):
                return CellResult(cell, "running elsewhere", note=f"lock: {state.run_dir / LOCK_NAME}")
        return self.cell_fn(cell, self.opts, self.procs)

    def outcome(self, fut: Future) -> CellResult:
        try:
            return fut.result()
        except Exception as exc:   # the cell function itself broke (e.g. cannot start a process)
            return CellResult(self.futures[fut], "failed", tail=f"{type(exc).__name__}: {exc}")

    def note(self, fut: Future) -> None:
        self.noted.add(fut)
        result = fill_best(self.outcome(fut), self.states)
        self.results.append(result)
        self.bar.update(1)
        n = self.done_before + len(self.results)
        extra = f"  best {result.best_miou:.2f} mIoU" if result.best_miou is not None else ""
        where = f"  log: {result.log}" if result.status != "done" and result.log else ""
        self.bar.write(f"[{n}/{self.total}] {result.status:<11} {result.cell.label}  {fmt_time(result.seconds)}"
                       f"{extra}{where}", file=sys.stderr)

    def show_running(self, pending: set[Future]) -> None:
        running = [f for f in pending if f.running()]
        labels = [f"{self.futures[f].label}{_progress_of(self.states.get(self.futures[f].key))}" for f in running]
        self.bar.set_postfix_str(" | ".join(labels), refresh=True)

    def interrupt(self, pool: ThreadPoolExecutor) -> None:
        self.bar.write("interrupting the running cells (a second Ctrl-C kills them) ...", file=sys.stderr)
        self.procs.stop()
        pool.shutdown(wait=True, cancel_futures=True)
        for fut, cell in self.futures.items():
            if fut.cancelled():
                self.results.append(CellResult(cell, "not started"))
            elif fut not in self.noted:
                self.results.append(self.outcome(fut))
        self.bar.close()


def fmt_time(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"
