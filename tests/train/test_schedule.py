"""The run's schedule as the official UniMatch code derives it: steps per epoch, the lr after each step,
the CutMix source's ids, the evaluation cadence, the batch per process, OHEM's floor and the precision."""
from __future__ import annotations

import dataclasses
import itertools
import json

import pytest
import torch
import torch.nn.functional as F

from benchmark.train.config import ConfigError, resolve
from benchmark.train.data_plan import Streams, plan_data
from benchmark.train.model import build_model
from benchmark.train.run_setup import build_method
from benchmark.train.schedule import (evaluation_interval, evaluation_steps, ohem_min_kept_per_process,
                                      per_process_batch, steps_per_epoch)
from benchmark.train.trainer import CHECKPOINT, Trainer, seed_everything


def make_cfg(data_root, results, method="supervised", split="1_8", extra=()):
    return resolve(profile="smoke", method=method, split=split, overrides=[
        f"data.root={data_root}", f"output.results_dir={results}",
        *extra])


def streams_for(cfg, start=0, world_size=1, rank=0):
    method = build_method(cfg, 4)
    labeled_batch = method.labeled_batch_size(per_process_batch(cfg.train, world_size))
    return Streams(cfg, plan_data(cfg), method.needs(), labeled_batch, start, rank, world_size)


def fit(cfg):
    return Trainer(cfg, progress=False).fit()


# --- 1. a labeled-only epoch is one pass over the labeled set at its actual batch ---------------------------

def test_labeled_only_epoch_is_one_pass_at_the_doubled_batch(tiny_data, tmp_path):
    doubled = make_cfg(tiny_data, tmp_path, split="full", extra=[
        "train.batch_size=2", "train.iters=0", "train.epochs=1", "eval.every=1",
        "per_method.supervised.labeled_batch_factor=2"])
    streams = streams_for(doubled)
    assert streams.num_labeled == 32
    assert streams.steps_per_epoch == 32 // 4          # batch 2 doubled to 4: 8 steps, not 16
    assert fit(doubled)["iters"] == 8
    # The official figure the issue quotes: Pascal 92 labeled, 4 GPUs x (2 doubled to 4), 80 epochs = 400 steps.
    assert 80 * steps_per_epoch(92, 4, 4) == 400


def test_semi_supervised_epoch_is_one_pass_over_the_unlabeled_set(tiny_data, tmp_path):
    streams = streams_for(make_cfg(tiny_data, tmp_path, "fixmatch", extra=["train.batch_size=2"]))
    assert (streams.num_labeled, streams.num_unlabeled) == (4, 28)
    assert streams.steps_per_epoch == 28 // 2


# --- 2. the poly lr is set after each step for the finished step, as the official loop does -----------------

def official_supervised_loop(cfg, steps):
    """The official supervised.py loop order: forward, CE, zero_grad, backward, step; then, for the finished
    iteration i, lr = base · (1 − i/total)^0.9 (so iterations 0 and 1 both run at the base lr)."""
    plan = plan_data(cfg)
    seed_everything(cfg.train.seed)
    model = build_model(cfg.model, plan.spec.num_classes)
    optimizer = torch.optim.SGD([{"params": list(model.backbone_parameters()), "lr": cfg.train.lr},
                                 {"params": list(model.head_parameters()), "lr": cfg.train.lr * cfg.train.lr_multi}],
                                lr=cfg.train.lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)
    streams = Streams(cfg, plan, frozenset(), cfg.train.batch_size, 0)
    seen = []
    model.train()
    for i in range(steps):
        labeled = streams.next()["labeled"]
        seen.append(optimizer.param_groups[0]["lr"])
        loss = F.cross_entropy(model(labeled["image"]), labeled["mask"], ignore_index=255)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        lr = cfg.train.lr * (1 - i / steps) ** 0.9
        optimizer.param_groups[0]["lr"] = lr
        optimizer.param_groups[1]["lr"] = lr * cfg.train.lr_multi
    return model.state_dict(), seen


def test_three_steps_give_bit_identical_weights_to_the_official_loop(tiny_data, tmp_path):
    cfg = make_cfg(tiny_data, tmp_path, extra=["train.iters=3", "eval.every=3", "train.lr=0.05",
                                               "train.lr_multi=10", "train.channels_last=false"])
    reference, seen = official_supervised_loop(cfg, 3)
    assert seen == pytest.approx([0.05, 0.05, 0.05 * (2 / 3) ** 0.9])
    fit(cfg)
    trained = torch.load(next(tmp_path.rglob(CHECKPOINT)), weights_only=True)["model"]
    assert trained.keys() == reference.keys()
    assert all(torch.equal(trained[k], reference[k]) for k in reference), \
        [k for k in reference if not torch.equal(trained[k], reference[k])][:3]


# --- 3. the CutMix source batch -----------------------------------------------------------------------------

