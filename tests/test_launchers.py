"""Cluster launchers: our Optuna sweeper's trials as separate submitit jobs (the SLURM launcher's
local twin, run here for real), and the SLURM preset composing."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from omegaconf import DictConfig

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="pip install 'neuropbr[slurm]'")


def test_slurm_preset_composes(compose_cfg: Callable[..., DictConfig]) -> None:
    from hydra import compose

    cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.gpus_per_node == 1


@pytest.mark.slow
def test_sweep_trials_run_as_parallel_submitit_jobs(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = subprocess.run(
        [sys.executable, "-m", "neuropbr.train", "-m", "hparams_search=learning_rates",
         "hydra/launcher=submitit_local", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2",
         "experiment=smoke", "tracking=none", "trainer.max_epochs=1", "data.resolution=32",
         f"hydra.sweeper.storage={storage}", f"hydra.sweep.dir={tmp_path / 'multirun'}"],
        cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    study = optuna.load_study(study_name="learning_rates", storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    # Each trial ran in its own submitit job (a separate process with its own log folder).
    assert len(list((tmp_path / "multirun" / ".submitit").glob("*/*_log.out"))) == 2
