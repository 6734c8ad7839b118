"""The grid runner: cell expansion, skip logic, failures, Ctrl-C, Slurm via submitit's LocalExecutor, run_all.sh.

Cells run a fake `benchmark.train.command` (a few lines of Python that write summary.json) so nothing trains here;
the real end-to-end run of `run_all.sh --profile smoke` is the @slow test at the bottom.
"""
from __future__ import annotations

import _thread
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from benchmark.grid.plan import plan_cell
from benchmark.grid import local as cells
from benchmark.grid import cells as grid
from benchmark.grid import variants
from benchmark.grid import runner
from benchmark.errors import run_main
from benchmark.grid.cells import Cell
from benchmark.grid.local import CellResult
from benchmark.grid.plan import RunOptions, cell_state

ROOT = Path(__file__).resolve().parents[2]

# A stand-in for `python -m benchmark.train`: records its call, fails for methods in $FAKE_FAIL, sleeps
# $FAKE_SLEEP seconds, else writes a complete summary.json where the trainer would.
FAKE_TRAIN = r'''
import json, os, sys, time
from pathlib import Path
argv = sys.argv[1:]
opt = lambda name: argv[argv.index(name) + 1]
variant = next((a.split("=", 1)[1] for a in argv if a.startswith("output.variant=")), "")
method, dataset, split, seed = opt("--method"), opt("--dataset"), opt("--split"), opt("--seed")
results = Path(opt("--results-dir"))
with open(results / "calls.jsonl", "a") as fh:
    fh.write(json.dumps({"argv": argv, "omp": os.environ.get("OMP_NUM_THREADS")}) + "\n")
print(f"fake training {method} {split} seed{seed}")
time.sleep(float(os.environ.get("FAKE_SLEEP", "0")))
if method in os.environ.get("FAKE_FAIL", "").split(","):
    print("Traceback (most recent call last):\nRuntimeError: boom in " + method)
    sys.exit(1)
run = results / "runs" / dataset / split / (f"{method}__{variant}" if variant else method) / f"seed{seed}"
run.mkdir(parents=True, exist_ok=True)
(run / "summary.json").write_text(json.dumps({"status": "complete", "best": {"miou": 42.5}, "config_hash": "fake"}))
'''

# The smoke profile also trains a supervised `full` reference cell; these tests count only the grid's own cells.
NO_REFERENCES = "grid.references=[]"


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    monkeypatch.setattr(runner, "TRAIN_COMMAND", (sys.executable, str(script)))
    monkeypatch.setattr(runner, "prepare_data", lambda plans: None)
    rendered = []
    monkeypatch.setattr(runner, "render_reports", lambda results, out: (rendered.append((results, out)) or 0, "ok"))
    results = tmp_path / "results"
    results.mkdir()
    return {"results": results, "rendered": rendered, "script": script}


def calls(results: Path) -> list[list[str]]:
    path = results / "calls.jsonl"
    return [json.loads(line)["argv"] for line in path.read_text().splitlines()] if path.exists() else []


def called_cells(results: Path) -> set[tuple[str, str, str]]:
    out = set()
    for argv in calls(results):
        variant = next((a.split("=", 1)[1] for a in argv if a.startswith("output.variant=")), "")
        out.add((argv[argv.index("--method") + 1] + (f"__{variant}" if variant else ""),
                 argv[argv.index("--split") + 1], argv[argv.index("--seed") + 1]))
    return out


def opts_for(results: Path, command=(sys.executable, "-c", "print('hi')"), **kw) -> RunOptions:
    return RunOptions(profile="smoke", results_dir=str(results), train_command=tuple(command), **kw)


def main_exit(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: runner.main(argv))
    out = capsys.readouterr()
    return exc.value.code, out.out, out.err


# --- grid expansion ----------------------------------------------------------------------------------------

def test_grid_defaults_come_from_the_profile():
    plan = grid.load_plan("smoke")
    assert plan.methods == ("supervised", "fixmatch", "unimatch", "s4mim", "maskmatch")
    assert plan.dataset == "animals_tiny"
    assert plan.splits == ("1_128", "1_8")
    assert plan.seeds == 2 and plan.parallel == 2
    assert plan.ablations == ("feature_agg", "masked_modeling")
    assert plan.ablation_splits == ("1_128",)           # the grid's lowest split
    cells = grid.grid_cells(plan)
    assert len(cells) == 5 * 2 * 2
    assert cells[0] == Cell("supervised", "animals_tiny", "1_128", 0)


