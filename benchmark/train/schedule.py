"""How a config becomes a run's schedule, as the official UniMatch code derives it: the batch each process
trains on, the steps of an epoch, the learning rate after each step, when to evaluate, OHEM's per-process
floor and the numeric precision. Kept out of the trainer so the loop reads as the loop; every rule here is
checked against the official code in tests/train/test_schedule.py and listed in docs/fidelity.md."""
from __future__ import annotations

from benchmark.train.config import Config, ConfigError, EvalConfig, TrainConfig

MIX_SOURCES = ("same_ids", "independent")
EPOCH_ORDERS = ("seeded", "official")


def poly_lr(base_lr: float, step: int, total: int, power: float) -> float:
    """The official schedule: after step `step` (0-based) the lr becomes base · (1 − step/total)^power,
    so steps 0 and 1 both run at the base lr."""
    return base_lr * (1 - step / total) ** power


def per_process_batch(train: TrainConfig, world_size: int) -> int:
    """Images per process in each of the labeled and unlabeled batches.

    `train.total_batch_size` (> 0) states the recipe's total over all processes, so one GPU with 8 images
    trains the official 4 × 2 recipe; otherwise `train.batch_size` is taken per process."""
    total = train.total_batch_size
    if total < 0:
        raise ConfigError(f"train.total_batch_size must be >= 0, got {total}")
    if total == 0:
        return train.batch_size
    if total % world_size:
        raise ConfigError(f"train.total_batch_size={total} does not divide over {world_size} processes; "
                          f"use a world size that divides it or another total")
    return total // world_size


def loss_shards_per_process(train: TrainConfig, world_size: int) -> int:
    """Virtual loss shards of each process's batch. `train.loss_shards` counts them over all processes (the
    recipe's GPU count: the official code averages each loss over each GPU's images, then DDP averages the
    GPUs), so 1 process holds all of them and the recipe's own world size holds 1 each."""
    shards = train.loss_shards
    if shards < 1:
        raise ConfigError(f"train.loss_shards must be >= 1, got {shards}")
    if shards % world_size == 0:
        per_process = shards // world_size
    elif world_size % shards == 0:
        per_process = 1      # more processes than the recipe's GPUs: each is already a smaller shard
    else:
        raise ConfigError(f"train.loss_shards={shards} does not divide over {world_size} processes, nor they "
                          f"over it")
    batch = per_process_batch(train, world_size)
    if batch % per_process:
        raise ConfigError(f"train.loss_shards={shards} gives {per_process} shards per process, which do not "
                          f"divide its batch of {batch}")
    return per_process


def steps_per_epoch(epoch_length: int, batch_per_process: int, world_size: int) -> int:
    """One pass over `epoch_length` samples at the given batch (what drop_last leaves), at least one step."""
    return max(epoch_length // (batch_per_process * world_size), 1)


def virtual_gpus(train: TrainConfig, world_size: int) -> int:
    """The GPUs the official epoch order is laid out for: the recipe's (`train.loss_shards`), or the world
    size where that is larger."""
    loss_shards_per_process(train, world_size)    # validates the pairing
    return max(train.loss_shards, world_size)


def check_epoch_order(value: str) -> str:
    if value not in EPOCH_ORDERS:
        raise ConfigError(f"data.epoch_order must be one of {', '.join(EPOCH_ORDERS)}, got {value!r}")
    return value


def epoch_steps(cfg: Config, num_labeled: int, num_unlabeled: int, labeled_batch: int, world_size: int) -> int:
    """Steps of one epoch: one pass over the unlabeled set (num_unlabeled > 0) or, for a labeled-only method,
    over the labeled set at its own batch. `data.epoch_order: official` counts them as the official sampler
    does on its virtual GPUs (padding each GPU's share up, then drop_last); `seeded` as ⌊n / total batch⌋."""
    batch = per_process_batch(cfg.train, world_size) if num_unlabeled else labeled_batch
    length = num_unlabeled or num_labeled
    if check_epoch_order(cfg.data.epoch_order) == "official":
        from datasets.official_order import official_steps_per_epoch   # torch: the schedule stays light for --help
        gpus = virtual_gpus(cfg.train, world_size)
        return official_steps_per_epoch(length, gpus, batch * world_size // gpus)
    return steps_per_epoch(length, batch, world_size)


def evaluation_interval(evaluation: EvalConfig, total: int, epoch_steps: int) -> int:
    """Steps between evaluations: `eval.every_epochs` (official: 1) or `eval.every` steps; neither = 10 per run."""
    if evaluation.every < 0 or evaluation.every_epochs < 0:
        raise ConfigError("eval.every and eval.every_epochs must be >= 0")
    if evaluation.every and evaluation.every_epochs:
        raise ConfigError(f"set eval.every ({evaluation.every} steps) or eval.every_epochs "
                          f"({evaluation.every_epochs}), not both")
    if evaluation.every_epochs:
        return evaluation.every_epochs * epoch_steps
    return evaluation.every or max(total // 10, 1)


def evaluation_steps(total: int, every: int) -> list[int]:
    """The steps (1-based counts of finished steps) after which the trainer evaluates; the last step always."""
    steps = list(range(every, total + 1, every))
    return steps if steps and steps[-1] == total else steps + [total]


def ohem_min_kept_per_process(cfg: Config, world_size: int) -> int:
    """The official code counts OHEM's min_kept per process (per GPU of its 4). `loss.ohem_min_kept_world_size`
    names the process count the profile's min_kept was stated for; on another world size each process keeps
    min_kept × that / world size, so the floor over the whole step stays the official one."""
    reference = cfg.loss.ohem_min_kept_world_size
    if reference < 0:
        raise ConfigError(f"loss.ohem_min_kept_world_size must be >= 0, got {reference}")
    if reference == 0:
        return cfg.loss.ohem_min_kept
    return round(cfg.loss.ohem_min_kept * reference / world_size)


def check_mix_source(value: str) -> str:
    if value not in MIX_SOURCES:
        raise ConfigError(f"data.mix_source must be one of {', '.join(MIX_SOURCES)}, got {value!r}")
    return value


def run_facts(cfg: Config, *, world_size: int, labeled_batch: int, batch: int, every: int, total: int,
              precision: str) -> dict:
    """What summary.json records about the recipe a run actually trained (the report shows it)."""
    facts = {"world_size": world_size, "batch_per_process": batch, "total_batch_size": batch * world_size,
             "labeled_batch_per_process": labeled_batch, "labeled_total_batch_size": labeled_batch * world_size,
             "eval_every": every, "evaluations": len(evaluation_steps(total, every)),
             "precision": precision, "mix_source": cfg.data.mix_source}
    if cfg.train.loss_shards != 1:
        facts["loss_shards_per_process"] = loss_shards_per_process(cfg.train, world_size)
    if cfg.loss.criterion == "ohem":
        facts["ohem_min_kept_per_process"] = ohem_min_kept_per_process(cfg, world_size)
    return facts
