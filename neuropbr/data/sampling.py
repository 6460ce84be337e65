"""Epoch-seeded sampling that makes augmentation and order exact across resume and ranks.

The sampler yields ``(index, sample_seed)`` pairs. Datasets take their augmentation randomness
from ``sample_seed`` alone, so a sample looks the same whichever worker loads it, after a resume
from any step, and with any number of workers. Order depends on ``(seed, epoch)`` only.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler

from neuropbr.utils.seeding import derive_seed


class EpochSampler(Sampler[tuple[int, int]]):
    """Shuffled (or sequential) indices, sharded across ranks, resumable mid-epoch.

    Args:
        num_samples: dataset length.
        seed: the run's seed.
        shuffle: shuffle per epoch (train) or keep order (val).
        rank, world_size: distributed shard; every rank gets the same number of samples
            (the tail is padded by wrapping around, as ``DistributedSampler`` does).
        drop_last: drop the padded tail instead (ranks then see ``floor(n / world)`` each).
        even: False: every sample exactly once over all ranks, no padding, no dropping (ranks
            differ by at most one sample; some may get none): sharded validation.
    """

    def __init__(
        self,
        num_samples: int,
        seed: int,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        drop_last: bool = False,
        even: bool = True,
    ) -> None:
        if num_samples <= 0:
            raise ValueError(f"EpochSampler: dataset is empty (num_samples={num_samples})")
        if not 0 <= rank < world_size:
            raise ValueError(f"EpochSampler: rank={rank} outside world_size={world_size}")
        self.num_samples = num_samples
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.drop_last = drop_last
        self.even = even
        self.epoch = 0
        self.start = 0  # samples of this rank's shard to skip (mid-epoch resume)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's order; skip the first ``start`` samples of this rank's shard."""
        self.epoch = epoch
        self.start = start

    def _shard(self) -> list[int]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(derive_seed(self.seed, "order", self.epoch))
            order = torch.randperm(self.num_samples, generator=gen).tolist()
        else:
            order = list(range(self.num_samples))
        if not self.even:
            return order[self.rank :: self.world_size]
        if self.drop_last:
            per_rank = self.num_samples // self.world_size
            order = order[: per_rank * self.world_size]
        else:
            per_rank = -(-self.num_samples // self.world_size)
            order = (order * self.world_size)[: per_rank * self.world_size]
        return order[self.rank :: self.world_size]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self._shard()[self.start :]:
            yield index, derive_seed(self.seed, "sample", self.epoch, index)

    @property
    def shard_size(self) -> int:
        """Samples this rank sees in a whole epoch (ignoring ``start``)."""
        if not self.even:
            return len(range(self.rank, self.num_samples, self.world_size))
        if self.drop_last:
            return self.num_samples // self.world_size
        return -(-self.num_samples // self.world_size)

    def __len__(self) -> int:
        return max(self.shard_size - self.start, 0)