def test_cli_flags_and_grid_overrides_change_the_grid():
    plan = grid.load_plan("smoke", ["grid.seeds=2"], methods=["unimatch", "fixmatch"], splits=["1_8", "1_4"])
    cells = grid.grid_cells(plan)
    assert len(cells) == 2 * 2 * 2
    assert [c.seed for c in cells[:4]] == [0, 0, 0, 0]     # seed-major: seed 0 of everything first
    assert {(c.method, c.split) for c in cells} == {(m, s) for m in ("unimatch", "fixmatch") for s in ("1_8", "1_4")}
    assert grid.load_plan("smoke", seeds=3).seeds == 3
    assert grid.load_plan("smoke", splits=["1_8", "1_4"]).ablation_splits == ("1_8",)


@pytest.mark.parametrize("argv, message", [
    (["--methods", "nope"], "unknown method 'nope'"),
    (["--splits", "1_3"], "unknown split '1_3'"),
    (["--profile", "nope"], "unknown profile 'nope'"),
    (["train.nope=1"], "unknown config key train.nope"),
    (["grid.cell_start=thread"], "grid.cell_start must be one of fork, spawn, got 'thread'"),
])
def test_bad_grid_input_is_one_error_line_and_exit_2(argv, message, capsys, tmp_path):
    profile = [] if "--profile" in argv else ["--profile", "smoke"]
    code, _, err = main_exit([*profile, "--results-dir", str(tmp_path), "--dry-run", *argv], capsys)
    assert code == 2 and err.strip().startswith("error:") and message in err and "Traceback" not in err


def test_a_bad_method_key_fails_before_any_cell_runs(fake_train, capsys):
    code, _, err = main_exit(["--profile", "smoke", "--results-dir", str(fake_train["results"]),
                              "method.nope=1"], capsys)
    assert code == 2 and "method.nope" in err
    assert calls(fake_train["results"]) == []


def test_dry_run_lists_cells_with_their_train_arguments(capsys, tmp_path):
    code, out, err = main_exit(["--profile", "smoke", "--methods", "unimatch,fixmatch", "--splits", "1_16",
                                "--seeds", "2", "--results-dir", str(tmp_path), "--dry-run", "train.iters=3"], capsys)
    assert code == 0
    lines = out.strip().splitlines()
    assert len(lines) == 4 and all(line.startswith("to run") for line in lines)
    assert "--method unimatch --dataset animals_tiny --split 1_16 --seed 1 --profile smoke --no-progress" in out
    assert "train.iters=3" in lines[0]
    assert "4 cells (0 finished, 4 to run)" in err


def test_train_argv_carries_flags_overrides_and_variant():
    cell = Cell("unimatch", "animals", "1_16", 2, "no_dual_strong", ("method.components.dual_strong=false",))
    opts = RunOptions(profile="default", results_dir="/r", data_root="/d", device="cpu", overrides=("train.iters=5",))
    argv = runner.train_argv(cell, opts)
    assert argv[:10] == ["--method", "unimatch", "--dataset", "animals", "--split", "1_16", "--seed", "2",
                         "--profile", "default"]
    assert "--no-progress" in argv and argv[argv.index("--results-dir") + 1] == "/r"
    assert argv[argv.index("--data-root") + 1] == "/d" and argv[argv.index("--device") + 1] == "cpu"
    # the user's overrides first, then the cell's own switches, the variant last
    assert argv[-3:] == ["train.iters=5", "method.components.dual_strong=false", "output.variant=no_dual_strong"]
    assert cell.run_name == "unimatch__no_dual_strong"


# --- skip / run / fail -------------------------------------------------------------------------------------

def finish(cell: Cell, opts: RunOptions, status="complete", config_hash=None) -> Path:
    state = cell_state(plan_cell(cell, opts))
    state.run_dir.mkdir(parents=True, exist_ok=True)
    (state.run_dir / "summary.json").write_text(json.dumps(
        {"status": status, "config_hash": config_hash or state.config_hash, "best": {"miou": 50.0}}))
    return state.run_dir


def test_finished_cells_are_skipped_and_unfinished_ones_run(fake_train, capsys):
    results = fake_train["results"]
    opts = opts_for(results)
    finish(Cell("supervised", "animals_tiny", "1_32", 0), opts)                         # complete: skipped
    finish(Cell("fixmatch", "animals_tiny", "1_32", 0), opts, status="running")          # incomplete: rerun
    finish(Cell("unimatch", "animals_tiny", "1_32", 0), opts, config_hash="otherrecipe")  # other config: rerun
    code, out, err = main_exit(["--profile", "smoke", "--results-dir", str(results), "--seeds", "1",
                                "--splits", "1_32,1_16", "--methods", "supervised,fixmatch,unimatch", NO_REFERENCES], capsys)
    assert code == 0, err
    ran = called_cells(results)
    assert ("supervised", "1_32", "0") not in ran
    assert {("fixmatch", "1_32", "0"), ("unimatch", "1_32", "0")} <= ran
    assert len(ran) == 5
    assert "6 cells: 5 done, 1 skipped" in err
    assert fake_train["rendered"] == [(results, results / "reports")]   # reports rendered at the end


