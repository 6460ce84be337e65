"""Physics of the BRDF: energy, reciprocity, Fresnel, flat normals, hand-computed values, gradients."""

from __future__ import annotations

import math

import pytest
import torch
from hemisphere import directional_albedo

from neuropbr.data.io import decode_normal
from neuropbr.render.brdf import (
    DIELECTRIC_F0,
    Surface,
    base_reflectance,
    cook_torrance,
    ggx_distribution,
    schlick_fresnel,
    shade,
    shade_many,
    smith_ggx_correlated_visibility,
)
from neuropbr.render.camera import AlignedCamera
from neuropbr.render.color import srgb_to_linear
from neuropbr.render.geometry import (
    directional_light,
    directions_to,
    height_to_normal,
    point_light,
    texel_positions,
)
from neuropbr.render.lights import DirectionalLight, PointLight
from neuropbr.render.renderer import render_radiance
from neuropbr.utils.tensors import unit_vectors

F64 = torch.float64


def _schlick(f0: float, cosine: float) -> float:
    return f0 + (1 - f0) * (1 - cosine) ** 5


def _random_maps(
    batch: int, size: int, dtype: torch.dtype = torch.float32, seed: int = 0
) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    normal = torch.randn(batch, 3, size, size, generator=gen, dtype=dtype) * 0.3
    normal[:, 2] = 1.0
    return {
        "albedo": 0.2 + 0.7 * torch.rand(batch, 3, size, size, generator=gen, dtype=dtype),
        "roughness": 0.3 + 0.6 * torch.rand(batch, 1, size, size, generator=gen, dtype=dtype),
        "metallic": torch.rand(batch, 1, size, size, generator=gen, dtype=dtype),
        "normal": unit_vectors(normal),
    }


def _upper_hemisphere(n: int, gen: torch.Generator) -> torch.Tensor:
    """(1, 3, n, 1) random unit vectors with z >= 0.2."""
    v = torch.randn(3, n, generator=gen, dtype=F64)
    v[2] = v[2].abs() + 0.5
    return unit_vectors(v, dim=0).view(1, 3, n, 1)


# --- white furnace: integrate f (n.l) over the hemisphere of light directions ------------------


@pytest.mark.parametrize("metallic", [0.0, 1.0])
@pytest.mark.parametrize("roughness", [0.1, 0.3, 1.0])
@pytest.mark.parametrize("view_deg", [0.0, 45.0, 75.0])
def test_white_furnace_reflects_at_most_what_it_receives(
    metallic: float, roughness: float, view_deg: float
) -> None:
    diffuse, specular = directional_albedo(
        view_deg, albedo_linear=1.0, roughness=roughness, metallic=metallic, steps=50
    )
    assert diffuse + specular <= 1.0 + 1e-3
    # Single scattering loses energy but not all of it; metals have no diffuse lobe.
    assert diffuse + specular > 0.3
    if metallic == 1.0:
        assert diffuse == 0.0


@pytest.mark.parametrize("view_deg", [0.0, 45.0, 75.0])
def test_white_furnace_close_to_expected_at_low_roughness(view_deg: float) -> None:
    mu = math.cos(math.radians(view_deg))
    # A near-mirror metal with F0 = 1 reflects everything.
    diffuse, specular = directional_albedo(view_deg, albedo_linear=1.0, roughness=0.1, metallic=1.0, steps=50)
    assert diffuse + specular == pytest.approx(1.0, abs=3e-3)
    # A near-mirror white dielectric: the mirror lobe reflects F(mu); the Lambert lobe returns
    # (1 - F(mu)) times the cosine-weighted transmission 1 - F_avg = (1 - F0) 20 / 21, / (1 - F0).
    expected = _schlick(DIELECTRIC_F0, mu) + (1 - _schlick(DIELECTRIC_F0, mu)) * 20 / 21
    diffuse, specular = directional_albedo(view_deg, albedo_linear=1.0, roughness=0.1, metallic=0.0, steps=50)
    assert diffuse + specular == pytest.approx(expected, abs=3e-3)


# --- symmetries and limits ----------------------------------------------------------------------


