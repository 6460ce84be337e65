"""``python -m neuropbr.train [overrides]``: compose, build, fit, return the objective.

The composition root: it composes the config, has :mod:`neuropbr.build` turn it into objects
(every component from its config group, with the dimensions it depends on passed in at build
time), fits, and returns the objective. Returns
``optimized_metric`` (best value over the run) to a Hydra sweeper and fails loudly when it is
missing or not finite.
"""

from __future__ import annotations

import logging
import math
import socket
import sys
from pathlib import Path
from typing import Any, NoReturn

import hydra
from omegaconf import DictConfig

from neuropbr.build import build_datamodule, build_early_stopping, build_tracker, build_trainer
from neuropbr.config import config_dir, register_configs
from neuropbr.config_checks import check_train_config
from neuropbr.metrics import VALIDATION_KEYS
from neuropbr.training.checkpoint import find_resume_checkpoint, load_checkpoint
from neuropbr.training.distributed import cleanup, init_distributed
from neuropbr.training.early_stopping import ValidationHooks
from neuropbr.training.multirun import parent_run_id, sweep_command_line
from neuropbr.training.precision import resolve_device
from neuropbr.training.profiling import check_settings as check_profiler
from neuropbr.training.run_metadata import (
    child_run_name,
    config_params,
    default_run_name,
    hydra_choices,
    source_tags,
    swept_values,
    user_tags,
)
from neuropbr.training.tracking_server import check_tracking_server
from neuropbr.training.trainer import Trainer
from neuropbr.utils.choices import choice
from neuropbr.utils.config_tree import config_tree
from neuropbr.utils.plain_config import plain_dict
from neuropbr.utils.seeding import seed_everything
from neuropbr.utils.signals import hand_over_preemption

log = logging.getLogger(__name__)


def check_config(cfg: DictConfig) -> None:
    """Checks that involve several groups (single-key checks live in the components)."""
    if str(cfg.tracking.get("_target_", "")).endswith("MlflowTracker"):
        check_tracking_server(cfg.tracking.get("uri"))  # a dead server: fail in seconds, not after the data
    check_train_config(cfg)  # unset and out-of-range values, data.resolution vs the encoder
    valid = [f"val/{key}" for key in VALIDATION_KEYS]
    if cfg.optimized_metric not in valid:
        # Checked now, not after the first epoch (hours at 2048 px).
        raise ValueError(f"optimized_metric={cfg.optimized_metric!r}: expected one of {valid}")
    user_tags(cfg.get("tags"))  # a bad tag fails now, naming it, not after the data is set up
    build_early_stopping(cfg)  # likewise trainer.early_stopping.*
    node = cfg.trainer.profiler
    check_profiler(node.wait, node.warmup, node.active, node.row_limit)
    if cfg.discriminator.get("_target_") is None and cfg.loss.weights.get("gan", 0.0) > 0:
        log.info(
            "discriminator=none: loss.weights.gan=%s is ignored (no adversarial training)",
            cfg.loss.weights.gan,
        )
    if (
        cfg.trainer.gan_start_epoch >= cfg.trainer.max_epochs
        and cfg.discriminator.get("_target_") is not None
    ):
        log.warning(
            "trainer.gan_start_epoch=%d >= trainer.max_epochs=%d: the GAN never starts",
            cfg.trainer.gan_start_epoch,
            cfg.trainer.max_epochs,
        )


def run_tags(cfg: DictConfig) -> dict[str, str]:
    """MLflow's source tags (git commit, entry point, user), the overrides, host, sweep ids and
    the user's ``tags=[...]``."""
    tags = {
        **source_tags(),
        "hostname": socket.gethostname(),
        "task": str(cfg.task_name),
        **user_tags(cfg.get("tags")),
    }
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        tags["overrides"] = " ".join(hydra_cfg.overrides.task) or "(defaults)"
        tags["run_dir"] = hydra_cfg.runtime.output_dir
        if hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN":
            tags["hydra_job_num"] = str(hydra_cfg.job.num)
    except ValueError:  # not running under @hydra.main (e.g. tests)
        pass
    if cfg.sweep.study_name:
        tags.update(optuna_study=str(cfg.sweep.study_name), optuna_trial=str(cfg.sweep.trial_number))
    return tags


