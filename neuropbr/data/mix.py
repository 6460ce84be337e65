"""``data=mix``: draw training samples from several data sources with weights.

Each source is a full data module (``synthetic``, ``library``, ``folder``) with its own split.
Every training sample first picks a source with probability proportional to its weight, then a
sample of that source's training set uniformly; both draws come from the sampler's per-epoch
sample seed, so a run is reproducible across workers, ranks and resumes, and every epoch sees a
fresh draw. An epoch holds ``epoch_size`` samples (default: the training samples of the sources
with a positive weight). Validation is every source's validation set, each sample once.

The mix's ``resolution``, ``num_views``, ``renders``, ``val_ratio``, ``split``,
``val_families``, ``aligned``, ``augment`` and ``seed`` apply to every source (the builder passes
them in), so samples of all sources batch together. Sample and material names are prefixed with
the source's name (``library/Wood--Oak__0003``), so names never collide across sources.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Mapping, Sized
from itertools import accumulate
from typing import Any

from torch.utils.data import Dataset

from neuropbr.data.datamodule import PBRDataModule, SampleKey, unpack_key
from neuropbr.utils.seeding import derive_seed

log = logging.getLogger(__name__)

#: Keys of ``data=mix`` that the builder passes to every source.
SHARED_KEYS = (
    "resolution",
    "num_views",
    "renders",
    "val_ratio",
    "split",
    "val_families",
    "aligned",
    "augment",
    "seed",
)


def _named(sample: dict[str, Any], source: str) -> dict[str, Any]:
    return {**sample, "sample": f"{source}/{sample['sample']}", "material": f"{source}/{sample['material']}"}


def _sample_count(dataset: Dataset | None) -> int:
    """``len(dataset)``, 0 for None (torch's ``Dataset`` type declares no ``__len__``)."""
    if dataset is None:
        return 0
    if not isinstance(dataset, Sized):
        raise TypeError(f"object of type '{type(dataset).__name__}' has no len()")
    return len(dataset)


class WeightedMixDataset(Dataset):
    """``length`` samples, each from a source drawn by weight (see the module docstring).

    Args:
        sources: ``{name: dataset}``; every dataset non-empty.
        weights: ``{name: weight > 0}`` for the same names.
        length: samples per epoch.
    """

    def __init__(self, sources: Mapping[str, Dataset], weights: Mapping[str, float], length: int) -> None:
        self.names = sorted(sources)
        self.sources = dict(sources)
        total = sum(weights[n] for n in self.names)
        self.cumulative = list(accumulate(weights[n] / total for n in self.names))
        self.length = length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        position, sample_seed = unpack_key(key)
        draw = derive_seed(sample_seed, position, "mix-source") / 2.0**63
        name = self.names[min(bisect.bisect_right(self.cumulative, draw), len(self.names) - 1)]
        dataset = self.sources[name]
        index = derive_seed(sample_seed, position, "mix-index") % len(dataset)  # type: ignore[arg-type]
        return _named(dataset[(index, derive_seed(sample_seed, "mix-sample"))], name)


class ConcatenatedDataset(Dataset):
    """Every sample of every source once, in source order (validation)."""

    def __init__(self, sources: Mapping[str, Dataset]) -> None:
        self.names = sorted(sources)
        self.sources = dict(sources)
        self.offsets = list(accumulate(len(sources[n]) for n in self.names))  # type: ignore[arg-type]

    def __len__(self) -> int:
        return self.offsets[-1] if self.offsets else 0

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        position, sample_seed = unpack_key(key)
        which = bisect.bisect_right(self.offsets, position)
        start = self.offsets[which - 1] if which else 0
        name = self.names[which]
        return _named(self.sources[name][(position - start, sample_seed)], name)


class MixDataModule(PBRDataModule):
    """Several data modules mixed by weight (see the module docstring).

    Args:
        sources: ``{name: data module}``, built by :func:`neuropbr.build.build_datamodule`.
        weights: ``{name: weight >= 0}``; a source without a weight gets 1, weight 0 only
            validates.
        epoch_size: training samples per epoch (default: the sources' training samples).
        resolution, num_views, batch_size, num_workers, pin_memory, persistent_workers, seed,
            map_resolution: see :class:`~neuropbr.data.datamodule.PBRDataModule`.
        **shared: the keys passed to every source (accepted here, used there).
    """

    def __init__(
        self,
        *,
        sources: Mapping[str, PBRDataModule],
        weights: Mapping[str, float] | None = None,
        epoch_size: int | None = None,
        resolution: int = 256,
        num_views: int = 3,
        batch_size: int = 4,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        seed: int = 42,
        map_resolution: int | None = None,
        **shared: Any,
    ) -> None:
        super().__init__(
            resolution=resolution, map_resolution=map_resolution, num_views=num_views, batch_size=batch_size,
            num_workers=num_workers, pin_memory=pin_memory, persistent_workers=persistent_workers, seed=seed,
        )  # fmt: skip
        unknown = set(shared) - set(SHARED_KEYS)
        if unknown:
            raise TypeError(f"MixDataModule: unexpected argument(s) {sorted(unknown)}")
        if not sources:
            raise ValueError("data.sources is empty: add at least one source (e.g. data.sources.library)")
        weights = dict(weights or {})
        extra = sorted(set(weights) - set(sources))
        if extra:
            raise ValueError(f"data.weights names {extra}, which are not in data.sources {sorted(sources)}")
        self.weights = {name: float(weights.get(name, 1.0)) for name in sources}
        for name, weight in self.weights.items():
            if weight < 0:
                raise ValueError(f"data.weights.{name}={weight}: expected >= 0")
        if sum(self.weights.values()) <= 0:
            raise ValueError(f"data.weights={self.weights}: at least one source needs a positive weight")
        if epoch_size is not None and epoch_size < 1:
            raise ValueError(f"data.epoch_size={epoch_size}: expected >= 1 (or null)")
        for name, module in sources.items():
            if (module.resolution, module.num_views, module.map_resolution) != (
                resolution,
                num_views,
                self.map_resolution,
            ):
                raise ValueError(
                    f"data.sources.{name}: {module.resolution} px, {module.num_views} views, maps at "
                    f"{module.map_resolution} px; the mix serves {resolution} px, {num_views} views, maps at "
                    f"{self.map_resolution} px (build sources through neuropbr.build.build_datamodule)"
                )
        self.sources = dict(sources)
        self.epoch_size = epoch_size

    def setup(self) -> None:
        for module in self.sources.values():
            module.setup()
        train = {n: m.train_set for n, m in self.sources.items() if self.weights[n] > 0}
        empty = sorted(n for n, d in train.items() if _sample_count(d) == 0)
        if empty:
            raise ValueError(f"data.sources {empty}: no training samples (give them weight 0 or more data)")
        length = self.epoch_size or sum(_sample_count(d) for d in train.values())
        self.train_set = WeightedMixDataset(train, self.weights, length)  # type: ignore[arg-type]
        self.val_set = ConcatenatedDataset(
            {n: m.val_set for n, m in self.sources.items() if m.val_set is not None}  # type: ignore[misc]
        )
        log.info(
            "mix of %s: weights %s, %d training samples per epoch; validation %s",
            sorted(self.sources), self.weights, length,
            {n: len(m.val_set) for n, m in self.sources.items() if m.val_set is not None},  # type: ignore[arg-type]
        )  # fmt: skip
