"""Lights: point, directional, environment (procedural sky, equirectangular maps, .hdr files)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hemisphere import directional_albedo

from neuropbr.render.brdf import Surface, shade
from neuropbr.render.geometry import directional_light, directions_to, point_light, texel_positions
from neuropbr.render.hdr import HDRFormatError, equirect_directions, read_hdr, write_hdr
from neuropbr.render.lights import (
    DirectionalLight,
    EnvironmentLight,
    PointLight,
    hemisphere_directions,
    procedural_sky,
)
from neuropbr.utils.tensors import unit_vectors


def _maps(
    size: int = 8, roughness: float = 0.5, metallic: float = 0.0, seed: int = 0
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(1, 3, size, size, generator=gen) * 0.2
    normal[:, 2] = 1.0
    return {
        "albedo": 0.2 + 0.7 * torch.rand(1, 3, size, size, generator=gen),
        "roughness": torch.full((1, 1, size, size), roughness),
        "metallic": torch.full((1, 1, size, size), metallic),
        "normal": unit_vectors(normal),
    }


def _flat(roughness: float, metallic: float) -> dict[str, torch.Tensor]:
    return {
        "albedo": torch.ones(1, 3, 1, 1),
        "roughness": torch.full((1, 1, 1, 1), roughness),
        "metallic": torch.full((1, 1, 1, 1), metallic),
        "normal": torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1),
    }


# --- point and directional ----------------------------------------------------------------------


def test_point_light_irradiance_falls_off_with_the_square_of_distance() -> None:
    light = PointLight(torch.tensor([1.0, 0.0, 2.0]), 5.0)
    # d^2 = 5 and cos = 2 / sqrt(5) at the origin: E = 5 * (2 / sqrt 5) / 5 = 0.8944272.
    torch.testing.assert_close(light.irradiance(torch.zeros(3)), torch.full((1, 3), 0.8944272))
    far = PointLight(torch.tensor([0.0, 0.0, 4.0]), 5.0)
    near = PointLight(torch.tensor([0.0, 0.0, 2.0]), 5.0)
    torch.testing.assert_close(near.irradiance(torch.zeros(3)), 4 * far.irradiance(torch.zeros(3)))


def test_lights_shade_like_the_single_light_reference() -> None:
    maps = _maps()
    positions = texel_positions(8, 8)
    view_dir, _ = directions_to(torch.tensor([[0.3, 0.0, 3.0]]), positions)
    surface = Surface.from_maps(maps)
    lamp, intensity = torch.tensor([[0.5, -0.5, 1.5]]), torch.tensor([[3.0, 2.0, 1.0]])
    lamp_dir, lamp_radiance = point_light(lamp, intensity, positions)
    expected = shade(maps, lamp_dir, view_dir, lamp_radiance)
    got = PointLight(lamp, intensity).illuminate(surface, positions, view_dir)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-7)
    sun, irradiance = torch.tensor([[0.4, 0.2, 1.0]]), torch.tensor([[1.0, 0.9, 0.8]])
    sun_dir, sun_radiance = directional_light(sun, irradiance)
    got = DirectionalLight(sun, irradiance).illuminate(surface, positions, view_dir)
    torch.testing.assert_close(got, shade(maps, sun_dir, view_dir, sun_radiance), rtol=1e-5, atol=1e-7)


def test_several_lights_in_one_object_sum_like_separate_lights() -> None:
    maps = _maps()
    positions = texel_positions(8, 8)
    view = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    surface = Surface.from_maps(maps)
    positions_k = torch.tensor([[[0.5, 0.5, 1.0], [-1.0, 0.0, 2.0]]])
    together = PointLight(positions_k, torch.tensor([[[1.0, 1.0, 1.0], [2.0, 1.0, 0.5]]])).illuminate(
        surface, positions, view
    )
    apart = PointLight(positions_k[:, 0], torch.tensor([1.0, 1.0, 1.0])).illuminate(surface, positions, view)
    apart = apart + PointLight(positions_k[:, 1], torch.tensor([2.0, 1.0, 0.5])).illuminate(
        surface, positions, view
    )
    torch.testing.assert_close(together, apart)


def test_light_parameters_broadcast_over_the_batch() -> None:
    maps = {k: v.expand(3, -1, -1, -1) for k, v in _maps().items()}
    surface = Surface.from_maps(maps)
    positions = texel_positions(8, 8)
    view = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    per_view = PointLight(torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, 2.0], [1.0, 0.0, 2.0]]), 2.0)
    out = per_view.illuminate(surface, positions, view)
    assert out.shape == (3, 3, 8, 8)
    assert out[0].mean() > out[1].mean()  # the closer light is brighter


def test_bad_light_shapes_name_the_parameter() -> None:
    with pytest.raises(
        ValueError,
        match=r"PointLight\.position: expected \(\), \(3,\), \(B, 3\) or \(B, K, 3\), got \(2, 2\)",
    ):
        PointLight(torch.zeros(2, 2), 1.0)
    with pytest.raises(ValueError, match=r"DirectionalLight\.irradiance"):
        DirectionalLight(torch.tensor([0.0, 0.0, 1.0]), torch.ones(1, 2, 3, 4))


# --- environment ----------------------------------------------------------------------------------


def test_equirect_solid_angles_are_exact() -> None:
    for height in (16, 15):
        directions, solid_angle = equirect_directions(height, 2 * height)
        assert solid_angle.sum().item() == pytest.approx(4 * math.pi, rel=1e-6)
        _, upper = equirect_directions(height, 2 * height, upper_only=True)
        assert upper.sum().item() == pytest.approx(2 * math.pi, rel=1e-6)
        torch.testing.assert_close(directions.norm(dim=-1), torch.ones(height, 2 * height))
    assert directions[0, 0, 2] > 0.99 and directions[-1, 0, 2] < -0.99  # zenith on top


def test_hemisphere_directions_cover_the_upper_hemisphere_evenly() -> None:
    d = hemisphere_directions(64)
    torch.testing.assert_close(d.norm(dim=-1), torch.ones(64))
    assert (d[:, 2] > 0).all()
    assert d.mean(0)[:2].abs().max() < 0.05  # no side favoured
    assert d[:, 2].mean().item() == pytest.approx(0.5, abs=1e-6)  # uniform in z: equal areas


def test_environment_delivers_the_exact_irradiance_of_its_map() -> None:
    radiance = torch.tensor([1.0, 2.0, 3.0])
    env = EnvironmentLight.from_equirect(radiance.view(3, 1, 1).expand(3, 32, 64), num_samples=32)
    # A uniform sky of radiance L gives an upward patch pi L (up to texel-centre discretisation).
    torch.testing.assert_close(
        env.irradiance(torch.zeros(3)), math.pi * radiance.view(1, 3), rtol=2e-3, atol=0
    )
    assert env.direction.shape == (1, 32, 3) and (env.direction[..., 2] > 0).all()
    assert ((env.spread > 0) & (env.spread < 1.0)).all()


@pytest.mark.parametrize(("roughness", "metallic"), [(1.0, 1.0), (1.0, 0.0), (0.3, 1.0), (0.3, 0.0)])
@pytest.mark.parametrize("view_deg", [0.0, 45.0])
def test_environment_white_furnace_matches_hemisphere_integration(
    roughness: float, metallic: float, view_deg: float
) -> None:
    env = EnvironmentLight.from_equirect(torch.ones(3, 32, 64), num_samples=64)
    view = torch.tensor([math.sin(math.radians(view_deg)), 0.0, math.cos(math.radians(view_deg))]).view(
        1, 3, 1, 1
    )
    got = (
        env.illuminate(Surface.from_maps(_flat(roughness, metallic)), torch.zeros(1, 3, 1, 1), view)
        .mean()
        .item()
    )
    expected = sum(
        directional_albedo(view_deg, albedo_linear=1.0, roughness=roughness, metallic=metallic, steps=30)
    )
    assert got == pytest.approx(expected, rel=0.03)


def test_environment_spread_lets_few_cells_light_near_mirrors() -> None:
    """Without the cells' spread a near-mirror sees almost none of a uniform sky."""
    env = EnvironmentLight.from_equirect(torch.ones(3, 32, 64), num_samples=64)
    surface = Surface.from_maps(_flat(0.1, 1.0))
    up = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    with_spread = env.illuminate(surface, torch.zeros(1, 3, 1, 1), up).mean().item()
    without = EnvironmentLight(env.direction, env.color, torch.zeros_like(env.spread))
    assert with_spread == pytest.approx(1.0, abs=0.1)
    assert without.illuminate(surface, torch.zeros(1, 3, 1, 1), up).mean().item() < 0.5