def test_a_failed_cell_is_reported_and_the_others_still_run(fake_train, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "fixmatch")
    results = fake_train["results"]
    code, out, err = main_exit(["--profile", "smoke", "--results-dir", str(results), "--jobs", "2", "--seeds", "1",
                                "--splits", "1_32,1_16", "--methods", "supervised,fixmatch,unimatch", NO_REFERENCES], capsys)
    assert code == 1
    assert len(called_cells(results)) == 6                     # every cell ran
    assert "2 failed" in err and "4 done" in err
    log = results / "logs" / "animals_tiny.1_32.fixmatch.seed0.log"
    assert f"failed (exit 1); log: {log}" in err
    assert "RuntimeError: boom in fixmatch" in err               # the log tail is shown
    assert "fake training fixmatch 1_32 seed0" in log.read_text()
    assert fake_train["rendered"]                                # a report of what finished, all the same


def test_log_is_appended_per_attempt(fake_train, tmp_path):
    opts = opts_for(fake_train["results"], command=(sys.executable, str(fake_train["script"])))
    cell = Cell("unimatch", "animals_tiny", "1_32", 0)
    for _ in range(2):
        assert cells.run_cell(cell, opts).status == "done"
    text = (opts.logs_dir / cell.log_name).read_text()
    assert text.count("### ") == 2 and text.count("fake training unimatch") == 2


def test_parallel_children_get_one_thread_each(fake_train, capsys, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    results = fake_train["results"]
    code, _, err = main_exit(["--profile", "smoke", "--results-dir", str(results), "--jobs", "2"], capsys)
    assert code == 0, err
    omp = {json.loads(line)["omp"] for line in (results / "calls.jsonl").read_text().splitlines()}
    assert omp == {"1"}


def test_ctrl_c_interrupts_running_cells_and_leaves_the_rest(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    monkeypatch.setenv("FAKE_SLEEP", "60")
    opts = opts_for(tmp_path, command=(sys.executable, str(script)))
    four = [Cell("supervised", "animals_tiny", "1_32", s) for s in range(4)]
    threading.Timer(2.0, _thread.interrupt_main).start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt) as exc:
        cells.run_local(four, opts, jobs=2)
    assert time.monotonic() - start < 20
    statuses = sorted(r.status for r in exc.value.results)
    assert statuses == ["interrupted", "interrupted", "not started", "not started"]
    assert not list(tmp_path.rglob("summary.json"))


def test_closing_table_and_log_tail(tmp_path):
    cell = Cell("unimatch", "animals", "1_16", 0)
    table = runner.results_table([CellResult(cell, "done", 0, 65.0, best_miou=51.234),
                                  CellResult(cell, "skipped"), CellResult(cell, "failed", 1, 3.0, "x.log")])
    assert "51.23" in table and "1m05s" in table and "3 cells: 1 done, 1 skipped, 1 failed" in table
    log = tmp_path / "a.log"
    log.write_text("one\nprogress 1\rprogress 2\n" + "".join(f"line {i}\n" for i in range(40)))
    tail = cells.log_tail(log, lines=3)
    assert tail == "line 37\nline 38\nline 39"
    assert cells.log_tail(log, lines=100).splitlines()[1] == "progress 2"


def test_missing_report_package_is_handled(monkeypatch, tmp_path):
    monkeypatch.setattr(runner, "REPO_ROOT", tmp_path)
    rc, message = runner.render_reports(tmp_path / "results", tmp_path / "reports")
    assert rc is None and "python -m benchmark.report" in message


def test_reports_default_next_to_a_side_results_folder(tmp_path):
    args = runner.build_parser().parse_args([])
    opts = opts_for(tmp_path)
    assert runner.reports_dir_for(args, opts) == tmp_path / "reports"
    main_opts = opts_for(ROOT / "results")
    assert runner.reports_dir_for(args, main_opts) == ROOT / "reports"


# --- Slurm through submitit --------------------------------------------------------------------------------

def test_slurm_options_and_torchrun_for_several_gpus():
    from benchmark.grid import slurm
    args = runner.build_parser().parse_args(["--launcher", "slurm", "--slurm-partition", "gpu", "--slurm-time", "60",
                                             "--slurm-gpus-per-task", "4", "--no-wait"])
    sopts = slurm.options_from_args(args)
    assert (sopts.partition, sopts.time_min, sopts.gpus_per_task, sopts.wait) == ("gpu", 60, 4, False)
    opts = slurm.task_options(RunOptions(profile="p", results_dir="/r"), sopts)
    assert opts.train_command[1:] == ("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=4", "-m",
                                      "benchmark.train")


def test_slurm_without_sbatch_is_a_user_error(monkeypatch, tmp_path):
    from benchmark.grid import slurm
    from benchmark.train.config import ConfigError
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="sbatch"):
        slurm.make_executor(slurm.SlurmOptions(executor="slurm"), tmp_path / "%j")


