"""The training logs between two logging steps (``trainer.log_every_n_steps``), and the epoch's
mean G and D losses (:func:`log_epoch_summary`)."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable

import torch
from torch import Tensor

from neuropbr.training.distributed import DistInfo
from neuropbr.training.tracking import Tracker

#: The loop's log lines keep the trainer's logger name (log filters and captures select it).
log = logging.getLogger("neuropbr.training.trainer")


class LogWindow:
    """Collects each batch's detached logs; ``flush`` logs their means (``train/<key>``, the
    learning rates, ``train/samples_per_sec``) to the tracker and train.log on rank 0.

    Args:
        tracker: the metrics sink (rank 0's).
        dist_info: DDP rank information (samples/s counts every rank).
        learning_rates: the current ``train/g_lr`` (and ``train/d_lr``).
    """

    def __init__(
        self, tracker: Tracker, dist_info: DistInfo, learning_rates: Callable[[], dict[str, float]]
    ) -> None:
        self._tracker, self._dist, self._learning_rates = tracker, dist_info, learning_rates
        self._epoch_sums: dict[str, list[Tensor]] = defaultdict(list)
        #: The last logged window's losses, shown beside the progress bar until the next.
        self.shown: dict[str, str] = {}
        self._reset()

    def _reset(self) -> None:
        self._window: dict[str, list[Tensor]] = defaultdict(list)
        self._samples, self._start = 0, time.perf_counter()

    def __bool__(self) -> bool:
        return bool(self._window)

    def add(self, logs: dict[str, Tensor], samples: int) -> None:
        self._samples += samples
        for key, value in logs.items():
            self._window[key].append(value)
            if key in ("g_loss", "d_loss"):
                self._epoch_sums[key].append(value)

    def flush(self, step: int, epoch: int) -> None:
        """Log the window's means at ``step`` (``epoch`` counted from 0) and start a new one."""
        window, seconds = self._window, time.perf_counter() - self._start
        keys = list(window)
        means = torch.stack([torch.stack(window[k]).float().mean() for k in keys]).tolist()  # one sync
        values = {f"train/{k}": v for k, v in zip(keys, means)} | self._learning_rates()
        values["train/samples_per_sec"] = self._samples * self._dist.world_size / max(seconds, 1e-9)
        if self._dist.is_main:
            self._tracker.log_metrics(values, step=step)
            # The same window in train.log: the losses (per-map terms and metrics stay in the tracker).
            losses = [k for k in keys if k in ("g_loss", "d_loss") or k.startswith("loss_")]
            # Seconds per batch (loading included): with log_every_n_steps=1 a per-step timing log.
            batches = len(window["g_loss"]) if "g_loss" in window else 1
            log.info(
                "step %d (epoch %d): %s, g_lr %.3g, %.1f samples/s, %.3f s/batch",
                step,
                epoch + 1,
                ", ".join(f"{k} {values[f'train/{k}']:.4f}" for k in losses),
                values["train/g_lr"],
                values["train/samples_per_sec"],
                seconds / max(batches, 1),
            )
        self.shown = {"G_loss": f"{values['train/g_loss']:.4f}"}
        if "train/d_loss" in values:
            self.shown["D_loss"] = f"{values['train/d_loss']:.4f}"
        self._reset()

    def epoch_means(self) -> dict[str, float]:
        """The epoch's mean ``g_loss`` (and ``d_loss``) over every batch."""
        return {k: torch.stack(v).float().mean().item() for k, v in self._epoch_sums.items()}


def log_epoch_summary(
    tracker: Tracker, dist_info: DistInfo, summary: dict[str, float], epoch: int, step: int
) -> None:
    """The epoch's mean losses (``epoch`` counted from 1) in train.log and, on rank 0, as
    ``train/epoch_<key>`` in the tracker."""
    log.info("Epoch %d summary: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in summary.items()))
    if dist_info.is_main and summary:
        tracker.log_metrics({f"train/epoch_{k}": v for k, v in summary.items()} | {"epoch": epoch}, step)
