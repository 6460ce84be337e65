"""GAN losses: values and signs on hand-made logits, for G and D, all three types."""

from __future__ import annotations

import math

import pytest
import torch

from neuropbr.losses.adversarial import GAN_LOSSES, AdversarialLoss, discriminator_loss, generator_loss


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


# real logits (2, 0.5), fake logits (-2, 0.5), as (1, 1, 1, 2) PatchGAN maps
REAL, FAKE = (2.0, 0.5), (-2.0, 0.5)
EXPECTED = {
    # gan_type: (discriminator, generator)
    "hinge": ((0.0 + 0.5) / 2 + (0.0 + 1.5) / 2, -(-2.0 + 0.5) / 2),
    "bce": (
        (softplus(-2.0) + softplus(-0.5)) / 2 + (softplus(-2.0) + softplus(0.5)) / 2,
        (softplus(2.0) + softplus(-0.5)) / 2,
    ),
    "lsgan": (0.5 * (1.0 + 0.25) / 2 + 0.5 * (4.0 + 0.25) / 2, 0.5 * (9.0 + 0.25) / 2),
}


def logits(values: tuple[float, ...], requires_grad: bool = False) -> torch.Tensor:
    return torch.tensor(values).view(1, 1, 1, -1).requires_grad_(requires_grad)


def test_table_covers_the_config_choices():
    assert sorted(GAN_LOSSES) == ["bce", "hinge", "lsgan"]


@pytest.mark.parametrize("gan_type", sorted(EXPECTED))
def test_reference_values(gan_type):
    expected_d, expected_g = EXPECTED[gan_type]
    assert discriminator_loss(logits(REAL), logits(FAKE), gan_type).item() == pytest.approx(
        expected_d, abs=1e-6
    )
    assert generator_loss(logits(FAKE), gan_type).item() == pytest.approx(expected_g, abs=1e-6)
    module = AdversarialLoss(gan_type)
    assert module(logits(FAKE)).item() == pytest.approx(expected_g, abs=1e-6)
    assert module.discriminator_loss(logits(REAL), logits(FAKE)).item() == pytest.approx(expected_d, abs=1e-6)


@pytest.mark.parametrize(
    ("gan_type", "real", "fake"),
    [("hinge", 1.0, -1.0), ("bce", 30.0, -30.0), ("lsgan", 1.0, 0.0)],
)
def test_discriminator_minimum_at_perfect_discrimination(gan_type, real, fake):
    perfect = discriminator_loss(logits((real,)), logits((fake,)), gan_type)
    confused = discriminator_loss(logits((0.5,)), logits((0.5,)), gan_type)
    assert perfect.item() == pytest.approx(0.0, abs=1e-12)
    assert confused.item() > 0.2


@pytest.mark.parametrize("gan_type", sorted(GAN_LOSSES))
def test_signs_of_gradients(gan_type):
    # G wants D to call its maps real: its loss falls as fake logits rise. D wants real logits
    # up and fake logits down.
    fake = logits((0.2, 0.5), requires_grad=True)
    generator_loss(fake, gan_type).backward()
    assert (fake.grad < 0).all()
    real, fake = logits((0.2, 0.5), requires_grad=True), logits((0.2, 0.5), requires_grad=True)
    discriminator_loss(real, fake, gan_type).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()
    assert generator_loss(logits((1.0,)), gan_type) < generator_loss(logits((-1.0,)), gan_type)


@pytest.mark.parametrize("gan_type", sorted(GAN_LOSSES))
def test_bf16_logits_give_float32_finite_values(gan_type):
    real, fake = torch.randn(2, 1, 3, 3).bfloat16(), torch.randn(2, 1, 3, 3).bfloat16()
    for value in (generator_loss(fake, gan_type), discriminator_loss(real, fake, gan_type)):
        assert value.dtype == torch.float32 and torch.isfinite(value)


def test_unknown_type_lists_choices():
    with pytest.raises(ValueError, match=r"loss.gan_type='wgan'; choose one of \['bce', 'hinge', 'lsgan'\]"):
        AdversarialLoss("wgan")
