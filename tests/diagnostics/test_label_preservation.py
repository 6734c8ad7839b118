"""The label-preservation check: a view that keeps the labels costs nothing, one that destroys the cue costs
mIoU; a bad run folder is one error line; the grid checks only what is not current; the report shows the
records, or says they are not available."""
from __future__ import annotations

import json
import os
import shutil
from types import SimpleNamespace

import pytest
import torch
import yaml
from PIL import Image

from benchmark.errors import run_main
from benchmark.diagnostics import label_preservation
from benchmark.diagnostics.label_record import RECORD_NAME, make_record
from benchmark.grid import runner
from benchmark.grid.cells import REFERENCE_OVERRIDE, Cell
from benchmark.grid.label_check import unchecked
from benchmark.grid.local import CellResult
from benchmark.report.__main__ import main as report_main
from benchmark.report.label_check import TITLE
from benchmark.train.config import resolve
from benchmark.train.data_plan import val_loader
from benchmark.train.evaluate import ConfusionMatrix
from benchmark.train.run_state import CHECKPOINT
from benchmark.train.trainer import Trainer
from tests.fixtures.report_factory import write_run


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_data):
    """A supervised run on all labels of the tiny dataset, trained until it predicts more than the class
    frequencies (a few seconds)."""
    cfg = resolve(profile="smoke", method="supervised", split="full", overrides=[
        f"data.root={tiny_data}", f"output.results_dir={tmp_path_factory.mktemp('label_check')}",
        "train.iters=60", "eval.every=60", "train.batch_size=8", "train.lr=0.01"])
    trainer = Trainer(cfg, progress=False)
    trainer.fit()
    return trainer


def test_a_view_that_keeps_the_labels_costs_nothing(trained):
    record = label_preservation.measure(trained.run_dir, draws=2, view=lambda image, rng: image, progress=False)
    assert record["strong"] == record["weak"]
    assert record["difference"]["miou"] == 0.0 and set(record["difference"]["per_class"].values()) == {0.0}


def grey(image: Image.Image, rng) -> Image.Image:
    return Image.new("RGB", image.size, (128, 128, 128))


def test_a_view_that_destroys_the_cue_costs_miou(trained):
    masks = [batch["mask"] for batch in val_loader(trained.cfg, trained.plan)]
    num_classes = trained.plan.spec.num_classes

    def constant_prediction(label: int) -> float:
        matrix = ConfusionMatrix(num_classes)
        for mask in masks:
            matrix.update(torch.full_like(mask, label), mask)
        return matrix.miou(trained.cfg.eval.absent)

    floor = max(map(constant_prediction, range(num_classes)))   # what the class frequencies alone give
    record = label_preservation.measure(trained.run_dir, draws=1, view=grey, progress=False)
    assert record["weak"]["miou"] > floor + 5, "the fixture run learned too little to test this"
    assert record["strong"]["miou"] < record["weak"]["miou"] - 5
    assert record["difference"]["miou"] == pytest.approx(record["strong"]["miou"] - record["weak"]["miou"])


def test_cli_writes_a_reproducible_record_and_prints_the_table(trained, capsys):
    assert label_preservation.main([str(trained.run_dir), "--draws", "2", "--no-progress"]) == 0
    record = json.loads((trained.run_dir / RECORD_NAME).read_text())
    assert list(record["weak"]["per_class"]) == list(trained.plan.spec.class_names)
    assert record["view"] == "datasets.transforms.strong_color" and record["draws"] == 2
    assert f"last checkpoint (step {trained.cfg.train.iters})" in record["weights"]
    assert record == label_preservation.measure(trained.run_dir, draws=2, progress=False)   # seeded
    last = json.loads((trained.run_dir / "summary.json").read_text())["last"]
    assert record["weak"]["miou"] == last["miou"]       # the weak view is the trainer's own evaluation
    out = capsys.readouterr().out
    assert "strong − weak" in out and "mIoU" in out


def _broken(tmp_path, trained, case: str):
    folder = tmp_path / "run"
    if case == "missing folder":
        return folder, str(folder)
    folder.mkdir()
    if case == "no config":
        return folder, "config.yaml"
    config = yaml.safe_load((trained.run_dir / "config.yaml").read_text())
    if case == "unknown dataset":
        config["data"]["dataset"] = "nosuchdataset"
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    if case == "corrupt checkpoint":
        (folder / CHECKPOINT).write_bytes(b"half a checkpoint")
    elif case != "no checkpoint":
        shutil.copy(trained.run_dir / CHECKPOINT, folder / CHECKPOINT)
    return folder, {"no checkpoint": "no checkpoint", "corrupt checkpoint": "cannot be read",
                    "unknown dataset": "nosuchdataset"}[case]


@pytest.mark.parametrize("case", ["missing folder", "no config", "no checkpoint", "corrupt checkpoint",
                                  "unknown dataset"])
