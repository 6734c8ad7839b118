"""Issue 14: one-line errors for data errors inside DataLoader workers, an unwritable results folder and a full
disk (nothing written before is lost); result files follow the umask; report.md and report.pdf come in pairs;
an official log's `xception` is the published tables' xception65."""
from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import stat
import sys

import pytest
import torch

from benchmark.errors import run_main
from benchmark.grid import runner
from datasets.io import FILE_MODE, DiskFullError, atomic_write, atomic_write_json
from benchmark.train import command as train_cli


def copied_dataset(tiny_data, tmp_path) -> tuple[str, os.PathLike]:
    """A copy under a name that does not regenerate itself, so a damaged file is reported, not repaired."""
    from datasets.catalog import all_specs, get_spec, register_spec
    if "fixture_tiny_io" not in all_specs():
        register_spec(dataclasses.replace(get_spec("animals_tiny"), name="fixture_tiny_io", ensure_draw=None))
    root = tmp_path / "data"
    shutil.copytree(tiny_data / "draw0", root)
    return "fixture_tiny_io", root


def exit_and_err(main, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        run_main(main)
    return exit_info.value.code, capsys.readouterr().err


def train_args(dataset, root, results, *extra):
    return ["--profile", "smoke", "--dataset", dataset, "--no-progress", f"data.root={root}",
            f"data.split_dir={root}/splits", "data.draws=single", f"output.results_dir={results}", "train.iters=2", *extra]


@pytest.mark.parametrize("damage", ["corrupt_image", "mask_out_of_range"])
def test_a_data_error_inside_a_dataloader_worker_is_one_line(damage, tiny_data, tmp_path, capsys):
    from PIL import Image
    dataset, root = copied_dataset(tiny_data, tmp_path)
    image, mask = ((root / rel) for rel in (root / "splits" / "val.txt").read_text().split("\n")[0].split())
    if damage == "corrupt_image":
        image.write_bytes(b"not an image at all")
    else:
        m = Image.open(mask)
        m.load()[0, 0] = 50
        m.save(mask)
    code, err = exit_and_err(lambda: train_cli.main(train_args(dataset, root, tmp_path / "r", "data.workers=1")),
                             capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), err
    assert (image.name if damage == "corrupt_image" else mask.name) in lines[0]
    assert "worker" not in lines[0] and "Traceback" not in err


def test_an_unwritable_results_folder_stops_the_grid_before_any_cell(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(runner, "TRAIN_COMMAND", (sys.executable, "-c", "raise SystemExit(9)"))
    monkeypatch.setattr(runner, "prepare_data", lambda plans: pytest.fail("the grid started"))
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    code, err = exit_and_err(lambda: runner.main(["--profile", "smoke", "--results-dir", str(blocker / "results"),
                                                  "--no-report"]), capsys)
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("grid:")]
    assert code == 2 and lines == [f"error: cannot write {blocker / 'results'}: a part of the path is not a folder"]


def test_a_full_disk_is_one_line_naming_the_file_and_keeps_what_was_written(tiny_data, tmp_path, monkeypatch,
                                                                           capsys):
    dataset, root = copied_dataset(tiny_data, tmp_path)
    real_save = torch.save

    def save_on_a_full_disk(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0: "
                           "PytorchStreamWriter failed writing file data/0: file write failed")

    monkeypatch.setattr(torch, "save", save_on_a_full_disk)
    code, err = exit_and_err(lambda: train_cli.main(train_args(dataset, root, tmp_path / "r", "eval.every=1")),
                             capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, err
    checkpoint = next((tmp_path / "r").rglob("metrics.jsonl")).parent / "checkpoint.pt"
    assert lines[0].startswith(f"error: the disk is full: cannot write {checkpoint}")
    assert not checkpoint.exists() and not list(checkpoint.parent.glob(".checkpoint.pt.*"))
    assert json.loads((checkpoint.parent / "metrics.jsonl").read_text().splitlines()[0])["iter"] == 1


def test_a_failed_write_leaves_the_previous_file(tmp_path):
    path = tmp_path / "summary.json"
    atomic_write_json(path, {"kept": True})

    def no_space(handle):
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(DiskFullError, match=f"the disk is full: cannot write {path}"):
        atomic_write(path, no_space)
    assert json.loads(path.read_text()) == {"kept": True} and os.listdir(tmp_path) == ["summary.json"]


def test_result_files_follow_the_umask(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask
    atomic_write_json(tmp_path / "summary.json", {"a": 1})
    assert stat.S_IMODE((tmp_path / "summary.json").stat().st_mode) == FILE_MODE
    from datasets.io import temp_path_beside
    assert stat.S_IMODE(temp_path_beside(tmp_path / "fig.png").stat().st_mode) == FILE_MODE


def test_summary_json_never_holds_a_bare_nan(tmp_path):
    atomic_write_json(tmp_path / "s.json", {"miou": float("nan"), "per_class": {"cat": float("inf")}})
    assert json.loads((tmp_path / "s.json").read_text()) == {"miou": None, "per_class": {"cat": None}}


def test_report_md_and_pdf_are_replaced_together_or_not_at_all(tmp_path):
    from benchmark.report.__main__ import write_report_pair
    (tmp_path / "report.md").write_text("old md")
    (tmp_path / "report.pdf").write_bytes(b"old pdf")

    def pdf_on_a_full_disk(path):
        path.write_bytes(b"%PDF-half")
        raise OSError(errno.ENOSPC, "No space left on device")
    with pytest.raises(OSError):
        write_report_pair(tmp_path, "new md", pdf_on_a_full_disk)
    assert (tmp_path / "report.md").read_text() == "old md" and (tmp_path / "report.pdf").read_bytes() == b"old pdf"
    assert sorted(os.listdir(tmp_path)) == ["report.md", "report.pdf"]
    write_report_pair(tmp_path, "new md", lambda path: path.write_bytes(b"%PDF-new"))
    assert (tmp_path / "report.md").read_text() == "new md" and (tmp_path / "report.pdf").read_bytes() == b"%PDF-new"


def test_an_official_log_naming_xception_meets_the_published_xception65(tmp_path):
    from pathlib import Path
    from benchmark.report.logs_import import import_log
    pascal = Path(__file__).parent / "fixtures" / "unimatch_logs" / "pascal_meanIOU_excerpt.log"
    coco = tmp_path / "coco.log"
    coco.write_text(pascal.read_text().replace("'backbone': 'resnet101'", "'backbone': 'xception'")
                    .replace("'dataset': 'pascal'", "'dataset': 'coco'"))
    _, record = import_log(coco, tmp_path / "results", "official", split="1_512")
    assert record["backbone"] == "xception65"


def test_ctrl_c_during_a_write_is_raised_once_the_file_is_in_place(tmp_path):
    # torch.save writes through a callback that turns an exception into its own RuntimeError: a Ctrl-C that
    # landed inside it ended a run as a failure. The writer holds it until the file is in place.
    path = tmp_path / "checkpoint.pt"

    def interrupted_write(handle):
        signal.raise_signal(signal.SIGINT)
        handle.write(b"whole")

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, interrupted_write, mode="wb")
    assert path.read_bytes() == b"whole" and not list(tmp_path.glob(".*"))
