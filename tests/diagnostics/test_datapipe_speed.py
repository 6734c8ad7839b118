"""The data-pipeline speed tool: per-worker figures from the trainer's dataset, workers for a step rate."""
from __future__ import annotations

import json

import pytest

from benchmark.diagnostics import datapipe_speed, steptime
from datasets.semi import SemiDataset


def test_workers_follow_from_the_slower_stream():
    figures = {"labeled_per_s": 40.0, "unlabeled_per_s": 10.0}
    # 2 steps/s of batch 8: labeled loader 16/40 -> 1 worker, each unlabeled loader 16/10 -> 2 workers
    need = datapipe_speed.workers_needed(figures, step_rate=2.0, batch=8)
    assert need["data_workers"] == 2 and need["processes_per_gpu"] == 6
    assert need["cores_busy"] == pytest.approx(16 / 40 + 2 * 16 / 10)
    assert datapipe_speed.workers_needed(figures, step_rate=1.25, batch=8)["data_workers"] == 1   # exactly 10/s


def test_measures_both_streams_on_generated_images_and_names_the_workers(tmp_path, capsys):
    out = tmp_path / "pipe.json"
    # through steptime's --data, as the README shows it
    assert steptime.main(["--data", "--images", "pascal", "--samples", "2", "--step-rate", "0.5",
                          "--json", str(out)]) == 0
    (row,) = json.loads(out.read_text())
    assert row["size"] == "500x375" and row["crop"] == 321
    assert row["labeled_per_s"] > 0 and row["unlabeled_per_s"] > 0 and row["data_workers"] >= 1
    assert "data.workers for 0.50 steps/s" in capsys.readouterr().out


def test_items_are_readable_by_the_trainers_dataset(tmp_path):
    image_set = datapipe_speed.IMAGE_SETS["pascal"]
    items = datapipe_speed.generate_tree(tmp_path, image_set, count=2)
    sample = SemiDataset(root=tmp_path, items=items, mode="train_u", crop_size=image_set.crop,
                         num_classes=image_set.num_classes, views=datapipe_speed.unlabeled_views())[0]
    assert set(sample) == {"weak", "ignore", "strong1", "strong2", "box1", "box2"}
    assert sample["weak"].shape == (3, 321, 321)


def test_step_rate_from_steptime_json_takes_the_fastest_unimatch_variant(tmp_path):
    path = tmp_path / "steps.json"
    path.write_text(json.dumps([{"method": "unimatch", "variant": "fp32", "step_s": 0.5},
                                {"method": "unimatch", "variant": "bf16", "step_s": 0.25},
                                {"method": "unimatch", "variant": "compile", "error": "x"},
                                {"method": "supervised", "variant": "bf16", "step_s": 0.1}]))
    assert datapipe_speed.step_rate_from(str(path)) == 4.0


def test_unknown_image_set_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        datapipe_speed.main(["--images", "coco"])
    assert exc.value.code == 2 and "unknown --images coco" in capsys.readouterr().err
