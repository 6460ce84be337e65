"""``scheduler.warmup_steps``: the lr rises at every optimizer step, and a run resumed inside the
warmup trains at exactly the lrs of an uninterrupted one."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from omegaconf import DictConfig, open_dict

from neuropbr.train import train
from neuropbr.training.checkpoint import load_checkpoint

#: 10 samples -> 9 training samples in batches of 2: 5 steps per epoch, 10 over the run; the
#: warmup (7 steps) crosses the first epoch end.
_BASE = (
    "experiment=smoke",
    "tracking=mlflow",
    "tracking.experiment_name=warmup",
    "data.num_samples=10",
    "trainer.max_epochs=2",
    "scheduler=cosine",
    "scheduler.warmup_epochs=0",
    "scheduler.warmup_steps=7",
    "scheduler.min_lr=0",
)


def _lr_history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    return sorted((m.step, m.value) for m in MlflowClient(tracking_uri=uri).get_metric_history(run_id, key))


def test_resume_inside_the_step_warmup_gives_the_uninterrupted_lrs(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"

    def run(name: str, *extra: str) -> str:
        cfg = compose_cfg(*_BASE, f"tracking.uri={uri}", *extra)
        with open_dict(cfg):
            cfg.paths.checkpoint_dir = str(tmp_path / name)
        train(cfg)
        return load_checkpoint(tmp_path / name / "latest.pth")["mlflow_run_id"]

    straight_run = run("straight")
    split_run = run("split", "trainer.max_steps=3")  # stops at step 3 of 7 of the warmup
    stopped = load_checkpoint(tmp_path / "split" / "latest.pth")
    assert (stopped["step"], stopped["g_scheduler"]["steps"]) == (3, 3)
    # Resumed from the checkpoint written at the stop: the same MLflow run goes on.
    assert run("split", f"trainer.resume={tmp_path / 'split' / 'latest.pth'}") == split_run

    for key in ("train/g_lr", "train/d_lr"):
        straight = _lr_history(uri, straight_run, key)
        # Logged after every step: the lr the next step uses.
        assert [step for step, _ in straight] == list(range(1, 11))
        assert _lr_history(uri, split_run, key) == straight
    lrs = [lr for _, lr in _lr_history(uri, straight_run, "train/g_lr")]
    base = compose_cfg(*_BASE).optimizer.g_lr
    # From 10 % at step 0, +0.9/7 per step, times the cosine of the epoch (1, then 0.5 at epoch
    # 1 of 2); the epoch schedule advances after the epoch's last step (5) is logged.
    ramp = [0.1 + 0.9 * min(step, 7) / 7 for step in range(1, 11)]
    cosine = [1.0] * 5 + [0.5] * 5
    assert lrs == pytest.approx([base * r * c for r, c in zip(ramp, cosine)])
    assert lrs[5] < lrs[6] == lrs[9]  # still rising in the second epoch, flat after step 7

    straight_weights = load_checkpoint(tmp_path / "straight" / "latest.pth")["generator"]
    split_weights = load_checkpoint(tmp_path / "split" / "latest.pth")["generator"]
    assert all(torch.equal(straight_weights[k], split_weights[k]) for k in straight_weights)


def test_warmup_in_epochs_and_steps_fails_before_training(compose_cfg: Callable[..., DictConfig]) -> None:
    cfg = compose_cfg(
        "experiment=smoke", "tracking=none", "scheduler.warmup_epochs=3", "scheduler.warmup_steps=20"
    )
    with pytest.raises(ValueError, match=r"scheduler\.warmup_epochs=3 and scheduler\.warmup_steps=20"):
        train(cfg)
    assert not (Path(cfg.paths.checkpoint_dir) / "latest.pth").exists()


def test_quick_test_warms_up_over_a_few_percent_of_its_steps(compose_cfg: Callable[..., DictConfig]) -> None:
    from neuropbr.build import build_datamodule

    cfg = compose_cfg("experiment=quick_test")
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    steps = math.ceil(len(datamodule.train_set) / cfg.data.batch_size) * cfg.trainer.max_epochs
    assert cfg.scheduler.warmup_epochs == 0
    assert 0.02 <= cfg.scheduler.warmup_steps / steps <= 0.1
