"""Exponential moving average of the generator's weights (``trainer.ema_decay``).

timm's ``ModelEmaV3`` does the update (foreach lerp of the parameters, buffers copied); only the
warm-up of the decay is this project's: timm's ``use_warmup`` form ``1 - (1 + t / g) ** -p``
cannot give ``(1 + t) / (10 + t)`` (it starts at 0, a copy, instead of 0.1). torch's
``AveragedModel`` with ``get_ema_multi_avg_fn`` is not used: its decay is fixed (no warm-up),
and its ``n_averaged`` counter is not in the saved ``ema`` weights, so a resumed run would copy
the live weights on its first update instead of averaging (no exact resume).
"""

from __future__ import annotations

import torch
from timm.utils import ModelEmaV3
from torch import nn


class ExponentialMovingAverage(ModelEmaV3):
    """A frozen copy of ``model`` updated as ``ema = d * ema + (1 - d) * model``, ``d`` warming up
    to ``decay`` (see :meth:`decay_at`).

    Buffers (BatchNorm running statistics) are copied, not averaged. The copy is used for
    validation and inference; it is saved in checkpoints as ``ema``.

    Args:
        model: the (unwrapped) module to track.
        decay: in [0, 1); typical values 0.999-0.9999.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"trainer.ema_decay={decay}: expected a value in [0, 1)")
        # exclude_buffers: copy buffers rather than average them; no stochastic rounding, so that
        # bf16 weights are updated by the same plain lerp as the others (deterministic).
        super().__init__(model, decay=decay, exclude_buffers=True, stochastic_rounding=False)
        self.module.requires_grad_(False)

    def decay_at(self, step: int) -> float:
        """The decay used at optimizer step ``step`` (0-based): warmed up as ``(1 + t) / (10 + t)``
        so early validations see the trained weights rather than an average dominated by the
        random initialisation (with 0.999, the first ~1000 steps would be)."""
        return min(self.decay, (1.0 + step) / (10.0 + step))

    def get_decay(self, step: int | None = None) -> float:
        """timm's hook: the warmed-up decay of :meth:`decay_at` (``decay`` itself without a step)."""
        return self.decay if step is None else self.decay_at(step)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int | None = None) -> None:
        """Move the average towards ``model``'s weights after optimizer step ``step``."""
        super().update(model, step)