def test_environment_cell_holding_a_sun_is_sharp_and_rotates_with_the_map() -> None:
    image = torch.full((3, 32, 64), 0.01)
    row, col = 10, 32  # elevation ~33 degrees, azimuth ~ +3 degrees
    image[:, row, col] = 5000.0
    directions, _ = equirect_directions(32, 64)
    sun = directions[row, col]
    env = EnvironmentLight.from_equirect(image, num_samples=16, rotation_deg=torch.tensor([0.0, 90.0]))
    brightest = env.color.sum(-1).argmax(dim=-1)  # (B,)
    seen = env.direction[torch.arange(2), brightest]
    torch.testing.assert_close(seen[0], sun, atol=0.02, rtol=0)
    rotated = torch.stack([-sun[1], sun[0], sun[2]])  # +90 degrees about z
    torch.testing.assert_close(seen[1], rotated, atol=0.02, rtol=0)
    assert (env.spread[torch.arange(2), brightest] < math.radians(5)).all()


def test_procedural_sky() -> None:
    sun = torch.tensor([[0.0, 1.0, 1.0]])
    sky = procedural_sky(
        sun, zenith=torch.tensor([0.2, 0.4, 1.0]), horizon=torch.tensor([1.0, 1.0, 1.0]), glow=3.0
    )
    assert sky.shape == (1, 3, 32, 64) and (sky > 0).all()
    assert sky[0, 2, 0].mean() > sky[0, 0, 0].mean()  # blue zenith
    assert sky[0, :, 0].mean() < sky[0, :, 15].mean()  # brighter towards the horizon
    directions, _ = equirect_directions(32, 64)
    peak = sky[0].sum(0).flatten().argmax()
    towards = directions.reshape(-1, 3)[peak]
    assert torch.dot(towards, unit_vectors(sun[0], dim=0)) > 0.95  # glow around the sun
    torch.testing.assert_close(sky[0, :, -1], 0.3 * torch.ones(3, 1).expand(3, 64))  # ground below


