"""Builds a :class:`Trainer` around networks a test made itself (fp32 on the CPU, constant
learning rates, no checkpoint written), the set-up several tests share."""

from __future__ import annotations

import torch
from omegaconf import DictConfig
from torch import nn

from neuropbr.build import build_loss
from neuropbr.training.checkpoint import Checkpointer
from neuropbr.training.networks import Networks
from neuropbr.training.options import LoopSettings, TrainerOptions
from neuropbr.training.precision import resolve_precision
from neuropbr.training.schedules import constant
from neuropbr.training.trainer import Trainer


def make_trainer(
    cfg: DictConfig,
    datamodule: object,
    generator: nn.Module,
    g_optimizer: torch.optim.Optimizer,
    settings: LoopSettings,
    *,
    discriminator: nn.Module | None = None,
    d_optimizer: torch.optim.Optimizer | None = None,
) -> Trainer:
    """A trainer of ``generator`` (and ``discriminator``) with ``cfg``'s loss on ``datamodule``."""
    networks = Networks(
        generator,
        discriminator,
        g_optimizer,
        d_optimizer,
        constant(g_optimizer, max_epochs=1),
        constant(d_optimizer, max_epochs=1) if d_optimizer is not None else None,
    )
    cpu = torch.device("cpu")
    return Trainer(
        networks,
        build_loss(cfg),
        datamodule,
        settings=settings,
        options=TrainerOptions(precision=resolve_precision("fp32", cpu), device=cpu),
        checkpointer=Checkpointer(cfg.paths.checkpoint_dir, 0, True, enabled=False),
    )
