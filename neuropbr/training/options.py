"""What a :class:`~neuropbr.training.trainer.Trainer` is told besides its networks and data.

:class:`LoopSettings` are the loop-related ``trainer.*`` keys; :class:`TrainerOptions` where and
how the loop runs (device, precision, DDP, compile) and what it selects on; :class:`TrainerHooks`
the optional callers-in (the Optuna/early-stopping hook, the profiler).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuropbr.training.accumulation import check_accumulation
from neuropbr.training.batch_limits import check_limit
from neuropbr.training.distributed import DistInfo
from neuropbr.training.precision import Precision
from neuropbr.training.profiling import BatchProfiler
from neuropbr.utils.choices import choice


@dataclass
class LoopSettings:
    """The loop-related ``trainer.*`` keys (see ``TrainerConfig`` for their meaning)."""

    max_epochs: int = 100
    max_steps: int | None = None
    gan_start_epoch: int = 5
    d_steps_per_g_step: int = 1
    val_every_n_epochs: int = 1
    grad_clip_norm: float | None = 1.0
    d_grad_clip_norm: float | None = None
    log_every_n_steps: int = 10
    log_images_every_n_epochs: int = 5
    num_log_images: int = 4
    progress_bar: bool = True
    on_nonfinite: str = "raise"
    nonfinite_patience: int = 3
    limit_train_batches: int | float | None = None
    limit_val_batches: int | float | None = None
    overfit_batches: int = 0
    accumulate_grad_batches: int = 1

    def __post_init__(self) -> None:
        self.on_nonfinite = choice(self.on_nonfinite)
        for key in ("max_epochs", "d_steps_per_g_step", "val_every_n_epochs", "log_every_n_steps"):
            if getattr(self, key) < 1:
                raise ValueError(f"trainer.{key}={getattr(self, key)}: expected >= 1")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"trainer.max_steps={self.max_steps}: expected >= 1 or null")
        if self.gan_start_epoch < 0:
            raise ValueError(f"trainer.gan_start_epoch={self.gan_start_epoch}: expected >= 0")
        check_accumulation(self.accumulate_grad_batches, self.d_steps_per_g_step)
        check_limit("limit_train_batches", self.limit_train_batches)
        check_limit("limit_val_batches", self.limit_val_batches)
        if self.overfit_batches < 0:
            raise ValueError(f"trainer.overfit_batches={self.overfit_batches}: expected >= 0 (0: off)")
        if self.overfit_batches and self.limit_train_batches is not None:
            raise ValueError(
                f"trainer.overfit_batches={self.overfit_batches} and trainer.limit_train_batches="
                f"{self.limit_train_batches}: overfitting picks its own training batches; set only one"
            )


@dataclass
class TrainerOptions:
    """Where and how the loop runs, and what picks ``best_model.pth``.

    Args:
        precision: from ``neuropbr.training.precision.resolve_precision``.
        device: where to train.
        dist_info: DDP rank information.
        optimized_metric, metric_mode: picks ``best_model.pth`` (e.g. ``val/loss``, ``min``).
        ema_decay: EMA of the generator's weights used for validation (None = off).
        compile: ``torch.compile`` the networks (a CUDA speed-up; works on CPU, slowly).
        channels_last: NHWC memory format for the networks (CUDA and CPU).
        config: the resolved config, stored in checkpoints.
        image_dir: where validation image grids are written (None: ``images/`` beside the
            checkpoint folder).
        recompute_fakes: re-run the generator forward in the discriminator step, the original
            stack's work (``benchmark.recompute_fakes``; like-for-like benchmarks only).
    """

    precision: Precision
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dist_info: DistInfo = field(default_factory=DistInfo)
    optimized_metric: str = "val/loss"
    metric_mode: str = "min"
    ema_decay: float | None = None
    compile: bool = False
    channels_last: bool = True
    config: dict[str, Any] = field(default_factory=dict)
    image_dir: str | Path | None = None
    recompute_fakes: bool = False

    def __post_init__(self) -> None:
        if self.metric_mode not in ("min", "max"):
            raise ValueError(f"optimized_metric_mode={self.metric_mode!r}; choose 'min' or 'max'")


@dataclass
class TrainerHooks:
    """Optional callers-in of the loop.

    Args:
        on_validation: ``(epoch, metrics) -> stop?``, called on rank 0 after each validation
            (the Optuna pruning handle, early stopping).
        profiler: traces a few training batches (``trainer.profiler``; None = off).
    """

    on_validation: Callable[[int, dict[str, float]], bool] | None = None
    profiler: BatchProfiler | None = None
