"""`data.epoch_order: official` (the recipe profiles): the official DistributedSampler order, padding, dropping,
shared permutation and number of steps, checked against torch's DistributedSampler + DataLoader(drop_last)
as the official code builds them, for every split of the published manifest."""
from __future__ import annotations

from pathlib import Path

import pytest
from torch.utils.data import DataLoader, DistributedSampler

from benchmark.train.config import resolve
from benchmark.train.data_plan import Streams, plan_data
from benchmark.train.schedule import epoch_steps
from benchmark.train.run_setup import build_method
from datasets.official_order import OfficialOrder

MANIFEST = Path("/work/shared/splits/unimatch/MANIFEST.txt")
GPUS, BATCH = 4, 2          # the official recipe: 2 images per GPU on 4 GPUs (supervised: doubled to 4)


def manifest_splits() -> list[tuple[str, str, int, int | None]]:
    """(dataset, split, #labeled, #unlabeled or None) of every published split."""
    if not MANIFEST.exists():
        return []
    counts = {}
    for line in MANIFEST.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        _, lines, path = line.split()
        parts = path.split("/")
        if len(parts) == 3:
            counts.setdefault((parts[0], parts[1]), {})[parts[2]] = int(lines)
    return [(d, s, c["labeled.txt"], c.get("unlabeled.txt")) for (d, s), c in sorted(counts.items())]


SPLITS = manifest_splits()


def official_loader_steps(length: int, batch: int) -> int:
    """len() of the official train loader: DistributedSampler on GPU 0 of 4, DataLoader with drop_last."""
    data = range(length)
    return len(DataLoader(data, batch_size=batch, sampler=DistributedSampler(data, num_replicas=GPUS, rank=0),
                          drop_last=True))


def official_gpu_order(length: int, gpu: int, epoch: int, seed: int = 0) -> list[int]:
    sampler = DistributedSampler(range(length), num_replicas=GPUS, rank=gpu, shuffle=True, seed=seed)
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.skipif(not SPLITS, reason="the published split manifest is not on this machine")
@pytest.mark.parametrize("dataset, split, num_labeled, num_unlabeled", SPLITS,
                         ids=[f"{d}/{s}" for d, s, _, _ in SPLITS])
