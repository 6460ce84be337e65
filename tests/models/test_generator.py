"""The composed generator: contract for V = 1, 3, 5, view order, gradients, bf16, the original's sizes."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from omegaconf import DictConfig

from neuropbr.build import build_generator
from neuropbr.maps import PBR_CHANNELS
from neuropbr.models.decoders.unet_heads import UNetHeadsDecoder
from neuropbr.models.encoders.timm_encoder import TimmEncoder
from neuropbr.models.encoders.unet import UNetEncoder
from neuropbr.models.fusion.pooling import MaxFusion
from neuropbr.models.fusion.vit import ViTFusion
from neuropbr.models.generator import PBRGenerator, shading_ratio
from neuropbr.summary import build_on_meta, count_params

from .helpers import TINY_RESNET, assert_every_param_has_grad, assert_same_grads, projection_loss


def compose_generator(
    encoder, fusion: str = "vit", sr_scale: int = 1, checkpointing: bool = False
) -> PBRGenerator:
    """A tiny generator around ``encoder`` (the way ``build_generator`` wires the slots)."""
    fusions = {
        "vit": lambda c: ViTFusion(
            c,
            dim=16,
            depth=1,
            num_heads=2,
            mlp_ratio=2.0,
            dropout=0.0,
            drop_path=0.0,
            grad_checkpointing=checkpointing,
        ),
        "max": MaxFusion,
    }
    fusion_module = fusions[fusion](encoder.out_channels[-1])
    decoder = UNetHeadsDecoder(
        fusion_module.out_channels,
        encoder.out_channels[:-1],
        encoder.reductions[:-1],
        encoder.reductions[-1],
        channels=[16, 16, 8, 8],
        sr_scale=sr_scale,
        sr_channels=8,
        grad_checkpointing=checkpointing,
    )
    return PBRGenerator(encoder, fusion_module, decoder)


GENERATORS: dict[str, Callable[[], PBRGenerator]] = {
    "unet_vit": lambda: compose_generator(UNetEncoder([8, 16, 16])),
    "resnet_vit": lambda: compose_generator(TimmEncoder("resnet18", model_kwargs=TINY_RESNET)),
    "unet_stride_max_sr2": lambda: compose_generator(UNetEncoder([8, 16, 16], downsample="stride"), "max", 2),
}


@functools.cache
def shared_generator(option: str) -> PBRGenerator:
    """One instance per option for the forward-only tests."""
    return GENERATORS[option]()


@pytest.mark.parametrize("num_views", [1, 3, 5])
@pytest.mark.parametrize("option", list(GENERATORS))
def test_cardinality(option: str, num_views: int) -> None:
    generator = shared_generator(option)
    maps = generator(torch.rand(2, num_views, 3, 32, 32))
    scale = generator.decoder.sr_scale
    assert {name: tuple(m.shape) for name, m in maps.items()} == {
        name: (2, channels, 32 * scale, 32 * scale) for name, channels in PBR_CHANNELS.items()
    }


@pytest.mark.parametrize("option", list(GENERATORS))
def test_view_order_does_not_matter(option: str) -> None:
    generator = GENERATORS[option]().eval()
    views = torch.rand(1, 5, 3, 32, 32)
    with torch.no_grad():
        maps, permuted = generator(views), generator(views[:, torch.tensor([2, 4, 0, 1, 3])])
    for name in maps:  # only float summation order differs
        torch.testing.assert_close(permuted[name], maps[name], rtol=0, atol=1e-5)


@pytest.mark.parametrize("option", list(GENERATORS))
def test_grad_flow(option: str) -> None:
    generator = GENERATORS[option]().train()
    projection_loss(generator(torch.rand(2, 3, 3, 32, 32))).backward()
    assert_every_param_has_grad(generator)


def test_grad_checkpointing_everywhere_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    plain = compose_generator(TimmEncoder("resnet18", model_kwargs=TINY_RESNET)).train()
    torch.manual_seed(0)
    encoder = TimmEncoder("resnet18", model_kwargs=TINY_RESNET, grad_checkpointing=True)
    checkpointed = compose_generator(encoder, checkpointing=True).train()
    views = torch.rand(2, 3, 3, 32, 32)
    for generator in (plain, checkpointed):
        projection_loss(generator(views)).backward()
    assert_same_grads(plain, checkpointed)


def test_wrong_views_shape_names_expected_and_actual() -> None:
    generator = GENERATORS["unet_vit"]()
    with pytest.raises(ValueError, match=r"views: expected \(B, V, 3, H, W\), got \(2, 3, 32, 32\)"):
        generator(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match=r"views: expected \(B, V, 3, H, W\), got \(2, 3, 4, 32, 32\)"):
        generator(torch.rand(2, 3, 4, 32, 32))
    with pytest.raises(ValueError, match=r"image size 34x34 must be divisible by 4"):
        generator(torch.rand(1, 3, 3, 34, 34))


def test_bf16_autocast_smoke() -> None:
    """The bf16 path the trainer takes on GPUs, exercised on CPU at a tiny size."""
    generator = GENERATORS["resnet_vit"]().train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        maps = generator(torch.rand(1, 3, 3, 32, 32))
    assert all(torch.isfinite(m).all() for m in maps.values())
    assert (maps["normal"].float().norm(dim=1) - 1).abs().max() < 0.02
    projection_loss(maps).backward()
    assert_every_param_has_grad(generator)


def test_tiny_config_builds_and_runs(tiny_cfg: DictConfig) -> None:
    generator = build_generator(tiny_cfg)
    assert count_params(generator) < 200_000
    maps = generator(torch.rand(2, tiny_cfg.data.num_views, 3, 64, 64))
    assert maps["albedo"].shape == (2, 3, 64, 64)


def test_fast_iteration_reproduces_the_original_architecture(compose_cfg: Callable[..., DictConfig]) -> None:
    """The original stack's generator (experiments/benchmarks/README.md) has 129,203,848
    parameters; ours differs only by the view aggregation: an order-independent softmax pooling
    (score Linear(2048 -> 1, no bias)) + Linear(2048 -> 2048) instead of Linear(3 * 2048 -> 2048); both end in LayerNorm(2048)."""
    generator, discriminator = build_on_meta(compose_cfg("experiment=fast_iteration"))
    assert count_params(generator.encoder) == 11_176_512  # torchvision resnet18 without fc
    assert count_params(generator.fusion.proj) == 512 * 2048  # latent projection, no bias
    assert count_params(generator.fusion.blocks) == 2 * 50_358_272  # two timm ViT blocks of dim 2048
    assert count_params(generator.decoder) == 3_673_160
    original_aggregation = 3 * 2048 * 2048 + 2048
    ours = 2048 + 2048 * 2048 + 2048
    assert count_params(generator) == 129_203_848 - original_aggregation + ours == 120_817_288
    assert count_params(discriminator) == 15_356_737
    assert generator.encoder.reductions == [2, 4, 8, 16, 32]
    assert [b.up_conv[0].out_channels for b in generator.decoder.up_blocks] == [128, 64, 64, 64]
    assert [round(getattr(b.drop_path1, "drop_prob", 0.0), 6) for b in generator.fusion.blocks] == [0.0, 0.1]
    assert generator.fusion.view_embed is None and not generator.fusion.pos_embedding


@pytest.mark.slow
def test_issue_command_models_run_at_64_px(compose_cfg: Callable[..., DictConfig]) -> None:
    """The models of ``data.resolution=64 encoder=resnet50 fusion=vit data.num_views=5
    discriminator=configurable discriminator.n_layers=5`` (the issue's train command)."""
    from neuropbr.build import build_discriminator
    from neuropbr.maps import PBR_MAPS

    cfg = compose_cfg(
        "data.resolution=64",
        "encoder=resnet50",
        "fusion=vit",
        "data.num_views=5",
        "discriminator=configurable",
        "discriminator.n_layers=5",
    )
    generator, discriminator = build_generator(cfg).train(), build_discriminator(cfg).train()
    views = torch.rand(2, 5, 3, 64, 64)
    maps = generator(views)
    logits = discriminator(torch.cat([maps[name] for name in PBR_MAPS], dim=1), views)
    assert logits.shape == (2, 1, 1, 1)
    (logits.mean() + projection_loss(maps)).backward()
    # Every parameter is in the graph; timm zero-initialises each residual block's last BN
    # scale, so the other weights of those blocks get exactly zero gradients at step 0.
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in generator.parameters())
    assert all(p.grad is not None for p in discriminator.parameters())


