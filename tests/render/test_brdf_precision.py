"""Numerical accuracy of the BRDF and the renderer: float32 and bf16 autocast against float64, and
float64 against an 80-bit reference, with the emphasis on the mirror direction of smooth materials
(the highlights a rendering loss learns roughness from). Measurements: ``brdf_precision.py``."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from brdf_precision import (
    ROUGHNESSES,
    brdf_terms,
    highlight_render,
    near_mirror,
    one_ulp_nudge,
    random_directions,
    reference_specular,
    relative_error,
)

from neuropbr.render.brdf import (
    DIELECTRIC_F0,
    MIN_ROUGHNESS,
    Surface,
    cook_torrance,
    ggx_distribution,
    half_angle,
    shade,
    shade_many,
)
from neuropbr.render.camera import AlignedCamera, PerspectiveCamera
from neuropbr.render.lights import DirectionalLight, EnvironmentLight, PointLight, procedural_sky
from neuropbr.render.renderer import render_radiance
from neuropbr.utils.tensors import unit_vectors

F32, F64 = torch.float32, torch.float64
SAMPLES = 4000


# --- the BRDF's terms, float32 vs float64 on the same inputs -----------------------------------


@pytest.mark.parametrize("roughness", ROUGHNESSES)
def test_float32_terms_match_float64_near_the_mirror_direction(roughness: float) -> None:
    vectors = near_mirror(SAMPLES, roughness)
    assert vectors[0].shape[0] > SAMPLES // 2
    single, double = brdf_terms(*vectors, roughness, F32), brdf_terms(*vectors, roughness, F64)
    errors = {name: relative_error(single[name], double[name]) for name in double}
    # V and F are sums and products of positive terms: a few float32 roundings.
    assert errors["V"].max() < 1e-5 and errors["F"].max() < 1e-5
    # D (and the product) of a lobe ~alpha radians wide: rounding l + v to float32 moves the half
    # vector by ~6e-8 rad, which at roughness 0.03 (alpha 9e-4) is 1e-4 of D at worst; the
    # previous textbook form was off by 5 % in the median and 650 % at worst there.
    worst = 2e-4 if roughness == MIN_ROUGHNESS else 1e-4
    for name in ("D", "DVF n.l"):
        assert errors[name].median() < 3e-6, (name, float(errors[name].median()))
        assert errors[name].max() < worst, (name, float(errors[name].max()))


@pytest.mark.parametrize("roughness", [MIN_ROUGHNESS, 0.05])
def test_float32_error_is_below_the_cost_of_rounding_the_light_to_float32(roughness: float) -> None:
    """What remains at the smallest roughness is the BRDF's own sensitivity to its inputs: moving
    the light direction by one float32 ulp changes it more than the float32 arithmetic does."""
    normal, light, view = near_mirror(SAMPLES, roughness)
    double = brdf_terms(normal, light, view, roughness, F64)["DVF n.l"]
    arithmetic = relative_error(brdf_terms(normal, light, view, roughness, F32)["DVF n.l"], double)
    nudged = brdf_terms(normal, one_ulp_nudge(light, seed=1), view, roughness, F64)["DVF n.l"]
    sensitivity = relative_error(nudged, double)
    assert arithmetic.median() < sensitivity.median()
    assert arithmetic.max() < sensitivity.max()


@pytest.mark.parametrize("roughness", ROUGHNESSES)
def test_float32_is_exact_to_a_few_ulps_with_flat_normals(roughness: float) -> None:
    """With n = +z the cross product n x (l + v) is exact: the whole BRDF keeps float32 accuracy."""
    vectors = near_mirror(SAMPLES, roughness, tilt=0.0)
    single, double = brdf_terms(*vectors, roughness, F32), brdf_terms(*vectors, roughness, F64)
    assert relative_error(single["DVF n.l"], double["DVF n.l"]).max() < 5e-6


@pytest.mark.parametrize("roughness", ROUGHNESSES)
def test_float32_matches_float64_for_random_directions(roughness: float) -> None:
    vectors = random_directions(SAMPLES)
    single, double = brdf_terms(*vectors, roughness, F32), brdf_terms(*vectors, roughness, F64)
    assert relative_error(single["DVF n.l"], double["DVF n.l"]).max() < 2e-5


def test_exact_mirror_direction_gives_the_peak_of_d_in_float32() -> None:
    """l and v mirrored about n = +z: h = n, D = 1 / (pi alpha^2) exactly. The textbook
    denominator 1 + (n.h)^2 (alpha^2 - 1) is alpha^2 + O(1e-7) in float32: 15 % off at roughness 0.03."""
    theta = math.radians(35.0)
    light = torch.tensor([math.sin(theta), 0.0, math.cos(theta)]).view(1, 3, 1, 1)
    view = torch.tensor([-math.sin(theta), 0.0, math.cos(theta)]).view(1, 3, 1, 1)
    up = torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1)
    for roughness in (MIN_ROUGHNESS, 0.05, 0.2):
        a2 = roughness**4  # alpha = roughness^2
        cosine = float(light[0, 2])  # n.l = n.v = v.h at the mirror direction
        visibility = 0.5 / (2 * cosine * math.sqrt(cosine**2 * (1 - a2) + a2))
        fresnel = DIELECTRIC_F0 + (1 - DIELECTRIC_F0) * (1 - cosine) ** 5
        expected = fresnel * visibility * cosine / (math.pi * a2)
        one = torch.ones(1, 1, 1, 1)
        _, specular = cook_torrance(torch.full((1, 3, 1, 1), 0.5), roughness * one, 0 * one, up, light, view)
        assert float(specular[0, 0]) == pytest.approx(expected, rel=1e-5)


def test_half_angle_matches_the_explicit_half_vector() -> None:
    normal, light, view = (v.T.reshape(1, 3, -1, 1) for v in random_directions(SAMPLES, round32=False))
    n_dot_h, sin2_theta_h, v_dot_h = half_angle(normal, light, view)
    half = unit_vectors(light + view)
    torch.testing.assert_close(n_dot_h, (normal * half).sum(1, keepdim=True), rtol=1e-12, atol=0.0)
    torch.testing.assert_close(v_dot_h, (view * half).sum(1, keepdim=True), rtol=1e-12, atol=0.0)
    across = torch.linalg.cross(normal, half, dim=1)
    torch.testing.assert_close(sin2_theta_h, (across * across).sum(1, keepdim=True), rtol=1e-12, atol=1e-15)
    # D from (n.h, |n x h|^2) equals the textbook form where that one is accurate (rough lobes).
    alpha = torch.tensor(0.5)
    torch.testing.assert_close(
        ggx_distribution(n_dot_h, alpha, sin2_theta_h), ggx_distribution(n_dot_h, alpha), rtol=1e-12, atol=0.0
    )


# --- float64 against an independent 80-bit implementation --------------------------------------


@pytest.mark.parametrize("roughness", ROUGHNESSES)
def test_float64_matches_an_80_bit_reference(roughness: float) -> None:
    if np.finfo(np.longdouble).eps >= 1e-18:
        pytest.skip("numpy.longdouble is no wider than float64 on this platform")
    for vectors in (
        near_mirror(SAMPLES, roughness, round32=False),
        random_directions(SAMPLES, round32=False),
    ):
        got = brdf_terms(*vectors, roughness, F64)["DVF n.l"].numpy().astype(np.longdouble)
        expected = reference_specular(*vectors, roughness)
        assert float((np.abs(got - expected) / expected).max()) < 1e-12


# --- full renders -------------------------------------------------------------------------------


@pytest.mark.parametrize("roughness", [MIN_ROUGHNESS, 0.05, 0.2])
def test_float32_highlight_render_matches_float64(roughness: float) -> None:
    """A bumpy smooth dielectric under a point light at the camera's mirror image: every pixel,
    highlight included, within 1e-4 (was 2.6 % at roughness 0.03 and 1.3 % at 0.05)."""
    reference = highlight_render(roughness, F64)
    single = highlight_render(roughness, F32)
    assert relative_error(single, reference).max() < 1e-4


def _scene_maps(size: int = 16) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(4)
    normal = torch.randn(1, 3, size, size, generator=gen) * 0.2
    normal[:, 2] = 1.0
    return {
        "albedo": torch.rand(1, 3, size, size, generator=gen),
        "roughness": 0.05 + 0.5 * torch.rand(1, 1, size, size, generator=gen),
        "metallic": torch.rand(1, 1, size, size, generator=gen),
        "normal": unit_vectors(normal),
    }


def _every_light() -> list:
    sky = procedural_sky(
        torch.tensor([0.3, 0.3, 1.0]), torch.tensor([0.2, 0.4, 1.0]), torch.ones(3), glow=1.0
    )
    return [
        PointLight(torch.tensor([0.5, -0.5, 2.0]), 8.0),
        DirectionalLight(torch.tensor([[[0.3, 0.2, 1.0], [-0.5, 0.1, 0.8]]]), torch.tensor([[[1.0], [0.5]]])),
        EnvironmentLight.from_equirect(sky, num_samples=8),
    ]


@pytest.mark.parametrize(
    "camera",
    [AlignedCamera(eye=torch.tensor([0.2, 0.1, 3.0])), PerspectiveCamera(tilt_deg=30.0, azimuth_deg=20.0)],
)
def test_render_under_bf16_autocast_equals_float32(camera) -> None:
    """Autocast used to run the camera's ray rotation and the lights' matmuls in bf16 (renders off
    by up to 790 % with a tilted camera, 130 % under directional lights)."""
    maps = _scene_maps()
    expected = render_radiance(maps, camera, _every_light())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = render_radiance(maps, camera, _every_light())  # lights built under autocast too
    assert got.dtype == F32
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=0.0)


def test_lights_at_infinity_are_exact_without_full_precision_matmuls() -> None:
    """With float32 matmuls allowed to use TF32 or bf16, n.l and the light colours are summed
    elementwise instead: the same result."""
    maps = _scene_maps()
    surface = Surface.from_maps(maps)
    directions = unit_vectors(torch.tensor([[[0.3, 0.2, 1.0], [-0.5, 0.1, 0.8], [0.0, -0.4, 1.0]]]), dim=-1)
    colours = torch.tensor([[[1.0, 0.9, 0.8], [0.3, 0.4, 0.5], [0.2, 0.2, 0.2]]])
    view = unit_vectors(torch.randn(1, 3, 16, 16) * 0.1 + torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1))
    exact = shade_many(surface, directions[..., None, None], colours, view)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        relaxed = shade_many(surface, directions[..., None, None], colours, view)
    finally:
        torch.set_float32_matmul_precision(before)
    torch.testing.assert_close(relaxed, exact, rtol=1e-6, atol=1e-7)


# --- gradients at the narrowest lobe ------------------------------------------------------------


def _mirror_setup(dtype: torch.dtype) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """Three flat texels, at roughness 0 (clamped), MIN_ROUGHNESS and just above it, with light and
    view mirrored about their normal: the peak of the narrowest lobe the renderer allows."""
    maps = {
        "albedo": torch.full((1, 3, 1, 3), 0.6, dtype=dtype),
        "roughness": torch.tensor([0.0, MIN_ROUGHNESS, MIN_ROUGHNESS + 1e-3], dtype=dtype).view(1, 1, 1, 3),
        "metallic": torch.tensor([0.0, 1.0, 0.0], dtype=dtype).view(1, 1, 1, 3),
        "normal": torch.tensor([0.0, 0.0, 1.0], dtype=dtype).view(1, 3, 1, 1).expand(1, 3, 1, 3).clone(),
    }
    s, c = math.sin(math.radians(40.0)), math.cos(math.radians(40.0))
    light = torch.tensor([s, 0.0, c], dtype=dtype).view(1, 3, 1, 1)
    view = torch.tensor([-s, 0.0, c], dtype=dtype).view(1, 3, 1, 1)
    return maps, light, view


@pytest.mark.parametrize("autocast", [False, True])
def test_gradients_are_finite_at_the_mirror_direction_at_minimum_roughness(autocast: bool) -> None:
    maps, light, view = _mirror_setup(F32)
    inputs = {k: v.requires_grad_(True) for k, v in maps.items()}
    light_dir = light.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        radiance = shade(inputs, light_dir, view, torch.ones(1, 1, 1, 1))
    radiance.sum().backward()
    assert torch.isfinite(radiance).all() and radiance.max() > 1e3  # the peak of a very sharp lobe
    for name, tensor in [*inputs.items(), ("light_dir", light_dir)]:
        assert torch.isfinite(tensor.grad).all(), name
    # Below the floor roughness gets no gradient (clamped); just above it, a large negative one.
    grad = inputs["roughness"].grad[0, 0, 0]
    assert grad[0] == 0 and grad[2] < -1e5


@pytest.mark.parametrize("autocast", [False, True])
def test_gradients_are_finite_through_a_full_render_of_the_highlight(autocast: bool) -> None:
    """Maps, light and camera positions all get finite gradients through render_radiance of a
    minimum-roughness sample whose highlight sits exactly on a texel centre."""
    size = 8
    maps = {
        "albedo": torch.full((1, 3, size, size), 0.5),
        "roughness": torch.full((1, 1, size, size), MIN_ROUGHNESS),
        "metallic": torch.zeros(1, 1, size, size),
        "normal": torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, size, size).clone(),
    }
    maps = {k: v.requires_grad_(True) for k, v in maps.items()}
    centre = torch.tensor([1.0 / size, 1.0 / size, 0.0])  # texel (3, 4) of an 8 x 8 map
    eye = centre + torch.tensor([0.6, 0.3, 2.5])
    lamp = (centre + torch.tensor([-0.6, -0.3, 2.5])).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        radiance = render_radiance(maps, AlignedCamera(eye=eye), [PointLight(lamp, 5.0)])
    radiance.sum().backward()
    assert torch.isfinite(radiance).all()
    assert radiance[0, 0, 3, 4] > 100 * radiance[0, 0].median()  # the highlight is there
    for name, tensor in [*maps.items(), ("light position", lamp)]:
        assert torch.isfinite(tensor.grad).all(), name