def test_environment_runs_on_the_requested_device(device: torch.device) -> None:
    sky = procedural_sky(torch.tensor([0.0, 0.0, 1.0]), torch.ones(3), torch.ones(3)).to(device)
    env = EnvironmentLight.from_equirect(sky, num_samples=8)
    maps = {k: v.to(device) for k, v in _maps().items()}
    out = env.illuminate(
        Surface.from_maps(maps),
        texel_positions(8, 8, device=device),
        torch.tensor([0.0, 0.0, 1.0], device=device).view(1, 3, 1, 1),
    )
    assert out.device.type == device.type and torch.isfinite(out).all()


# --- .hdr files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rle", [True, False])
def test_hdr_round_trip_within_rgbe_precision(tmp_path: Path, rle: bool) -> None:
    gen = torch.Generator().manual_seed(0)
    image = torch.exp(torch.empty(3, 5, 40).uniform_(math.log(1e-3), math.log(1e4), generator=gen))
    image[:, 0, :20] = 7.25  # long runs exercise the run-length encoder
    image[:, 1, :] = 0.0
    write_hdr(tmp_path / "env.hdr", image, rle=rle)
    back = read_hdr(tmp_path / "env.hdr")
    assert back.shape == image.shape and back.dtype == torch.float32
    # RGBE keeps 8 bits of mantissa relative to the pixel's largest channel.
    peak = image.max(dim=0, keepdim=True).values
    assert ((back - image).abs() <= peak / 128 + 1e-30).all()
    assert (back[:, 1] == 0).all()


