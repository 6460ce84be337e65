"""Shorter epochs for debugging: ``trainer.limit_train_batches``, ``limit_val_batches``, ``overfit_batches``.

A limit cuts the tail of each epoch's shard: the sampler still draws the epoch's full order
and stops after the first ``batches * batch_size`` samples. The trainer's position in the epoch
(``batch_in_epoch``) and its mid-epoch resume (skip ``batch_in_epoch * batch_size`` samples) are
unchanged, so a limited run resumes exactly like a full one. ``overfit_batches`` also pins the
epoch the order and the samples' augmentation seeds are drawn from: the same batches, in the same
order and augmented alike, every epoch.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DataLoader, Sampler

from neuropbr.data.sampling import EpochSampler

_LIMIT_EXPECTED = "expected null (every batch), a fraction in (0, 1] or a number of batches >= 1"


def check_limit(key: str, value: Any) -> None:
    """Raise ``ValueError`` naming ``trainer.<key>`` unless ``value`` is a valid batch limit."""
    if value is None:
        return
    ok = not isinstance(value, bool) and (
        (isinstance(value, int) and value >= 1) or (isinstance(value, float) and 0.0 < value <= 1.0)
    )
    if not ok:
        raise ValueError(f"trainer.{key}={value!r}: {_LIMIT_EXPECTED}")


def limited_batches(limit: float | int | None, full: int) -> int:
    """Batches per epoch under ``limit``: all of ``full`` (null), a fraction of them (at least
    one; a float, 1.0 = all), or a count (an int, at most ``full``)."""
    if limit is None:
        return full
    if isinstance(limit, float):
        return min(full, max(1, math.floor(limit * full)))
    return min(full, limit)


class LimitedSampler(Sampler[tuple[int, int]]):
    """An :class:`EpochSampler` cut to ``max_samples`` per epoch (and pinned to ``fixed_epoch``).

    Args:
        inner: the data module's sampler (its order, sharding and sample seeds).
        max_samples: samples of this rank's shard served per epoch.
        fixed_epoch: serve this epoch's order and seeds whatever ``set_epoch`` says (overfitting).
    """

    def __init__(self, inner: EpochSampler, max_samples: int, fixed_epoch: int | None = None) -> None:
        self.inner, self.max_samples, self.fixed_epoch = inner, max_samples, fixed_epoch

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.inner.set_epoch(epoch if self.fixed_epoch is None else self.fixed_epoch, start)

    @property
    def shard_size(self) -> int:
        """Samples this rank sees in a whole (limited) epoch."""
        return min(self.inner.shard_size, self.max_samples)

    def __len__(self) -> int:
        return max(self.shard_size - self.inner.start, 0)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        remaining = len(self)
        for key in self.inner:
            if remaining <= 0:
                return
            remaining -= 1
            yield key


def limit_loader(
    loader: DataLoader, limit: float | int | None, *, fixed_epoch: int | None = None
) -> DataLoader:
    """``loader`` serving at most ``limit`` batches per epoch (see :func:`limited_batches`).

    Returns ``loader`` itself when nothing is limited or pinned; otherwise a new loader with every
    setting of ``loader`` and its sampler wrapped in a :class:`LimitedSampler` (a DataLoader's
    sampler cannot be replaced once built).
    """
    sampler = loader.sampler
    if not isinstance(sampler, EpochSampler):
        raise TypeError(f"batch limits need the data module's EpochSampler, not {type(sampler).__name__}")
    batch_size = loader.batch_size or 1
    batches = limited_batches(limit, math.ceil(sampler.shard_size / batch_size))
    if batches * batch_size >= sampler.shard_size and fixed_epoch is None:
        return loader
    wrapped = LimitedSampler(sampler, batches * batch_size, fixed_epoch)
    skip = {"self", "dataset", "sampler", "batch_sampler", "shuffle"}
    settings = {
        name: getattr(loader, name)
        for name in inspect.signature(DataLoader.__init__).parameters
        if name not in skip and hasattr(loader, name)
    }
    return DataLoader(loader.dataset, sampler=wrapped, **settings)