def run_name(cfg: DictConfig) -> str:
    """The MLflow run's default name (``tracking.run_name`` overrides it).

    A single run: ``<experiment or task>-<encoder>-<loss>-<date>-<time>``. A multirun job: its
    number and the values it tried, ``trial3-loss.weights.ssim=0.31`` (our Optuna sweeper) or
    ``job1-optimizer.g_lr=0.001`` (Hydra's basic sweeper: the keys the command line sweeps).
    """
    choices = hydra_choices()
    if cfg.sweep.trial_number is not None:
        return cfg.sweep.run_name or child_run_name("trial", int(cfg.sweep.trial_number), {})
    try:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
    except ValueError:  # not running under @hydra.main
        hydra_cfg = None
    if hydra_cfg is not None and hydra_cfg.mode is not None and hydra_cfg.mode.name == "MULTIRUN":
        job = list(hydra_cfg.overrides.task)
        sweep = sweep_command_line(Path(str(hydra_cfg.sweep.dir)))
        return child_run_name("job", int(hydra_cfg.job.num), swept_values(sweep, job))
    return default_run_name(str(cfg.task_name), choices, cfg.encoder)


def train(cfg: DictConfig) -> float:
    """Build everything from ``cfg`` and train; returns the best ``optimized_metric``.

    Returns NaN (and trains without validation) when the validation set is empty; a sweep trial
    without one fails at start-up instead.
    """
    check_config(cfg)
    dist_info = init_distributed(cfg.trainer.distributed, choice(cfg.trainer.device))
    device = resolve_device(choice(cfg.trainer.device), dist_info.local_rank)
    if dist_info.is_main:  # the resolved config at the top of train.log, as a tree
        log.info("%s", config_tree(plain_dict(cfg, enum_to_str=True), hydra_choices()))
    seed_everything(cfg.seed)
    datamodule = build_datamodule(cfg)
    datamodule.setup()
    validates = len(datamodule.val_set) > 0
    if not validates and cfg.sweep.trial_number is not None:
        raise ValueError(
            f"this sweep trial has no validation set (data.val_ratio={cfg.data.val_ratio}), so no "
            f"optimized_metric={cfg.optimized_metric!r} to report: raise data.val_ratio or add materials"
        )
    tracker = build_tracker(cfg, dist_info)
    trainer = build_trainer(cfg, datamodule, device, dist_info, tracker)
    # Sweep trials only ever resume their own run directory.
    adoptable = None if cfg.sweep.trial_number is not None else trainer.options.config
    resume = find_resume_checkpoint(
        cfg.trainer.resume, cfg.paths.checkpoint_dir, Path.cwd() / "outputs", adoptable
    )
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        trainer.load_state_dict(state, source=resume)
    status = "FAILED"
    try:
        tracker.start(
            params=config_params(trainer.options.config, hydra_choices()),
            tags=run_tags(cfg),
            resume_run_id=state.get("mlflow_run_id") if state else None,
            # Our Optuna sweeper names the parent; any other multirun's is in its sweep directory.
            parent_run_id=cfg.sweep.mlflow_parent_run_id or parent_run_id(getattr(tracker, "uri", None)),
            default_name=run_name(cfg),
        )
        result = trainer.fit()
        hooks = trainer.hooks.on_validation
        # Early stopping ends a run as finished; a pruned trial (or a signal) as stopped.
        early = isinstance(hooks, ValidationHooks) and hooks.fired == ["early_stopping"]
        stopped = result.stop_signal is not None or (result.stopped_by_hook and not early)
        # A missing or diverged objective fails the run (and its MLflow status) too.
        if stopped:
            objective = None
        elif validates:
            objective = _objective(cfg, result.best_metric, result.metrics)
        else:  # validation switched off on purpose: nothing to optimise, nothing failed
            objective = math.nan
        status = "KILLED" if stopped else "FINISHED"
        if dist_info.is_main:
            _log_run_artifacts(cfg, trainer, tracker, signalled=result.stop_signal is not None)
            report_skipped_samples(datamodule, tracker, trainer.step)
    finally:
        tracker.close(status)
        cleanup(dist_info)
    if result.stop_signal is not None:
        log.warning("interrupted; resume with trainer.resume=%s", trainer.checkpointer.latest_path)
        hand_over_preemption(result.stop_signal)  # under submitit: it requeues the job and exits
        sys.exit(128 + result.stop_signal)
    if objective is None:
        _raise_pruned(cfg, result.metrics)
    return objective