def test_a_bad_run_folder_is_one_error_line(tmp_path, trained, capsys, case):
    folder, culprit = _broken(tmp_path, trained, case)
    with pytest.raises(SystemExit) as exc:
        run_main(lambda: label_preservation.main([str(folder), "--no-progress"]))
    err = capsys.readouterr().err.strip()
    assert exc.value.code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: ") and culprit in err


def test_the_grid_checks_finished_references_whose_record_is_not_current(tmp_path):
    def cell(seed, overrides=(REFERENCE_OVERRIDE,)):
        return Cell("supervised", "animals", "full", seed, overrides=overrides)

    folders = {seed: tmp_path / f"seed{seed}" for seed in range(4)}
    for folder in folders.values():
        folder.mkdir()
        (folder / CHECKPOINT).write_bytes(b"")
    (folders[1] / RECORD_NAME).write_text("{}")                 # current: written after the checkpoint
    (folders[2] / RECORD_NAME).write_text("{}")
    os.utime(folders[2] / RECORD_NAME, (0, 0))                  # stale: the run was trained again since
    results = [CellResult(cell(seed), "skipped") for seed in range(3)] + [
        CellResult(cell(3, ()), "done"), CellResult(cell(4), "failed")]
    seed_of = {c.cell: c.cell.seed for c in results}

    def plans(c):
        return SimpleNamespace(config=resolve(profile="smoke", method="supervised"), run_dir=folders.get(seed_of[c]))

    assert unchecked(results, plans) == [folders[0], folders[2]]   # not grid cells, nor failed ones


@pytest.mark.slow
def test_the_grid_checks_its_reference_cell_once(tmp_path, tiny_data):
    argv = ["--profile", "smoke", "--methods", "supervised", "--splits", "1_128", "--seeds", "1", "--no-ablations",
            "--no-report", "--jobs", "1", "--results-dir", str(tmp_path), "--data-root", str(tiny_data)]
    assert runner.main(argv) == 0
    records = list(tmp_path.rglob(RECORD_NAME))
    assert [r.parent.parent.parent.name for r in records] == ["full"]     # the reference cell, not 1_128
    assert json.loads(records[0].read_text())["draws"] == label_preservation.DEFAULT_DRAWS
    stamp = records[0].stat().st_mtime_ns
    assert runner.main(argv) == 0 and records[0].stat().st_mtime_ns == stamp    # current: not checked again


def _reference_tree(tmp_path, with_records: bool) -> tuple[str, str]:
    """Two seeds of an all-labels reference run, with or without records; the rendered Markdown and PDF text."""
    names = ["background", "bird"]
    results, out = tmp_path / "results", tmp_path / "reports"
    for seed, (weak, strong) in enumerate([((80.0, 40.0), (78.0, 20.0)), ((82.0, 44.0), (80.0, 30.0))]):
        folder = write_run(results, "animals", "full", "supervised", seed, 60.0, per_class=dict(zip(names, weak)))
        (folder / "config.yaml").write_text(yaml.safe_dump({"output": {"reference": True}}))
        if with_records:
            scores = {"weak": (sum(weak) / 2, list(weak)), "strong": (sum(strong) / 2, list(strong))}
            (folder / RECORD_NAME).write_text(json.dumps(make_record(
                names, scores, view="datasets.transforms.strong_color", view_doc="Jitter and blur.", draws=4, seed=0,
                weights="last checkpoint (step 400), which is also the run's best on val")))
    assert report_main(["--results", str(results), "--out", str(out)]) == 0
    pypdf = pytest.importorskip("pypdf", reason="pypdf reads the PDF's text (requirements-test.txt)")
    pdf = "\n".join(page.extract_text() for page in pypdf.PdfReader(out / "report.pdf").pages)
    markdown = (out / "report.md").read_text()
    return markdown[markdown.index(TITLE):], pdf


def test_report_section_averages_the_reference_seeds(tmp_path):
    markdown, pdf = _reference_tree(tmp_path, with_records=True)
    assert "mean over 2 seeds" in markdown
    rows = {cells[0]: cells[1:] for cells in ([c.strip() for c in line.strip("|").split("|")]
                                              for line in markdown.splitlines() if line.startswith("|"))}
    assert rows["bird"] == ["42.00", "25.00", "-17.00"] and rows["mIoU"] == ["61.50", "52.00", "-9.50"]
    assert "Jitter and blur. (4 draws per image" in markdown and "(2 runs)" in markdown
    assert TITLE in pdf and "-17.00" in pdf and "-9.50" in pdf


def test_report_section_says_not_available_without_records(tmp_path):
    markdown, pdf = _reference_tree(tmp_path, with_records=False)
    section_text = markdown.split("\n## ")[0]
    assert "not available" in section_text and "|" not in section_text and TITLE in pdf
