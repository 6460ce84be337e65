"""The discriminator's part of a training step: its loss on real maps and the generator's
(detached) fakes, backpropagated, and at an accumulation group's last batch its optimizer step."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor

from neuropbr.models.contracts import PBR_MAPS
from neuropbr.training.optimizer_step import apply_gradients, backward

if TYPE_CHECKING:
    from neuropbr.losses.composite import CompositeLoss
    from neuropbr.training.accumulation import AccumulationGroup
    from neuropbr.training.networks import Networks
    from neuropbr.training.nonfinite import NonFiniteGuard
    from neuropbr.training.options import LoopSettings, TrainerOptions


def stack_maps(maps: dict[str, Tensor]) -> Tensor:
    """The discriminator's input: the four maps concatenated, (B, 8, H, W)."""
    return torch.cat([maps[name] for name in PBR_MAPS], dim=1)


def discriminator_step(
    nets: Networks,
    loss: CompositeLoss,
    options: TrainerOptions,
    settings: LoopSettings,
    guard: NonFiniteGuard,
    group: AccumulationGroup,
    views: Tensor,
    target: dict[str, Tensor],
    fake: dict[str, Tensor],
    group_size: int,
    last: bool,
) -> tuple[Tensor, Tensor | None, bool]:
    """Train D ``settings.d_steps_per_g_step`` times on this batch's real maps (``target``) and
    detached fakes (a stronger discriminator per generator step, not fresh batches).

    Each D loss is backpropagated divided by ``group_size`` and summed in ``group.losses``; at
    the group's ``last`` batch D steps on the accumulated gradients. ``options.recompute_fakes``
    runs the generator again for each D step (the original stack's work, benchmarks only)
    instead of reusing ``fake``.

    Returns:
        The last D loss (detached), the group's summed D loss when D stepped (else None), and
        whether every D step was finite.
    """
    assert nets.discriminator is not None and nets.d_train is not None and nets.d_optimizer is not None
    real = stack_maps(target)
    d_sum: Tensor | None = None
    finite = True
    for _ in range(settings.d_steps_per_g_step):
        if options.recompute_fakes:
            with torch.no_grad(), options.precision.autocast():
                fake_for_d = nets.g_train(views)
        else:
            fake_for_d = fake
        with options.precision.autocast():
            fake_stack = stack_maps({k: v.detach() for k, v in fake_for_d.items()})
            d_loss = loss.discriminator_loss(nets.d_train(real, views), nets.d_train(fake_stack, views))
        backward(d_loss, nets.d_scaler, group_size)
        group.losses.add("d", d_loss)
        if last:
            d_sum = group.losses.take("d")
            finite &= apply_gradients(
                nets.d_optimizer, nets.d_scaler, nets.discriminator, settings.d_grad_clip_norm, d_sum, guard
            )
    return d_loss.detach(), d_sum, finite
