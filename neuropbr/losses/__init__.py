"""Loss terms and the composite loss. Each term is a function plus an ``nn.Module``: callable
directly in tests, composed by name in the composite.

The composite returns ``(total, {term: value})`` (the trainer logs each term); its builder
:func:`~neuropbr.losses.composite.build_loss` is the ``_target_`` of ``conf/loss/*.yaml``.
"""

from neuropbr.losses.adversarial import (
    GAN_LOSSES,
    AdversarialLoss,
    discriminator_loss,
    generator_loss,
)
from neuropbr.losses.composite import DEFAULT_WEIGHTS, TERM_NAMES, CompositeLoss, build_loss
from neuropbr.losses.perceptual import PerceptualLoss, VGG16Features, perceptual_loss
from neuropbr.losses.reconstruction import (
    LightDirectionLoss,
    NormalAngularLoss,
    SSIMLoss,
    WeightedL1Loss,
    map_to_unit_range,
    normal_angular_loss,
    ssim_loss,
    weighted_l1_loss,
)
from neuropbr.losses.rendering import (
    RenderConfigs,
    RenderingLoss,
    render_maps,
    rendering_loss,
    sample_render_configs,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "GAN_LOSSES",
    "TERM_NAMES",
    "AdversarialLoss",
    "CompositeLoss",
    "LightDirectionLoss",
    "NormalAngularLoss",
    "PerceptualLoss",
    "RenderConfigs",
    "RenderingLoss",
    "SSIMLoss",
    "VGG16Features",
    "WeightedL1Loss",
    "build_loss",
    "discriminator_loss",
    "generator_loss",
    "map_to_unit_range",
    "normal_angular_loss",
    "perceptual_loss",
    "render_maps",
    "rendering_loss",
    "sample_render_configs",
    "ssim_loss",
    "weighted_l1_loss",
]
