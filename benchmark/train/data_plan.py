"""From a resolved config to the training streams and the validation loader.

Every stream is a sequence of sample keys (see datasets.semi.KeySampler): the data of step t is a pure
function of (seed, t), which is what makes resume and multi-process runs reproduce a single run.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader

from benchmark.train.config import Config, ConfigError
from benchmark.train.schedule import check_mix_source, epoch_steps, per_process_batch, virtual_gpus
from datasets import REPO_ROOT
from datasets.catalog import DatasetSpec, get_spec
from datasets.draws import DrawRecord, draw_seed
from datasets.errors import DataError
from datasets.official_order import OfficialOrder
from benchmark.train.evaluate import evaluate
from datasets.semi import ImageView, KeySampler, SemiDataset, ShardedEvalSampler, derive_seed
from datasets.splits import read_split_file, split_paths, val_path



def resolve_path(path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else REPO_ROOT / p


@dataclass
class DataPlan:
    spec: DatasetSpec
    root: Path
    split_dir: Path
    split: str
    crop_size: int
    eval_mode: str
    draw: DrawRecord | None = None   # a generated dataset's draw (None: a real dataset's one draw, its lists)


def plan_data(cfg: Config) -> DataPlan:
    spec = get_spec(cfg.data.dataset)
    split = cfg.data.split or spec.splits[0]
    if split not in spec.splits:
        raise DataError(f"unknown split {split!r} for dataset {spec.name}; known splits: {', '.join(spec.splits)}")
    root = resolve_path(cfg.data.root or spec.default_root)
    draw = None
    if spec.ensure_draw is not None:
        seed = draw_seed(cfg.data.generator_seed, cfg.train.seed, cfg.data.draws)
        root, draw = spec.ensure_draw(root, seed, cfg.data.draws, cfg.data.custom_data)
    elif cfg.data.draws != "single" or cfg.data.generator_seed != 0:
        raise ConfigError(f"data.draws=per_seed and data.generator_seed apply to generated datasets only; "
                          f"{spec.name} has one draw, its split lists (pass data.draws=single)")
    lists = cfg.data.split_dir or spec.default_split_dir
    split_dir = resolve_path(lists) if lists else root / "splits"   # a generated draw holds its own lists
    if not root.is_dir():
        raise DataError(f"data folder not found: {root} (set data.root=... or --data-root; "
                        f"`python -m datasets.prepare {spec.name} --root DIR` explains how to get it)")
    return DataPlan(spec, root, split_dir, split, cfg.data.crop_size or spec.crop_size,
                    cfg.eval.mode or spec.eval_mode, draw)


class Streams:
    """Infinite iterators of labeled / unlabeled / mix batches, positioned at a given step."""

    def __init__(self, cfg: Config, plan: DataPlan, views: frozenset[str], labeled_batch: int,
                 start_step: int, rank: int = 0, world_size: int = 1):
        labeled_txt, unlabeled_txt = split_paths(plan.split_dir, plan.split)
        labeled = read_split_file(labeled_txt, plan.root)
        self.uses_unlabeled = bool(views)
        # Unlabeled data need no labels on disk: their mask column is never read.
        unlabeled = read_split_file(unlabeled_txt, plan.root, require_masks=False) if self.uses_unlabeled else []
        self.num_labeled, self.num_unlabeled = len(labeled), len(unlabeled)
        seed, batch, nc = cfg.train.seed, per_process_batch(cfg.train, world_size), plan.spec.num_classes
        # Independent streams, so that e.g. the CutMix source is not the unlabeled batch itself.
        stream_seed = lambda name: derive_seed(seed, name)  # noqa: E731
        common = dict(root=plan.root, crop_size=plan.crop_size, num_classes=nc)
        # One pass over the unlabeled set is an epoch, labeled ids repeated to the unlabeled count; a
        # labeled-only method's epoch is one pass over the labeled set at its own (e.g. doubled) batch.
        self.steps_per_epoch = epoch_steps(cfg, self.num_labeled, self.num_unlabeled, labeled_batch, world_size)
        # Images one process consumes per step: the labeled batch plus one batch per unlabeled stream.
        self.images_per_step = labeled_batch + (batch * (2 if "mix" in views else 1) if self.uses_unlabeled else 0)
        same_ids = check_mix_source(cfg.data.mix_source) == "same_ids"
        if cfg.data.epoch_order == "official":
            # The official samplers: labeled and unlabeled (and a same_ids mix) share one permutation.
            gpus, length = virtual_gpus(cfg.train, world_size), self.num_unlabeled or self.num_labeled

            def order(name: str, n: int, per_process: int) -> OfficialOrder:
                order_seed = stream_seed("mix") if name == "mix" and not same_ids else seed
                return OfficialOrder(n, length, order_seed, gpus, per_process * world_size // gpus, start_step,
                                     rank, world_size)
        else:
            # same_ids: the mix stream walks the unlabeled stream's keys, so it holds the same ids.
            def order(name: str, n: int, per_process: int) -> KeySampler:
                seeded_as = "unlabeled" if name == "mix" and same_ids else name
                return KeySampler(n, stream_seed(seeded_as), start=start_step * per_process * world_size,
                                  rank=rank, world_size=world_size,
                                  length=self.num_unlabeled or None if name == "labeled" else None)
        self._iters: dict[str, Iterator] = {
            "labeled": self._loader(SemiDataset(items=labeled, mode="train_l", seed=stream_seed("labeled"),
                                                **common),
                                    order("labeled", len(labeled), labeled_batch), labeled_batch, cfg.data.workers)}
        self.samplers: dict[str, KeySampler | OfficialOrder] = {}
        if self.uses_unlabeled:
            unlabeled_views = frozenset(views) - {"mix"}
            # The mix stream's dataset seed differs from the unlabeled one's, so every image is augmented anew.
            for name in ("unlabeled", "mix") if "mix" in views else ("unlabeled",):
                dataset = SemiDataset(items=unlabeled, mode="train_u", views=unlabeled_views,
                                      seed=stream_seed(name), **common)
                self.samplers[name] = order(name, len(unlabeled), batch)
                self._iters[name] = self._loader(dataset, self.samplers[name], batch, cfg.data.workers)

    @staticmethod
    def _loader(dataset, sampler, batch_size: int, workers: int) -> Iterator:
        # A private generator: creating the iterator must not draw from the global RNG, whose state a
        # resumed run restores from the checkpoint (samples carry their own RNG anyway).
        loader = DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                            drop_last=True, pin_memory=torch.cuda.is_available(),
                            persistent_workers=workers > 0, generator=torch.Generator())
        return iter(loader)

    def next(self) -> dict[str, dict | None]:
        return {name: next(it) for name, it in self._iters.items()}


def val_loader(cfg: Config, plan: DataPlan, rank: int = 0, world_size: int = 1, image_view: ImageView | None = None,
               view_seed: int = 0) -> DataLoader:
    """The run's val images (and masks) as the trainer evaluates them; `image_view` (drawn per image from
    `view_seed`) changes the images only, the masks stay (benchmark.diagnostics.label_preservation)."""
    items = read_split_file(val_path(plan.split_dir), plan.root)
    dataset = SemiDataset(root=plan.root, items=items, mode="val", crop_size=plan.crop_size,
                          num_classes=plan.spec.num_classes, image_view=image_view, seed=view_seed)
    # Each rank evaluates a disjoint shard without padding: no image is counted twice.
    return DataLoader(dataset, batch_size=cfg.eval.batch_size, sampler=ShardedEvalSampler(len(items), rank, world_size),
                      num_workers=cfg.data.workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=cfg.data.workers > 0)   # workers survive between evaluations


def evaluate_val(model: torch.nn.Module, loader: DataLoader, cfg: Config, plan: DataPlan, device: torch.device,
                 distributed: bool = False, progress: bool = False) -> dict:
    """`evaluate` as the run's config and data plan set it (mode, crop, classes, absent classes, border)."""
    return evaluate(model, loader, mode=plan.eval_mode, crop_size=plan.crop_size, num_classes=plan.spec.num_classes,
                    class_names=plan.spec.class_names, device=device, absent=cfg.eval.absent,
                    distributed=distributed, progress=progress, border=cfg.eval.border)
