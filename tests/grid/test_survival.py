"""Issue 26: a full disk during training (torch's zip writer hides the ENOSPC) and during the report's PDF, the
NaN message's checkpoint claim, the peak memory of a rebuilt summary, a read-only results folder with every cell
finished, custom data marked in the main table, per-class IoU of imported logs alone."""
from __future__ import annotations

import errno
import json
import os

import pytest
import torch

from benchmark.grid import runner
from benchmark.train import command as train_cli
from datasets.io import DiskFullError, atomic_write
from fixtures.report_factory import write_run
from test_errors_io import copied_dataset, exit_and_err, train_args


class FullAfter:
    """A file that takes `room` bytes, then answers every write as a full disk does."""

    def __init__(self, handle, room: int):
        self.handle, self.room = handle, room

    def write(self, data) -> int:
        if len(data) > self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def flush(self) -> None:
        self.handle.flush()


def test_torch_zip_writer_over_a_full_disk_is_a_disk_full_error(tmp_path):
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(b"previous")
    with pytest.raises(DiskFullError, match=f"the disk is full: cannot write {path}"):
        atomic_write(path, lambda f: torch.save({"w": torch.zeros(50_000)}, FullAfter(f, 4096)), mode="wb")
    assert path.read_bytes() == b"previous" and os.listdir(tmp_path) == ["checkpoint.pt"]


def test_a_full_disk_under_torch_save_is_one_line_from_train(tiny_data, tmp_path, monkeypatch, capsys):
    dataset, root = copied_dataset(tiny_data, tmp_path)
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **kw: real_save(obj, FullAfter(f, 4096), *a, **kw))
    code, err = exit_and_err(lambda: train_cli.main(train_args(dataset, root, tmp_path / "r", "eval.every=1")),
                             capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    checkpoint = next((tmp_path / "r").rglob("metrics.jsonl")).parent / "checkpoint.pt"
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"error: the disk is full: cannot write {checkpoint}")


