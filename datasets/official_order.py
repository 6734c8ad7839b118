"""The official UniMatch epoch order, as a key stream (`data.epoch_order: official`, the recipe profiles).

The official code gives the labeled and the unlabeled loader a `DistributedSampler` each (shuffle, seed 0,
`set_epoch(epoch)`), over datasets of the same length N (the labeled ids repeated ⌈N_u / N_l⌉ times and cut to
N_u, so the first ids keep the extra copy), and batches them with `drop_last=True`. So, per epoch:
- one permutation of range(N), the same for both loaders (same length, same seed);
- padded with its own first entries to a multiple of the GPU count R, GPU v taking entries v, v + R, ...;
- ⌊⌈N / R⌉ / b⌋ steps of b images per GPU; what is left over is dropped, and the next epoch reshuffles.

`OfficialOrder` yields the sample keys of those R virtual GPUs for this process's share of them (R / world
size GPUs, in order, so that the process's batch is their batches one after the other: the loss shards of
`train.loss_shards` are then the official GPUs). The permutations come from torch's own `DistributedSampler`.
A key is `(2·epoch + padded) · P + j` for entry j of the repeated list (P = ⌈N / n⌉ · n, n ids), so
`key % n` is the official id, every epoch is augmented anew, and a padded duplicate gets its own draw.
"""
from __future__ import annotations

import math
from typing import Iterator

from torch.utils.data import DistributedSampler, Sampler


def official_steps_per_epoch(epoch_length: int, replicas: int, batch_per_replica: int) -> int:
    """Steps of one official epoch: ⌈N / R⌉ entries per GPU, batched with drop_last (at least one step)."""
    return max(math.ceil(epoch_length / replicas) // batch_per_replica, 1)


class OfficialOrder(Sampler[int]):
    def __init__(self, n: int, epoch_length: int, seed: int, replicas: int, batch_per_replica: int,
                 start_step: int = 0, rank: int = 0, world_size: int = 1):
        if n <= 0 or epoch_length <= 0:
            raise ValueError(f"OfficialOrder needs ids and a positive epoch length, got n={n}, N={epoch_length}")
        if replicas % world_size:
            raise ValueError(f"{replicas} virtual GPUs do not split over {world_size} processes")
        self.n, self.epoch_length, self.seed = n, epoch_length, seed
        self.replicas, self.batch = replicas, batch_per_replica
        self.start_step = start_step
        per_process = replicas // world_size
        self.own = range(rank * per_process, (rank + 1) * per_process)
        self.steps_per_epoch = official_steps_per_epoch(epoch_length, replicas, batch_per_replica)
        self.keys_per_copy = math.ceil(epoch_length / n) * n
        self._cached: tuple[int, list[list[int]]] | None = None

    def replica_keys(self, epoch: int) -> list[list[int]]:
        """Each virtual GPU's keys of one epoch, in its loader's order, before drop_last."""
        if self._cached is None or self._cached[0] != epoch:
            keys = []
            for v in range(self.replicas):
                sampler = DistributedSampler(range(self.epoch_length), num_replicas=self.replicas, rank=v,
                                             shuffle=True, seed=self.seed)
                sampler.set_epoch(epoch)
                # Entry i of GPU v sits at position v + i·R of the padded permutation; past N it is padding.
                keys.append([(2 * epoch + int(v + i * self.replicas >= self.epoch_length)) * self.keys_per_copy + j
                             for i, j in enumerate(sampler)])
            self._cached = (epoch, keys)
        return self._cached[1]

    def step_keys(self, step: int) -> list[int]:
        """This process's keys of global step `step`: its virtual GPUs' batches, one after the other."""
        epoch, within = divmod(step, self.steps_per_epoch)
        keys = self.replica_keys(epoch)
        return [k for v in self.own for k in keys[v][within * self.batch:(within + 1) * self.batch]]

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            yield from self.step_keys(step)
            step += 1