def report_skipped_samples(datamodule: Any, tracker: Any, step: int) -> None:
    """With ``data.on_error=skip``: how many samples were skipped at start-up and which while
    loading, in the log and as MLflow metrics (``data/skipped_at_startup``,
    ``data/skipped_while_loading``) and a tag listing them."""
    summary = datamodule.summary() if hasattr(datamodule, "summary") else {}
    at_startup = int(summary.get("skipped", 0)) if isinstance(summary, dict) else 0
    while_loading = datamodule.skipped_while_loading() if hasattr(datamodule, "skipped_while_loading") else []
    if not at_startup and not while_loading:
        return
    log.warning(
        "data.on_error=skip: %d sample(s) skipped at start-up, %d while loading%s",
        at_startup,
        len(while_loading),
        f" ({', '.join(while_loading)})" if while_loading else "",
    )
    tracker.log_metrics(
        {"data/skipped_at_startup": at_startup, "data/skipped_while_loading": len(while_loading)}, step
    )
    if while_loading:
        tracker.set_tags({"data_skipped_while_loading": ", ".join(while_loading)[:5000]})


def _log_run_artifacts(cfg: DictConfig, trainer: Trainer, tracker: Any, signalled: bool = False) -> None:
    """The resolved config; the profiler's trace; the full training state when
    ``tracking.log_checkpoints``; and the generator as MLflow models (not when a signal stopped the
    run: a resumed run logs them). A ``trainer.fast_dev_run`` uploads neither weights nor models."""
    hydra_dir = Path(cfg.paths.output_dir) / ".hydra"
    if hydra_dir.is_dir():
        tracker.log_artifact(hydra_dir, "config")
    profiler = trainer.hooks.profiler
    if profiler is not None and profiler.recorded:
        for path in (profiler.trace_path, profiler.table_path):
            tracker.log_artifact(path, "profiler")
    if cfg.trainer.fast_dev_run:
        log.info("trainer.fast_dev_run: no checkpoint or model uploaded (%s)", trainer.checkpointer.directory)
        return
    if getattr(tracker, "log_checkpoints", False):
        for path in (trainer.checkpointer.best_path, trainer.checkpointer.latest_path):
            if path.is_file():
                tracker.log_artifact(path, "checkpoints")
    if not signalled:
        try:
            log_models(trainer, tracker)
        except Exception:  # the weights are safe in the checkpoints: a failed upload must not fail the run
            log.exception(
                "could not log the generator as an MLflow model; the checkpoints hold it (%s)",
                trainer.checkpointer.directory,
            )


def log_models(trainer: Trainer, tracker: Any) -> None:
    """Log the generator as MLflow models: ``model`` with the best validation's weights (from
    ``best_model.pth``, at the step they were reached; MLflow links that step's metrics to it) and
    ``last_model`` with the final weights when they differ; without validation the final weights
    are ``model``. EMA weights when the run keeps them."""
    if not getattr(tracker, "log_model_enabled", False):
        return
    from neuropbr.inference import load_generator

    final = trainer.networks.validation_model
    final_meta = {
        "config": trainer.options.config,
        "weights": "ema" if trainer.networks.ema is not None else "generator",
        "epoch": trainer.epoch,
        "step": trainer.step,
        "baseline_maps": trainer.baseline.to_dict() if trainer.baseline is not None else None,
    }
    best_path = trainer.checkpointer.best_path
    if not best_path.is_file():
        tracker.log_model(final, final_meta, name="model", step=trainer.step)
        return
    best = load_generator(best_path, "cpu")
    best_meta = {
        **final_meta,
        "weights": best.weights,
        "epoch": best.epoch,
        "step": best.step,
        "baseline_maps": best.baseline_maps,
    }
    tracker.log_model(best.generator, best_meta, name="model", step=best.step)
    if best.step != trainer.step:
        tracker.log_model(final, final_meta, name="last_model", step=trainer.step)


def _objective(cfg: DictConfig, best: float | None, last: dict[str, float]) -> float:
    value = best if best is not None else last.get(cfg.optimized_metric)
    if value is None:
        raise RuntimeError(
            f"optimized_metric={cfg.optimized_metric!r} was never computed (validation metrics: {sorted(last)}); "
            "is the validation set empty (data.val_ratio) or the name misspelt?"
        )
    if not math.isfinite(value):
        raise FloatingPointError(f"optimized_metric={cfg.optimized_metric!r} is {value}: training diverged")
    log.info("%s = %.6f", cfg.optimized_metric, value)
    return float(value)


def _raise_pruned(cfg: DictConfig, metrics: dict[str, float]) -> NoReturn:
    import optuna

    raise optuna.TrialPruned(
        f"trial {cfg.sweep.trial_number} pruned at {cfg.optimized_metric}={metrics.get(cfg.optimized_metric)}"
    )


register_configs()


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="train")
def main(cfg: DictConfig) -> float:
    return train(cfg)


if __name__ == "__main__":
    main()
