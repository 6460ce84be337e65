"""Cameras: aligned views are texture-space shading; perspective views tilt, turn and tile."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from neuropbr.render.brdf import shade
from neuropbr.render.camera import AlignedCamera, PerspectiveCamera
from neuropbr.render.geometry import directions_to, point_light, texel_positions
from neuropbr.render.lights import EnvironmentLight, PointLight, procedural_sky
from neuropbr.render.renderer import render_radiance
from neuropbr.utils.tensors import unit_vectors


def _maps(size: int = 16, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(1, 3, size, size, generator=gen) * 0.3
    normal[:, 2] = 1.0
    return {
        "albedo": torch.rand(1, 3, size, size, generator=gen),
        "roughness": 0.2 + 0.8 * torch.rand(1, 1, size, size, generator=gen),
        "metallic": torch.rand(1, 1, size, size, generator=gen),
        "normal": unit_vectors(normal),
    }


def _lights() -> list:
    sky = procedural_sky(
        torch.tensor([0.5, 0.2, 1.0]), torch.tensor([0.2, 0.4, 1.0]), torch.ones(3), glow=1.0
    )
    return [
        PointLight(torch.tensor([0.7, -0.4, 1.8]), 6.0),
        EnvironmentLight.from_equirect(sky, num_samples=8),
    ]


def test_aligned_camera_reproduces_texture_space_shading() -> None:
    maps, eye = _maps(), torch.tensor([[0.3, -0.2, 2.5]])
    lamp, intensity = torch.tensor([[0.7, -0.4, 1.8]]), torch.tensor([[6.0, 5.0, 4.0]])
    positions = texel_positions(16, 16)
    view_dir, _ = directions_to(eye, positions)
    light_dir, radiance = point_light(lamp, intensity, positions)
    expected = shade(maps, light_dir, view_dir, radiance)
    got = render_radiance(maps, AlignedCamera(eye=eye), [PointLight(lamp, intensity)])
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)


def test_orthographic_aligned_camera_looks_straight_down() -> None:
    view = AlignedCamera().observe(_maps(8))
    torch.testing.assert_close(view.view_dir, torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1))
    torch.testing.assert_close(view.positions, texel_positions(8, 8))
    assert AlignedCamera().eye is None


def test_aligned_camera_resamples_maps_to_the_requested_resolution() -> None:
    view = AlignedCamera().observe(_maps(16), resolution=8)
    assert view.maps["albedo"].shape == (1, 3, 8, 8)
    torch.testing.assert_close(view.maps["normal"].norm(dim=1), torch.ones(1, 8, 8))


def test_perspective_without_tilt_roll_or_tiling_equals_aligned() -> None:
    maps = _maps()
    aligned = AlignedCamera(eye=torch.tensor([0.0, 0.0, 3.0]))
    perspective = PerspectiveCamera(distance=3.0)  # default fov frames the sample's square
    a, p = aligned.observe(maps), perspective.observe(maps)
    for name in maps:
        torch.testing.assert_close(p.maps[name], a.maps[name], atol=1e-5, rtol=0)
    torch.testing.assert_close(p.positions.expand_as(a.positions), a.positions, atol=1e-5, rtol=0)
    torch.testing.assert_close(p.view_dir, a.view_dir.expand_as(p.view_dir), atol=1e-6, rtol=0)
    lights = _lights()
    torch.testing.assert_close(
        render_radiance(maps, perspective, lights),
        render_radiance(maps, aligned, lights),
        rtol=1e-4,
        atol=1e-5,
    )


def test_in_plane_rotation_turns_the_image() -> None:
    maps = _maps(8)
    aligned = AlignedCamera(eye=torch.tensor([0.0, 0.0, 3.0])).observe(maps).maps["albedo"]
    turned = PerspectiveCamera(distance=3.0, roll_deg=90.0).observe(maps).maps["albedo"]
    # Turning the camera counter-clockwise turns its picture clockwise.
    torch.testing.assert_close(turned, torch.rot90(aligned, k=-1, dims=(-2, -1)), atol=1e-5, rtol=0)


def test_tiling_repeats_the_texture() -> None:
    size = 16
    maps = _maps(size)
    seen = PerspectiveCamera(distance=3.0, tiling=2.0).observe(maps).maps["albedo"][0]
    half = size // 2
    quadrants = [seen[:, :half, :half], seen[:, :half, half:], seen[:, half:, :half], seen[:, half:, half:]]
    for quadrant in quadrants[1:]:
        torch.testing.assert_close(quadrant, quadrants[0], atol=1e-5, rtol=0)
    # Each pixel covers 2 x 2 texels: it sees the box-filtered texture, shifted by a whole texel count.
    filtered = F.avg_pool2d(maps["albedo"], 2)[0]
    shifts = [(dy, dx) for dy in range(half) for dx in range(half)]
    errors = [(torch.roll(filtered, s, dims=(-2, -1)) - quadrants[0]).abs().max().item() for s in shifts]
    assert min(errors) < 1e-5


def test_prefilter_keeps_minified_textures_from_aliasing() -> None:
    size = 32
    squares = torch.arange(size) // 2  # a checker of 2 x 2-texel squares
    checker = ((squares[:, None] + squares[None, :]) % 2).float()
    maps = {"albedo": checker.expand(1, 3, size, size)}
    # 4 repeats: each pixel spans 4 x 4 texels; the half-texel offset puts unfiltered taps on texel
    # centres, which then all land on the same colour of the checker.
    settings = {"distance": 3.0, "tiling": 4.0, "offset": (1 / size, 1 / size)}
    filtered = PerspectiveCamera(**settings).observe(maps).maps["albedo"]
    aliased = PerspectiveCamera(**settings, prefilter=False).observe(maps).maps["albedo"]
    assert filtered.std() < 0.02 and filtered.mean().item() == pytest.approx(0.5, abs=0.02)
    assert abs(aliased.mean().item() - 0.5) > 0.4


def test_tilted_views_see_the_plane_at_every_pixel() -> None:
    camera = PerspectiveCamera(
        tilt_deg=torch.tensor([40.0, 25.0]), azimuth_deg=torch.tensor([30.0, 200.0]), roll_deg=torch.tensor([0.0, 75.0]),
        distance=3.0, tiling=1.5, offset=(0.3, -0.2),
    )  # fmt: skip
    view = camera.observe(_maps(), resolution=24)
    assert view.maps["albedo"].shape == (2, 3, 24, 24)
    assert (view.positions[:, 2] == 0).all() and torch.isfinite(view.positions).all()
    expected_dir = unit_vectors(camera.eye[:, :, None, None] - view.positions)
    torch.testing.assert_close(view.view_dir, expected_dir, atol=1e-5, rtol=0)
    torch.testing.assert_close(view.maps["normal"].norm(dim=1), torch.ones(2, 24, 24))
    # The far side of a tilted view is farther from the eye than the near side.
    distance = (camera.eye[:, :, None, None] - view.positions).norm(dim=1)
    assert distance[0].max() > 1.5 * distance[0].min()


def test_perspective_eye_position() -> None:
    camera = PerspectiveCamera(tilt_deg=30.0, azimuth_deg=0.0, distance=3.0)
    torch.testing.assert_close(camera.eye, torch.tensor([[0.0, -1.5, 3 * math.cos(math.radians(30))]]))
    swung = PerspectiveCamera(tilt_deg=30.0, azimuth_deg=90.0, distance=3.0)
    torch.testing.assert_close(
        swung.eye, torch.tensor([[1.5, 0.0, 3 * math.cos(math.radians(30))]]), atol=1e-6, rtol=0
    )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"tilt_deg": 70.0, "fov_deg": 40.0},
            r"PerspectiveCamera\.tilt_deg=\[70\.0.*every pixel's ray meets the plane",
        ),
        ({"tilt_deg": -5.0}, r"PerspectiveCamera\.tilt_deg"),
        ({"distance": 0.0}, r"PerspectiveCamera\.distance=\[0\.0\]: expected > 0"),
        ({"tiling": 0.0}, r"PerspectiveCamera\.tiling=\[0\.0\]: expected > 0"),
        ({"fov_deg": 170.0}, r"PerspectiveCamera\.fov_deg=\[170\.0.*expected in \(0, 150\)"),
        ({"offset": (1.0, 2.0, 3.0)}, r"PerspectiveCamera\.offset: expected \(2,\) or \(B, 2\)"),
    ],
)
def test_perspective_camera_rejects_bad_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PerspectiveCamera(**kwargs)


def test_aligned_camera_rejects_an_eye_below_the_sample() -> None:
    with pytest.raises(ValueError, match=r"AlignedCamera\.eye: expected z > 0"):
        AlignedCamera(eye=torch.tensor([0.0, 0.0, -1.0]))


def test_cameras_run_on_the_requested_device(device: torch.device) -> None:
    maps = {k: v.to(device) for k, v in _maps(8).items()}
    for camera in (
        AlignedCamera(eye=torch.tensor([0.0, 0.0, 3.0])),
        PerspectiveCamera(tilt_deg=30.0, tiling=2.0),
    ):
        out = render_radiance(maps, camera, _lights())
        assert out.device.type == device.type and torch.isfinite(out).all()
