"""Sharded validation under DDP: real gloo processes give the single-process metrics."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from neuropbr.benchmarks.worker import compose_training_config
from neuropbr.build import build_datamodule, build_generator, build_loss
from neuropbr.data.sampling import EpochSampler
from neuropbr.training.distributed import DistInfo
from neuropbr.training.precision import resolve_precision
from neuropbr.training.validation import ValidationResult, validate
from neuropbr.utils.seeding import seed_everything


@pytest.mark.parametrize(("num_samples", "world_size"), [(7, 3), (2, 3), (6, 2), (5, 1)])
def test_uneven_shards_hold_every_sample_exactly_once(num_samples: int, world_size: int) -> None:
    shards = [
        EpochSampler(num_samples, seed=0, shuffle=False, rank=r, world_size=world_size, even=False)
        for r in range(world_size)
    ]
    indices = [index for shard in shards for index, _ in shard]
    assert sorted(indices) == list(range(num_samples))
    assert [len(shard) for shard in shards] == [
        len(range(r, num_samples, world_size)) for r in range(world_size)
    ]


def _validate_tiny(workdir: Path, info: DistInfo) -> ValidationResult:
    cfg = compose_training_config(
        [
            "experiment=smoke",
            "data.num_samples=16",
            "data.val_ratio=0.5",
            "data.num_workers=0",
            "data.batch_size=2",
            "tracking=none",
            "trainer.device=cpu",
        ],
        workdir,
    )
    seed_everything(0)  # the same weights in every process
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    generator, loss = build_generator(cfg), build_loss(cfg)
    cpu = torch.device("cpu")
    loader = datamodule.val_dataloader(info.rank, info.world_size)
    return validate(generator, loader, loss, resolve_precision("fp32", cpu), cpu, dist_info=info)


def _rank(rank: int, world_size: int, init_file: str, workdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        result = _validate_tiny(Path(workdir), DistInfo(rank, world_size, rank))
        torch.save({"metrics": result.metrics, "count": result.count}, Path(workdir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # three processes
def test_sharded_validation_equals_one_process(tmp_path: Path) -> None:
    """Each of 3 ranks validates every third sample (uneven shards); the all-reduced sums give
    every rank the metrics one process computes over the whole validation set."""
    single = _validate_tiny(tmp_path, DistInfo())
    assert single.count >= 4  # more samples than ranks, not a multiple of them is fine too
    mp.spawn(_rank, args=(3, str(tmp_path / "init"), str(tmp_path)), nprocs=3, join=True)
    for rank in range(3):
        sharded = torch.load(tmp_path / f"rank{rank}.pt")
        assert sharded["count"] == single.count
        assert sharded["metrics"].keys() == single.metrics.keys()
        for key, value in single.metrics.items():
            assert math.isclose(sharded["metrics"][key], value, rel_tol=1e-6, abs_tol=1e-9), key
