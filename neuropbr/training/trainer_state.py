"""A trainer's checkpoint: what ``Trainer.state_dict`` saves and ``Trainer.load_state_dict``
restores, and the save itself (rank 0 writes, every rank's RNG state included).

Resuming is exact, mid-epoch included: the same step counter, data order (``batch_in_epoch``)
and RNG streams. The keys are the checkpoint format (``latest.pth`` of older runs still loads).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from neuropbr.training.checkpoint import capture_rng_state, restore_rng_state
from neuropbr.training.distributed import barrier, gather_objects

if TYPE_CHECKING:
    from neuropbr.training.trainer import Trainer

#: The loop's log lines keep the trainer's logger name (log filters and captures select it).
log = logging.getLogger("neuropbr.training.trainer")


def trainer_state(trainer: Trainer) -> dict[str, Any]:
    """Everything needed to go on exactly where ``trainer`` is."""
    return {
        **trainer.networks.state_dict(),
        "rng": capture_rng_state(),
        "epoch": trainer.epoch,
        "batch_in_epoch": trainer.batch_in_epoch,
        "step": trainer.step,
        "best_metric": trainer.best_metric,
        "optimized_metric": trainer.options.optimized_metric,
        "mlflow_run_id": trainer.tracker.run_id,
        "config": trainer.options.config,
        "baseline_maps": trainer.baseline.to_dict() if trainer.baseline is not None else None,
    }


def restore_trainer_state(trainer: Trainer, state: dict[str, Any], source: str | Path) -> None:
    """Restore everything :func:`trainer_state` saved; mismatched weights raise ``CheckpointError``."""
    trainer.networks.load_state_dict(state, source)
    trainer.epoch, trainer.batch_in_epoch, trainer.step = (
        state["epoch"],
        state.get("batch_in_epoch", 0),
        state["step"],
    )
    trainer.best_metric = state.get("best_metric")
    k = trainer.settings.accumulate_grad_batches
    if trainer.batch_in_epoch % k:
        log.warning(
            "%s stopped at batch %d of the epoch, inside a group of trainer.accumulate_grad_batches=%d "
            "(it was written with another value): the first step accumulates fewer batches",
            source,
            trainer.batch_in_epoch,
            k,
        )
    dist_info = trainer.options.dist_info
    per_rank = state.get("rng_per_rank") or []
    same_world = len(per_rank) == dist_info.world_size
    restore_rng_state(per_rank[dist_info.rank] if same_world else state["rng"])
    log.info(
        "resumed from %s: epoch %d, batch %d, step %d",
        source,
        trainer.epoch,
        trainer.batch_in_epoch,
        trainer.step,
    )


def save_trainer(trainer: Trainer, improved: bool, *, epochs_done: int | None) -> None:
    """Rank 0 writes the checkpoints (``epochs_done`` None: mid-epoch, no periodic file);
    every rank waits so none races ahead of a checkpoint being written."""
    dist_info = trainer.options.dist_info
    # Every rank's RNG state (its dropout masks, its CUDA stream), so each resumes its own.
    rng_per_rank = gather_objects(capture_rng_state(), dist_info)
    if dist_info.is_main:
        state = trainer.state_dict()
        if dist_info.enabled:
            state["rng_per_rank"] = rng_per_rank
        trainer.checkpointer.save(state, improved=improved, epochs_done=epochs_done)
    barrier(dist_info)
