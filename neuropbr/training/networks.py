"""The networks a trainer steps, with what steps them.

:class:`Networks` holds the generator and the optional discriminator, per network its
optimizer, schedule and GradScaler, the generator's EMA, and the handles the training step calls
(compiled and/or DDP-wrapped views of the same parameters). Its ``state_dict`` pieces keep the
checkpoint keys of the trainer (``generator``, ``g_optimizer``, ... ``d_scaler``).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from neuropbr.training.checkpoint import load_module_state
from neuropbr.training.distributed import DistInfo
from neuropbr.training.ema import ExponentialMovingAverage
from neuropbr.training.precision import Precision

#: The loop's log lines keep the trainer's logger name (log filters and captures select it).
log = logging.getLogger("neuropbr.training.trainer")


@dataclass
class Networks:
    """Generator and discriminator (None: no GAN) with their optimizers and schedules.

    ``prepare`` moves them to the device, wraps the training handles (``g_train``, ``d_train``)
    and makes the grad scalers and the EMA; the plain modules own the weights (state dicts, EMA,
    the generator step's call of D).
    """

    generator: nn.Module
    discriminator: nn.Module | None
    g_optimizer: torch.optim.Optimizer
    d_optimizer: torch.optim.Optimizer | None
    g_scheduler: Any
    d_scheduler: Any | None = None
    g_scaler: Any = field(default=None, init=False)
    d_scaler: Any = field(default=None, init=False)
    ema: ExponentialMovingAverage | None = field(default=None, init=False)
    g_train: Callable[..., Any] = field(default=None, init=False)  # type: ignore[assignment]
    d_train: Callable[..., Any] | None = field(default=None, init=False)
    #: The DDP wrappers, for ``no_sync`` inside an accumulation group.
    ddp: list[nn.parallel.DistributedDataParallel] = field(default_factory=list, init=False)

    def prepare(
        self,
        device: torch.device,
        precision: Precision,
        dist_info: DistInfo,
        *,
        ema_decay: float | None = None,
        compile: bool = False,
        channels_last: bool = True,
    ) -> None:
        """Move to ``device`` (channels_last when asked), make the EMA and the scalers, wrap for
        DDP (``dist_info.enabled``) and/or ``torch.compile``."""
        # NHWC on CPU too: oneDNN's convolutions run faster in it than in NCHW.
        memory_format = torch.channels_last if channels_last else torch.preserve_format
        self.generator = self.generator.to(device).to(memory_format=memory_format)
        if self.discriminator is not None:
            self.discriminator = self.discriminator.to(device).to(memory_format=memory_format)
        # Made before the DDP wrapping, from this rank's generator.
        self.ema = ExponentialMovingAverage(self.generator, ema_decay) if ema_decay is not None else None
        self.g_train = self._wrap(self.generator, device, dist_info, compile)
        if self.discriminator is not None:
            self.d_train = self._wrap(self.discriminator, device, dist_info, compile)
        self.g_scaler, self.d_scaler = precision.grad_scaler(), precision.grad_scaler()

    def _wrap(self, module: nn.Module, device: torch.device, dist_info: DistInfo, compile: bool) -> Any:
        wrapped = module
        if dist_info.enabled:
            device_ids = [device.index] if device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(module, device_ids=device_ids)
            self.ddp.append(wrapped)
        return torch.compile(wrapped) if compile else wrapped

    def gan_enabled(self, gan_on: bool) -> bool:
        """Whether this step trains adversarially: a discriminator exists and the GAN is on."""
        return self.discriminator is not None and gan_on

    @property
    def validation_model(self) -> nn.Module:
        """The generator validation and the exported model use: its EMA when there is one."""
        return self.ema.module if self.ema is not None else self.generator

    def train(self) -> None:
        """Training mode for both networks."""
        self.generator.train()
        if self.discriminator is not None:
            self.discriminator.train()

    def no_sync(self, skip: bool) -> contextlib.AbstractContextManager:
        """DDP's ``no_sync`` on every wrapped network while ``skip``: a batch inside an
        accumulation group keeps its gradients local; the group's last batch all-reduces the sum."""
        stack = contextlib.ExitStack()
        if skip:
            for ddp in self.ddp:
                stack.enter_context(ddp.no_sync())
        return stack

    @contextlib.contextmanager
    def discriminator_frozen(self, gan_on: bool) -> Iterator[None]:
        """D's weights need no gradient in the generator step (when D takes part in it)."""
        frozen = self.gan_enabled(gan_on)
        if frozen:
            self.discriminator.requires_grad_(False)  # type: ignore[union-attr]
        try:
            yield
        finally:
            if frozen:
                self.discriminator.requires_grad_(True)  # type: ignore[union-attr]

    def zero_grad(self) -> None:
        for optimizer in (self.g_optimizer, self.d_optimizer):
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)

    def count_scheduler_step(self) -> None:
        """Schedules count optimizer steps (a step warmup raises the lr at each one)."""
        for scheduler in (self.g_scheduler, self.d_scheduler):
            if scheduler is not None and hasattr(scheduler, "batch_step"):
                scheduler.batch_step()

    def end_epoch_schedules(self, metric: float | None) -> None:
        """Advance both schedules by one epoch (``metric`` for a plateau schedule)."""
        self.g_scheduler.step(metric)
        if self.d_scheduler is not None:
            self.d_scheduler.step(metric)

    def learning_rates(self) -> dict[str, float]:
        """``train/g_lr`` (and ``train/d_lr``) for the logs."""
        rates = {"train/g_lr": self.g_optimizer.param_groups[0]["lr"]}
        if self.d_optimizer is not None:
            rates["train/d_lr"] = self.d_optimizer.param_groups[0]["lr"]
        return rates

    def sync_buffers(self, dist_info: DistInfo) -> None:
        """Give every rank rank 0's buffers (BatchNorm running statistics).

        DDP keeps parameters identical but each rank updates its running statistics on its own
        shard after the per-forward broadcast; rank 0's are the ones saved, and every rank
        validates its shard with them (the EMA copy's included).
        """
        if not dist_info.enabled:
            return
        ema = self.ema.module if self.ema is not None else None
        for module in (self.generator, self.discriminator, ema):
            if module is not None:
                for buffer in module.buffers():
                    dist.broadcast(buffer, src=0)

    # --- state ---------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Weights, EMA, optimizers, schedules and scalers under the trainer's checkpoint keys."""

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
        }

    def load_state_dict(self, state: dict[str, Any], source: str | Path = "checkpoint") -> None:
        """Restore what ``state_dict`` saved; mismatched weights raise ``CheckpointError``.

        ``state`` is the whole checkpoint (its ``step`` resumes a schedule saved before step
        counting existed); pieces an older or GAN-less run did not save start fresh.
        """
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
        self.g_scheduler.load_state_dict({"steps": state["step"], **state["g_scheduler"]})
        if self.d_scheduler is not None and state.get("d_scheduler") is not None:
            self.d_scheduler.load_state_dict({"steps": state["step"], **state["d_scheduler"]})
        for name, scaler in (("g_scaler", self.g_scaler), ("d_scaler", self.d_scaler)):
            saved = state.get(name) or {}
            if scaler.is_enabled() and saved:
                scaler.load_state_dict(saved)
            elif scaler.is_enabled() or saved:  # trainer.precision differs from the saved run's
                log.info("%s: precision changed since the checkpoint; the loss scale starts fresh", name)
