"""UNetHeadsDecoder: output sizes for every SR factor, activations, errors, checkpointing, structure."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from neuropbr.maps import PBR_CHANNELS
from neuropbr.models.contracts import Decoder
from neuropbr.models.decoders.unet_heads import GlobalContext, PixelShuffleStep, UNetHeadsDecoder

from .helpers import assert_every_param_has_grad, assert_same_grads, projection_loss

IN_CHANNELS = 24
#: (skip channels, skip reductions, bottleneck reduction): a resnet-like pyramid (finest skip at
#: 1/2) and a U-Net-like one (finest skip at full resolution).
PYRAMIDS = {
    "resnet_like": ([8, 8, 16], [2, 4, 8], 16),
    "unet_like": ([8, 16], [1, 2], 4),
}


def make_decoder(pyramid: str = "resnet_like", **kwargs) -> UNetHeadsDecoder:
    skip_channels, skip_reductions, bottleneck = PYRAMIDS[pyramid]
    options = {"channels": [16, 8, 8], "sr_channels": 8, **kwargs}
    return UNetHeadsDecoder(IN_CHANNELS, skip_channels, skip_reductions, bottleneck, **options)


def make_inputs(decoder: UNetHeadsDecoder, batch: int = 2, size: int = 32) -> tuple[Tensor, list[Tensor]]:
    reduction = decoder.bottleneck_reduction
    fused = torch.randn(batch, IN_CHANNELS, size // reduction, size // reduction)  # (B, C, h, w)
    skips = [
        torch.randn(batch, c, size // r, size // r)
        for c, r in zip(decoder.skip_channels, decoder.skip_reductions)
    ]
    return fused, skips


@pytest.mark.parametrize("sr_scale", [1, 2, 4])
@pytest.mark.parametrize("pyramid", list(PYRAMIDS))
def test_cardinality_and_output_ranges(pyramid: str, sr_scale: int) -> None:
    decoder = make_decoder(pyramid, sr_scale=sr_scale)
    assert isinstance(decoder, Decoder) and decoder.sr_scale == sr_scale
    fused, skips = make_inputs(decoder)
    maps = decoder(fused, skips, (32, 32))
    assert list(maps) == list(PBR_CHANNELS)
    for name, channels in PBR_CHANNELS.items():
        assert maps[name].shape == (2, channels, 32 * sr_scale, 32 * sr_scale)
    for name in ("albedo", "roughness", "metallic"):
        assert 0 <= maps[name].min() and maps[name].max() <= 1
    torch.testing.assert_close(maps["normal"].norm(dim=1), torch.ones(2, 32 * sr_scale, 32 * sr_scale))


def test_rectangular_images() -> None:
    decoder = make_decoder(sr_scale=2)
    skips = [
        torch.randn(1, c, 32 // r, 48 // r) for c, r in zip(decoder.skip_channels, decoder.skip_reductions)
    ]
    maps = decoder(torch.randn(1, IN_CHANNELS, 2, 3), skips, (32, 48))
    assert maps["albedo"].shape == (1, 3, 64, 96)


@pytest.mark.parametrize("norm", ["batch", "instance", "none"])
def test_grad_flow(norm: str) -> None:
    decoder = make_decoder(sr_scale=2, norm=norm).train()
    fused, skips = make_inputs(decoder)
    fused.requires_grad_(True)
    projection_loss(decoder(fused, skips, (32, 32))).backward()
    assert_every_param_has_grad(decoder)
    assert fused.grad is not None and fused.grad.abs().sum() > 0


def test_a_new_global_context_block_passes_its_input_through() -> None:
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(GlobalContext(8)(x), x)


def _randomise_global_context(decoder: UNetHeadsDecoder) -> None:
    """Trained weights instead of the zero start, so the blocks change what they pass on."""
    assert decoder.global_context is not None
    torch.manual_seed(0)
    for block in decoder.global_context:
        nn.init.normal_(block.mlp[-1].weight, std=0.5)


@pytest.mark.parametrize("global_context", [False, True])
def test_global_context_lets_every_output_texel_see_the_whole_image(global_context: bool) -> None:
    """A change at one corner of the finest skip reaches the opposite corner of the maps only
    through the global blocks: the convolutions after that skip see a few texels around each."""
    decoder = make_decoder("unet_like", norm="none", global_context=global_context).eval()
    if global_context:
        _randomise_global_context(decoder)
    fused, skips = make_inputs(decoder, batch=1)
    changed = [skip.clone() for skip in skips]
    changed[0][..., 0, 0] += 10.0  # the finest skip is at full resolution: texel (0, 0)
    with torch.no_grad():
        before, after = decoder(fused, skips, (32, 32)), decoder(fused, changed, (32, 32))
    far_corner_moved = (before["roughness"][..., -1, -1] - after["roughness"][..., -1, -1]).abs().max() > 1e-6
    assert far_corner_moved == global_context
    assert (before["roughness"][..., 0, 0] - after["roughness"][..., 0, 0]).abs().max() > 1e-6


def test_global_context_blocks_sit_on_every_trunk_level_and_train() -> None:
    decoder = make_decoder("resnet_like", global_context=True).train()
    assert decoder.global_context is not None
    assert [block.mlp[-1].out_features for block in decoder.global_context] == [IN_CHANNELS, 16, 8, 8]
    _randomise_global_context(decoder)
    fused, skips = make_inputs(decoder)
    projection_loss(decoder(fused, skips, (32, 32))).backward()
    assert_every_param_has_grad(decoder)


@pytest.mark.parametrize("sr_scale", [1, 2])
def test_albedo_from_photos_starts_at_the_photos_mean(sr_scale: int) -> None:
    decoder = make_decoder(sr_scale=sr_scale, albedo_from_photos=True).eval()
    fused, skips = make_inputs(decoder)
    photos = torch.rand(2, 3, 32, 32) * 0.9 + 0.05  # inside the logit's clamp margin
    with torch.no_grad():
        albedo = decoder(fused, skips, (32, 32), albedo_prior=photos)["albedo"]
    size = (32 * sr_scale, 32 * sr_scale)
    expected = (
        photos if sr_scale == 1 else F.interpolate(photos, size=size, mode="bilinear", align_corners=False)
    )
    torch.testing.assert_close(albedo, expected, atol=1e-5, rtol=1e-5)


def test_albedo_from_photos_learns_a_correction_and_needs_the_photos() -> None:
    decoder = make_decoder(albedo_from_photos=True).train()
    fused, skips = make_inputs(decoder)
    photos = torch.rand(2, 3, 32, 32)
    maps = decoder(fused, skips, (32, 32), albedo_prior=photos)
    maps["albedo"].square().mean().backward()
    head = decoder.heads["albedo"]
    assert head.weight.grad is not None and head.weight.grad.abs().sum() > 0  # the correction trains
    with pytest.raises(ValueError, match=r"decoder.albedo_from_photos=true: the decoder needs albedo_prior"):
        decoder(fused, skips, (32, 32))
    with pytest.raises(ValueError, match=r"decoder albedo_prior: expected \(B=2, 3, H=32, W=32\)"):
        decoder(fused, skips, (32, 32), albedo_prior=photos[:, :, :16])


@pytest.mark.parametrize("sr_scale", [1, 4])
def test_grad_checkpointing_gives_the_same_gradients(sr_scale: int) -> None:
    torch.manual_seed(0)
    plain = make_decoder(sr_scale=sr_scale).train()
    torch.manual_seed(0)
    checkpointed = make_decoder(sr_scale=sr_scale, grad_checkpointing=True).train()
    fused, skips = make_inputs(plain)
    for decoder in (plain, checkpointed):
        projection_loss(decoder(fused, skips, (32, 32))).backward()
    assert_same_grads(plain, checkpointed)


def test_wrong_inputs_name_expected_and_actual() -> None:
    decoder = make_decoder()
    fused, skips = make_inputs(decoder)
    with pytest.raises(
        ValueError, match=r"decoder fused: expected \(B, C=24, h=2, w=2\), got \(2, 24, 4, 4\)"
    ):
        decoder(torch.randn(2, IN_CHANNELS, 4, 4), skips, (32, 32))
    bad_skips = [skips[0], torch.randn(2, 9, 8, 8), skips[2]]
    with pytest.raises(
        ValueError, match=r"decoder skip 1: expected \(B=2, C=8, h=8, w=8\), got \(2, 9, 8, 8\)"
    ):
        decoder(fused, bad_skips, (32, 32))
    with pytest.raises(ValueError, match=r"decoder: expected 3 skips, got 2"):
        decoder(fused, skips[:2], (32, 32))
    with pytest.raises(ValueError, match=r"image size 40x32 must be divisible by 16"):
        decoder(fused, skips, (40, 32))


def test_option_errors() -> None:
    with pytest.raises(ValueError, match=r"decoder\.channels=\[16, 8\]: the encoder has 3 skip levels"):
        make_decoder(channels=[16, 8])
    with pytest.raises(ValueError, match=r"decoder\.sr_scale=3; expected one of \[1, 2, 4\]"):
        make_decoder(sr_scale=3)
    with pytest.raises(ValueError, match=r"decoder\.sr_channels=7"):
        make_decoder(sr_channels=7)
    with pytest.raises(ValueError, match=r"decoder\.norm='spectral'; choose one of"):
        make_decoder(norm="spectral")


def test_extra_channel_entries_are_ignored() -> None:
    decoder = make_decoder(channels=[16, 8, 8, 4, 4])
    assert [block.up_conv[0].out_channels for block in decoder.up_blocks] == [16, 8, 8]


def test_super_resolution_steps_match_the_factor() -> None:
    """One PixelShuffle x2 step per factor 2 of (finest reduction * sr_scale); a plain conv at 1."""
    steps = {
        (pyramid, sr): sum(
            isinstance(m, PixelShuffleStep) for m in make_decoder(pyramid, sr_scale=sr).modules()
        )
        for pyramid in PYRAMIDS
        for sr in (1, 2, 4)
    }
    assert steps == {
        ("resnet_like", 1): 1,
        ("resnet_like", 2): 2,
        ("resnet_like", 4): 3,
        ("unet_like", 1): 0,
        ("unet_like", 2): 1,
        ("unet_like", 4): 2,
    }


def test_original_sr_head_structure() -> None:
    """The original stack's SR x2 head (experiments/benchmarks/README.md): 3x3 64->64,
    3x3 64->256, PixelShuffle 2, 3x3 64->32, 1x1 32->64, BN + ReLU between, no conv biases;
    4 heads of 1x1 convs with bias."""
    decoder = UNetHeadsDecoder(64, [64], [2], 4, channels=[64], sr_channels=64)
    convs = [m for m in decoder.sr.modules() if isinstance(m, nn.Conv2d)]
    has_bias = False
    assert [(c.in_channels, c.out_channels, c.kernel_size[0], c.bias is not None) for c in convs] == [
        (64, 64, 3, has_bias),
        (64, 256, 3, has_bias),
        (64, 32, 3, has_bias),
        (32, 64, 1, has_bias),
    ]
    assert [m.num_features for m in decoder.sr.modules() if isinstance(m, nn.BatchNorm2d)] == [64, 256, 32]
    assert sum(p.numel() for p in decoder.sr.parameters()) == 36864 + 147456 + 18432 + 2048 + 2 * (
        64 + 256 + 32
    )
    assert sum(p.numel() for p in decoder.heads.parameters()) == 64 * 8 + 8


def test_stacked_heads_equal_the_four_head_convs() -> None:
    """The heads run as one conv of their stacked weights (a speed-up): same maps, same gradients."""
    decoder = make_decoder(sr_scale=2)
    x = torch.randn(2, 8, 16, 16, requires_grad=True)  # (B, sr_channels, H', W')
    stacked = decoder._run_heads(x)
    separate = {name: head(x) for name, head in decoder.heads.items()}
    assert list(stacked) == list(PBR_CHANNELS)
    for name in PBR_CHANNELS:
        torch.testing.assert_close(stacked[name], separate[name], rtol=1e-5, atol=1e-6)
    grads = [
        torch.autograd.grad(projection_loss(maps), [x, *decoder.heads.parameters()])
        for maps in (stacked, separate)
    ]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