def test_shading_ratio_cancels_albedo_and_exposure() -> None:
    """views = albedo * shading_k * exposure_k: up to one constant per view (the exposure gain is
    taken from each whole view), the ratio channels keep only the views' shading differences."""
    albedo = 0.2 + 0.6 * torch.rand(1, 1, 3, 16, 16)
    shading = 0.3 + torch.rand(1, 3, 1, 16, 16)  # three lights, one shading field each
    exposure = torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1, 1)

    def centred(ratio: torch.Tensor) -> torch.Tensor:  # minus each view's constant
        return ratio - ratio.mean(dim=(2, 3, 4), keepdim=True)

    ratio = shading_ratio(albedo * shading * exposure, floor=0.0)
    other_albedo = shading_ratio(0.5 * albedo.flip(-1) * shading * exposure, floor=0.0)
    torch.testing.assert_close(centred(ratio), centred(other_albedo), atol=1e-5, rtol=0)
    logs = torch.log(shading)
    expected = (logs - logs.mean(dim=1, keepdim=True)).expand_as(ratio)
    torch.testing.assert_close(centred(ratio), centred(expected), atol=1e-5, rtol=0)
    assert shading_ratio(torch.rand(2, 1, 3, 8, 8)).abs().max() == 0  # one view: nothing to compare


