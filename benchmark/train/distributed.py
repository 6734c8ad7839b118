"""Several processes, one run: torchrun support (NCCL on GPUs, gloo on CPU).

Semantics are those of DistributedDataParallel: every process trains on its own shard of each step's
batch (`train.batch_size` per process, as the official 4 GPUs × 2), gradients are averaged over processes
after every backward, BatchNorm is synchronised (SyncBatchNorm, CUDA only: PyTorch's SyncBatchNorm has
no CPU kernel, so gloo runs keep per-process statistics), evaluation is sharded with no image counted
twice, and only rank 0 writes. The learning rate is not rescaled with the world size: profiles give the
rate for the total batch they state.

Gradients are averaged by one all-reduce per step rather than by wrapping the model in
torch's DistributedDataParallel: methods call the model several times per step, through `encode` /
`decode` as well as `forward`, and own extra trainable modules — patterns the DDP wrapper does not see.
"""
from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn

from benchmark.train.config import ConfigError
from benchmark.train.summary import DistInfo


class ProcessGroup(DistInfo):
    def wrap(self, model: nn.Module) -> nn.Module:
        if self.device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        return model

    def broadcast_parameters(self, modules: list[nn.Module]) -> None:
        """Start every process from rank 0's weights and buffers."""
        for module in modules:
            for tensor in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, parameters: list[nn.Parameter]) -> None:
        grads = [p.grad for p in parameters if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def barrier(self) -> None:
        dist.barrier()


def init_distributed(cfg) -> DistInfo:
    """A process group when launched by torchrun (WORLD_SIZE > 1); a single process otherwise."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    wants_cpu = cfg.train.device == "cpu"
    if torch.cuda.is_available() and not wants_cpu:
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    elif cfg.train.device.startswith("cuda"):
        raise ConfigError(f"train.device={cfg.train.device} but no CUDA device is available")
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=30))
    return ProcessGroup(rank=rank, world_size=world_size, local_rank=local_rank, device=device)