def test_helmholtz_reciprocity() -> None:
    gen = torch.Generator().manual_seed(1)
    n = 256
    maps = {k: v.reshape(1, v.shape[1], -1, 1)[:, :, :n] for k, v in _random_maps(1, 16, F64).items()}
    albedo, normal = srgb_to_linear(maps["albedo"]), maps["normal"]
    light, view = _upper_hemisphere(n, gen), _upper_hemisphere(n, gen)

    def brdf(towards_light: torch.Tensor, towards_viewer: torch.Tensor) -> torch.Tensor:
        diffuse, specular = cook_torrance(
            albedo, maps["roughness"], maps["metallic"], normal, towards_light, towards_viewer
        )
        return (diffuse + specular) / (normal * towards_light).sum(1, keepdim=True)

    both_above = ((normal * light).sum(1) > 0.05) & ((normal * view).sum(1) > 0.05)
    assert both_above.sum() > n // 2
    forward, backward = brdf(light, view), brdf(view, light)
    mask = both_above.unsqueeze(1).expand_as(forward)
    torch.testing.assert_close(forward[mask], backward[mask], rtol=1e-10, atol=0.0)


def test_fresnel_at_normal_incidence_equals_f0() -> None:
    f0 = torch.tensor([0.04, 0.3, 0.9], dtype=F64)
    assert torch.equal(schlick_fresnel(f0, torch.ones(3, dtype=F64)), f0)
    albedo = torch.tensor([0.2, 0.5, 0.9], dtype=F64).view(1, 3, 1, 1)
    for metallic in (0.0, 0.5, 1.0):
        m = torch.full((1, 1, 1, 1), metallic, dtype=F64)
        assert torch.allclose(
            base_reflectance(albedo, m), DIELECTRIC_F0 + (albedo - DIELECTRIC_F0) * metallic
        )
        # l = v = n: D = 1 / (pi alpha^2), V = 1/4, so the specular lobe is F / (4 pi alpha^2).
        roughness = torch.full((1, 1, 1, 1), 0.5, dtype=F64)
        up = torch.tensor([0.0, 0.0, 1.0], dtype=F64).view(1, 3, 1, 1)
        _, specular = cook_torrance(albedo, roughness, m, up, up, up)
        fresnel = specular * 4 * math.pi * 0.25**2
        torch.testing.assert_close(fresnel, base_reflectance(albedo, m))
    assert torch.allclose(
        base_reflectance(albedo, torch.zeros(1, 1, 1, 1, dtype=F64)), torch.full_like(albedo, 0.04)
    )
    assert torch.allclose(base_reflectance(albedo, torch.ones(1, 1, 1, 1, dtype=F64)), albedo)


def test_flat_normal_map_shades_like_an_untextured_plane() -> None:
    size = 16
    maps = _random_maps(1, size)
    flat_from_file = decode_normal(torch.tensor([0.5, 0.5, 1.0]).view(1, 3, 1, 1).expand(1, 3, size, size))
    flat_from_height = height_to_normal(torch.full((1, 1, size, size), 0.37), strength=size / 2)
    assert torch.equal(
        flat_from_height, torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand_as(flat_from_height)
    )

    eye, lamp = torch.tensor([[0.2, -0.1, 2.5]]), torch.tensor([[0.8, 0.5, 1.5]])
    intensity, sun, sun_irradiance = (
        torch.tensor([[4.0, 3.5, 3.0]]),
        torch.tensor([[0.3, -0.4, 1.0]]),
        torch.ones(1, 3),
    )
    # The untextured plane: its geometric normal, not a map, through the skeleton's helpers.
    positions = texel_positions(size, size)
    view_dir, _ = directions_to(eye, positions)
    lamp_dir, lamp_radiance = point_light(lamp, intensity, positions)
    sun_dir, sun_radiance = directional_light(sun, sun_irradiance)
    plane = {k: v for k, v in maps.items() if k != "normal"}
    plane["normal"] = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, size, size)
    expected = shade(plane, lamp_dir, view_dir, lamp_radiance) + shade(plane, sun_dir, view_dir, sun_radiance)

    for flat in (flat_from_file, flat_from_height):
        textured = dict(maps, normal=flat)
        lights = [PointLight(lamp, intensity), DirectionalLight(sun, sun_irradiance)]
        got = render_radiance(textured, AlignedCamera(eye=eye), lights)
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


# --- hand-computed values -----------------------------------------------------------------------


def _one_texel(albedo_srgb: float, roughness: float, metallic: float) -> dict[str, torch.Tensor]:
    return {
        "albedo": torch.full((1, 3, 1, 1), albedo_srgb, dtype=F64),
        "roughness": torch.full((1, 1, 1, 1), roughness, dtype=F64),
        "metallic": torch.full((1, 1, 1, 1), metallic, dtype=F64),
        "normal": torch.tensor([0.0, 0.0, 1.0], dtype=F64).view(1, 3, 1, 1),
    }


UP = torch.tensor([0.0, 0.0, 1.0], dtype=F64).view(1, 3, 1, 1)


