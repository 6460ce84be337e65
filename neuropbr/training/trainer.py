"""The training loop: one readable file, no callbacks (the order of a step is read top to bottom).

Per step: the generator forward runs once; the discriminator step (when the GAN is on) reuses
its detached output, then the generator step backpropagates through the discriminator. AMP with
one GradScaler per network, gradient clipping, an optional EMA of the generator for validation.
Validation, best-model selection and checkpoints happen at epoch ends; SIGINT/SIGTERM save
``latest.pth`` at the next step boundary and stop cleanly, and ``load_state_dict`` resumes exactly
(mid-epoch included): same step counter, same data order, same RNG streams.

Its collaborators sit beside it in :mod:`neuropbr.training`: ``networks``, ``options``,
``accumulation``, ``gan_step``, ``optimizer_step``, ``stop_request``, ``trainer_state``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from neuropbr.losses.composite import CompositeLoss
from neuropbr.metrics import BaselineMaps, train_step_metrics
from neuropbr.training.accumulation import AccumulationGroup, group_of
from neuropbr.training.checkpoint import Checkpointer
from neuropbr.training.distributed import broadcast_object
from neuropbr.training.epoch_validation import EpochValidation
from neuropbr.training.gan_step import discriminator_step, stack_maps
from neuropbr.training.loaders import batches_per_epoch, open_loaders
from neuropbr.training.log_window import LogWindow, log_epoch_summary
from neuropbr.training.networks import Networks
from neuropbr.training.nonfinite import NonFiniteGuard
from neuropbr.training.optimizer_step import apply_gradients, backward
from neuropbr.training.options import LoopSettings, TrainerHooks, TrainerOptions
from neuropbr.training.progress import RunProgress
from neuropbr.training.stop_request import StopRequest
from neuropbr.training.tracking import NullTracker, Tracker
from neuropbr.training.trainer_state import restore_trainer_state, save_trainer, trainer_state

__all__ = ["FitResult", "LoopSettings", "Trainer", "TrainerHooks", "TrainerOptions", "stack_maps"]

log = logging.getLogger(__name__)

#: The guide's names for some loss terms (train/loss_l1_total, train/loss_gan_g).
_TERM_LOG_NAMES = {"l1": "loss_l1_total", "gan": "loss_gan_g"}


@dataclass
class FitResult:
    """What ``fit`` returns: the last validation metrics and why it stopped."""

    metrics: dict[str, float] = field(default_factory=dict)
    best_metric: float | None = None
    epochs_done: int = 0
    steps: int = 0
    #: The signal (SIGINT, SIGTERM, the launcher's pre-emption signal) that stopped training, if any.
    stop_signal: int | None = None
    stopped_by_hook: bool = False


class Trainer:
    """Trains a generator (and optionally a discriminator) on a data module.

    Args:
        networks: the networks with their optimizers and schedules (``discriminator=None``
            disables the GAN); moved to the device and wrapped here.
        loss: a ``CompositeLoss`` (``forward(pred, target, fake_logits)``, ``discriminator_loss``,
            ``uses_gan``).
        datamodule: a set-up ``PBRDataModule``.
        settings: the loop settings (``trainer.*``).
        options: device, precision, DDP, speed-ups, the optimized metric, the stored config.
        checkpointer, tracker: where state and metrics go (rank 0 only writes).
        hooks: the validation hook and the profiler (both optional).
    """

    def __init__(
        self,
        networks: Networks,
        loss: CompositeLoss,
        datamodule: Any,
        *,
        settings: LoopSettings,
        options: TrainerOptions,
        checkpointer: Checkpointer,
        tracker: Tracker | None = None,
        hooks: TrainerHooks | None = None,
    ) -> None:
        self.settings, self.options, self.hooks = settings, options, hooks or TrainerHooks()
        self.device, self.precision, self.dist = options.device, options.precision, options.dist_info
        self.networks = networks
        networks.prepare(
            self.device,
            self.precision,
            self.dist,
            ema_decay=options.ema_decay,
            compile=options.compile,
            channels_last=options.channels_last,
        )
        self.loss = loss.to(self.device)
        self.datamodule = datamodule
        self.checkpointer, self.tracker = checkpointer, tracker or NullTracker()
        self.stop = StopRequest(self.dist, self.device)
        self.train_loader, self.val_loader = open_loaders(datamodule, settings, self.dist, self.device.type)
        self.progress = RunProgress(
            batches_per_epoch=self.batches_per_epoch,
            max_epochs=settings.max_epochs,
            max_steps=settings.max_steps,
            accumulate=settings.accumulate_grad_batches,
            val_every=settings.val_every_n_epochs,
            validates=self.val_loader is not None,
            world_size=self.dist.world_size,
        )
        # What a constant predictor learns from the training set: validation scores it beside the model.
        has_val = self.val_loader is not None
        self.baseline = BaselineMaps.from_maps(datamodule.training_maps()) if has_val else None
        if self.baseline is not None:
            log.info("baseline maps (training means): %s", self.baseline.to_dict())
        #: ``step`` counts optimizer steps, ``batch_in_epoch`` batches (accumulate_grad_batches per step).
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        image_dir = Path(options.image_dir or checkpointer.directory.parent / "images")
        validation = (self.val_loader, self.loss, settings, options, self.tracker, self.progress)
        self.validation = EpochValidation(*validation, self.baseline, image_dir)
        self.accumulation = AccumulationGroup()
        self.nonfinite = NonFiniteGuard(
            settings.on_nonfinite,
            settings.nonfinite_patience,
            [networks.generator, networks.discriminator],
            checkpointer.latest_path,
            distributed=self.dist.enabled,
        )

    # The plain modules, for callers that inspect or export them.
    @property
    def generator(self) -> nn.Module:
        return self.networks.generator

    @property
    def discriminator(self) -> nn.Module | None:
        return self.networks.discriminator

    @property
    def batches_per_epoch(self) -> int:
        return batches_per_epoch(self.train_loader, self.datamodule.batch_size)

    # --- one step ------------------------------------------------------------------------------

    def train_step(
        self,
        batch: dict[str, Any],
        gan_on: bool,
        with_metrics: bool = True,
        *,
        group_size: int = 1,
        last: bool = True,
    ) -> dict[str, Tensor]:
        """One batch: D's loss (x ``d_steps_per_g_step``, when the GAN is on) and G's loss,
        backpropagated; with ``last`` (the default) also the optimizer steps.

        Args:
            batch: a collated batch of the data module.
            gan_on: run the discriminator step and the generator's adversarial term.
            with_metrics: also the per-step metrics (MAE/RMSE per map, normal angle; the loop
                asks on logging steps only).
            group_size: the batches of this accumulation group (losses are divided by it).
            last: the group's last batch: D, then G, step on the accumulated gradients.

        Returns:
            Detached scalars of this batch for logging (losses not divided by ``group_size``);
            the only wait for the device is the finiteness check of each optimizer step.

        Raises:
            NonFiniteLossError: ``trainer.on_nonfinite=raise`` and too many non-finite steps.
        """
        nets, s, guard, group = self.networks, self.settings, self.nonfinite, self.accumulation
        group.start_batch(batch, guard, nets.zero_grad)
        views = batch["views"].to(self.device, non_blocking=True)  # (B, V, 3, H, W)
        target = {k: v.to(self.device, non_blocking=True) for k, v in batch["maps"].items()}
        logs: dict[str, Tensor] = {}
        d_sum: Tensor | None = None  # the group's summed D loss, at its last batch
        finite = True
        adversarial = nets.gan_enabled(gan_on)
        with nets.no_sync(not last):
            with self.precision.autocast():
                fake = nets.g_train(views)
            if adversarial:
                logs["d_loss"], d_sum, finite = discriminator_step(
                    nets, self.loss, self.options, s, guard, group, views, target, fake, group_size, last
                )
            # G step: calling the plain D module (frozen) keeps DDP's reducer out of a backward
            # that produces no D gradients.
            with nets.discriminator_frozen(gan_on), self.precision.autocast():
                fake_logits = nets.discriminator(stack_maps(fake), views) if adversarial else None  # type: ignore[misc]
                g_loss, terms = self.loss(fake, target, fake_logits)
            backward(g_loss, nets.g_scaler, group_size)
        group.losses.add("g", g_loss)
        logs["g_loss"] = g_loss.detach()
        for name, value in terms.items():
            logs[_TERM_LOG_NAMES.get(name, name if name.startswith("l1_") else f"loss_{name}")] = (
                value.detach()
            )
        if with_metrics:
            with torch.no_grad():
                logs.update(train_step_metrics({k: v.detach() for k, v in fake.items()}, target))
        if not last:
            return logs
        g_sum = group.losses.take("g")
        finite &= apply_gradients(
            nets.g_optimizer, nets.g_scaler, nets.generator, s.grad_clip_norm, g_sum, guard
        )
        if not finite:  # the forward passes updated the running statistics with non-finite values
            guard.restore()
        elif nets.ema is not None:
            nets.ema.update(nets.generator, self.step)
        sums = {"g_loss": g_sum, "d_loss": d_sum}
        group.finish(
            guard, finite, logs, sums, group_size=group_size, step=self.step + 1, epoch=self.epoch + 1
        )
        return logs

    # --- epochs --------------------------------------------------------------------------------

    def _budget_spent(self) -> bool:
        """``trainer.max_steps`` reached (the same answer on every rank)."""
        return self.settings.max_steps is not None and self.step >= self.settings.max_steps

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """Train until the epoch ends or a stop is requested; returns the epoch's mean losses."""
        s = self.settings
        gan_on = self.networks.gan_enabled(self.loss.uses_gan and epoch >= s.gan_start_epoch)
        self.train_loader.sampler.set_epoch(epoch, start=self.batch_in_epoch * self.datamodule.batch_size)
        self.networks.train()
        shown = s.progress_bar and self.dist.is_main
        bar = self.progress.bar(self.train_loader, epoch, self.batch_in_epoch, shown=shown)
        window = LogWindow(self.tracker, self.dist, self.networks.learning_rates)
        self.progress.start_epoch()
        for batch in bar:
            if self._budget_spent():  # e.g. resumed from a checkpoint written at max_steps
                break
            group_size, last = group_of(
                self.batch_in_epoch, self.batches_per_epoch, s.accumulate_grad_batches
            )
            logs = self.train_step(
                batch,
                gan_on,
                with_metrics=last and (self.step + 1) % s.log_every_n_steps == 0,
                group_size=group_size,
                last=last,
            )
            self.batch_in_epoch += 1
            if self.hooks.profiler is not None:
                self.hooks.profiler.step()
            window.add(logs, batch["views"].shape[0])
            self.progress.batch_done(batch["views"].shape[0])
            if not bar.disable:  # drawn at tqdm's next refresh, not forced every batch
                postfix = self.progress.postfix(epoch, self.batch_in_epoch, self.step + int(last))
                bar.set_postfix({**window.shown, **postfix}, refresh=False)
            if not last:  # steps, logs and stops wait for the accumulation group's optimizer step
                continue
            self.step += 1
            self.networks.count_scheduler_step()
            if self.step % s.log_every_n_steps == 0:
                window.flush(self.step, self.epoch)
            # The step budget needs no agreement between ranks; a signal does (StopRequest.due).
            if self._budget_spent() or self.stop.due(self.step, s.log_every_n_steps):
                break
        bar.close()
        if window and self.dist.is_main:  # the epoch's last steps since the previous log
            window.flush(self.step, self.epoch)
        self.stop.agree()
        self.networks.sync_buffers(self.dist)
        return window.epoch_means()

    def fit(self) -> FitResult:
        """Train from the current state (fresh, or after ``load_state_dict``) to the end."""
        result = FitResult(best_metric=self.best_metric)
        profiler = self.hooks.profiler
        if profiler is not None:
            profiler.start()
        try:
            with self.stop.installed():
                self._run_epochs(result)
        finally:
            if profiler is not None:
                profiler.stop()
        skipped = self.nonfinite.skipped
        if skipped and self.dist.is_main:
            log.warning("skipped %d step(s) with a non-finite loss (trainer.on_nonfinite)", skipped)
            self.tracker.log_metrics({"train/nonfinite_steps": skipped}, step=self.step)
        result.best_metric, result.epochs_done, result.steps = self.best_metric, self.epoch, self.step
        return result

    def _run_epochs(self, result: FitResult) -> None:
        """The epochs of ``fit``, each followed by validation, schedules and checkpoints."""
        s, metric_key = self.settings, self.options.optimized_metric
        while self.epoch < s.max_epochs:
            epoch = self.epoch
            summary = self._train_epoch(epoch)
            if self.stop.signal is not None:
                latest = self.checkpointer.latest_path
                log.warning("%s: saving %s at step %d and stopping", self.stop.name, latest, self.step)
                save_trainer(self, False, epochs_done=None)
                result.stop_signal = self.stop.signal
                return
            if self.batch_in_epoch < self.batches_per_epoch:  # the step budget ran out mid-epoch
                result.metrics, improved = self._validate(epoch, epochs_done=None)
                save_trainer(self, improved, epochs_done=None)
                return
            self.epoch, self.batch_in_epoch = epoch + 1, 0
            log_epoch_summary(self.tracker, self.dist, summary, self.epoch, self.step)
            metrics: dict[str, float] = {}
            improved = False
            if self.epoch % s.val_every_n_epochs == 0 or self.epoch == s.max_epochs:
                metrics, improved = self._validate(epoch, epochs_done=self.epoch)
                result.metrics = metrics
            # Schedules advance before the checkpoint, so a resume starts the next epoch at
            # the lr an uninterrupted run uses.
            self.networks.end_epoch_schedules(metrics.get(metric_key))
            # Rank 0 decides (e.g. reports to Optuna); all ranks follow.
            hook = self.hooks.on_validation if metrics and self.dist.is_main else None
            stop = hook is not None and bool(hook(epoch, metrics))
            save_trainer(self, improved, epochs_done=self.epoch)
            if broadcast_object(stop, self.dist):
                result.stopped_by_hook = True
                log.info("stopping after epoch %d (requested by the validation hook)", self.epoch)
                return
            if self._budget_spent():
                return

    def _validate(self, epoch: int, *, epochs_done: int | None) -> tuple[dict[str, float], bool]:
        return self.validation.run(self.networks.validation_model, epoch, self.step, epochs_done=epochs_done)

    @property
    def best_metric(self) -> float | None:
        """The best value of ``options.optimized_metric`` so far (checkpointed)."""
        return self.validation.best

    @best_metric.setter
    def best_metric(self, value: float | None) -> None:
        self.validation.best = value

    # --- state (neuropbr.training.trainer_state) -----------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return trainer_state(self)

    def load_state_dict(self, state: dict[str, Any], source: str | Path = "checkpoint") -> None:
        """Restore everything ``state_dict`` saved; mismatched weights raise ``CheckpointError``."""
        restore_trainer_state(self, state, source)
