"""Gradients of one step of a method on a fixed batch of 8, for tests/train/test_loss_shards.py.

Run by torchrun (gloo), each process takes its own shard of the batch, as the official code's GPUs do, and the
gradients are averaged by the suite's ProcessGroup; rank 0 saves them. Imported, it gives one process's
gradients with `train.loss_shards` virtual shards.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmark.train.config import resolve  # noqa: E402
from benchmark.train.run_setup import build_method  # noqa: E402
from methods.base import Batch, StepInfo  # noqa: E402
from tests.conftest import PixelModel  # noqa: E402

TOTAL, SIZE, CLASSES = 8, 8, 3


class DeterministicFpModel(PixelModel):
    """PixelModel (no BatchNorm, so shards do not couple through batch statistics) whose feature
    perturbation is a fixed channel mask instead of a random Dropout2d: every process perturbs alike."""

    def forward(self, x, need_fp=False):
        c1, c4 = self.encode(x)
        logits = self.decode(c1, c4)
        if not need_fp:
            return logits
        keep = (torch.arange(c1.shape[1]) % 2).view(1, -1, 1, 1).float() * 2
        return logits, self.decode(c1 * keep, c4 * keep)


def make_model() -> DeterministicFpModel:
    torch.manual_seed(0)
    return DeterministicFpModel(CLASSES)


def make_batch() -> dict:
    """8 images whose shards of 2 hold very different numbers of ignored and padded pixels."""
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, CLASSES, (TOTAL, SIZE, SIZE), generator=g)
    for i in range(TOTAL):
        mask[i, SIZE - i:, :] = 255            # image i: i ignored rows

    def unlabeled(transposed: bool) -> dict:
        ignore = torch.zeros(TOTAL, SIZE, SIZE, dtype=torch.long)
        box = torch.zeros(TOTAL, SIZE, SIZE, dtype=torch.long)
        for i in range(TOTAL):
            rows = (i * 3) % 7                  # 0..6 padded rows (columns in the mix batch)
            if transposed:
                ignore[i, :, SIZE - rows:] = 255
            else:
                ignore[i, SIZE - rows:, :] = 255
            box[i, i % 4:i % 4 + 4, 3:8] = 1
        return {"weak": torch.randn(TOTAL, 3, SIZE, SIZE, generator=g) * 2,
                "strong1": torch.randn(TOTAL, 3, SIZE, SIZE, generator=g),
                "strong2": torch.randn(TOTAL, 3, SIZE, SIZE, generator=g),
                "ignore": ignore, "box1": box, "box2": box.flip(-1)}

    return {"labeled": {"image": torch.randn(TOTAL, 3, SIZE, SIZE, generator=g), "mask": mask},
            "unlabeled": unlabeled(False), "mix": unlabeled(True)}


def gradients(method_name: str, loss_shards: int, world_size: int = 1, rank: int = 0, extra=()) -> dict:
    cfg = resolve(profile="smoke", method=method_name, overrides=[
        "train.total_batch_size=8", f"train.loss_shards={loss_shards}", "loss.conf_thresh=0.45", *extra])
    method = build_method(cfg, CLASSES, world_size)
    model = make_model()
    per_process = TOTAL // world_size
    shard = slice(rank * per_process, (rank + 1) * per_process)
    full = make_batch()
    part = {name: {k: v[shard] for k, v in views.items()} for name, views in full.items()}
    batch = Batch(labeled=part["labeled"], unlabeled=part["unlabeled"] if method.needs() else None,
                  mix=part["mix"] if method.needs() else None)
    out = method.losses(model, batch, StepInfo(0, 10))
    out.total.backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


if __name__ == "__main__":
    import os

    import torch.distributed as dist

    from benchmark.train.distributed import ProcessGroup

    method_name, loss_shards, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    dist.init_process_group("gloo")
    rank, world_size = dist.get_rank(), dist.get_world_size()
    grads = gradients(method_name, loss_shards, world_size, rank, sys.argv[4:])
    group = ProcessGroup(rank=rank, world_size=world_size, local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                         device=torch.device("cpu"))
    tensors = list(grads.values())
    params = [torch.nn.Parameter(torch.zeros_like(t)) for t in tensors]
    for p, t in zip(params, tensors):
        p.grad = t
    group.average_gradients(params)
    if rank == 0:
        torch.save(grads, target)
    dist.destroy_process_group()
