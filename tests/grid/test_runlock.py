"""One trainer per run folder: a second process (grid, Slurm requeue, `benchmark.train.command`) is refused or waits,
a lock left by a killed process does not block, and the runner reports and then waits for such cells."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmark.grid import local as cells

from benchmark.train import runlock

from benchmark.grid import runner
from benchmark.errors import EXIT_RUNNING_ELSEWHERE, RunLockedError, run_main
from benchmark.grid.cells import Cell
from benchmark.grid.plan import RunOptions
from fixtures.fake_cells import use_fake_train

ROOT = Path(__file__).resolve().parents[2]

# The smoke profile also trains a supervised `full` reference cell; these tests count only the grid's own cells.
NO_REFERENCES = "grid.references=[]"


def test_a_held_run_folder_is_refused_and_a_released_one_is_taken(tmp_path):
    with runlock.run_lock(tmp_path / "run"):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            with runlock.run_lock(tmp_path / "run"):
                pass
    with runlock.run_lock(tmp_path / "run"):   # released: free again
        pass
    assert not (tmp_path / "run" / runlock.LOCK_NAME).exists()


def hold_in_another_process(run_dir: Path) -> subprocess.Popen:
    """A live process holding the run folder's lock (until killed)."""
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from benchmark.train.runlock import run_lock\n"
        f"with run_lock({str(run_dir)!r}):\n    print('held', flush=True); time.sleep(120)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    holder = hold_in_another_process(tmp_path / "run")
    with pytest.raises(RunLockedError):
        with runlock.run_lock(tmp_path / "run"):
            pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "run" / runlock.LOCK_NAME).exists()     # the marker is still there ...
    with runlock.run_lock(tmp_path / "run"):                    # ... and taken over at once
        pass


def test_train_refuses_a_run_that_another_process_is_training(tmp_path, capsys):
    from benchmark.train import command as train_cli
    from datasets.animals import generate
    from datasets.draws import draw_folder
    data = tmp_path / "data"
    generate(draw_folder(data, 0), variant="tiny", progress=False)   # no progress bar before the message
    args = ["--profile", "smoke", "--method", "supervised", "--split", "1_32", "--no-progress", f"data.root={data}",
            f"output.results_dir={tmp_path}/results", "train.iters=2"]
    from benchmark.train.command import config_from_args, parse_args
    from benchmark.train.run_setup import run_dir_for
    run_dir = run_dir_for(config_from_args(parse_args(args)))
    holder = hold_in_another_process(run_dir)
    try:
        with pytest.raises(SystemExit) as exit_info:
            run_main(lambda: train_cli.main(args))
        assert exit_info.value.code == EXIT_RUNNING_ELSEWHERE
        err = capsys.readouterr().err
        assert err.startswith("running elsewhere:") and f"pid {holder.pid}" in err and "Traceback" not in err
        assert sorted(p.name for p in run_dir.iterdir()) == [runlock.LOCK_NAME]   # nothing trained or written
    finally:
        holder.kill()
        holder.wait()
    with pytest.raises(SystemExit) as exit_info:                                  # released: it trains
        run_main(lambda: train_cli.main(args))
    assert exit_info.value.code == 0 and (run_dir / "summary.json").exists()


# A stand-in for benchmark.train.command: "running elsewhere" (exit 75) until called with --wait, then it finishes.
FAKE_BUSY_TRAIN = r'''
import json, sys
from pathlib import Path
argv = sys.argv[1:]
opt = lambda name: argv[argv.index(name) + 1]
results = Path(opt("--results-dir"))
with open(results / "calls.jsonl", "a") as fh:
    fh.write(json.dumps(argv) + "\n")
if "--wait" not in argv:
    print("running elsewhere: held by pid 1 on host h", file=sys.stderr)
    sys.exit(75)
run = results / "runs" / opt("--dataset") / opt("--split") / opt("--method") / f"seed{opt('--seed')}"
run.mkdir(parents=True, exist_ok=True)
(run / "summary.json").write_text(json.dumps({"status": "complete", "best": {"miou": 1.0}, "config_hash": "x"}))
'''


@pytest.fixture
def busy_results(tmp_path, monkeypatch):
    return use_fake_train(tmp_path, monkeypatch, FAKE_BUSY_TRAIN)


def test_the_runner_reports_cells_running_elsewhere_then_waits_for_them(busy_results, capsys):
    results = busy_results
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: runner.main(["--profile", "smoke", "--results-dir", str(results), "--seeds", "1",
                                      "--splits", "1_32", "--methods", "supervised,fixmatch", "--no-ablations", NO_REFERENCES]))
    err = capsys.readouterr().err
    assert exit_info.value.code == 0, err
    argvs = [json.loads(line) for line in (results / "calls.jsonl").read_text().splitlines()]
    assert [("--wait" in a) for a in argvs] == [False, False, True, True]   # refused once, then waited for
    assert "running elsewhere supervised animals_tiny/1_32 seed0" in err.replace("  ", " ")
    assert "waiting for 2 cell(s) that another process is training" in err
    assert "2 cells: 2 done" in err and "was running elsewhere; waited for it" in err


def test_exit_75_is_running_elsewhere_not_a_failure(tmp_path):
    opts = RunOptions(profile="smoke", results_dir=str(tmp_path),
                            train_command=(sys.executable, "-c", "import sys; sys.exit(75)"))
    result = cells.run_cell(Cell("supervised", "animals_tiny", "1_32", 0), opts)
    assert result.status == "running elsewhere"


def test_the_runner_starts_no_process_for_a_cell_whose_lock_is_live(busy_results, capsys):
    results = busy_results
    run_dir = results / "runs" / "animals_tiny" / "1_32" / "supervised" / "seed0"
    holder = hold_in_another_process(run_dir)
    try:
        with pytest.raises(SystemExit):
            run_main(lambda: runner.main(["--profile", "smoke", "--results-dir", str(results), "--seeds", "1",
                                          "--splits", "1_32", "--methods", "supervised", "--no-ablations", NO_REFERENCES]))
    finally:
        holder.kill()
        holder.wait()
    argvs = [json.loads(line) for line in (results / "calls.jsonl").read_text().splitlines()]
    assert len(argvs) == 1 and "--wait" in argvs[0]   # no refused attempt: only the waiting one
    assert not runlock.looks_held(run_dir)            # its holder is gone
