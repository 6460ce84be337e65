"""Adversarial losses for the generator and the discriminator: hinge, BCE and least squares.

Every function takes raw discriminator logits of any shape (PatchGAN: (B, 1, h, w)) and returns
a scalar, averaged over all patches. Logits are upcast to float32 first, so the values are the
same under autocast. With ``softplus(x) = log(1 + exp(x))`` and means over patches:

- ``hinge``: D = ``mean(relu(1 - real)) + mean(relu(1 + fake))``; G = ``-mean(fake)``.
- ``bce``:   D = ``mean(softplus(-real)) + mean(softplus(fake))``; G = ``mean(softplus(-fake))``.
- ``lsgan``: D = ``0.5 mean((real - 1)^2) + 0.5 mean(fake^2)``; G = ``0.5 mean((fake - 1)^2)``.

``bce`` is the non-saturating GAN (the generator maximises ``log D(fake)``); ``lsgan`` uses the
0-1 coding of Mao et al. (2017).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from neuropbr.losses.precision import upcast


def hinge_generator_loss(fake_logits: Tensor) -> Tensor:
    """``-mean(fake)``: unbounded below, so it keeps pushing fakes towards "real"."""
    return -upcast(fake_logits).mean()


def hinge_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``mean(relu(1 - real)) + mean(relu(1 + fake))``; 0 once real >= 1 and fake <= -1."""
    return F.relu(1.0 - upcast(real_logits)).mean() + F.relu(1.0 + upcast(fake_logits)).mean()


def bce_generator_loss(fake_logits: Tensor) -> Tensor:
    """Non-saturating ``mean(-log sigmoid(fake)) = mean(softplus(-fake))``."""
    return F.softplus(-upcast(fake_logits)).mean()


def bce_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Binary cross-entropy with real = 1, fake = 0: ``mean(softplus(-real)) + mean(softplus(fake))``."""
    return F.softplus(-upcast(real_logits)).mean() + F.softplus(upcast(fake_logits)).mean()


def lsgan_generator_loss(fake_logits: Tensor) -> Tensor:
    """``0.5 mean((fake - 1)^2)``; 0 when the discriminator outputs 1 on fakes."""
    return 0.5 * (upcast(fake_logits) - 1.0).square().mean()


def lsgan_discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """``0.5 mean((real - 1)^2) + 0.5 mean(fake^2)``; 0 at real = 1, fake = 0."""
    return 0.5 * (upcast(real_logits) - 1.0).square().mean() + 0.5 * upcast(fake_logits).square().mean()


#: ``gan_type`` -> (generator loss, discriminator loss): the valid ``gan_type`` values and the error
#: message come from this one dict.
GAN_LOSSES: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]] = {
    "hinge": (hinge_generator_loss, hinge_discriminator_loss),
    "bce": (bce_generator_loss, bce_discriminator_loss),
    "lsgan": (lsgan_generator_loss, lsgan_discriminator_loss),
}


def _lookup(gan_type: str) -> tuple[Callable[[Tensor], Tensor], Callable[[Tensor, Tensor], Tensor]]:
    try:
        return GAN_LOSSES[gan_type]
    except KeyError:
        raise ValueError(f"loss.gan_type={gan_type!r}; choose one of {sorted(GAN_LOSSES)}") from None


def generator_loss(fake_logits: Tensor, gan_type: str = "hinge") -> Tensor:
    """The generator's adversarial loss of ``gan_type`` (see the module table).

    Args:
        fake_logits: discriminator logits on generated maps, any shape, e.g. (B, 1, h, w).
        gan_type: ``hinge``, ``bce`` or ``lsgan``.

    Returns:
        Scalar float32 (float64 for float64 logits).
    """
    return _lookup(gan_type)[0](fake_logits)


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor, gan_type: str = "hinge") -> Tensor:
    """The discriminator's loss of ``gan_type`` (see the module table).

    Args:
        real_logits: logits on target maps, any shape, e.g. (B, 1, h, w).
        fake_logits: logits on generated maps (detached by the caller), any shape.
        gan_type: ``hinge``, ``bce`` or ``lsgan``.

    Returns:
        Scalar float32 (float64 for float64 logits).
    """
    return _lookup(gan_type)[1](real_logits, fake_logits)


class AdversarialLoss(nn.Module):
    """Module form: ``forward(fake_logits)`` is the generator loss; ``discriminator_loss`` the D loss.

    Args:
        gan_type: ``hinge`` (default, the guide's), ``bce`` or ``lsgan`` (``loss.gan_type``).
    """

    def __init__(self, gan_type: str = "hinge") -> None:
        super().__init__()
        self.gan_type = gan_type
        self._generator_fn, self._discriminator_fn = _lookup(gan_type)

    def forward(self, fake_logits: Tensor) -> Tensor:
        """Generator loss on ``fake_logits`` (any shape); returns a scalar."""
        return self._generator_fn(fake_logits)

    def discriminator_loss(self, real_logits: Tensor, fake_logits: Tensor) -> Tensor:
        """Discriminator loss on real and (detached) fake logits; returns a scalar."""
        return self._discriminator_fn(real_logits, fake_logits)

    def extra_repr(self) -> str:
        return f"gan_type={self.gan_type!r}"
