"""Builders shared by every CLI: the only place that calls ``hydra.utils.instantiate`` (STYLE R4).

Derived dimensions (channels, reductions, number of views) are passed in at build time, so no
config key has to match another by hand.
"""

from __future__ import annotations

from typing import Any

from hydra.utils import instantiate as _instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from neuropbr.losses.composite import CompositeLoss
from neuropbr.models.generator import PBRGenerator


def instantiate(node: DictConfig, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate`` on a plain copy of ``node``: interpolations resolved and enum
    choices turned into their strings, so components receive only plain Python values."""
    plain = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return _instantiate(plain, _convert_="all", **kwargs)


def build_generator(cfg: DictConfig) -> PBRGenerator:
    """Encoder, fusion and decoder from ``cfg.encoder``/``cfg.fusion``/``cfg.decoder``."""
    encoder = instantiate(cfg.encoder)
    fusion = instantiate(cfg.fusion, in_channels=encoder.out_channels[-1])
    decoder = instantiate(
        cfg.decoder,
        in_channels=fusion.out_channels,
        skip_channels=list(encoder.out_channels[:-1]),
        skip_reductions=list(encoder.reductions[:-1]),
        bottleneck_reduction=encoder.reductions[-1],
    )
    return PBRGenerator(encoder, fusion, decoder)


def build_discriminator(cfg: DictConfig) -> nn.Module | None:
    """The discriminator of ``cfg.discriminator``, or None for ``discriminator=none``."""
    if cfg.discriminator.get("_target_") is None:
        return None
    return instantiate(cfg.discriminator, num_views=cfg.data.num_views)


def build_loss(cfg: DictConfig) -> CompositeLoss:
    """The composite loss of ``cfg.loss``."""
    return instantiate(cfg.loss)


def build_datamodule(cfg: DictConfig) -> Any:
    """The data module of ``cfg.data`` (not yet set up).

    Targets are served at ``data.resolution * decoder.sr_scale``: a super-resolving decoder
    (e.g. 1024 px views -> 2048 px maps) is trained against maps of its output size.
    """
    return instantiate(cfg.data, map_resolution=cfg.data.resolution * cfg.decoder.get("sr_scale", 1))
