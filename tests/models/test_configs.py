"""Config and code agree: every model preset composes and builds; schemas = signatures."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from neuropbr import config as schemas
from neuropbr.build import build_discriminator, instantiate
from neuropbr.config import register_configs
from neuropbr.models.contracts import Decoder, Discriminator, Encoder, Fusion
from neuropbr.summary import build_on_meta, count_params

CONF = Path(schemas.config_dir())
MODEL_GROUPS = ("encoder", "fusion", "decoder", "discriminator")
OPTIONS = [(group, path.stem) for group in MODEL_GROUPS for path in sorted((CONF / group).glob("*.yaml"))]
EXPERIMENTS = sorted(path.stem for path in (CONF / "experiment").glob("*.yaml"))

#: Constructor arguments that neuropbr.build derives from other components at build time, so
#: they are not config fields. The discriminator's ``in_channels`` is fixed by the map contract
#: (PBR_TOTAL_CHANNELS = 8); it is a keyword only for reuse outside the generator.
BUILD_TIME: dict[str, set[str]] = {
    "neuropbr.models.encoders.timm_encoder.TimmEncoder": set(),
    "neuropbr.models.encoders.unet.UNetEncoder": set(),
    "neuropbr.models.fusion.vit.ViTFusion": {"in_channels"},
    "neuropbr.models.fusion.pooling.MeanFusion": {"in_channels"},
    "neuropbr.models.fusion.pooling.MaxFusion": {"in_channels"},
    "neuropbr.models.decoders.unet_heads.UNetHeadsDecoder": {
        "in_channels",
        "skip_channels",
        "skip_reductions",
        "bottleneck_reduction",
    },
    "neuropbr.models.discriminators.patchgan.PatchGANDiscriminator": {"num_views", "in_channels"},
}

FUSION_IN, SKIPS, SKIP_REDUCTIONS, BOTTLENECK = 16, [8, 8, 16, 16], [2, 4, 8, 16], 32
CONTRACTS = {"encoder": Encoder, "fusion": Fusion, "decoder": Decoder, "discriminator": Discriminator}


def build(group: str, cfg: DictConfig) -> torch.nn.Module | None:
    """The module of ``cfg.<group>``, with fixed stand-ins for the build-time arguments."""
    if group == "encoder":
        return instantiate(cfg.encoder)
    if group == "fusion":
        return instantiate(cfg.fusion, in_channels=FUSION_IN)
    if group == "decoder":
        return instantiate(
            cfg.decoder,
            in_channels=FUSION_IN,
            skip_channels=SKIPS,
            skip_reductions=SKIP_REDUCTIONS,
            bottleneck_reduction=BOTTLENECK,
        )
    if cfg.discriminator.get("_target_") is None:
        return None
    return instantiate(cfg.discriminator, num_views=3)


def run_tiny_forward(group: str, module: torch.nn.Module) -> None:
    """A 64 px forward pass through the contract of ``group``."""
    if group == "encoder":
        features = module(torch.rand(2, 3, 64, 64))
        assert [f.shape[1] for f in features] == module.out_channels
    elif group == "fusion":
        assert module(torch.randn(2, 3, FUSION_IN, 2, 2)).shape == (2, module.out_channels, 2, 2)
    elif group == "decoder":
        skips = [torch.randn(2, c, 64 // r, 64 // r) for c, r in zip(SKIPS, SKIP_REDUCTIONS)]
        maps = module(torch.randn(2, FUSION_IN, 2, 2), skips, (64, 64))
        assert maps["albedo"].shape == (2, 3, 64 * module.sr_scale, 64 * module.sr_scale)
    else:
        assert module(torch.rand(2, 8, 64, 64), torch.rand(2, 3, 3, 64, 64)).shape[:2] == (2, 1)


@pytest.fixture(scope="module")
def composed() -> dict[str, DictConfig]:
    """Every model option composed once, as its own config (``conf/<group>/<option>.yaml`` on
    its ``base_*`` schema); the experiments below compose them inside ``train``."""
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        configs = {f"{g}={o}": compose(f"{g}/{o}") for g, o in OPTIONS}
    GlobalHydra.instance().clear()
    return configs


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_option_composes_and_builds(composed: dict[str, DictConfig], group: str, option: str) -> None:
    cfg = composed[f"{group}={option}"]
    with torch.device("meta"):  # full-size presets: no memory, no init time
        module = build(group, cfg)
    if module is None:
        assert (group, option) == ("discriminator", "none")
        return
    assert isinstance(module, CONTRACTS[group])
    if count_params(module) < 1_000_000:  # small enough to run for real
        module = build(group, cfg)
        run_tiny_forward(group, module)


def _fields(schema: type) -> set[str]:
    return {f.name for f in dataclasses.fields(schema)} - {"_target_"}


def _arguments(target: str) -> set[str]:
    parameters = inspect.signature(get_class(target)).parameters
    return set(parameters) - BUILD_TIME[target]


@pytest.mark.parametrize(
    "schema",
    [
        schemas.TimmEncoderConfig,
        schemas.UNetEncoderConfig,
        schemas.ViTFusionConfig,
        schemas.PoolFusionConfig,
        schemas.UNetHeadsDecoderConfig,
        schemas.PatchGANConfig,
    ],
)
def test_schema_fields_equal_the_target_signature(schema: type) -> None:
    assert _fields(schema) == _arguments(schema._target_)


@pytest.mark.parametrize(("group", "option"), OPTIONS, ids=[f"{g}={o}" for g, o in OPTIONS])
def test_preset_keys_equal_the_target_signature(
    composed: dict[str, DictConfig], group: str, option: str
) -> None:
    """Also for presets that swap the ``_target_`` (fusion=max) of a shared schema."""
    node = composed[f"{group}={option}"][group]
    target = node.get("_target_")
    if target is None:
        assert (group, option) == ("discriminator", "none")
        return
    assert set(OmegaConf.to_container(node)) - {"_target_"} == _arguments(target)


@pytest.mark.parametrize(
    "override",
    [
        "decoder.norm=spectral",
        "encoder=unet encoder.norm=spectral",
        "discriminator.norm=group",
        "encoder.widht=3",
    ],
)
def test_bad_choices_fail_at_compose_time(compose_cfg: Callable[..., DictConfig], override: str) -> None:
    with pytest.raises(ConfigCompositionException):
        compose_cfg(*override.split())


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_experiment_builds_its_models(compose_cfg: Callable[..., DictConfig], experiment: str) -> None:
    cfg = compose_cfg(f"experiment={experiment}")
    generator, discriminator = build_on_meta(cfg)
    assert count_params(generator) > 0
    assert (discriminator is None) == (cfg.discriminator.get("_target_") is None)


def test_tiny_presets_are_tiny(
    composed: dict[str, DictConfig], compose_cfg: Callable[..., DictConfig]
) -> None:
    """Widths of 8-32 and one block per stage, so the fast suite stays fast on CPU."""
    for encoder in ("tiny", "tiny_resnet"):
        built = build("encoder", composed[f"encoder={encoder}"])
        assert max(built.out_channels) <= 32 and count_params(built) < 50_000
    cfg = compose_cfg("experiment=smoke")
    assert cfg.fusion.dim <= 32 and cfg.fusion.depth == 1
    assert max(cfg.decoder.channels) <= 32 and cfg.decoder.sr_channels <= 32
    assert cfg.discriminator.max_channels <= 32 and cfg.discriminator.n_layers == 3
    assert count_params(build_discriminator(cfg)) < 50_000
