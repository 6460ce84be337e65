"""A resumed run continues its MLflow run and logs each step of a metric once.

A run is killed after its last checkpoint: the steps in between were logged, and the resumed run
trains them again. Here the run trains two epochs and is resumed from its epoch-1 checkpoint
(what a kill late in epoch 2 leaves), then trains a third epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from omegaconf import DictConfig, open_dict

from neuropbr.train import train
from neuropbr.training.checkpoint import load_checkpoint

_BASE = (
    "experiment=smoke",
    "tracking=mlflow",
    "tracking.experiment_name=resume",
    "tracking.log_model=false",
    "data.resolution=32",
    "data.num_samples=6",
)


def test_resumed_run_keeps_its_run_id_and_one_row_per_step(
    compose_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)

    def run(*extra: str) -> str:
        cfg = compose_cfg(*_BASE, f"tracking.uri={uri}", *extra)
        with open_dict(cfg):
            cfg.paths.checkpoint_dir = str(tmp_path / "checkpoints")
        train(cfg)
        return load_checkpoint(tmp_path / "checkpoints" / "latest.pth")["mlflow_run_id"]

    def histories(run_id: str) -> dict[str, list[tuple[int, float]]]:
        keys = client.get_run(run_id).data.metrics
        return {
            key: sorted((m.step, m.value) for m in client.get_metric_history(run_id, key)) for key in keys
        }

    run_id = run("trainer.max_epochs=2")
    before = histories(run_id)
    epoch1 = load_checkpoint(tmp_path / "checkpoints" / "checkpoint_epoch_0001.pth")
    assert epoch1["mlflow_run_id"] == run_id and epoch1["step"] < max(
        s for h in before.values() for s, _ in h
    )

    resumed_id = run(
        "trainer.max_epochs=3", f"trainer.resume={tmp_path / 'checkpoints' / 'checkpoint_epoch_0001.pth'}"
    )
    assert resumed_id == run_id
    (only,) = client.search_runs([client.get_experiment_by_name("resume").experiment_id])
    assert only.info.run_id == run_id and only.info.status == "FINISHED"

    after = histories(run_id)
    assert set(after) == set(before)
    last_before = max(step for history in before.values() for step, _ in history)
    for key, history in after.items():
        steps = [step for step, _ in history]
        assert len(steps) == len(set(steps)), f"{key}: steps logged twice: {steps}"
        # What was logged before the kill is untouched, and the third epoch was logged after it.
        assert [(s, v) for s, v in history if s <= last_before] == before[key], key
    assert max(step for step, _ in after["train/g_loss"]) > last_before
