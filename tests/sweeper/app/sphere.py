"""The sweeper tests' Hydra app: ``python tests/sweeper/app/sphere.py -m [overrides]``.

Minimises ``(x - 2)^2 + y`` over a few "epochs" (the loss decays towards it), reporting each
epoch through the same pruning hook and tracker that ``neuropbr.train`` uses, so the sweeper
can be tested without training a network.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import hydra
import optuna
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from hydra_plugins.neuropbr_optuna import register_plugin

log = logging.getLogger(__name__)


def objective(cfg: DictConfig) -> Any:
    """The task: the final loss (or ``[loss, y]`` with ``objectives=2``)."""
    if cfg.fail_above is not None and cfg.x > cfg.fail_above:
        raise RuntimeError(f"deliberate failure: x={cfg.x} > fail_above={cfg.fail_above}")
    _wait_for_other_workers(cfg)
    hook = None
    if cfg.sweep.trial_number is not None:
        from hydra_plugins.neuropbr_optuna.pruning import OptunaPruningHook

        hook = OptunaPruningHook(
            cfg.sweep.storage, cfg.sweep.study_name, cfg.sweep.trial_number, cfg.optimized_metric
        )
    tracker = instantiate(cfg.tracking)
    tags = {}
    if cfg.sweep.study_name:
        tags = {"optuna_study": str(cfg.sweep.study_name), "optuna_trial": str(cfg.sweep.trial_number)}
    tracker.start(
        params=OmegaConf.to_container(cfg, resolve=True),
        tags=tags,
        parent_run_id=cfg.sweep.mlflow_parent_run_id,
    )
    target = (cfg.x - 2.0) ** 2 + cfg.y
    if _held(cfg):
        target -= 100.0  # the held trial is the best: a summary written while it runs is stale
    loss = target
    status = "FAILED"
    try:
        for epoch in range(cfg.epochs):
            loss = target + 1.0 / (epoch + 1)  # converges to the target
            tracker.log_metrics({"val/loss": loss}, step=epoch)
            if hook is not None and hook(epoch, {"val/loss": loss}):
                status = "KILLED"
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")
            time.sleep(cfg.sleep_s)
        status = "FINISHED"
    finally:
        tracker.close(status)
    return [loss, float(cfg.y)] if cfg.objectives == 2 else loss


def _held(cfg: DictConfig) -> bool:
    """Trial ``hold_trial`` runs until ``release_file`` exists (still running when the other
    workers have used up the budget); returns whether this is that trial."""
    if cfg.hold_trial is None or cfg.sweep.trial_number != cfg.hold_trial:
        return False
    deadline = time.monotonic() + 120
    while not Path(cfg.release_file).exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"trial {cfg.hold_trial} was never released ({cfg.release_file})")
        time.sleep(0.1)
    return True


def _wait_for_other_workers(cfg: DictConfig) -> None:
    """Start barrier: block until ``barrier_count`` worker processes have each begun a trial."""
    if cfg.barrier_dir is None:
        return
    directory = Path(cfg.barrier_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"worker-{os.getpid()}").touch()
    deadline = time.monotonic() + 120
    while len(list(directory.glob("worker-*"))) < cfg.barrier_count:
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"only {len(list(directory.glob('worker-*')))} of {cfg.barrier_count} workers started"
            )
        time.sleep(0.1)


register_plugin()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> Any:
    return objective(cfg)


if __name__ == "__main__":
    main()