def test_slurm_job_array_through_the_local_executor_runs_the_cell_function(fake_train, capsys):
    from benchmark.grid import slurm
    results = fake_train["results"]
    opts = opts_for(results, command=(sys.executable, str(fake_train["script"])))
    cells = [Cell("unimatch", "animals_tiny", "1_32", 0), Cell("fixmatch", "animals_tiny", "1_32", 0)]
    out = slurm.run_slurm(cells, opts, slurm.SlurmOptions(executor="local", time_min=5, gpus_per_task=0))
    assert [r.status for r in out] == ["done", "done"]
    assert called_cells(results) == {("unimatch", "1_32", "0"), ("fixmatch", "1_32", "0")}
    assert (results / "runs/animals_tiny/1_32/unimatch/seed0/summary.json").exists()
    assert list((results / "slurm").iterdir())                 # submitit's job folders
    assert "submitted 2 cell(s) as job array" in capsys.readouterr().err


def test_runner_with_slurm_launcher_local_executor(fake_train, capsys, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "fixmatch")
    results = fake_train["results"]
    code, _, err = main_exit(["--profile", "smoke", "--methods", "unimatch,fixmatch", "--splits", "1_32", "--seeds", "1",
                              "--results-dir", str(results), "--launcher", "slurm", "--slurm-executor", "local",
                              "--slurm-gpus-per-task", "0"], capsys)
    assert code == 1
    assert "1 done" in err and "1 failed" in err and "boom in fixmatch" in err
    assert fake_train["rendered"]


# --- run_all.sh --------------------------------------------------------------------------------------------

def test_run_all_help():
    proc = subprocess.run(["bash", str(ROOT / "run_all.sh"), "--help"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    for word in ("--profile", "--methods", "--splits", "--seeds", "--jobs", "--launcher", "--slurm-partition",
                 "--data-root", "--results-dir", "key=value", "benchmark.report"):
        assert word in proc.stdout, word


@pytest.mark.slow
def test_run_all_smoke_end_to_end(tmp_path):
    from benchmark.grid.plan import Plans
    from benchmark.grid.same_run import POINTER, same_run_of
    results = tmp_path / "results"
    plan = grid.load_plan("smoke")
    ablations = [c for component in plan.ablations for c in variants.ablation_cells(plan, component)]
    planned = grid.dedupe(grid.grid_cells(plan) + grid.reference_cells(plan) + ablations)
    plans = Plans(opts_for(results))
    reusing = [c for c in planned if same_run_of(plans(c), plans)]
    trained = len(planned) - len(reusing)
    assert reusing    # S4MIM without mim (if ablated) and MaskMatch all-off reuse their base runs
    proc = subprocess.run(["bash", str(ROOT / "run_all.sh"), "--profile", "smoke", "--results-dir", str(results)],
                          capture_output=True, text=True, timeout=900, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summaries = list((results / "runs").rglob("summary.json"))
    assert len(summaries) == trained and len(list((results / "runs").rglob(POINTER))) == len(reusing)
    assert all(json.loads(p.read_text())["status"] == "complete" for p in summaries)
    assert (results / "reports" / "report.md").exists() and (results / "reports" / "report.pdf").exists()
    assert f"{len(planned)} cells: {trained} done, {len(reusing)} same run" in proc.stderr
    report = (results / "reports" / "report.md").read_text()
    assert "0 skipped" in proc.stdout + proc.stderr and "(= fixmatch run)" in report
    again = subprocess.run(["bash", str(ROOT / "run_all.sh"), "--profile", "smoke", "--results-dir", str(results),
                            "--no-report"], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert again.returncode == 0 and f"{len(planned)} cells: {trained} skipped, {len(reusing)} same run" in again.stderr


def test_a_cell_plan_is_the_config_its_trainer_resolves():
    """The runner resolves a cell once, from the same request its `benchmark.train.command` arguments carry."""
    from benchmark.train.command import config_from_args, parse_args
    cell = Cell("unimatch", "animals_tiny", "1_32", 1, "no_dual_strong", ("method.components.dual_strong=false",))
    opts = RunOptions(profile="smoke", results_dir="/r", data_root="/d", device="cpu", overrides=("train.iters=5",),
                      cell_threads=2)
    plan = plan_cell(cell, opts)
    assert plan.config.to_dict() == config_from_args(parse_args(runner.train_argv(cell, opts))).to_dict()
    assert plan.run_dir == Path("/r/runs/animals_tiny/1_32/unimatch__no_dual_strong/seed1")
    assert plan.method.on["dual_strong"] is False and plan.config_hash == plan.config.hash()
