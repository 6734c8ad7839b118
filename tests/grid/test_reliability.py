"""Issue 14: a summary rebuilt from the final checkpoint, split-list checksums, thread counts, relative paths,
config numbers and argument order, and the run folder created only after validation."""
from __future__ import annotations

import json

import pytest
import yaml

from benchmark.grid import runner
from benchmark.train import command as train_cli
from benchmark.errors import run_main
from benchmark.train.config import ConfigError, resolve
from benchmark.train.trainer import Trainer
from datasets.errors import DataError
from datasets.splits import sha256_file


def make_cfg(data_root, results, method="supervised", extra=()):
    return resolve(profile="smoke", method=method, overrides=[
        f"data.root={data_root}", f"output.results_dir={results}",
        "train.iters=4", "eval.every=2", *extra])


def cli(args, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: train_cli.main(args))
    return exit_info.value.code, capsys.readouterr().err


# --- item 2: rebuilding summary.json from the final checkpoint ------------------------------------------------

@pytest.mark.parametrize("damage", ["deleted", "truncated"])
def test_summary_rebuilt_from_the_final_checkpoint_is_the_same_and_idempotent(damage, tiny_data, tmp_path):
    cfg = make_cfg(tiny_data, tmp_path, "fixmatch")
    first = Trainer(cfg, progress=False).fit()
    run = Trainer(cfg, progress=False).run_dir
    metrics = (run / "metrics.jsonl").read_text()
    compute = ("step_time_s", "images_per_s", "wall_time_s", "best", "last", "iters")
    for _ in range(2):   # a kill between the last checkpoint and the summary, twice
        if damage == "deleted":
            (run / "summary.json").unlink()
        else:
            (run / "summary.json").write_text((run / "summary.json").read_text()[:50])
        rebuilt = Trainer(make_cfg(tiny_data, tmp_path, "fixmatch"), progress=False).fit()
        assert {k: rebuilt[k] for k in compute} == {k: first[k] for k in compute}
        assert rebuilt["step_time_s"] > 0 and rebuilt["images_per_s"] is not None
        assert (run / "metrics.jsonl").read_text() == metrics     # no evaluation line added


# --- item 4: split-list checksums -------------------------------------------------------------------------

def test_every_summary_records_the_sha256_of_its_split_lists(tiny_data, tmp_path):
    summary = Trainer(make_cfg(tiny_data, tmp_path, "fixmatch"), progress=False).fit()
    splits = tiny_data / "draw0" / "splits"
    split = summary["split"]
    assert summary["split_lists"] == {"labeled": sha256_file(splits / split / "labeled.txt"),
                                      "unlabeled": sha256_file(splits / split / "unlabeled.txt"),
                                      "val": sha256_file(splits / "val.txt"), "custom": False}


def pin_tiny_lists_as_official(monkeypatch, tiny_data, val_sha: str):
    """Pretend animals_tiny had pinned official lists (real datasets do), with `val_sha` for val.txt."""
    from datasets import manifest
    files = dict(manifest.FILES)
    for rel in ("1_32/labeled.txt", "1_32/unlabeled.txt"):
        files[f"animals_tiny/{rel}"] = (sha256_file(tiny_data / "draw0" / "splits" / rel), 0)
    files["animals_tiny/val.txt"] = (val_sha, 0)
    monkeypatch.setattr(manifest, "FILES", files)


def test_lists_that_differ_from_the_pinned_ones_are_an_error_unless_custom(tiny_data, tmp_path, monkeypatch):
    pin_tiny_lists_as_official(monkeypatch, tiny_data, "0" * 64)
    with pytest.raises(DataError, match=r"val\.txt differ.*data\.custom_splits=true"):
        Trainer(make_cfg(tiny_data, tmp_path, extra=["data.split=1_32"]), progress=False)
    summary = Trainer(make_cfg(tiny_data, tmp_path, extra=["data.split=1_32", "data.custom_splits=true"]),
                      progress=False).fit()
    assert summary["split_lists"]["custom"] is True
    pin_tiny_lists_as_official(monkeypatch, tiny_data, sha256_file(tiny_data / "draw0" / "splits" / "val.txt"))
    official = Trainer(make_cfg(tiny_data, tmp_path / "b", extra=["data.split=1_32"]), progress=False).fit()
    assert official["split_lists"]["custom"] is False


def test_a_custom_split_run_is_never_beside_a_published_number(tmp_path):
    from benchmark.report.comparison import published_table
    from benchmark.report.published import PublishedEntry
    from benchmark.report.records import EvalPoint, RunRecord
    from benchmark.report.document import Numbering
    run = RunRecord(path=tmp_path, dataset="pascal", split="92", method="unimatch", variant=None, seed=0,
                    status="complete", best=EvalPoint(10, 0.09, {}), last=EvalPoint(10, 0.09, {}),
                    custom_splits=True)
    entry = PublishedEntry(method="unimatch", dataset="pascal", split="92", miou=75.2, backbone="resnet101",
                           crop=321, source="UniMatch Table 1")
    table = published_table([run], [], [entry], "pascal", Numbering())
    assert all("0.09" not in str(cell) for row in table.rows for cell in row)
    assert any("custom split lists" in note for note in table.notes)


