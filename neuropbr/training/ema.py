"""Exponential moving average of the generator's weights (``trainer.ema_decay``)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


class ExponentialMovingAverage(nn.Module):
    """A frozen copy of ``model`` updated as ``ema = d * ema + (1 - d) * model``, ``d`` warming up
    to ``decay`` (see :meth:`decay_at`).

    Buffers (BatchNorm running statistics) are copied, not averaged. The copy is used for
    validation and inference; it is saved in checkpoints as ``ema``.

    Args:
        model: the (unwrapped) module to track.
        decay: in [0, 1); typical values 0.999-0.9999.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"trainer.ema_decay={decay}: expected a value in [0, 1)")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)

    @torch.no_grad()
    def decay_at(self, step: int) -> float:
        """The decay used at optimizer step ``step`` (0-based): warmed up as ``(1 + t) / (10 + t)``
        so early validations see the trained weights rather than an average dominated by the
        random initialisation (with 0.999, the first ~1000 steps would be)."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    def update(self, model: nn.Module, step: int) -> None:
        """Move the average towards ``model``'s weights after optimizer step ``step``."""
        ema_params: list[torch.Tensor] = list(self.module.parameters())
        model_params = [p.detach() for p in model.parameters()]
        # lerp towards the live weights: ema += (1 - decay) * (model - ema)
        torch._foreach_lerp_(ema_params, model_params, 1.0 - self.decay_at(step))
        for ema_buf, buf in zip(self.module.buffers(), model.buffers()):
            ema_buf.copy_(buf)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.module(*args, **kwargs)
