"""Import of official UniMatch logs: both format variants, from excerpts (always) and the full shipped logs."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmark.report.__main__ import main
from benchmark.report.logs_import import parse_log

EXCERPTS = Path(__file__).parents[1] / "fixtures" / "unimatch_logs"
SHIPPED = Path("/work/shared/reference/unimatch-logs")
PASCAL_LOG = SHIPPED / "pascal-classic-r101-92-run1.log"
CITYSCAPES_LOG = SHIPPED / "cityscapes-r101-1_16.log"


def test_2022_format_meanIOU_and_Mask():
    log = parse_log((EXCERPTS / "pascal_meanIOU_excerpt.log").read_text())
    assert (log.mean_key, log.mask_key) == ("meanIOU", "Mask")
    assert [(e.epoch, e.miou) for e in log.evaluations] == [(27, 75.46), (28, 74.46)]
    assert (log.best.epoch, log.best.miou, log.last.miou) == (27, 75.46, 74.46)
    assert log.best.mode == "original"
    assert len(log.best.per_class) == 21 and "tv/monitor" in log.best.per_class
    assert log.config["dataset"] == "pascal" and log.config["backbone"] == "resnet101"


def test_2023_format_MeanIoU_Mask_ratio_sliding_window():
    log = parse_log((EXCERPTS / "cityscapes_MeanIoU_excerpt.log").read_text())
    assert (log.mean_key, log.mask_key) == ("MeanIoU", "Mask ratio")
    assert [(e.epoch, e.miou) for e in log.evaluations] == [(194, 76.59), (195, 75.48)]
    assert log.best.mode == "sliding_window"
    assert len(log.best.per_class) == 19 and "traffic light" in log.best.per_class
    assert log.config["labeled_id_path"] == "splits/cityscapes/1_16/labeled.txt"


def test_resumed_log_keeps_the_later_evaluation_of_a_repeated_epoch():
    text = "\n".join([
        "[t][    INFO] ===========> Epoch: 0, LR: 0.001, Previous best: 0.00",
        "[t][    INFO] ***** Evaluation ***** >>>> Class [0 road] IoU: 10.00",
        "[t][    INFO] ***** Evaluation ***** >>>> meanIOU: 10.00",
        "[t][    INFO] ===========> Epoch: 1, LR: 0.001, Previous best: 10.00",
        "[t][    INFO] ***** Evaluation ***** >>>> meanIOU: 30.00",
        "[t][    INFO] ===========> Epoch: 1, LR: 0.001, Previous best: 10.00",     # resumed: epoch 1 again
        "[t][    INFO] ***** Evaluation ***** >>>> Class [0 road] IoU: 20.00",
        "[t][    INFO] ***** Evaluation ***** >>>> MeanIoU: 20.00",
    ])
    log = parse_log(text)
    assert [(e.epoch, e.miou) for e in log.evaluations] == [(0, 10.0), (1, 20.0)]
    assert log.best.miou == 20.0 and log.best.per_class == {"road": 20.0} and log.best.mode is None


@pytest.mark.parametrize("path, expected", [(PASCAL_LOG, 75.46), (CITYSCAPES_LOG, 76.59)])
def test_full_shipped_logs_best_is_the_maximum(path, expected):
    if not path.exists():
        pytest.skip(f"shared reference logs not present at {SHIPPED} (excerpts are tested above)")
    text = path.read_text()
    # Independent reading: every mean-IoU number in the file, whichever spelling.
    values = [float(v) for v in re.findall(r"(?:meanIOU|MeanIoU): ([\d.]+)", text)]
    log = parse_log(text)
    assert len(log.evaluations) == len(values)
    assert log.best.miou == max(values) == expected


def test_import_log_cli_writes_a_reference_results_file(tmp_path, capsys):
    results = tmp_path / "results"
    rc = main(["import-log", str(EXCERPTS / "cityscapes_MeanIoU_excerpt.log"), "--name", "UniMatch official R101",
               "--results", str(results)])
    assert rc == 0
    path = results / "references" / "cityscapes" / "1_16" / "unimatch-official-r101.json"   # split from the log
    rec = json.loads(path.read_text())
    assert rec["kind"] == "reference_log" and rec["method"] == "unimatch" and rec["backbone"] == "resnet101"
    assert rec["best"] == {"epoch": 194, "miou": 76.59, "per_class": rec["best"]["per_class"]}
    assert rec["last"]["miou"] == 75.48 and len(rec["curve"]) == 2
    assert "76.59" in capsys.readouterr().out


def test_import_log_errors_are_one_line(tmp_path, capsys):
    pascal = str(EXCERPTS / "pascal_meanIOU_excerpt.log")
    assert main(["import-log", pascal, "--name", "x", "--results", str(tmp_path)]) == 2   # split unknown
    assert main(["import-log", pascal, "--name", "x", "--split", "92", "--dataset", "cityscapes",
                 "--results", str(tmp_path)]) == 2
    not_a_log = tmp_path / "notes.txt"
    not_a_log.write_text("hello\n")
    assert main(["import-log", str(not_a_log), "--name", "x", "--results", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "pass --split" in err[0] and "cityscapes" in err[1] and "no evaluation lines" in err[2]
