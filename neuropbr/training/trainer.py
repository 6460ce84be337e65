"""The training loop: one readable file, no callbacks (the order of a step is read top to bottom).

Per step: the generator forward runs once; the discriminator step (when the GAN is on) reuses
its detached output, then the generator step backpropagates through the discriminator. AMP with
one GradScaler per network, gradient clipping, an optional EMA of the generator for validation.
Validation, best-model selection and checkpoints happen at epoch ends; SIGINT/SIGTERM save
``latest.pth`` at the next step boundary and stop cleanly, and ``load_state_dict`` resumes exactly
(mid-epoch included): same step counter, same data order, same RNG streams.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from neuropbr.losses.composite import CompositeLoss
from neuropbr.metrics import BaselineMaps, train_step_metrics
from neuropbr.models.contracts import PBR_MAPS
from neuropbr.training.accumulation import LossSums, check_accumulation, group_of
from neuropbr.training.batch_limits import check_limit, limit_loader
from neuropbr.training.checkpoint import Checkpointer, capture_rng_state, load_module_state, restore_rng_state
from neuropbr.training.distributed import DistInfo, barrier, broadcast_object, gather_objects
from neuropbr.training.ema import ExponentialMovingAverage
from neuropbr.training.nonfinite import NonFiniteGuard
from neuropbr.training.precision import Precision
from neuropbr.training.profiling import BatchProfiler
from neuropbr.training.progress import RunProgress
from neuropbr.training.tracking import NullTracker, Tracker
from neuropbr.training.validation import validate
from neuropbr.training.visualize import write_validation_images
from neuropbr.utils.choices import choice
from neuropbr.utils.signals import stop_signals

log = logging.getLogger(__name__)

#: The guide's names for some loss terms (train/loss_l1_total, train/loss_gan_g).
_TERM_LOG_NAMES = {"l1": "loss_l1_total", "gan": "loss_gan_g"}


def stack_maps(maps: dict[str, Tensor]) -> Tensor:
    """The discriminator's input: the four maps concatenated, (B, 8, H, W)."""
    return torch.cat([maps[name] for name in PBR_MAPS], dim=1)


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
    recompute_fakes: bool = False
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
        generator, discriminator: the networks (``discriminator=None`` disables the GAN).
        loss: a ``CompositeLoss`` (``forward(pred, target, fake_logits)``, ``discriminator_loss``,
            ``uses_gan``).
        g_optimizer, d_optimizer, g_scheduler, d_scheduler: per network (D's may be None).
        datamodule: a set-up ``PBRDataModule``.
        device, precision: from ``neuropbr.training.precision``.
        settings: loop settings.
        checkpointer, tracker: where state and metrics go (rank 0 only writes).
        optimized_metric, metric_mode: picks ``best_model.pth`` (e.g. ``val/loss``, ``min``).
        ema_decay: EMA of the generator's weights used for validation (None = off).
        compile, channels_last: CUDA speed-ups (compile also works on CPU, slowly).
        dist_info: DDP rank information.
        config: the resolved config, stored in checkpoints.
        image_dir: where validation image grids are written.
        on_validation: ``(epoch, metrics) -> stop?``, called on rank 0 after each validation
            (the Optuna pruning handle).
        profiler: traces a few training batches (``trainer.profiler``; None = off).
    """

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module | None,
        loss: CompositeLoss,
        g_optimizer: torch.optim.Optimizer,
        d_optimizer: torch.optim.Optimizer | None,
        g_scheduler: Any,
        d_scheduler: Any | None,
        datamodule: Any,
        *,
        device: torch.device,
        precision: Precision,
        settings: LoopSettings,
        checkpointer: Checkpointer,
        tracker: Tracker | None = None,
        optimized_metric: str = "val/loss",
        metric_mode: str = "min",
        ema_decay: float | None = None,
        compile: bool = False,
        channels_last: bool = True,
        dist_info: DistInfo | None = None,
        config: dict[str, Any] | None = None,
        image_dir: str | Path | None = None,
        on_validation: Callable[[int, dict[str, float]], bool] | None = None,
        profiler: BatchProfiler | None = None,
    ) -> None:
        if metric_mode not in ("min", "max"):
            raise ValueError(f"optimized_metric_mode={metric_mode!r}; choose 'min' or 'max'")
        self.device, self.precision, self.s = device, precision, settings
        self.dist = dist_info or DistInfo()
        self.loss = loss.to(device)
        self.datamodule = datamodule
        self.checkpointer, self.tracker = checkpointer, tracker or NullTracker()
        self.optimized_metric, self.metric_mode = optimized_metric, metric_mode
        self.config, self.on_validation, self.profiler = config or {}, on_validation, profiler
        self.image_dir = Path(image_dir) if image_dir else checkpointer.directory.parent / "images"
        memory_format = (
            torch.channels_last if channels_last and device.type == "cuda" else torch.preserve_format
        )
        # The plain modules own the weights (state dicts, EMA, the G-step call of D); the
        # "train" handles may be compiled and/or DDP-wrapped views of the same parameters.
        self.generator = generator.to(device).to(memory_format=memory_format)
        self.discriminator = (
            discriminator.to(device).to(memory_format=memory_format) if discriminator is not None else None
        )
        self.ema = ExponentialMovingAverage(self.generator, ema_decay) if ema_decay is not None else None
        self._ddp: list[nn.parallel.DistributedDataParallel] = []
        self.g_train = self._wrap(self.generator, compile)
        self.d_train = self._wrap(self.discriminator, compile) if self.discriminator is not None else None
        self.g_optimizer, self.d_optimizer = g_optimizer, d_optimizer
        self.g_scheduler, self.d_scheduler = g_scheduler, d_scheduler
        self.g_scaler, self.d_scaler = precision.grad_scaler(), precision.grad_scaler()
        overfit = settings.overfit_batches or None
        if hasattr(datamodule, "use_device"):  # data.num_workers=auto depends on the device
            datamodule.use_device(device.type)
        # Overfitting pins epoch 0's order and augmentation seeds: the same batches every epoch.
        self.train_loader = limit_loader(
            datamodule.train_dataloader(self.dist.rank, self.dist.world_size),
            overfit or settings.limit_train_batches,
            fixed_epoch=0 if overfit else None,
        )
        has_val = datamodule.val_set is not None and len(datamodule.val_set) > 0
        if not has_val:
            log.warning(
                "no validation set (data.val_ratio=0 or too few materials): no validation, no "
                "best_model.pth, and no optimized_metric for a sweeper"
            )
        # Every rank validates its shard; the metric sums are all-reduced (validation.validate).
        val_limit = settings.limit_val_batches if settings.limit_val_batches is not None else overfit
        self.val_loader = (
            limit_loader(datamodule.val_dataloader(self.dist.rank, self.dist.world_size), val_limit)
            if has_val
            else None
        )
        limited = (
            overfit or settings.limit_train_batches is not None or settings.limit_val_batches is not None
        )
        if limited and self.dist.is_main:
            log.info(
                "debugging limits: %d training batch(es) per epoch%s, %s validation batch(es)",
                self.batches_per_epoch,
                " (the same ones every epoch: trainer.overfit_batches)" if overfit else "",
                len(self.val_loader) if self.val_loader is not None else "no",
            )
        if self.dist.is_main:
            log.info(datamodule.describe_workers(self.val_loader.num_workers if self.val_loader else 0))
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
        self.baseline = BaselineMaps.from_maps(datamodule.training_maps()) if has_val else None
        if self.baseline is not None:
            log.info("baseline maps (training means): %s", self.baseline.to_dict())
        #: ``step`` counts optimizer steps, ``batch_in_epoch`` batches (accumulate_grad_batches per step).
        self.epoch, self.batch_in_epoch, self.step = 0, 0, 0
        self.best_metric: float | None = None
        # The accumulation group in progress: batches backpropagated, their samples, loss sums.
        self._accumulated = 0
        self._group_samples: list[str] = []
        self._loss_sums = LossSums()
        self._stop_signal: int | None = None
        self.nonfinite = NonFiniteGuard(
            settings.on_nonfinite,
            settings.nonfinite_patience,
            [self.generator, self.discriminator],
            checkpointer.latest_path,
            distributed=self.dist.enabled,
        )

    def _wrap(self, module: nn.Module, compile: bool) -> Callable[..., Any]:
        wrapped = module
        if self.dist.enabled:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
            self._ddp.append(wrapped)
        return torch.compile(wrapped) if compile else wrapped

    def _no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` on every wrapped network while ``skip``: a batch inside an
        accumulation group keeps its gradients local; the group's last batch all-reduces the sum."""
        stack = contextlib.ExitStack()
        if skip:
            for ddp in self._ddp:
                stack.enter_context(ddp.no_sync())
        return stack

    # --- one step ------------------------------------------------------------------------------

    @staticmethod
    def _backward(loss: Tensor, scaler: Any, group_size: int) -> None:
        """Backpropagate ``loss / group_size``, adding to the gradients of the group so far."""
        scaler.scale(loss / group_size if group_size > 1 else loss).backward()

    def _step(
        self,
        optimizer: torch.optim.Optimizer,
        scaler: Any,
        module: nn.Module,
        clip: float | None,
        loss: Tensor,
    ) -> bool:
        """Apply the accumulated gradients; False (step not applied) when ``loss`` (the group's
        summed loss) or the gradient norm is not finite."""
        norm = None
        if clip:
            # Clip the true gradients, not the scaled ones; once per step, so only at a boundary.
            scaler.unscale_(optimizer)
            norm = torch.nn.utils.clip_grad_norm_(module.parameters(), clip, foreach=True)
        # Checked once the backward pass is queued (one sync); a GradScaler already skips steps
        # with non-finite gradients itself (and lowers its scale), so it steps regardless.
        finite = self.nonfinite.finite(loss, None if scaler.is_enabled() else norm)
        if finite or scaler.is_enabled():
            scaler.step(optimizer)
            scaler.update()
        # Free the gradients now, not at the next backward: the generator's (0.45 GiB for
        # fast_iteration) would otherwise stay allocated through the next G forward and D step,
        # where the step's memory peaks.
        optimizer.zero_grad(set_to_none=True)
        return finite

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

        ``d_steps_per_g_step > 1`` trains D several times on this batch's real maps and fakes
        (a stronger discriminator per generator step), not on fresh batches.

        Args:
            batch: a collated batch of the data module.
            gan_on: run the discriminator step and the generator's adversarial term.
            with_metrics: also compute the per-step training metrics (MAE/RMSE per map, normal
                angle); the loop asks for them on logging steps only.
            group_size: the batches of this accumulation group (losses are divided by it; see
                :mod:`neuropbr.training.accumulation`).
            last: the group's last batch: D and G step on the accumulated gradients (D just
                before G's adversarial term, as without accumulation).

        Returns:
            Detached scalars of this batch for logging (losses not divided by ``group_size``);
            the only wait for the device is the finiteness check of each optimizer step
            (:mod:`neuropbr.training.nonfinite`).

        Raises:
            NonFiniteLossError: ``trainer.on_nonfinite=raise`` and too many non-finite steps.
        """
        if self._accumulated == 0:  # the group's first batch
            self.nonfinite.snapshot()
            for optimizer in (self.g_optimizer, self.d_optimizer):
                if optimizer is not None:
                    optimizer.zero_grad(set_to_none=True)
        self._accumulated += 1
        self._group_samples += list(batch.get("sample") or [])
        finite = True
        views = batch["views"].to(self.device, non_blocking=True)  # (B, V, 3, H, W)
        target = {k: v.to(self.device, non_blocking=True) for k, v in batch["maps"].items()}
        logs: dict[str, Tensor] = {}
        d_sum: Tensor | None = None  # the group's summed D loss, at its last batch
        discriminator = self.discriminator
        with self._no_sync(not last):
            with self.precision.autocast():
                fake = self.g_train(views)
            if gan_on:
                assert discriminator is not None and self.d_train is not None and self.d_optimizer is not None
                real = stack_maps(target)
                for _ in range(self.s.d_steps_per_g_step):
                    if self.s.recompute_fakes:  # the original stack's behaviour (benchmarks only)
                        with torch.no_grad(), self.precision.autocast():
                            fake_for_d = self.g_train(views)
                    else:
                        fake_for_d = fake
                    with self.precision.autocast():
                        fake_stack = stack_maps({k: v.detach() for k, v in fake_for_d.items()})
                        d_loss = self.loss.discriminator_loss(
                            self.d_train(real, views), self.d_train(fake_stack, views)
                        )
                    self._backward(d_loss, self.d_scaler, group_size)
                    self._loss_sums.add("d", d_loss)
                    if last:
                        d_sum = self._loss_sums.take("d")
                        finite &= self._step(
                            self.d_optimizer, self.d_scaler, discriminator, self.s.d_grad_clip_norm, d_sum
                        )
                logs["d_loss"] = d_loss.detach()
            # G step: D's weights need no gradient here; calling the plain module also keeps DDP's
            # reducer out of a backward that produces no D gradients.
            if discriminator is not None and gan_on:
                discriminator.requires_grad_(False)
            with self.precision.autocast():
                fake_logits = (
                    discriminator(stack_maps(fake), views) if discriminator is not None and gan_on else None
                )
                g_loss, terms = self.loss(fake, target, fake_logits)
            if discriminator is not None and gan_on:
                discriminator.requires_grad_(True)
            self._backward(g_loss, self.g_scaler, group_size)
        self._loss_sums.add("g", g_loss)
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
        g_sum = self._loss_sums.take("g")
        finite &= self._step(self.g_optimizer, self.g_scaler, self.generator, self.s.grad_clip_norm, g_sum)
        if not finite:  # the forward passes updated the running statistics with non-finite values
            self.nonfinite.restore()
        elif self.ema is not None:
            self.ema.update(self.generator, self.step)
        samples, self._group_samples, self._accumulated = self._group_samples, [], 0
        group_logs = dict(logs)
        if group_size > 1:  # the group's mean losses: a non-finite batch anywhere shows in the message
            group_logs["g_loss"] = g_sum / group_size
            if d_sum is not None:
                group_logs["d_loss"] = d_sum / group_size
        self.nonfinite.record(
            finite, step=self.step + 1, epoch=self.epoch + 1, samples=samples or None, logs=group_logs
        )
        return logs

    # --- epochs --------------------------------------------------------------------------------

    def _budget_spent(self) -> bool:
        """``trainer.max_steps`` reached (the same answer on every rank)."""
        return self.s.max_steps is not None and self.step >= self.s.max_steps

    def _agree_on_signal(self) -> None:
        """Every rank adopts a signal any rank received, so all of them take the same branch."""
        if self.dist.enabled:
            device = self.device if dist.get_backend() == "nccl" else torch.device("cpu")
            flag = torch.tensor([self._stop_signal or 0], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self._stop_signal = int(flag.item()) or None

    def _should_stop(self) -> bool:
        if self.dist.enabled:
            # Ranks agree on signals at logging steps only: a collective every step would make
            # each step wait for the device. The step budget needs no agreement.
            if self.step % self.s.log_every_n_steps == 0:
                self._agree_on_signal()
            return self._budget_spent() or (
                self._stop_signal is not None and self.step % self.s.log_every_n_steps == 0
            )
        return self._budget_spent() or self._stop_signal is not None

    def _count_scheduler_step(self) -> None:
        """Schedules count optimizer steps (a step warmup raises the lr at each one)."""
        for scheduler in (self.g_scheduler, self.d_scheduler):
            if scheduler is not None and hasattr(scheduler, "batch_step"):
                scheduler.batch_step()

    def _log_window(self, window: dict[str, list[Tensor]], samples: int, seconds: float) -> dict[str, float]:
        keys = list(window)
        means = torch.stack([torch.stack(window[k]).float().mean() for k in keys]).tolist()  # one sync
        values = {f"train/{k}": v for k, v in zip(keys, means)}
        values["train/g_lr"] = self.g_optimizer.param_groups[0]["lr"]
        if self.d_optimizer is not None:
            values["train/d_lr"] = self.d_optimizer.param_groups[0]["lr"]
        values["train/samples_per_sec"] = samples * self.dist.world_size / max(seconds, 1e-9)
        if self.dist.is_main:
            self.tracker.log_metrics(values, step=self.step)
            # The same window in train.log: the losses (per-map terms and metrics stay in the tracker).
            losses = [k for k in keys if k in ("g_loss", "d_loss") or k.startswith("loss_")]
            # Seconds per batch (loading included): with log_every_n_steps=1 a per-step timing log.
            batches = len(window["g_loss"]) if "g_loss" in window else 1
            log.info(
                "step %d (epoch %d): %s, g_lr %.3g, %.1f samples/s, %.3f s/batch",
                self.step,
                self.epoch + 1,
                ", ".join(f"{k} {values[f'train/{k}']:.4f}" for k in losses),
                values["train/g_lr"],
                values["train/samples_per_sec"],
                seconds / max(batches, 1),
            )
        return values

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        """Train until the epoch ends or a stop is requested; returns the epoch's mean losses."""
        gan_on = self.discriminator is not None and self.loss.uses_gan and epoch >= self.s.gan_start_epoch
        sampler = self.train_loader.sampler
        sampler.set_epoch(epoch, start=self.batch_in_epoch * self.datamodule.batch_size)
        self.generator.train()
        if self.discriminator is not None:
            self.discriminator.train()
        bar = tqdm(
            self.train_loader,
            total=self.batch_in_epoch + len(self.train_loader),
            initial=self.batch_in_epoch,
            desc=f"Epoch {epoch + 1}/{self.s.max_epochs}",
            disable=not (self.s.progress_bar and self.dist.is_main),
            dynamic_ncols=True,
        )
        window: dict[str, list[Tensor]] = defaultdict(list)
        epoch_sums: dict[str, list[Tensor]] = defaultdict(list)
        window_samples, window_start = 0, time.perf_counter()
        losses: dict[str, str] = {}  # the last logged window's, shown until the next
        self.progress.start_epoch()
        for batch in bar:
            if self._budget_spent():  # e.g. resumed from a checkpoint written at max_steps
                break
            group_size, last = group_of(
                self.batch_in_epoch, self.batches_per_epoch, self.s.accumulate_grad_batches
            )
            logs = self.train_step(
                batch,
                gan_on,
                with_metrics=last and (self.step + 1) % self.s.log_every_n_steps == 0,
                group_size=group_size,
                last=last,
            )
            self.batch_in_epoch += 1
            if self.profiler is not None:
                self.profiler.step()
            window_samples += batch["views"].shape[0]
            self.progress.batch_done(batch["views"].shape[0])
            if not bar.disable:  # drawn at tqdm's next refresh, not forced every batch
                postfix = self.progress.postfix(epoch, self.batch_in_epoch, self.step + int(last))
                bar.set_postfix({**losses, **postfix}, refresh=False)
            for key, value in logs.items():
                window[key].append(value)
                if key in ("g_loss", "d_loss"):
                    epoch_sums[key].append(value)
            if not last:  # steps, logs and stops wait for the accumulation group's optimizer step
                continue
            self.step += 1
            self._count_scheduler_step()
            if self.step % self.s.log_every_n_steps == 0:
                values = self._log_window(window, window_samples, time.perf_counter() - window_start)
                losses = {"G_loss": f"{values['train/g_loss']:.4f}"}
                if "train/d_loss" in values:
                    losses["D_loss"] = f"{values['train/d_loss']:.4f}"
                window, window_samples, window_start = defaultdict(list), 0, time.perf_counter()
            if self._should_stop():
                break
        bar.close()
        if window and self.dist.is_main:  # the epoch's last steps since the previous log
            self._log_window(window, window_samples, time.perf_counter() - window_start)
        self._agree_on_signal()
        self._sync_buffers()
        return {k: torch.stack(v).float().mean().item() for k, v in epoch_sums.items()}

    def _sync_buffers(self) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics).

        DDP keeps parameters identical but each rank updates its running statistics on its own
        shard after the per-forward broadcast; rank 0's are the ones saved, and every rank
        validates its shard with them (the EMA copy's included).
        """
        if not self.dist.enabled:
            return
        ema = self.ema.module if self.ema is not None else None
        for module in (self.generator, self.discriminator, ema):
            if module is not None:
                for buffer in module.buffers():
                    dist.broadcast(buffer, src=0)

    @torch.no_grad()
    def evaluate(self, epoch: int, log_images: bool = False) -> dict[str, float]:
        """Validation metrics (``val/loss`` and the metrics module's keys, prefixed ``val/``)."""
        assert self.val_loader is not None, "no validation set (data.val_ratio=0)"
        model = self.ema.module if self.ema is not None else self.generator
        started = time.perf_counter()
        bar = tqdm(
            self.val_loader,
            total=len(self.val_loader),
            desc=f"Validation {epoch + 1}",
            leave=False,  # the epoch's bar and the validation line in the log stay
            disable=not (self.s.progress_bar and self.dist.is_main),
            dynamic_ncols=True,
        )
        result = validate(
            model,
            bar,
            self.loss,
            self.precision,
            self.device,
            self.s.num_log_images if self.dist.is_main else 0,
            dist_info=self.dist,
            baseline=self.baseline,
        )
        bar.close()
        self.progress.validation_done(time.perf_counter() - started)
        metrics = {f"val/{k}": v for k, v in result.metrics.items()}
        self.tracker.log_metrics(metrics, step=self.step)  # a NullTracker off rank 0
        if log_images and result.shown:
            shown = result.shown
            images = write_validation_images(
                self.image_dir, epoch + 1, shown["views"], shown["pred"], shown["target"]
            )
            for name, path in images.items():
                self.tracker.log_image(path, f"val/{name}", step=self.step)
        return metrics

    def _improved(self, metrics: dict[str, float]) -> bool:
        if self.optimized_metric not in metrics:
            raise KeyError(
                f"optimized_metric={self.optimized_metric!r} is not among the validation metrics: {sorted(metrics)}"
            )
        value = metrics[self.optimized_metric]
        if not math.isfinite(value):
            return False
        better = self.best_metric is None or (
            value < self.best_metric if self.metric_mode == "min" else value > self.best_metric
        )
        if better:
            self.best_metric = value
        return better

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(self.train_loader.sampler.shard_size / self.datamodule.batch_size)

    def fit(self) -> FitResult:
        """Train from the current state (fresh, or after ``load_state_dict``) to the end."""
        result = FitResult(best_metric=self.best_metric)
        previous = self._install_signal_handlers()
        if self.profiler is not None:
            self.profiler.start()
        try:
            while self.epoch < self.s.max_epochs:
                epoch = self.epoch
                summary = self._train_epoch(epoch)
                if self._stop_signal is not None:
                    log.warning(
                        "%s: saving %s at step %d and stopping",
                        signal.Signals(self._stop_signal).name,
                        self.checkpointer.latest_path,
                        self.step,
                    )
                    self._save(False, epochs_done=None)
                    result.stop_signal = self._stop_signal
                    break
                if self.batch_in_epoch < self.batches_per_epoch:  # the step budget ran out mid-epoch
                    result.metrics, improved = self._validate(epoch, epochs_done=None)
                    self._save(improved, epochs_done=None)
                    break
                self.epoch, self.batch_in_epoch = epoch + 1, 0
                log.info(
                    "Epoch %d summary: %s", self.epoch, ", ".join(f"{k} {v:.4f}" for k, v in summary.items())
                )
                if self.dist.is_main and summary:
                    self.tracker.log_metrics(
                        {f"train/epoch_{k}": v for k, v in summary.items()} | {"epoch": self.epoch}, self.step
                    )
                metrics: dict[str, float] = {}
                improved = False
                if self.epoch % self.s.val_every_n_epochs == 0 or self.epoch == self.s.max_epochs:
                    metrics, improved = self._validate(epoch, epochs_done=self.epoch)
                    result.metrics = metrics
                # Schedules advance before the checkpoint, so a resume starts the next epoch at
                # the lr an uninterrupted run uses.
                self.g_scheduler.step(metrics.get(self.optimized_metric))
                if self.d_scheduler is not None:
                    self.d_scheduler.step(metrics.get(self.optimized_metric))
                stop = (
                    bool(metrics)
                    and self.dist.is_main  # rank 0 decides (e.g. reports to Optuna); all ranks follow
                    and self.on_validation is not None
                    and self.on_validation(epoch, metrics)
                )
                self._save(improved, epochs_done=self.epoch)
                if broadcast_object(stop, self.dist):
                    result.stopped_by_hook = True
                    log.info("stopping after epoch %d (requested by the validation hook)", self.epoch)
                    break
                if self.s.max_steps is not None and self.step >= self.s.max_steps:
                    break
        finally:
            self._restore_signal_handlers(previous)
            if self.profiler is not None:
                self.profiler.stop()
        if self.nonfinite.skipped and self.dist.is_main:
            log.warning(
                "skipped %d step(s) with a non-finite loss (trainer.on_nonfinite)", self.nonfinite.skipped
            )
            self.tracker.log_metrics({"train/nonfinite_steps": self.nonfinite.skipped}, step=self.step)
        result.best_metric, result.epochs_done, result.steps = self.best_metric, self.epoch, self.step
        return result

    def _validate(self, epoch: int, *, epochs_done: int | None) -> tuple[dict[str, float], bool]:
        """Validate (every rank its shard), then rank 0 updates the best value; every rank gets
        rank 0's metrics.

        ``epochs_done`` is None when stopping mid-epoch.
        """
        metrics: dict[str, float] = {}
        improved = False
        if self.val_loader is not None:
            every = self.s.log_images_every_n_epochs
            log_images = (
                epochs_done is None
                or epochs_done == self.s.max_epochs
                or (every > 0 and epochs_done % every == 0)
            )
            metrics = self.evaluate(epoch, log_images=log_images)
        if self.dist.is_main and metrics:
            improved = self._improved(metrics)
            shown = ("val/loss", "val/overall_psnr", "val/normal_angle_mean", self.optimized_metric)
            log.info(
                "[Validation] Epoch %d - %s",
                epoch + 1,
                ", ".join(f"{k} {metrics[k]:.4f}" for k in dict.fromkeys(shown) if k in metrics),
            )
        return broadcast_object(metrics, self.dist), improved

    def _save(self, improved: bool, *, epochs_done: int | None) -> None:
        """Rank 0 writes the checkpoints (``epochs_done`` None: mid-epoch, no periodic file);
        every rank waits so none races ahead of a checkpoint being written."""
        # Every rank's RNG state (its dropout masks, its CUDA stream), so each resumes its own.
        rng_per_rank = gather_objects(capture_rng_state(), self.dist)
        if self.dist.is_main:
            state = self.state_dict()
            if self.dist.enabled:
                state["rng_per_rank"] = rng_per_rank
            self.checkpointer.save(state, improved=improved, epochs_done=epochs_done)
        barrier(self.dist)

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        def opt(obj: Any) -> Any:
            return obj.state_dict() if obj is not None else None

        return {
            "generator": self.generator.state_dict(),
            "discriminator": opt(self.discriminator),
            "ema": opt(self.ema.module) if self.ema is not None else None,
            "g_optimizer": self.g_optimizer.state_dict(),
            "d_optimizer": opt(self.d_optimizer),
            "g_scheduler": self.g_scheduler.state_dict(),
            "d_scheduler": opt(self.d_scheduler),
            "g_scaler": self.g_scaler.state_dict(),
            "d_scaler": self.d_scaler.state_dict(),
            "rng": capture_rng_state(),
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "step": self.step,
            "best_metric": self.best_metric,
            "optimized_metric": self.optimized_metric,
            "mlflow_run_id": self.tracker.run_id,
            "config": self.config,
            "baseline_maps": self.baseline.to_dict() if self.baseline is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any], source: str | Path = "checkpoint") -> None:
        """Restore everything ``state_dict`` saved; mismatched weights raise ``CheckpointError``."""
        load_module_state(self.generator, state["generator"], "generator", source)
        for name, module in (
            ("discriminator", self.discriminator),
            ("ema", self.ema.module if self.ema else None),
        ):
            if module is not None and state.get(name) is not None:
                load_module_state(module, state[name], name, source)
            elif module is not None and name == "discriminator":
                log.warning("%s has no discriminator weights; the discriminator starts fresh", source)
        if self.ema is not None and state.get("ema") is None:
            self.ema.module.load_state_dict(self.generator.state_dict())
        self.g_optimizer.load_state_dict(state["g_optimizer"])
        if self.d_optimizer is not None and state.get("d_optimizer") is not None:
            self.d_optimizer.load_state_dict(state["d_optimizer"])
        # A schedule saved before step counting existed resumes at the trainer's step.
        self.g_scheduler.load_state_dict({"steps": state["step"], **state["g_scheduler"]})
        if self.d_scheduler is not None and state.get("d_scheduler") is not None:
            self.d_scheduler.load_state_dict({"steps": state["step"], **state["d_scheduler"]})
        for name, scaler in (("g_scaler", self.g_scaler), ("d_scaler", self.d_scaler)):
            saved = state.get(name) or {}
            if scaler.is_enabled() and saved:
                scaler.load_state_dict(saved)
            elif scaler.is_enabled() or saved:  # trainer.precision differs from the saved run's
                log.info("%s: precision changed since the checkpoint; the loss scale starts fresh", name)
        self.epoch, self.batch_in_epoch, self.step = (
            state["epoch"],
            state.get("batch_in_epoch", 0),
            state["step"],
        )
        self.best_metric = state.get("best_metric")
        k = self.s.accumulate_grad_batches
        if self.batch_in_epoch % k:
            log.warning(
                "%s stopped at batch %d of the epoch, inside a group of trainer.accumulate_grad_batches=%d "
                "(it was written with another value): the first step accumulates fewer batches",
                source,
                self.batch_in_epoch,
                k,
            )
        per_rank = state.get("rng_per_rank") or []
        same_world = len(per_rank) == self.dist.world_size
        restore_rng_state(per_rank[self.dist.rank] if same_world else state["rng"])
        log.info(
            "resumed from %s: epoch %d, batch %d, step %d", source, self.epoch, self.batch_in_epoch, self.step
        )

    # --- signals -------------------------------------------------------------------------------

    def _install_signal_handlers(self) -> dict[int, Any]:
        import threading

        if threading.current_thread() is not threading.main_thread():
            return {}

        def request_stop(signum: int, _frame: Any) -> None:
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            self._stop_signal = signum

        return {sig: signal.signal(sig, request_stop) for sig in stop_signals()}

    @staticmethod
    def _restore_signal_handlers(previous: dict[int, Any]) -> None:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