# --- item 7: thread count --------------------------------------------------------------------------------

def test_a_resume_under_another_thread_count_is_recorded_and_said(tiny_data, tmp_path, capsys):
    first = Trainer(make_cfg(tiny_data, tmp_path, extra=["train.threads=1"]), progress=False).fit()
    assert first["threads"] == [1]
    run = Trainer(make_cfg(tiny_data, tmp_path), progress=False).run_dir
    (run / "summary.json").unlink()    # resume from the last checkpoint under 2 threads
    resumed = Trainer(make_cfg(tiny_data, tmp_path, extra=["train.threads=2"]), progress=False).fit()
    assert resumed["threads"] == [1, 2]
    assert "resumes with 2 torch threads after 1" in capsys.readouterr().err


def test_jobs_sets_one_thread_per_cell_only_where_the_profile_does_not_pin_threads(tmp_path):
    def opts(*argv):
        args = runner.build_parser().parse_intermixed_args(["--results-dir", str(tmp_path), *argv])
        return runner.run_options(args, jobs=args.jobs or 1)
    assert opts("--profile", "pascal").cell_threads is None and opts("--profile", "pascal").omp_threads is None
    assert opts("--profile", "pascal", "--jobs", "2").cell_threads == 1
    pinned = opts("--profile", "pascal", "--jobs", "2", "train.threads=3")
    assert pinned.cell_threads is None and pinned.omp_threads == 3


def test_grid_parallel_0_means_one_cell_per_usable_core(monkeypatch):
    import os
    from benchmark.grid import cells as grid
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    assert grid.load_plan("smoke", ["grid.parallel=0"]).parallel == 3
    assert grid.load_plan("smoke", ["grid.parallel=5"]).parallel == 5


# --- item 3: relative paths ------------------------------------------------------------------------------

def test_relative_paths_resolve_against_the_current_folder(tiny_data, tmp_path, monkeypatch, capsys):
    import shutil
    shutil.copytree(tiny_data, tmp_path / "mydata")
    monkeypatch.chdir(tmp_path)
    code, err = cli(["--profile", "smoke", "--method", "supervised", "--no-progress", "--results-dir", "mix",
                     "--data-root", "mydata", "train.iters=1", "eval.every=1"],
                    capsys)
    assert code == 0, err
    assert list((tmp_path / "mix" / "runs").rglob("summary.json"))
    args = runner.build_parser().parse_intermixed_args(["--profile", "smoke", "data.root=mydata",
                                                        "output.results_dir=out"])
    opts = runner.run_options(args, jobs=1)   # cells run in the repository folder: paths must be absolute
    assert opts.results_dir == str(tmp_path / "out")
    assert f"data.root={tmp_path / 'mydata'}" in opts.overrides


# --- item 6: numbers and argument order ------------------------------------------------------------------

def test_float_fields_accept_exponent_notation_from_cli_and_yaml(tmp_path):
    assert resolve(profile="smoke", overrides=["train.lr=1e-4"]).train.lr == 1e-4
    config = tmp_path / "c.yaml"
    config.write_text("train:\n  lr: 1e-4\n  weight_decay: 5E-4\n")
    cfg = resolve(profile="smoke", config_file=str(config))
    assert (cfg.train.lr, cfg.train.weight_decay) == (1e-4, 5e-4)
    for bad in ("abc", "nan"):
        with pytest.raises(ConfigError, match="train.lr must be a number"):
            resolve(profile="smoke", overrides=[f"train.lr={bad}"])


def test_overrides_may_come_before_between_and_after_flags():
    args = train_cli.parse_args(["--method", "supervised", "train.iters=2", "--no-progress", "eval.every=2"])
    assert args.overrides == ["train.iters=2", "eval.every=2"] and args.no_progress
    args = runner.build_parser().parse_intermixed_args(["train.iters=2", "--profile", "smoke", "eval.every=2"])
    assert args.overrides == ["train.iters=2", "eval.every=2"] and args.profile == "smoke"


# --- item 8: validation before anything is created --------------------------------------------------------

def test_a_bad_budget_creates_no_run_folder(tiny_data, tmp_path, capsys):
    code, err = cli(["--profile", "smoke", "--no-progress", f"data.root={tiny_data}", f"output.results_dir={tmp_path}/r", "train.iters=-5"],
                    capsys)
    assert code == 2 and err.strip() == "error: train.iters must be 0 or positive, got -5"
    assert not (tmp_path / "r").exists()


def test_an_unknown_method_fails_before_the_dataset_is_generated(tmp_path, capsys):
    code, err = cli(["--profile", "smoke", "--method", "nope", f"data.root={tmp_path}/gen",
                     f"output.results_dir={tmp_path}/r"], capsys)
    assert code == 2 and "unknown method 'nope'" in err
    assert not (tmp_path / "gen").exists() and not (tmp_path / "r").exists()


def test_an_underscored_split_override_stays_a_name():
    assert resolve(profile="smoke", overrides=["data.split=1_32"]).data.split == "1_32"
    assert resolve(profile="smoke", overrides=["train.iters=1_000"]).train.iters == 1000