def test_reference_values_computed_by_hand() -> None:
    one = torch.ones(1, 1, 1, 1, dtype=F64)
    # A: l = v = n, roughness 0.5 -> alpha 0.25, a2 = 0.0625. D(1) = 1 / (pi a2) = 5.0929582;
    # V = 0.5 / (1 + 1) = 0.25; F(1) = F0 = 0.04 (dielectric). Specular = 5.0929582 * 0.25 * 0.04
    # = 0.0509296. Albedo sRGB 0.5 -> linear ((0.5 + 0.055) / 1.055)^2.4 = 0.2140411; diffuse =
    # 0.2140411 / pi * (1 - 0.04)(1 - 0.04) / (1 - 0.04) = 0.0654062. Sum 0.1163357.
    radiance = shade(_one_texel(0.5, 0.5, 0.0), UP, UP, one)
    torch.testing.assert_close(radiance, torch.full_like(radiance, 0.11633574), rtol=1e-6, atol=0)
    # B: the same geometry, a metal with sRGB albedo 0.8 -> F0 = linear 0.6038273: no diffuse,
    # specular = 5.0929582 * 0.25 * 0.6038273 = 0.7688168.
    radiance = shade(_one_texel(0.8, 0.5, 1.0), UP, UP, one)
    torch.testing.assert_close(radiance, torch.full_like(radiance, 0.76881685), rtol=1e-6, atol=0)
    # C: light 60 degrees off the normal, v = n, roughness 1 -> a2 = 1, so D = 1 / pi for every h;
    # V = 0.5 / (n.l + n.v) = 0.5 / 1.5 = 1/3; v.h = cos 30 = 0.8660254, w = (1 - 0.8660254)^5
    # = 4.3163e-5, F = 0.04 + 0.96 w = 0.0400414; specular = (1/pi)(1/3)(0.0400414)(0.5)
    # = 0.0021243. White dielectric (linear albedo 1): F(n.l = 0.5) = 0.04 + 0.96 / 32 = 0.07, so
    # diffuse = (1 / pi)(1 - 0.07)(1 - 0.04) / (1 - 0.04)(0.5) = 0.1480141. Sum 0.1501384.
    light = torch.tensor([math.sin(math.pi / 3), 0.0, 0.5], dtype=F64).view(1, 3, 1, 1)
    albedo = torch.ones(1, 3, 1, 1, dtype=F64)
    diffuse, specular = cook_torrance(albedo, one, 0 * one, UP, light, UP)
    torch.testing.assert_close(specular, torch.full_like(specular, 0.00212426), rtol=1e-5, atol=0)
    torch.testing.assert_close(diffuse, torch.full_like(diffuse, 0.14801410), rtol=1e-6, atol=0)
    # Inverse-square falloff: a point light of intensity 2 at (0, 0, 2) over the centre of a
    # 1-texel map delivers 2 / 2^2 = 0.5 along the normal: radiance = 0.5 * case A's 0.1163357.
    maps = {k: v.float() for k, v in _one_texel(0.5, 0.5, 0.0).items()}
    got = render_radiance(
        maps,
        AlignedCamera(eye=torch.tensor([0.0, 0.0, 3.0])),
        [PointLight(torch.tensor([0.0, 0.0, 2.0]), 2.0)],
    )
    torch.testing.assert_close(got, torch.full_like(got, 0.5 * 0.11633574), rtol=1e-5, atol=0)


