"""PatchGAN: receptive field (analytic, the guide's table, empirical), contract, norms, conditioning."""

from __future__ import annotations

import logging

import pytest
import torch

from neuropbr.models.contracts import Discriminator
from neuropbr.models.discriminators.patchgan import PatchGANDiscriminator, patchgan_receptive_field

from .helpers import assert_every_param_has_grad, projection_loss

#: n_layers -> receptive field. The guide lists ~142/286/574 px for 4/5/6 layers; 3 layers is the
#: pix2pix "70x70 PatchGAN"; 7 extends the series.
RECEPTIVE_FIELDS = {3: 70, 4: 142, 5: 286, 6: 574, 7: 1150}
NORMS = ["batch", "instance", "spectral", "none"]


def tiny(**kwargs) -> PatchGANDiscriminator:
    return PatchGANDiscriminator(**{"n_layers": 3, "ndf": 4, "max_channels": 8, **kwargs})


@pytest.mark.parametrize("n_layers", list(RECEPTIVE_FIELDS))
def test_receptive_field_is_analytic(n_layers: int) -> None:
    expected = RECEPTIVE_FIELDS[n_layers]
    assert patchgan_receptive_field(n_layers) == expected == 9 * 2**n_layers - 2
    assert tiny(n_layers=n_layers).receptive_field() == expected


@pytest.mark.parametrize("n_layers", list(RECEPTIVE_FIELDS))
def test_receptive_field_matches_the_gradient_support(n_layers: int) -> None:
    """The gradient of one central logit w.r.t. the input is non-zero exactly on a band of
    receptive-field rows (eval mode: batch norm is then a per-pixel affine map)."""
    disc = PatchGANDiscriminator(n_layers=n_layers, ndf=2, max_channels=4).eval()
    height, width = 12 * 2**n_layers, 3 * 2**n_layers  # 10 logit rows; the minimum width (1 column)
    maps = torch.randn(1, 8, height, width, requires_grad=True)
    logits = disc(maps)
    assert logits.shape == (1, 1, 10, 1)
    logits[0, 0, 5, 0].backward()
    rows = (maps.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    assert rows.max() - rows.min() + 1 == RECEPTIVE_FIELDS[n_layers] == len(rows)  # one contiguous band
    assert rows.min() > 0 and rows.max() < height - 1  # not clipped by the image border


@pytest.mark.parametrize("norm", NORMS)
def test_cardinality(norm: str) -> None:
    disc = tiny(norm=norm)
    assert isinstance(disc, Discriminator)
    logits = disc(torch.rand(2, 8, 64, 64))
    assert logits.shape == (2, 1, 6, 6)  # 64 -> 32 -> 16 -> 8 -> 7 -> 6


@pytest.mark.parametrize("norm", NORMS)
def test_grad_flow(norm: str) -> None:
    disc = tiny(norm=norm).train()
    maps = torch.rand(2, 8, 32, 32, requires_grad=True)
    projection_loss(disc(maps)).backward()
    assert_every_param_has_grad(disc)
    assert maps.grad is not None and maps.grad.abs().sum() > 0


def test_original_configurable_discriminator() -> None:
    """n_layers=6, ndf=64 is the original stack's discriminator (experiments/benchmarks/README.md):
    15,356,737 parameters, 2x2 logits at 256 px."""
    with torch.device("meta"):
        disc = PatchGANDiscriminator(n_layers=6, ndf=64)
        logits = disc(torch.empty(1, 8, 256, 256))
    assert sum(p.numel() for p in disc.parameters()) == 15_356_737
    assert logits.shape == (1, 1, 2, 2)
    widths = [m.out_channels for m in disc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert widths == [64, 128, 256, 512, 512, 512, 512, 1]


def test_spectral_norm_normalises_the_weights() -> None:
    disc = tiny(norm="spectral").eval()  # spectral_norm runs 15 power iterations at init
    assert not any(isinstance(m, (torch.nn.BatchNorm2d, torch.nn.InstanceNorm2d)) for m in disc.modules())
    for conv in (m for m in disc.modules() if isinstance(m, torch.nn.Conv2d)):
        sigma = torch.linalg.matrix_norm(conv.weight.detach().flatten(1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.02)


def test_conditional_discriminator_sees_the_views() -> None:
    disc = tiny(conditional=True, num_views=3).eval()
    assert disc.model[0].in_channels == 8 + 3 * 3
    maps, views = torch.rand(2, 8, 32, 32), torch.rand(2, 3, 3, 32, 32)
    with torch.no_grad():
        logits = disc(maps, views)
        assert not torch.allclose(logits, disc(maps, torch.rand_like(views)))
        # views at a lower resolution than the maps (decoder.sr_scale=2) are resized to them
        assert disc(maps, torch.rand(2, 3, 3, 16, 16)).shape == logits.shape
    with pytest.raises(ValueError, match=r"conditional=true needs the views"):
        disc(maps)
    with pytest.raises(
        ValueError, match=r"discriminator views: expected \(B=2, V=3, 3, h, w\), got \(2, 2, 3, 32, 32\)"
    ):
        disc(maps, torch.rand(2, 2, 3, 32, 32))


def test_unconditional_discriminator_ignores_the_views() -> None:
    disc = tiny().eval()
    maps = torch.rand(2, 8, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(disc(maps, torch.rand(2, 3, 3, 32, 32)), disc(maps))


def test_small_inputs_are_padded_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    disc = tiny(n_layers=5)
    assert disc.min_input_size == 96
    with caplog.at_level(logging.WARNING):
        logits = disc(torch.rand(2, 8, 64, 64))
    assert logits.shape == (2, 1, 1, 1)
    assert "smaller than 96 px" in caplog.text


def test_wrong_inputs_and_options() -> None:
    with pytest.raises(
        ValueError, match=r"discriminator maps: expected \(B, C=8, H, W\), got \(2, 7, 32, 32\)"
    ):
        tiny()(torch.rand(2, 7, 32, 32))
    for n_layers in (2, 8):
        with pytest.raises(ValueError, match=rf"discriminator\.n_layers={n_layers}; expected 3\.\.7"):
            tiny(n_layers=n_layers)
    with pytest.raises(ValueError, match=r"discriminator\.norm='group'; choose one of"):
        tiny(norm="group")
    with pytest.raises(ValueError, match=r"discriminator\.ndf=16, discriminator\.max_channels=8"):
        tiny(ndf=16)
