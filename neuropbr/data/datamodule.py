"""What every dataset serves, and the loaders built around it.

A sample is a dict::

    {"views": (V, 3, H, W) float32 in [0, 1],
     "maps": {"albedo": (3, H, W) in [0, 1], "roughness": (1, H, W) in [0, 1],
              "metallic": (1, H, W) in [0, 1], "normal": (3, H, W) unit vectors in [-1, 1]},
     "sample": str, "material": str}

Datasets index with ``(index, sample_seed)`` pairs from :class:`EpochSampler` (plain ints work
too, with a fixed seed) and draw all augmentation randomness from ``sample_seed``.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from neuropbr.data.sampling import EpochSampler
from neuropbr.utils.seeding import derive_seed
from neuropbr.utils.signals import ignore_stop_signals_in_worker
from neuropbr.utils.system import available_cores, default_loader_workers

log = logging.getLogger(__name__)

SampleKey = int | tuple[int, int]


def unpack_key(key: SampleKey) -> tuple[int, int]:
    """``(index, sample_seed)`` from a sampler key; a bare index gets seed 0 (no randomness)."""
    if isinstance(key, tuple):
        return int(key[0]), int(key[1])
    return int(key), 0


def auto_workers(cores: int, device_type: str = "cpu") -> tuple[int, str]:
    """What ``data.num_workers=auto`` means for training on ``device_type`` with ``cores`` cores,
    and why.

    On CPU the model's intra-op threads use every core, so workers compete with them
    (:func:`~neuropbr.utils.system.default_loader_workers`: none on 2 cores or fewer, where 2
    workers measured 8 % fewer samples/s). On CUDA the main process mostly waits for the GPU,
    so loading in parallel pays: every core but the main process's, at most 8.

    Returns:
        ``(workers, reason)``.
    """
    if device_type == "cuda":
        count = min(8, max(cores - 1, 0))
        return (
            count,
            f"CUDA on {cores} core(s): the GPU waits for batches, all cores but one load (at most 8)",
        )
    count = default_loader_workers(cores)
    if count == 0:
        return 0, f"CPU on {cores} core(s): workers would take cores from the training threads"
    return count, f"CPU on {cores} core(s): one core stays with the training threads (at most 4 workers)"


def resolve_num_workers(value: int | str, cores: int | None = None, device_type: str = "cpu") -> int:
    """Training loader workers for ``data.num_workers``: a count, or ``auto`` (by the device and
    the cores this process may use: :func:`auto_workers`).

    Raises:
        ValueError: neither ``auto`` nor a count >= 0 (the message names the key).
    """
    if value == "auto":
        return auto_workers(available_cores() if cores is None else cores, device_type)[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"data.num_workers={value!r}: expected 'auto' or a number of workers >= 0")
    return value


class PBRDataModule(ABC):
    """Owns the train/val datasets of one data source and builds their loaders.

    Subclasses implement :meth:`setup` to set ``self.train_set`` and ``self.val_set``.

    Args:
        resolution: side of the square views served.
        num_views: V, views per sample.
        batch_size: per-process batch size.
        num_workers: training loader worker processes (0 loads in the main process), or
            ``auto`` (see :func:`resolve_num_workers`). Validation uses at most as many, for its
            batches only.
        pin_memory: page-lock batches for faster host-to-GPU copies (ignored without CUDA).
        persistent_workers: keep the training workers alive between epochs (validation workers
            start at each validation and exit after it, so none idle through training).
        seed: the run's seed (split, order, augmentation).
        map_resolution: side of the target maps (default ``resolution``). A super-resolving
            decoder (``decoder.sr_scale``) needs targets at ``resolution * sr_scale``; the
            builder passes that in.
        split: ``material`` or ``family`` (see :mod:`neuropbr.data.split`).
        val_families: with ``split=family``, the families to hold out (default: seeded draw).
    """

    def __init__(
        self,
        *,
        resolution: int,
        num_views: int,
        batch_size: int,
        num_workers: int | str,
        pin_memory: bool,
        persistent_workers: bool,
        seed: int,
        map_resolution: int | None = None,
        split: str = "material",
        val_families: Sequence[str] | None = None,
    ) -> None:
        if split not in ("material", "family"):
            raise ValueError(f"data.split={split!r}: expected 'material' or 'family'")
        if val_families is not None and split != "family":
            raise ValueError("data.val_families is only used with data.split=family")
        if resolution < 8:
            raise ValueError(f"data.resolution={resolution}: expected >= 8")
        if map_resolution is not None and map_resolution < resolution:
            raise ValueError(f"map_resolution={map_resolution}: expected >= data.resolution={resolution}")
        if num_views < 1:
            raise ValueError(f"data.num_views={num_views}: expected >= 1")
        if batch_size < 1:
            raise ValueError(f"data.batch_size={batch_size}: expected >= 1")
        self.resolution = resolution
        self.map_resolution = map_resolution or resolution
        self.num_views = num_views
        self.batch_size = batch_size
        #: What ``data.num_workers`` said (``auto`` or a count), and the training workers it means.
        self.num_workers_setting = num_workers
        #: The training device's type (``auto`` workers depend on it; see :meth:`use_device`).
        self.device_type = "cpu"
        self.num_workers = resolve_num_workers(num_workers)
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.seed = seed
        self.split = split
        self.val_families = list(val_families) if val_families is not None else None
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None

    @abstractmethod
    def setup(self) -> None:
        """Build (and validate) ``train_set`` and ``val_set``. Called once before training."""

    def training_maps(self, max_samples: int = 64) -> list[dict[str, Tensor]]:
        """Target maps of up to ``max_samples`` training samples, evenly spread over the train set
        (what the constant baseline of the metrics averages). Unaugmented: seed-0 keys."""
        if self.train_set is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before training_maps()")
        count = len(self.train_set)  # type: ignore[arg-type]
        picks = sorted(
            {round(i * (count - 1) / max(max_samples - 1, 1)) for i in range(min(max_samples, count))}
        )
        return [self.train_set[(index, 0)]["maps"] for index in picks]

    def _loader(
        self, dataset: Dataset | None, *, train: bool, rank: int, world_size: int, even: bool = True
    ) -> DataLoader:
        if dataset is None:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before asking for loaders")
        import torch

        sampler = EpochSampler(
            len(dataset),  # type: ignore[arg-type]
            seed=self.seed,
            shuffle=train,
            rank=rank,
            world_size=world_size,
            drop_last=False,
            even=even,
        )
        workers = self.num_workers if train else self.val_workers(len(sampler))
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            # Its own generator: creating an iterator then never consumes the global torch RNG,
            # so a resumed run draws exactly the random numbers an uninterrupted one does.
            generator=torch.Generator().manual_seed(derive_seed(self.seed, "loader")),
            num_workers=workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            # Validation workers would otherwise sit idle (memory, a process each) between
            # validations; starting them costs far less than a validation pass.
            persistent_workers=train and self.persistent_workers and workers > 0,
            drop_last=False,
            # Ctrl-C, timeout or SLURM signal the whole process group: stopping is the main
            # process's job (it saves first), a worker killed by the signal would crash the step.
            worker_init_fn=ignore_stop_signals_in_worker,
        )

    def val_workers(self, samples: int) -> int:
        """Validation loader workers for a shard of ``samples``: the training count, but no more
        than it has batches, and none when training on a CPU of 2 cores or fewer.

        Workers start by forking the training process: afterwards each page of its memory the
        next training step writes takes a page fault (+420k faults, ~1.6 GB, in the first step
        after each validation of fast_iteration at 128 px, experiments/benchmarks/README.md), and
        on 2 cores the workers take cores from the training threads. A few validation batches
        load fast enough in the main process.
        """
        if self.device_type == "cpu" and available_cores() <= 2:
            return 0
        return min(self.num_workers, math.ceil(samples / self.batch_size))

    def use_device(self, device_type: str) -> None:
        """Train on ``device_type`` (``cpu`` or ``cuda``): re-resolves ``data.num_workers=auto``.
        The trainer calls this before it builds the loaders."""
        self.device_type = device_type
        self.num_workers = resolve_num_workers(self.num_workers_setting, device_type=device_type)

    def describe_workers(self, val_workers: int) -> str:
        """One line for the training log: the workers of each loader and why."""
        source = (
            f"data.num_workers=auto: {auto_workers(available_cores(), self.device_type)[1]}"
            if self.num_workers_setting == "auto"
            else f"data.num_workers={self.num_workers_setting}"
        )
        kept = " (kept across epochs)" if self.persistent_workers and self.num_workers else ""
        started = "started at each validation" if val_workers else "loaded in the training process"
        return (
            f"loader workers: {self.num_workers} for training{kept}, {val_workers} for validation "
            f"({started}) ({source})"
        )

    def train_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Shuffled, sharded loader; call ``loader.sampler.set_epoch(epoch, start)`` each epoch."""
        return self._loader(self.train_set, train=True, rank=rank, world_size=world_size)

    def val_dataloader(self, rank: int = 0, world_size: int = 1) -> DataLoader:
        """Validation in a fixed order; under DDP each rank gets every ``world_size``-th sample
        (each sample exactly once overall: no padding that would count a sample twice)."""
        return self._loader(self.val_set, train=False, rank=rank, world_size=world_size, even=False)