def test_hdr_decodes_hand_written_run_length_scanline(tmp_path: Path) -> None:
    header = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\nEXPOSURE=1.0\n\n-Y 1 +X 8\n"
    scanline = bytes([2, 2, 0, 8])
    scanline += bytes([128 + 8, 128])  # R: a run of 8 x 128
    scanline += bytes([8, 0, 16, 32, 48, 64, 80, 96, 112])  # G: 8 literals
    scanline += bytes([128 + 4, 64, 4, 1, 2, 3, 4])  # B: a run of 4 x 64, then 4 literals
    scanline += bytes([128 + 8, 129])  # E: exponent 129 -> scale 2^(129 - 136) = 1/128
    (tmp_path / "hand.hdr").write_bytes(header + scanline)
    image = read_hdr(tmp_path / "hand.hdr")
    scale = 1 / 128
    torch.testing.assert_close(image[0, 0], torch.full((8,), 128.5 * scale))
    torch.testing.assert_close(image[1, 0], (torch.arange(8) * 16 + 0.5) * scale)
    torch.testing.assert_close(image[2, 0], torch.tensor([64.5] * 4 + [1.5, 2.5, 3.5, 4.5]) * scale)


def test_hdr_decodes_flat_pixels_with_an_old_style_run(tmp_path: Path) -> None:
    pixels = bytes([100, 50, 25, 130]) + bytes([1, 1, 1, 2]) + bytes([0, 0, 0, 0])  # p, repeat p twice, black
    (tmp_path / "flat.hdr").write_bytes(b"#?RGBE\n\n-Y 1 +X 4\n" + pixels)
    image = read_hdr(tmp_path / "flat.hdr")
    expected = torch.tensor([100.5, 50.5, 25.5]) * 2.0 ** (130 - 136)
    for col in range(3):
        torch.testing.assert_close(image[:, 0, col], expected)
    assert (image[:, 0, 3] == 0).all()


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"P6\n2 2\n255\n", "not a Radiance HDR file"),
        (
            b"#?RADIANCE\nFORMAT=32-bit_rle_xyze\n\n-Y 1 +X 1\n\x00\x00\x00\x00",
            "32-bit_rle_xyze is not supported",
        ),
        (b"#?RADIANCE\n\n+Y 1 +X 1\n\x00\x00\x00\x00", r"only '-Y <height> \+X <width>'"),
        (b"#?RADIANCE\n\n-Y 2 +X 2\n\x80\x80\x80\x81", "truncated at scanline"),
        (b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n", "truncated header"),
    ],
)
def test_bad_hdr_files_raise_naming_the_path(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.hdr"
    path.write_bytes(content)
    with pytest.raises(HDRFormatError, match=problem) as info:
        read_hdr(path)
    assert str(path) in str(info.value)


def test_environment_from_an_hdr_file(tmp_path: Path) -> None:
    sky = procedural_sky(
        torch.tensor([0.3, 0.0, 1.0]), torch.tensor([0.2, 0.4, 1.0]), torch.ones(3), glow=2.0
    )[0]
    write_hdr(tmp_path / "sky.hdr", sky)
    from_file = EnvironmentLight.from_equirect(read_hdr(tmp_path / "sky.hdr"), num_samples=8)
    from_tensor = EnvironmentLight.from_equirect(sky, num_samples=8)
    torch.testing.assert_close(from_file.color, from_tensor.color, rtol=0.01, atol=1e-4)
