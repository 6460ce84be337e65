"""Validation at the end of an epoch: metrics of every rank's shard, image grids, and the best
value of the optimized metric (which picks ``best_model.pth``)."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from neuropbr.metrics import BaselineMaps
from neuropbr.training.distributed import broadcast_object
from neuropbr.training.options import LoopSettings, TrainerOptions
from neuropbr.training.progress import RunProgress
from neuropbr.training.tracking import Tracker
from neuropbr.training.validation import validate
from neuropbr.training.visualize import write_validation_images

#: The loop's log lines keep the trainer's logger name (log filters and captures select it).
log = logging.getLogger("neuropbr.training.trainer")


class EpochValidation:
    """Validates a model on ``val_loader`` and keeps the best value of the optimized metric.

    Args:
        val_loader: this rank's validation shard.
        loss: the training loss (``val/loss``).
        settings, options: the trainer's (image logging, progress bar, the optimized metric).
        tracker: the metrics sink (rank 0's).
        progress: timing of the run (validations count in its estimate).
        baseline: the constant predictor scored beside the model (None: none).
        image_dir: where validation image grids are written.
    """

    def __init__(
        self,
        val_loader: Any,
        loss: nn.Module,
        settings: LoopSettings,
        options: TrainerOptions,
        tracker: Tracker,
        progress: RunProgress,
        baseline: BaselineMaps | None,
        image_dir: Path,
    ) -> None:
        self.val_loader, self.loss, self.settings, self.options = val_loader, loss, settings, options
        self.tracker, self.progress, self.baseline, self.image_dir = tracker, progress, baseline, image_dir
        #: The best value of ``options.optimized_metric`` so far (rank 0's; None: none yet).
        self.best: float | None = None

    @torch.no_grad()
    def evaluate(self, model: nn.Module, epoch: int, step: int, log_images: bool = False) -> dict[str, float]:
        """Validation metrics (``val/loss`` and the metrics module's keys, prefixed ``val/``)."""
        assert self.val_loader is not None, "no validation set (data.val_ratio=0)"
        dist_info = self.options.dist_info
        started = time.perf_counter()
        bar = tqdm(
            self.val_loader,
            total=len(self.val_loader),
            desc=f"Validation {epoch + 1}",
            leave=False,  # the epoch's bar and the validation line in the log stay
            disable=not (self.settings.progress_bar and dist_info.is_main),
            dynamic_ncols=True,
        )
        result = validate(
            model,
            bar,
            self.loss,
            self.options.precision,
            self.options.device,
            self.settings.num_log_images if dist_info.is_main else 0,
            dist_info=dist_info,
            baseline=self.baseline,
        )
        bar.close()
        self.progress.validation_done(time.perf_counter() - started)
        metrics = {f"val/{k}": v for k, v in result.metrics.items()}
        self.tracker.log_metrics(metrics, step=step)  # a NullTracker off rank 0
        if log_images and result.shown:
            shown = result.shown
            images = write_validation_images(
                self.image_dir, epoch + 1, shown["views"], shown["pred"], shown["target"]
            )
            for name, path in images.items():
                self.tracker.log_image(path, f"val/{name}", step=step)
        return metrics

    def run(
        self, model: nn.Module, epoch: int, step: int, *, epochs_done: int | None
    ) -> tuple[dict[str, float], bool]:
        """Validate (every rank its shard), then rank 0 updates the best value; every rank gets
        rank 0's metrics and whether they improved on the best (rank 0's answer; False elsewhere).

        ``epochs_done`` is None when stopping mid-epoch.
        """
        metrics: dict[str, float] = {}
        improved = False
        if self.val_loader is not None:
            every = self.settings.log_images_every_n_epochs
            log_images = (
                epochs_done is None
                or epochs_done == self.settings.max_epochs
                or (every > 0 and epochs_done % every == 0)
            )
            metrics = self.evaluate(model, epoch, step, log_images=log_images)
        if self.options.dist_info.is_main and metrics:
            improved = self._improved(metrics)
            shown = ("val/loss", "val/overall_psnr", "val/normal_angle_mean", self.options.optimized_metric)
            log.info(
                "[Validation] Epoch %d - %s",
                epoch + 1,
                ", ".join(f"{k} {metrics[k]:.4f}" for k in dict.fromkeys(shown) if k in metrics),
            )
        return broadcast_object(metrics, self.options.dist_info), improved

    def _improved(self, metrics: dict[str, float]) -> bool:
        key = self.options.optimized_metric
        if key not in metrics:
            raise KeyError(f"optimized_metric={key!r} is not among the validation metrics: {sorted(metrics)}")
        value = metrics[key]
        if not math.isfinite(value):
            return False
        minimize = self.options.metric_mode == "min"
        better = self.best is None or (value < self.best if minimize else value > self.best)
        if better:
            self.best = value
        return better