def _small_unet_generator(encoder: UNetEncoder, **decoder_kwargs: bool) -> PBRGenerator:
    """``encoder`` (channels [4, 8, 8]) with max fusion and a 2-level decoder of widths 8 and 4."""
    decoder = UNetHeadsDecoder(
        in_channels=8,
        skip_channels=[4, 8],
        skip_reductions=[1, 2],
        bottleneck_reduction=4,
        channels=[8, 4],
        sr_channels=4,
        **decoder_kwargs,
    )
    return PBRGenerator(encoder, MaxFusion(in_channels=8), decoder)


def test_generator_with_shading_ratio_is_order_independent_and_trains() -> None:
    encoder = UNetEncoder(channels=[4, 8, 8], exposure_norm=True, shading_ratio=True)
    generator = _small_unet_generator(encoder).eval()
    views = torch.rand(2, 3, 3, 16, 16)
    with torch.no_grad():
        a, b = generator(views), generator(views[:, [2, 0, 1]])
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0)
    generator.train()
    projection_loss(generator(views)).backward()
    assert_every_param_has_grad(generator)


def test_albedo_from_photos_starts_at_the_mean_of_the_views_and_trains() -> None:
    generator = _small_unet_generator(UNetEncoder(channels=[4, 8, 8]), albedo_from_photos=True).eval()
    views = torch.rand(2, 3, 3, 16, 16) * 0.9 + 0.05  # (B, V, 3, H, W), inside the logit's clamp margin
    with torch.no_grad():
        albedo = generator(views)["albedo"]
    torch.testing.assert_close(albedo, views.mean(dim=1), atol=1e-5, rtol=1e-5)
    generator.train()
    projection_loss(generator(views)).backward()
    assert_every_param_has_grad(generator)


def _stacked_generator(views: int, **encoder_kwargs: object) -> PBRGenerator:
    encoder = UNetEncoder(channels=[4, 8, 8], stacked_views=views, **encoder_kwargs)  # type: ignore[arg-type]
    decoder = UNetHeadsDecoder(
        in_channels=8, skip_channels=[4, 8], skip_reductions=[1, 2], bottleneck_reduction=4, channels=[8, 4]
    )
    return PBRGenerator(encoder, MaxFusion(in_channels=8), decoder)


def test_stacked_views_see_each_texel_of_every_view_and_train() -> None:
    """Early fusion: the first convolution takes all three views' channels, so a change in one
    view alone changes the prediction at that texel (a per-view encoder fused by mean or max
    could too, but here the input layer is 9 channels wide and the encoder runs once)."""
    generator = _stacked_generator(3, exposure_norm=True).eval()
    assert next(generator.encoder.levels[0].parameters()).shape[1] == 9  # the first conv: 3 views x RGB
    views = torch.rand(2, 3, 3, 16, 16)
    changed = views.clone()
    changed[:, 1, :, 8, 8] = 1.0 - changed[:, 1, :, 8, 8]  # one texel of the second view
    with torch.no_grad():
        a, b = generator(views), generator(changed)
    assert a["normal"].shape == (2, 3, 16, 16) and a["albedo"].shape == (2, 3, 16, 16)
    assert not torch.allclose(a["albedo"][..., 8, 8], b["albedo"][..., 8, 8])
    generator.train()
    projection_loss(generator(views)).backward()
    assert_every_param_has_grad(generator)


def test_stacked_views_exposure_norm_is_per_view() -> None:
    """Each stacked view gets its own gain: scaling one view's exposure changes nothing."""
    generator = _stacked_generator(3, exposure_norm=True).eval()
    views = 0.1 + 0.4 * torch.rand(1, 3, 3, 16, 16)
    brighter = views * torch.tensor([1.0, 1.8, 0.6]).view(1, 3, 1, 1, 1)
    with torch.no_grad():
        a, b = generator(views), generator(brighter)
    for name in a:
        torch.testing.assert_close(a[name], b[name], atol=1e-5, rtol=0)


def test_stacked_views_refuse_another_number_of_views() -> None:
    with pytest.raises(ValueError, match=r"encoder.stacked_views=3 takes exactly 3"):
        _stacked_generator(3)(torch.rand(1, 2, 3, 16, 16))
    with pytest.raises(ValueError, match=r"encoder.stacked_views=-1"):
        UNetEncoder(channels=[4, 8], stacked_views=-1)


def test_stacked_views_must_match_data_num_views(compose_cfg: Callable[..., DictConfig]) -> None:
    from neuropbr.config_checks import ConfigValueError, check_train_config

    cfg = compose_cfg(
        "encoder=unet", "encoder.channels=[4,8,8]", "encoder.stacked_views=2", "data.num_views=3"
    )
    with pytest.raises(ConfigValueError, match=r"encoder.stacked_views=2: expected data.num_views \(3\)"):
        check_train_config(cfg)