@pytest.mark.parametrize("start, world_size, rank", [(0, 1, 0), (5, 2, 1)])
def test_same_ids_mix_batch_holds_the_unlabeled_ids_augmented_anew(tiny_data, tmp_path, start, world_size, rank):
    cfg = make_cfg(tiny_data, tmp_path, "fixmatch", extra=["data.mix_source=same_ids", "train.batch_size=2"])
    streams = streams_for(cfg, start, world_size, rank)
    n = streams.num_unlabeled
    ids = {name: [key % n for key in itertools.islice(iter(streams.samplers[name]), 40)]
           for name in ("unlabeled", "mix")}
    assert ids["mix"] == ids["unlabeled"]
    batch = streams.next()
    assert not torch.equal(batch["mix"]["weak"], batch["unlabeled"]["weak"])   # augmented independently


def test_independent_mix_source_samples_other_images(tiny_data, tmp_path):
    streams = streams_for(make_cfg(tiny_data, tmp_path, "fixmatch", extra=["data.mix_source=independent"]))
    keys = {name: list(itertools.islice(iter(streams.samplers[name]), 28)) for name in ("unlabeled", "mix")}
    assert keys["mix"] != keys["unlabeled"]
    with pytest.raises(ConfigError, match="data.mix_source"):
        streams_for(make_cfg(tiny_data, tmp_path, "fixmatch", extra=["data.mix_source=shuffled"]))


def test_recipe_profiles_use_the_official_mix_source_cadence_and_total_batch():
    for profile in ("pascal", "pascal_blended", "cityscapes", "coco"):
        cfg = resolve(profile=profile)
        assert cfg.data.mix_source == "same_ids", profile
        assert cfg.eval.every_epochs == 1 and cfg.eval.every == 0, profile
        assert cfg.train.total_batch_size == 8, profile
    for profile in ("default", "smoke"):      # the embedded profiles keep their recorded behaviour
        assert resolve(profile=profile).data.mix_source == "independent"


# --- 4. evaluation cadence in epochs; the summary says how many evaluations "best" was picked from -----------

def test_epoch_interval_evaluates_after_every_epoch(tiny_data, tmp_path):
    cfg = make_cfg(tiny_data, tmp_path, extra=["train.batch_size=2", "train.iters=0", "train.epochs=3",
                                               "eval.every=0", "eval.every_epochs=1"])
    summary = fit(cfg)
    run = next(tmp_path.rglob("summary.json")).parent
    iters = [json.loads(line)["iter"] for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert iters == [2, 4, 6]                  # 4 labeled images, batch 2: 2 steps per epoch
    assert summary["evaluations"] == 3 and summary["eval_every"] == 2


def test_evaluation_steps_and_interval_rules():
    steps = lambda **kw: evaluation_interval(resolve(profile="smoke", overrides=[f"eval.{k}={v}" for k, v in
                                                                                  kw.items()]).eval, 100, 7)
    assert steps(every=0, every_epochs=2) == 14
    assert steps(every=5) == 5
    assert steps(every=0) == 10                # neither: 10 evaluations per run
    with pytest.raises(ConfigError, match="not both"):
        steps(every=5, every_epochs=1)
    assert evaluation_steps(10, 4) == [4, 8, 10]
    assert evaluation_steps(8, 4) == [4, 8]
    assert evaluation_steps(3, 7) == [3]


# --- 5. total batch over any number of processes ---------------------------------------------------------

def test_per_process_batch_follows_the_total_and_the_world_size():
    train = resolve(profile="pascal").train
    assert [per_process_batch(train, w) for w in (1, 2, 4, 8)] == [8, 4, 2, 1]
    with pytest.raises(ConfigError, match="train.total_batch_size=8 does not divide over 3 processes"):
        per_process_batch(train, 3)
    embedded = resolve(profile="smoke").train              # no total stated: batch_size is per process
    assert per_process_batch(embedded, 4) == embedded.batch_size


def test_run_records_total_batch_world_size_and_precision(tiny_data, tmp_path):
    summary = fit(make_cfg(tiny_data, tmp_path, extra=["train.total_batch_size=4", "train.iters=2",
                                                       "eval.every=2", "per_method.supervised.labeled_batch_factor=2"]))
    assert (summary["world_size"], summary["batch_per_process"], summary["total_batch_size"]) == (1, 4, 4)
    assert (summary["labeled_batch_per_process"], summary["labeled_total_batch_size"]) == (8, 8)
    assert summary["precision"] == "fp32"


def test_ohem_min_kept_is_scaled_to_the_official_per_process_floor():
    cfg = resolve(profile="cityscapes")
    assert [ohem_min_kept_per_process(cfg, w) for w in (1, 2, 4)] == [800000, 400000, 200000]
    assert build_method(cfg, 19, world_size=1).ctx.loss.ohem_min_kept == 800000
    assert build_method(cfg, 19, world_size=4).ctx.loss.ohem_min_kept == 200000
    cfg.loss = dataclasses.replace(cfg.loss, ohem_min_kept_world_size=0)   # not stated: min_kept as given, per process
    assert ohem_min_kept_per_process(cfg, 1) == 200000


# --- 6. precision --------------------------------------------------------------------------------------------

def test_a_run_departing_from_fp32_says_so(tiny_data, tmp_path):
    summary = fit(make_cfg(tiny_data, tmp_path, extra=["train.amp=bf16", "train.iters=1", "eval.every=1"]))
    assert summary["precision"] == "bf16"