def test_scalar_rewrite_matches_textbook_formulas() -> None:
    """The fused evaluation (no half vector) equals D V F and the coupled Lambert lobe built from
    the public helpers with an explicit half vector."""
    gen = torch.Generator().manual_seed(3)
    n = 512
    light, view = _upper_hemisphere(n, gen), _upper_hemisphere(n, gen)
    normal = unit_vectors(
        _upper_hemisphere(n, gen) + torch.tensor([0.0, 0.0, 1.0], dtype=F64).view(1, 3, 1, 1)
    )
    albedo = torch.rand(1, 3, n, 1, generator=gen, dtype=F64)
    roughness = 0.05 + 0.95 * torch.rand(1, 1, n, 1, generator=gen, dtype=F64)
    metallic = torch.rand(1, 1, n, 1, generator=gen, dtype=F64)
    diffuse, specular = cook_torrance(albedo, roughness, metallic, normal, light, view)

    half = unit_vectors(light + view)
    n_dot_l, n_dot_v = (normal * light).sum(1, keepdim=True), (normal * view).sum(1, keepdim=True)
    alpha = roughness**2
    f0 = DIELECTRIC_F0 + (albedo - DIELECTRIC_F0) * metallic
    fresnel = schlick_fresnel(f0, (view * half).sum(1, keepdim=True))
    visible = ((n_dot_l > 0) & (n_dot_v > 0)).to(F64)
    expected_spec = (
        ggx_distribution((normal * half).sum(1, keepdim=True).clamp(0, 1), alpha)
        * smith_ggx_correlated_visibility(n_dot_v.clamp(min=1e-6), n_dot_l.clamp(min=0), alpha)
        * fresnel
        * n_dot_l.clamp(min=0)
        * visible
    )
    transmission = (
        (1 - schlick_fresnel(f0, n_dot_l.clamp(0, 1)))
        * (1 - schlick_fresnel(f0, n_dot_v.clamp(0, 1)))
        / (1 - f0)
    )
    expected_diff = (1 - metallic) * albedo / math.pi * transmission * n_dot_l.clamp(min=0) * visible
    torch.testing.assert_close(specular, expected_spec, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(diffuse, expected_diff, rtol=1e-9, atol=1e-12)


def test_shade_many_equals_the_sum_of_single_lights() -> None:
    maps = _random_maps(2, 8, F64)
    positions = texel_positions(8, 8).double()
    view_dir, _ = directions_to(torch.tensor([[0.1, 0.2, 3.0], [-0.3, 0.0, 2.0]]), positions)
    view_dir = view_dir.double()
    lamps = torch.tensor([[[0.5, 0.5, 1.0], [-1.0, 0.2, 2.0], [0.0, -2.0, 1.5]]], dtype=F64).expand(2, -1, -1)
    colours = torch.rand(2, 3, 3, dtype=F64)
    expected = 0.0
    for k in range(3):
        light_dir, radiance = point_light(lamps[:, k], colours[:, k], positions.float())
        expected = expected + shade(maps, light_dir.double(), view_dir, radiance.double())
    offset = lamps[:, :, :, None, None] - positions.unsqueeze(1)
    dist2 = (offset**2).sum(2)
    got = shade_many(
        Surface.from_maps(maps), offset / dist2.sqrt().unsqueeze(2), colours, view_dir, falloff=1 / dist2
    )
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-9)
    # Lights at infinity take the matmul path; it must agree with the per-texel path.
    directions = unit_vectors(torch.randn(2, 4, 3, dtype=F64) + torch.tensor([0, 0, 2.0], dtype=F64), dim=-1)
    colours = torch.rand(2, 4, 3, dtype=F64)
    surface = Surface.from_maps(maps)
    fast = shade_many(surface, directions[..., None, None], colours, view_dir)
    slow = shade_many(surface, directions[..., None, None].expand(-1, -1, -1, 8, 8), colours, view_dir)
    torch.testing.assert_close(fast, slow)


# --- gradients and precision --------------------------------------------------------------------


def test_gradcheck_shade() -> None:
    maps = _random_maps(1, 3, F64, seed=5)
    inputs = tuple(
        maps[k].clone().requires_grad_(True) for k in ("albedo", "roughness", "metallic", "normal")
    )
    light_dir = unit_vectors(torch.tensor([0.3, -0.2, 1.0], dtype=F64), dim=0).view(1, 3, 1, 1)
    view_dir = unit_vectors(torch.tensor([-0.1, 0.4, 1.0], dtype=F64), dim=0).view(1, 3, 1, 1)

    def fn(albedo, roughness, metallic, normal):
        maps = {"albedo": albedo, "roughness": roughness, "metallic": metallic, "normal": normal}
        return shade(maps, light_dir, view_dir, torch.ones(1, 1, 1, 1, dtype=F64))

    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6)


def test_low_precision_maps_shade_in_float32() -> None:
    maps = _random_maps(1, 8)
    light, view = (
        torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1),
        torch.tensor([0.0, 0.6, 0.8]).view(1, 3, 1, 1),
    )
    reference = shade(maps, light, view, torch.ones(1, 1, 1, 1))
    half = shade({k: v.bfloat16() for k, v in maps.items()}, light, view, torch.ones(1, 1, 1, 1))
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, reference, rtol=0.05, atol=0.01)


def test_runs_on_the_requested_device(device: torch.device) -> None:
    maps = _random_maps(2, 8)
    light, view = (
        torch.tensor([0.2, 0.0, 1.0]).view(1, 3, 1, 1),
        torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1),
    )
    expected = shade(maps, unit_vectors(light), view, torch.ones(1, 1, 1, 1))
    got = shade(
        {k: v.to(device) for k, v in maps.items()},
        unit_vectors(light).to(device),
        view.to(device),
        torch.ones(1, 1, 1, 1, device=device),
    )
    assert got.device.type == device.type
    torch.testing.assert_close(got.cpu(), expected, rtol=1e-5, atol=1e-6)
