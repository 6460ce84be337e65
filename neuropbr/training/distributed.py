"""Distributed data parallel under torchrun (nccl on GPU, gloo on CPU); rank 0 logs and saves."""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(requested: bool, device_kind: str) -> DistInfo:
    """Join the process group torchrun set up (``trainer.distributed=true`` or WORLD_SIZE > 1).

    Args:
        requested: ``trainer.distributed``.
        device_kind: ``trainer.device`` (``auto``/``cuda`` -> nccl when CUDA is available, else gloo).
    """
    if not (requested or launched_by_torchrun()):
        return DistInfo()
    missing = [
        v for v in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ
    ]
    if missing:
        raise RuntimeError(
            f"trainer.distributed=true but {missing} are not set: launch with "
            "`torchrun --nproc_per_node=N -m neuropbr.train trainer.distributed=true ...`"
        )
    use_cuda = device_kind != "cpu" and torch.cuda.is_available()
    backend = "nccl" if use_cuda else "gloo"
    info = DistInfo(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"]))
    if use_cuda:
        torch.cuda.set_device(info.local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    log.info("DDP: rank %d/%d (local %d), backend %s", info.rank, info.world_size, info.local_rank, backend)
    return info


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def broadcast_object(value: Any, info: DistInfo) -> Any:
    """Rank 0's ``value`` on every rank (e.g. a stop decision made by rank 0)."""
    if not info.enabled:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def gather_objects(value: Any, info: DistInfo) -> list[Any]:
    """Every rank's ``value``, in rank order, on every rank (``[value]`` without DDP)."""
    if not info.enabled:
        return [value]
    gathered: list[Any] = [None] * info.world_size
    dist.all_gather_object(gathered, value)
    return gathered


def cleanup(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