def test_a_full_disk_while_writing_the_pdf_names_it_and_keeps_the_old_report(tmp_path, monkeypatch, capsys):
    from benchmark.report import pdf
    from benchmark.report.__main__ import main
    results, out = tmp_path / "results", tmp_path / "reports"
    write_run(results, "pascal", "92", "unimatch", 0, 70.0)
    assert main(["--results", str(results), "--out", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in ("report.md", "report.pdf")}
    capsys.readouterr()

    def build_on_a_full_disk(self, story, *args, **kwargs):   # reportlab's own write, without a file name
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(pdf._Doc, "build", build_on_a_full_disk)
    write_run(results, "pascal", "92", "unimatch", 1, 71.0)
    assert main(["--results", str(results), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: the disk is full: cannot write {out / 'report.pdf'} (no space or quota left on its "
                   f"file system; free some space and rerun, earlier results are kept)"]
    assert {name: (out / name).read_bytes() for name in before} == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def nan_at_step(trainer_cls, monkeypatch, bad_step: int):
    real = trainer_cls.train_step

    def train_step(self, streams, step, total):
        if step + 1 == bad_step:
            from benchmark.train.trainer import NonFiniteLossError
            raise NonFiniteLossError(f"loss term total of method x is nan at step {bad_step}")
        return real(self, streams, step, total)
    monkeypatch.setattr(trainer_cls, "train_step", train_step)


@pytest.mark.parametrize("every, claim", [(4, "no checkpoint had been written yet"),
                                          (1, "the checkpoint at step 1 is kept")])
def test_the_nan_message_says_whether_a_checkpoint_is_kept(every, claim, tiny_data, tmp_path, monkeypatch):
    from benchmark.train.trainer import NonFiniteLossError, Trainer
    from test_reliability import make_cfg
    nan_at_step(Trainer, monkeypatch, 2)
    with pytest.raises(NonFiniteLossError) as info:
        Trainer(make_cfg(tiny_data, tmp_path, extra=[f"eval.every={every}"]), progress=False).fit()
    assert str(info.value).endswith(claim)


def test_a_summary_rebuilt_from_the_final_checkpoint_keeps_the_training_peak(tiny_data, tmp_path, monkeypatch):
    from benchmark.train import summary
    from benchmark.train.trainer import Trainer
    from test_reliability import make_cfg
    monkeypatch.setattr(summary, "peak_memory_mb", lambda device: 900.0)     # the session that trained
    first = Trainer(make_cfg(tiny_data, tmp_path), progress=False).fit()
    run = Trainer(make_cfg(tiny_data, tmp_path), progress=False).run_dir
    (run / "summary.json").unlink()
    monkeypatch.setattr(summary, "peak_memory_mb", lambda device: 300.0)     # one that only rebuilds
    rebuilt = Trainer(make_cfg(tiny_data, tmp_path), progress=False).fit()
    assert first["peak_memory_mb"] == rebuilt["peak_memory_mb"] == 900.0


@pytest.mark.parametrize("finished", [True, False])
def test_an_unwritable_results_folder_is_one_line_before_anything(finished, tmp_path, monkeypatch, capsys):
    from benchmark.grid.plan import CellState
    monkeypatch.setattr(runner, "prepare_data", lambda plans: pytest.fail("the grid started"))
    monkeypatch.setattr(runner, "render_reports", lambda *a: pytest.fail("the report was rendered"))
    monkeypatch.setattr(runner, "cell_state", lambda plan: CellState(
        run_dir=tmp_path, config_hash="h", total_iters=4, summary={"status": "complete"} if finished else None,
        finished=finished))
    blocker = tmp_path / "a_file"   # unwritable for root too (a chmod 555 folder is not)
    blocker.write_text("")
    results = blocker / "results"
    code, err = exit_and_err(lambda: runner.main(["--profile", "smoke", "--results-dir", str(results)]), capsys)
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and lines == [f"error: cannot write {results}: a part of the path is not a folder"], err


@pytest.mark.parametrize("field", ["split_lists", "data_draw"])
def test_a_run_on_custom_data_is_marked_in_the_main_table(field, tmp_path):
    from benchmark.report.comparison import main_table, published_table, significance_table
    from benchmark.report.labels import CUSTOM_DATA_MARK, CUSTOM_DATA_NOTE, DASH
    from benchmark.report.published import PublishedEntry
    from benchmark.report.document import Numbering
    from benchmark.report.results_store import load_results
    extra = {field: {"custom": True}}
    for seed in (0, 1):
        write_run(tmp_path, "pascal", "92", "unimatch", seed, 70.0 + seed, **extra)
        write_run(tmp_path, "pascal", "92", "supervised", seed, 60.0 - seed)
    store = load_results(tmp_path)
    table = main_table(store.runs, [], "pascal", "best", Numbering())
    cells = {row[0]: row[1] for row in table.rows}
    assert cells["UniMatch"].endswith(CUSTOM_DATA_MARK) and not cells["Supervised"].endswith(CUSTOM_DATA_MARK)
    assert CUSTOM_DATA_NOTE in table.notes
    # The significance table marks a comparison with a custom side; published-vs-reproduced leaves it out.
    significance = significance_table(store.runs, "pascal", Numbering())
    assert significance.rows[0][1] == f"92{CUSTOM_DATA_MARK}" and CUSTOM_DATA_NOTE in significance.notes
    entry = PublishedEntry(method="unimatch", dataset="pascal", split="92", backbone=None, crop=None, miou=75.2,
                           source="paper")
    published = published_table(store.runs, [], [entry], "pascal", Numbering())
    assert published.rows[0][5] == DASH and any("left out of this table" in n for n in published.notes)


def test_imported_logs_alone_get_a_per_class_table(tmp_path):
    from pathlib import Path
    from benchmark.report.__main__ import main
    log = Path(__file__).parents[1] / "fixtures" / "unimatch_logs" / "pascal_meanIOU_excerpt.log"
    results, out = tmp_path / "results", tmp_path / "reports"
    write_run(results, "pascal", "183", "unimatch", 0, 70.0)        # a run, of another split
    assert main(["--results", str(results), "import-log", str(log), "--split", "92", "--name", "official"]) == 0
    assert main(["--results", str(results), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "pascal, split 92: per-class IoU" in md
    table = md[md.index("pascal, split 92: per-class IoU"):].split("\n\n")[1]
    reference = json.loads(next((results / "references").rglob("*.json")).read_text())
    assert f"{max(reference['best']['per_class'].values()):.2f}" in table
