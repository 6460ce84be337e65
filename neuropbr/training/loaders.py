"""The trainer's data loaders: this rank's shard of training and validation, with the
debugging limits (``trainer.limit_*_batches``, ``trainer.overfit_batches``) applied."""

from __future__ import annotations

import logging
import math
from typing import Any

from neuropbr.training.batch_limits import limit_loader
from neuropbr.training.distributed import DistInfo
from neuropbr.training.options import LoopSettings

#: The loop's log lines keep the trainer's logger name (log filters and captures select it).
log = logging.getLogger("neuropbr.training.trainer")


def batches_per_epoch(train_loader: Any, batch_size: int) -> int:
    """Training batches of one epoch on this rank."""
    return math.ceil(train_loader.sampler.shard_size / batch_size)


def open_loaders(
    datamodule: Any, settings: LoopSettings, dist_info: DistInfo, device_type: str
) -> tuple[Any, Any | None]:
    """``(train_loader, val_loader)``; the validation loader is None without a validation set."""
    s, rank, world = settings, dist_info.rank, dist_info.world_size
    overfit = s.overfit_batches or None
    if hasattr(datamodule, "use_device"):  # data.num_workers=auto depends on the device
        datamodule.use_device(device_type)
    # Overfitting pins epoch 0's order and augmentation seeds: the same batches every epoch.
    train_loader = limit_loader(
        datamodule.train_dataloader(rank, world),
        overfit or s.limit_train_batches,
        fixed_epoch=0 if overfit else None,
    )
    has_val = datamodule.val_set is not None and len(datamodule.val_set) > 0
    if not has_val:
        log.warning(
            "no validation set (data.val_ratio=0 or too few materials): no validation, no "
            "best_model.pth, and no optimized_metric for a sweeper"
        )
    # Every rank validates its shard; the metric sums are all-reduced (validation.validate).
    val_limit = s.limit_val_batches if s.limit_val_batches is not None else overfit
    val_loader = limit_loader(datamodule.val_dataloader(rank, world), val_limit) if has_val else None
    limited = overfit or s.limit_train_batches is not None or s.limit_val_batches is not None
    if limited and dist_info.is_main:
        log.info(
            "debugging limits: %d training batch(es) per epoch%s, %s validation batch(es)",
            batches_per_epoch(train_loader, datamodule.batch_size),
            " (the same ones every epoch: trainer.overfit_batches)" if overfit else "",
            len(val_loader) if val_loader is not None else "no",
        )
    if dist_info.is_main:
        log.info(datamodule.describe_workers(val_loader.num_workers if val_loader else 0))
    return train_loader, val_loader
