"""Loader workers: ``data.num_workers=auto`` by the device and the cores available; validation workers exist
only while a validation runs; the trainer logs its choice."""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Callable

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig

from neuropbr.build import build_datamodule
from neuropbr.data.datamodule import auto_workers, resolve_num_workers
from neuropbr.data.synthetic import SyntheticDataModule
from neuropbr.train import train
from neuropbr.utils.system import available_cores, default_loader_workers


@pytest.mark.parametrize(("cores", "workers"), [(1, 0), (2, 0), (3, 2), (4, 3), (5, 4), (16, 4)])
def test_auto_leaves_small_machines_without_workers_and_a_core_to_training(cores: int, workers: int) -> None:
    assert default_loader_workers(cores) == workers
    assert resolve_num_workers("auto", cores=cores) == workers
    assert resolve_num_workers(3, cores=cores) == 3  # an explicit count is kept as given


@pytest.mark.parametrize("value", ["many", -1, True, 1.5])
def test_bad_worker_counts_name_the_key(value: object) -> None:
    with pytest.raises(
        ValueError, match=r"data\.num_workers=.*: expected 'auto' or a number of workers >= 0"
    ):
        resolve_num_workers(value)  # type: ignore[arg-type]


def test_auto_is_the_default_and_a_float_fails_at_compose_time(
    compose_cfg: Callable[..., DictConfig],
) -> None:
    cfg = compose_cfg()
    assert cfg.data.num_workers == "auto"
    assert build_datamodule(cfg).num_workers == default_loader_workers(available_cores())
    assert compose_cfg("data.num_workers=3").data.num_workers == 3
    with pytest.raises(ConfigCompositionException):
        compose_cfg("data.num_workers=2.5")


def _module(**overrides: object) -> SyntheticDataModule:
    settings: dict[str, object] = {
        "resolution": 16, "num_views": 2, "num_samples": 12, "batch_size": 2, "num_workers": 2,
        "persistent_workers": True, "val_ratio": 0.5, "seed": 7, "augment": None,
    }  # fmt: skip
    settings.update(overrides)
    module = SyntheticDataModule(**settings)  # type: ignore[arg-type]
    module.setup()
    return module


def test_validation_workers_start_per_validation_and_training_workers_stay(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("neuropbr.data.datamodule.available_cores", lambda: 4)
    module = _module()
    val_size, train_size = len(module.val_set), len(module.train_set)  # type: ignore[arg-type]
    assert val_size >= 3  # two batches or more: both workers have work
    val_loader = module.val_dataloader()
    assert val_loader.num_workers == 2 and not val_loader.persistent_workers
    assert module.val_workers(1) == 1  # never more workers than batches
    assert list(multiprocessing.active_children()) == []
    assert sum(len(batch["sample"]) for batch in val_loader) == val_size
    # The pass is over: its workers have exited (joined when the iterator ran out).
    assert list(multiprocessing.active_children()) == []
    train_loader = module.train_dataloader()
    assert train_loader.num_workers == 2 and train_loader.persistent_workers
    train_loader.sampler.set_epoch(0)
    assert sum(len(batch["sample"]) for batch in train_loader) == train_size
    # Training workers are kept for the next epoch.
    assert len(multiprocessing.active_children()) == 2
    del train_loader
    for child in multiprocessing.active_children():
        child.join(timeout=30)


def test_training_logs_the_workers_it_chose(
    compose_cfg: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    cfg = compose_cfg("experiment=smoke", "tracking=none", "trainer.max_epochs=1", "data.num_workers=auto")
    with caplog.at_level(logging.INFO, logger="neuropbr.training.trainer"):
        train(cfg)
    workers = default_loader_workers(available_cores())
    val = 0 if available_cores() <= 2 else min(workers, 1)
    assert (
        f"loader workers: {workers} for training{' (kept across epochs)' if workers else ''}, "
        f"{val} for validation ({'started at each validation' if val else 'loaded in the training process'}) "
        f"(data.num_workers=auto: {auto_workers(available_cores(), 'cpu')[1]})"
    ) in caplog.text


@pytest.mark.parametrize(
    ("cores", "device", "workers", "why"),
    [
        (2, "cpu", 0, "take cores from the training threads"),
        (8, "cpu", 4, "one core stays with the training threads"),
        (2, "cuda", 1, "the GPU waits for batches"),
        (16, "cuda", 8, "at most 8"),
    ],
)
def test_auto_depends_on_the_device(cores: int, device: str, workers: int, why: str) -> None:
    count, reason = auto_workers(cores, device)
    assert count == workers and why in reason and f"{cores} core(s)" in reason
    assert resolve_num_workers("auto", cores=cores, device_type=device) == workers


def test_the_trainer_resolves_auto_for_its_device() -> None:
    module = _module(num_workers="auto")
    module.use_device("cuda")
    assert module.num_workers == auto_workers(available_cores(), "cuda")[0]
    module.use_device("cpu")
    assert module.num_workers == default_loader_workers(available_cores())
    fixed = _module(num_workers=1)
    fixed.use_device("cuda")
    assert fixed.num_workers == 1  # an explicit count is kept


@pytest.mark.parametrize(
    ("cores", "device", "val"), [(2, "cpu", 0), (1, "cpu", 0), (4, "cpu", 2), (2, "cuda", 2)]
)
def test_small_cpus_validate_without_forking_workers(
    monkeypatch: pytest.MonkeyPatch, cores: int, device: str, val: int
) -> None:
    """On <= 2 cores a CPU run loads its validation batches in the training process, even with
    explicit training workers: forking the big training process costs the next step a page fault
    per page it writes, and the workers compete with the training threads."""
    monkeypatch.setattr("neuropbr.data.datamodule.available_cores", lambda: cores)
    module = _module(num_workers=2)
    module.use_device(device)
    assert module.val_dataloader().num_workers == val
    assert module.train_dataloader().num_workers == 2  # an explicit training count is kept
