"""The render pipeline: shapes and ranges, exposure and tone mapping, gradients to the maps."""

from __future__ import annotations

import doctest

import pytest
import torch

import neuropbr.render.materials
import neuropbr.render.renderer
from neuropbr.render.camera import AlignedCamera, PerspectiveCamera
from neuropbr.render.color import linear_to_srgb
from neuropbr.render.lights import DirectionalLight, EnvironmentLight, PointLight, procedural_sky
from neuropbr.render.renderer import develop, exposure_for, render, render_radiance
from neuropbr.utils.tensors import unit_vectors


def _maps(batch: int = 1, size: int = 16, requires_grad: bool = False) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    normal = torch.randn(batch, 3, size, size, generator=gen) * 0.3
    normal[:, 2] = 1.0
    maps = {
        "albedo": 0.1 + 0.8 * torch.rand(batch, 3, size, size, generator=gen),
        "roughness": 0.2 + 0.7 * torch.rand(batch, 1, size, size, generator=gen),
        "metallic": torch.rand(batch, 1, size, size, generator=gen),
        "normal": unit_vectors(normal),
    }
    return {k: v.requires_grad_(requires_grad) for k, v in maps.items()}


def _lights() -> list:
    sky = procedural_sky(
        torch.tensor([0.3, 0.3, 1.0]), torch.tensor([0.2, 0.4, 1.0]), torch.ones(3), glow=1.0
    )
    return [
        PointLight(torch.tensor([0.5, -0.5, 2.0]), 8.0),
        DirectionalLight(torch.tensor([0.3, 0.1, 1.0]), torch.tensor([1.0, 0.95, 0.9])),
        EnvironmentLight.from_equirect(sky, num_samples=8),
    ]


@pytest.mark.parametrize(
    "camera",
    [
        AlignedCamera(eye=torch.tensor([0.0, 0.0, 3.0])),
        PerspectiveCamera(tilt_deg=35.0, roll_deg=20.0, tiling=1.5),
    ],
)
def test_render_gives_srgb_images_in_unit_range(camera) -> None:
    image = render(_maps(batch=2), camera, _lights(), resolution=12)
    assert image.shape == (2, 3, 12, 12) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() <= 1 and image.std() > 0.01


def test_develop_applies_exposure_then_tone_map_then_srgb() -> None:
    radiance = torch.rand(1, 3, 4, 4) * 0.4
    torch.testing.assert_close(
        develop(radiance, exposure_ev=1.0, tonemap_kind="clip"), linear_to_srgb(2 * radiance)
    )
    assert (develop(radiance * 100, tonemap_kind="aces") <= 1).all()
    with pytest.raises(ValueError, match="tonemap='filmic'; choose one of"):
        develop(radiance, tonemap_kind="filmic")


def test_exposure_for_puts_a_white_patch_at_the_target() -> None:
    irradiance = torch.tensor([[2.0, 2.0, 2.0], [0.5, 0.5, 0.5]])
    ev = exposure_for(irradiance, target=0.8)
    white = irradiance[:, 0] / torch.pi * 2.0**ev
    torch.testing.assert_close(white, torch.full((2,), 0.8))


def test_gradients_reach_all_four_maps_and_the_lights() -> None:
    maps = _maps(requires_grad=True)
    lamp = torch.tensor([[0.5, -0.5, 2.0]], requires_grad=True)
    lights = [PointLight(lamp, 8.0), *_lights()[1:]]
    camera = PerspectiveCamera(tilt_deg=30.0, azimuth_deg=40.0, roll_deg=10.0, tiling=1.3)
    target = torch.rand(1, 3, 16, 16)
    loss = (render(maps, camera, lights) - target).square().mean()
    loss.backward()
    for name, value in maps.items():
        assert value.grad is not None, name
        assert torch.isfinite(value.grad).all(), name
        assert value.grad.abs().sum() > 0, name
    assert lamp.grad is not None and lamp.grad.abs().sum() > 0


def test_render_needs_a_light() -> None:
    with pytest.raises(ValueError, match="lights is empty"):
        render_radiance(_maps(), AlignedCamera(), [])


@pytest.mark.parametrize("module", [neuropbr.render.renderer, neuropbr.render.materials])
def test_docstring_examples_run(module) -> None:
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
