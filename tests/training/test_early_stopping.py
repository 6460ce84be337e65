"""trainer.early_stopping: the stopping rule, its checks, and a run that ends early as finished."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig
from omegaconf.errors import ValidationError

from neuropbr.training.early_stopping import EarlyStopping, ValidationHooks


def test_stops_after_patience_validations_without_improvement() -> None:
    stopper = EarlyStopping("val/loss", patience=2, mode="min", min_delta=0.1)
    losses = [1.0, 0.95, 0.85, 0.9, math.nan]  # 0.95 is not 0.1 better; 0.85 is; then two misses
    decisions = [stopper(epoch, {"val/loss": value}) for epoch, value in enumerate(losses)]
    assert decisions == [False, False, False, False, True]
    assert stopper.best == 0.85 and stopper.stopped_after_epoch == 5
    rising = EarlyStopping("val/skill_db", patience=1, mode="max")
    assert [rising(e, {"val/skill_db": v}) for e, v in enumerate([1.0, 2.0, 2.0])] == [False, False, True]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"patience": -1}, r"trainer\.early_stopping\.patience=-1: expected >= 1"),
        ({"min_delta": -0.5}, r"trainer\.early_stopping\.min_delta=-0\.5"),
        ({"metric": "val/los"}, r"trainer\.early_stopping\.metric='val/los': expected one of"),
    ],
)
def test_bad_settings_name_the_key(kwargs: dict[str, object], message: str) -> None:
    settings = {"metric": "val/loss", "patience": 3, "mode": "min", "min_delta": 0.0, **kwargs}
    with pytest.raises(ValueError, match=message):
        EarlyStopping(**settings, valid_metrics=["val/loss"])  # type: ignore[arg-type]


def test_hooks_all_see_every_validation() -> None:
    seen: list[int] = []

    def record(epoch: int, metrics: dict[str, float]) -> bool:
        seen.append(epoch)
        return False

    hooks = ValidationHooks(pruning=record, early_stopping=EarlyStopping("val/loss", 1), absent=None)
    assert [hooks(e, {"val/loss": 1.0}) for e in range(2)] == [False, True]
    assert seen == [0, 1] and hooks.fired == ["early_stopping"] and not ValidationHooks(a=None)


def test_bad_values_fail_at_compose_or_start_up(compose_cfg: Callable[..., DictConfig]) -> None:
    from neuropbr.train import train

    with pytest.raises((ConfigCompositionException, ValidationError), match=r"early_stopping\.mode"):
        compose_cfg("experiment=smoke", "tracking=none", "trainer.early_stopping.mode=sideways")
    cfg = compose_cfg("experiment=smoke", "tracking=none", "trainer.early_stopping.patience=-1")
    with pytest.raises(ValueError, match=r"trainer\.early_stopping\.patience=-1"):
        train(cfg)  # before any data is set up


def test_a_run_that_stops_early_ends_as_finished(
    compose_cfg: Callable[..., DictConfig], caplog: pytest.LogCaptureFixture
) -> None:
    from neuropbr.train import train

    caplog.set_level(logging.INFO, logger="neuropbr.train")
    cfg = compose_cfg(
        "experiment=smoke",
        "tracking=none",
        "data.resolution=32",
        "data.num_samples=4",
        "trainer.max_epochs=5",
        "trainer.early_stopping.metric=val/loss",
        "trainer.early_stopping.patience=1",
        "trainer.early_stopping.min_delta=1e9",  # nothing after the first validation improves enough
    )
    objective = train(cfg)  # returns the objective: not pruned, not failed
    assert math.isfinite(objective)
    latest = torch.load(f"{cfg.paths.checkpoint_dir}/latest.pth", map_location="cpu", weights_only=False)
    assert latest["epoch"] == 2  # validated after epochs 1 and 2, stopped after the second
    # The resolved config is logged as a tree at the start.
    tree = caplog.text
    assert "config\n├── data" in tree and "── early_stopping\n" in tree and "── metric: val/loss\n" in tree