def test_steps_per_epoch_are_the_official_loaders_for_every_published_split(dataset, split, num_labeled,
                                                                           num_unlabeled):
    profile = {"pascal": "pascal", "cityscapes": "cityscapes", "coco": "coco"}[dataset]
    cfg = resolve(profile=profile, method="unimatch")
    for world_size in (1, 2, 4):
        if num_unlabeled is not None:    # the COCO unlabeled lists are not published in the manifest
            assert epoch_steps(cfg, num_labeled, num_unlabeled, BATCH * GPUS // world_size, world_size) == \
                official_loader_steps(num_unlabeled, BATCH), world_size
        # supervised: one pass over the labeled set at the doubled batch
        assert epoch_steps(cfg, num_labeled, 0, 2 * BATCH * GPUS // world_size, world_size) == \
            official_loader_steps(num_labeled, 2 * BATCH), world_size


@pytest.mark.parametrize("num_labeled, length, batch", [(5, 13, 2), (5, 13, 3), (4, 16, 2), (3, 3, 1)])
@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_order_padding_dropping_and_shared_permutation_are_the_official_samplers(num_labeled, length, batch,
                                                                                world_size):
    labeled = [OfficialOrder(num_labeled, length, 0, GPUS, batch, 0, r, world_size) for r in range(world_size)]
    unlabeled = [OfficialOrder(length, length, 0, GPUS, batch, 0, r, world_size) for r in range(world_size)]
    steps = official_loader_steps(length, batch)
    assert labeled[0].steps_per_epoch == unlabeled[0].steps_per_epoch == steps
    labeled_slots = labeled[0].keys_per_copy
    for epoch in range(3):
        gpu_orders = [official_gpu_order(length, gpu, epoch) for gpu in range(GPUS)]
        for step in range(steps):
            # The step's batch over all processes, rank by rank: GPU 0's batch, GPU 1's, ...
            expected = [j for order in gpu_orders for j in order[step * batch:(step + 1) * batch]]
            got_u = [k for o in unlabeled for k in o.step_keys(epoch * steps + step)]
            got_l = [k for o in labeled for k in o.step_keys(epoch * steps + step)]
            assert [k % length for k in got_u] == expected
            # One permutation: the labeled loader's index is the unlabeled one's, into the repeated id list,
            # whose entry j is id j % n (the first ids keep the extra copy).
            assert [k % labeled_slots for k in got_l] == expected
            assert [k % num_labeled for k in got_l] == [j % num_labeled for j in expected]
        # Dropped: what the epoch's steps leave over never appears; keys are new every epoch.
        used = [j for order in gpu_orders for j in order[:steps * batch]]
        seen = [k for o in unlabeled for s in range(steps) for k in o.step_keys(epoch * steps + s)]
        assert sorted(k % length for k in seen) == sorted(used)
        assert all(2 * epoch * length <= k < (2 * epoch + 2) * length for k in seen)
        # Padding: a padded duplicate has the id of the entry it repeats but a key (augmentation) of its own.
        assert len(set(seen)) == len(seen)


def test_streams_follow_the_official_order_on_any_world_size(tiny_data, tmp_path):
    def cfg_for(method, split="1_8"):
        return resolve(profile="smoke", method=method, split=split, overrides=[
            f"data.root={tiny_data}", f"output.results_dir={tmp_path}",
            "data.epoch_order=official", "data.mix_source=same_ids", "train.loss_shards=4",
            "train.total_batch_size=8"])

    cfg = cfg_for("fixmatch")
    plan = plan_data(cfg)

    def streams(world_size, rank, start=0):
        method = build_method(cfg, plan.spec.num_classes, world_size)
        return Streams(cfg, plan, method.needs(), 8 // world_size, start, rank, world_size)

    one = streams(1, 0)
    assert (one.num_labeled, one.num_unlabeled) == (4, 28)
    assert one.steps_per_epoch == official_loader_steps(28, BATCH)
    for step in (0, 2, 3, 7):
        keys = one.samplers["unlabeled"].step_keys(step)
        assert one.samplers["mix"].step_keys(step) == keys                     # same_ids
        halves = [streams(2, r).samplers["unlabeled"].step_keys(step) for r in (0, 1)]
        assert halves[0] + halves[1] == keys
    resumed = streams(1, 0, start=3)
    assert next(iter(resumed.samplers["unlabeled"])) == one.samplers["unlabeled"].step_keys(3)[0]
    # A labeled-only method's epoch is one official pass over the labeled set at its own batch.
    sup = cfg_for("supervised", split="full")
    labeled_only = Streams(sup, plan_data(sup), frozenset(), 16, 0)     # the doubled batch, 4 per GPU
    assert labeled_only.num_labeled == 32
    assert labeled_only.steps_per_epoch == official_loader_steps(32, 4)


@pytest.mark.skipif(not SPLITS, reason="the published split manifest is not on this machine")
def test_print_config_shows_the_schedule_for_a_world_size(capsys, monkeypatch):
    from benchmark.train.config import ConfigError
    from benchmark.train.command import main
    args = ["--profile", "pascal", "--method", "unimatch", "--split", "366", "--print-config",
            f"data.split_dir={MANIFEST.parent / 'pascal'}"]
    steps = official_loader_steps(10216, BATCH)
    for world_size in (1, 2, 4):
        assert main([*args, "--world-size", str(world_size)]) == 0
        tail = capsys.readouterr().out.splitlines()[-3:]
        per = 8 // world_size
        assert tail[0] == (f"# on {world_size} process(es): batch per process {per} labeled + {per} unlabeled "
                           f"(in total 8 + 8), {4 // world_size} loss shard(s) per process")
        assert tail[1] == f"# steps per epoch {steps} (one pass over 10216 unlabeled images)"
        assert tail[2] == f"# {80 * steps} steps, evaluation every {steps} steps (80 evaluations)"
    monkeypatch.setenv("WORLD_SIZE", "2")                     # as torchrun sets it
    assert main(args) == 0
    assert "# on 2 process(es)" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="does not divide over 3 processes"):
        main([*args, "--world-size", "3"])
