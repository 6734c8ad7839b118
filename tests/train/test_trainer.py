"""The one training loop: smoke runs of every method, determinism, resume, schedule, result files, bad input."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
import yaml

from benchmark.errors import run_main
from benchmark.train import command as train_cli
from benchmark.train.config import resolve
from benchmark.train.trainer import CHECKPOINT, NonFiniteLossError, Trainer, poly_lr
from methods.registry import all_methods


def make_cfg(data_root, results, method="supervised", iters=4, extra=()):
    return resolve(profile="smoke", method=method, overrides=[
        f"data.root={data_root}", f"output.results_dir={results}",
        f"train.iters={iters}", "eval.every=2", *extra])


def fit(cfg, **kw):
    return Trainer(cfg, progress=False).fit(**kw)


def scores(summary):
    """What must reproduce exactly: iteration, mIoU and per-class IoU (not timings)."""
    return [{k: v for k, v in summary[which].items() if k != "elapsed_s"} for which in ("best", "last")]


@pytest.mark.parametrize("method", sorted(all_methods()))
def test_two_iteration_smoke_of_every_registered_method(method, tiny_data, tmp_path):
    summary = fit(make_cfg(tiny_data, tmp_path, method, iters=2))
    run = next((tmp_path / "runs").rglob("summary.json")).parent
    assert run.relative_to(tmp_path).parts == ("runs", "animals_tiny", summary["split"], method, "seed0")
    assert summary["status"] == "complete" and summary["method"] == method
    for name in ("config.yaml", "metrics.jsonl", "summary.json", CHECKPOINT, "train_log.jsonl"):
        assert (run / name).exists(), name
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["iter"] for m in metrics] == [2]
    assert set(metrics[0]["per_class"]) == set(summary["class_names"])
    assert 0.0 <= summary["best"]["miou"] <= 100.0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["method"]["name"] == method and saved["train"]["iters"] == 2


def test_same_seed_same_metrics_and_other_seed_differs(tiny_data, tmp_path):
    a = fit(make_cfg(tiny_data, tmp_path / "a", "fixmatch"))
    b = fit(make_cfg(tiny_data, tmp_path / "b", "fixmatch"))
    c = fit(make_cfg(tiny_data, tmp_path / "c", "fixmatch", extra=["train.seed=1"]))
    assert scores(a) == scores(b)
    wa = torch.load(next((tmp_path / "a").rglob(CHECKPOINT)), weights_only=True)["model"]
    wc = torch.load(next((tmp_path / "c").rglob(CHECKPOINT)), weights_only=True)["model"]
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_resume_after_crash_equals_straight_run(tiny_data, tmp_path, monkeypatch):
    straight = fit(make_cfg(tiny_data, tmp_path / "straight", "unimatch"))

    cfg = make_cfg(tiny_data, tmp_path / "crash", "unimatch")
    trainer = Trainer(cfg, progress=False)
    real = trainer.method.losses

    def crash_at_step_3(model, batch, step):
        if step.step == 2:
            raise RuntimeError("simulated crash")
        return real(model, batch, step)

    monkeypatch.setattr(trainer.method, "losses", crash_at_step_3)
    with pytest.raises(RuntimeError, match="simulated crash"):
        trainer.fit()
    assert not (trainer.run_dir / "summary.json").exists()
    assert torch.load(trainer.run_dir / CHECKPOINT, weights_only=True)["step"] == 2
    resumed = fit(make_cfg(tiny_data, tmp_path / "crash", "unimatch"))

    assert scores(resumed) == scores(straight)
    w1 = torch.load(next((tmp_path / "straight").rglob(CHECKPOINT)), weights_only=True)["model"]
    w2 = torch.load(trainer.run_dir / CHECKPOINT, weights_only=True)["model"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    iters = [json.loads(l)["iter"] for l in (trainer.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert iters == [2, 4]


def test_finished_run_is_not_redone_and_other_config_is_refused(tiny_data, tmp_path):
    first = fit(make_cfg(tiny_data, tmp_path))
    again = fit(make_cfg(tiny_data, tmp_path))
    assert again == first
    # same run folder, different recipe, interrupted checkpoint present: refuse rather than mix recipes
    (next(tmp_path.rglob("summary.json"))).unlink()
    from benchmark.train.config import ConfigError
    with pytest.raises(ConfigError, match="different config"):
        fit(make_cfg(tiny_data, tmp_path, extra=["train.lr=0.5"]))
    assert fit(make_cfg(tiny_data, tmp_path, extra=["train.lr=0.5"]), fresh=True)["status"] == "complete"


def test_poly_schedule_matches_official_formula(tiny_data, tmp_path):
    cfg = make_cfg(tiny_data, tmp_path, iters=3, extra=["train.lr=0.1", "train.lr_multi=10"])
    trainer = Trainer(cfg, progress=False)
    seen = []
    real_step = torch.optim.SGD.step

    def record(self, *a, **k):
        seen.append([g["lr"] for g in self.param_groups])
        return real_step(self, *a, **k)

    torch.optim.SGD.step = record
    try:
        trainer.fit()
    finally:
        torch.optim.SGD.step = real_step
    # The official loop sets the lr after step i from i itself: steps 0 and 1 run at the base lr.
    expected = [0.1, 0.1, 0.1 * (1 - 1 / 3) ** 0.9]
    assert [s[0] for s in seen] == pytest.approx(expected)
    assert [s[1] for s in seen] == pytest.approx([10 * e for e in expected])
    assert poly_lr(0.01, 5, 10, 0.9) == pytest.approx(0.01 * 0.5 ** 0.9)


def test_nan_loss_names_the_term(tiny_data, tmp_path, monkeypatch):
    trainer = Trainer(make_cfg(tiny_data, tmp_path, "fixmatch"), progress=False)
    real = trainer.method.losses

    def nan_loss(model, batch, step):
        out = real(model, batch, step)
        out.terms["loss_s"] = out.terms["loss_s"] * float("nan")
        return out

    monkeypatch.setattr(trainer.method, "losses", nan_loss)
    with pytest.raises(NonFiniteLossError, match="loss_s .* step 1"):
        trainer.fit()
    text = (trainer.run_dir / "summary.json").read_text()
    assert "NaN" not in text   # JSON has no NaN: the figure is null and the status says why
    diverged = json.loads(text)
    assert diverged["status"] == "diverged" and diverged["best"]["miou"] is None


def cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(lambda: train_cli.main(args))
    return exit_info.value.code, capsys.readouterr().err


def fixture_dataset() -> str:
    """The tiny dataset under another name, without the embedded dataset's self-generation: a damaged
    folder must be reported, not silently regenerated (as a real dataset's would be)."""
    import dataclasses
    from datasets.catalog import all_specs, get_spec, register_spec
    if "fixture_tiny" not in all_specs():
        register_spec(dataclasses.replace(get_spec("animals_tiny"), name="fixture_tiny", ensure_draw=None))
    return "fixture_tiny"


def corrupt_copy(tiny_data, tmp_path, damage):
    root = tmp_path / "data"
    shutil.copytree(tiny_data / "draw0", root)
    damage(root)
    return ["--profile", "smoke", "--dataset", fixture_dataset(), "--no-progress", f"data.root={root}",
            f"data.split_dir={root}/splits", "data.draws=single", f"output.results_dir={tmp_path}/results",
            "train.iters=2"]


def test_embedded_dataset_generates_itself_when_missing(tmp_path):
    cfg = resolve(profile="smoke", overrides=[f"data.root={tmp_path}/gen",
                                              f"output.results_dir={tmp_path}/results", "train.iters=1",
                                              "eval.every=1"])
    assert fit(cfg)["status"] == "complete"
    assert (tmp_path / "gen" / "draw0" / "splits" / "val.txt").exists()


def first_val_pair(root):
    image, mask = (root / "splits" / "val.txt").read_text().split("\n")[0].split()
    return root / image, root / mask


@pytest.mark.parametrize("case, culprit", [
    ("unknown_method", "unknown method 'nope'"),
    ("unknown_split", "unknown split '1_999'"),
    ("unknown_key", "train.itres"),
    ("missing_data", "data folder not found"),
    ("missing_file", "missing"),
    ("corrupt_image", ".png"),
    ("mask_out_of_range", "out of range|outside"),
    ("size_mismatch", "size"),
])
def test_bad_input_gives_one_clear_line_and_exit_2(case, culprit, tiny_data, tmp_path, capsys):
    from PIL import Image
    args = corrupt_copy(tiny_data, tmp_path, lambda root: None)
    root = tmp_path / "data"
    image, mask = first_val_pair(root)
    if case == "unknown_method":
        args += ["--method", "nope"]
    elif case == "unknown_split":
        args += ["--split", "1_999"]
    elif case == "unknown_key":
        args += ["train.itres=3"]
    elif case == "missing_data":
        args += [f"data.root={tmp_path}/nowhere"]
    elif case == "missing_file":
        image.unlink()
    elif case == "corrupt_image":
        image.write_bytes(b"not an image at all")
    elif case == "mask_out_of_range":
        m = Image.open(mask)
        pixels = m.load()
        pixels[0, 0] = 50
        m.save(mask)
    elif case == "size_mismatch":
        Image.open(mask).resize((7, 5)).save(mask)
    code, err = cli(args, capsys)
    assert code == 2
    lines = [l for l in err.strip().splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    assert "Traceback" not in err
    import re
    assert re.search(culprit, lines[0]), lines[0]


def test_a_runs_checkpoint_serves_as_backbone_weights_of_another_run(tiny_data, tmp_path):
    fit(make_cfg(tiny_data, tmp_path / "pre"))
    checkpoint = next((tmp_path / "pre").rglob(CHECKPOINT))
    trainer = Trainer(make_cfg(tiny_data, tmp_path / "fine", extra=[f"model.weights={checkpoint}"]), progress=False)
    trainer.setup()
    saved = torch.load(checkpoint, weights_only=True)["model"]
    for name, value in trainer.model.backbone.state_dict().items():
        assert torch.equal(value, saved[f"backbone.{name}"]), name


def test_an_old_train_log_reads_under_the_new_scalar_name(tmp_path):
    """`mask_ratio` (share of confident pixels) is logged as `confident_ratio` now; old logs read the same."""
    from benchmark.train.run_state import read_train_log
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"iter": 1, "loss": 1.0, "mask_ratio": 0.4}\n{"iter": 2, "loss": 0.9, "confident_ratio": 0.5}\n')
    assert [r["confident_ratio"] for r in read_train_log(log)] == [0.4, 0.5]
