"""Accuracy of the BRDF in float32, under bf16 autocast and in float64 (test helper and measurement).

    python tests/render/brdf_precision.py      # prints the numbers quoted in neuropbr/render/brdf.py

Float32 and bf16-autocast results are compared with float64 evaluated on the same inputs (vectors
and maps rounded to float32 first), so what is measured is the arithmetic, not the rounding of the
inputs. Float64 is compared with an independent 80-bit (``numpy.longdouble``) implementation of
the documented BRDF that forms the half vector explicitly.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from neuropbr.render.brdf import (
    DIELECTRIC_F0,
    MIN_ROUGHNESS,
    cook_torrance,
    ggx_distribution,
    half_angle,
    schlick_fresnel,
    smith_ggx_correlated_visibility,
)
from neuropbr.render.camera import AlignedCamera
from neuropbr.render.geometry import height_to_normal
from neuropbr.render.lights import PointLight
from neuropbr.render.renderer import render_radiance
from neuropbr.utils.tensors import unit_vectors

F64 = torch.float64
#: Roughnesses measured: the smallest the renderer allows up to fully rough.
ROUGHNESSES = (MIN_ROUGHNESS, 0.05, 0.2, 0.5, 1.0)
#: Standard deviation of the tangential part of the random normals (like a bumpy normal map).
NORMAL_TILT = 0.3
#: Cosines of light and view with the normal at least this (grazing angles up to ~87 degrees).
MIN_COSINE = 0.05


def _alpha(roughness: float) -> float:
    return max(roughness, MIN_ROUGHNESS) ** 2


def _as_float32_values(*vectors: Tensor) -> tuple[Tensor, ...]:
    """The vectors rounded to float32, held in float64 (both precisions then see the same input)."""
    return tuple(v.float().double() for v in vectors)


def _random_normals(count: int, gen: torch.Generator, tilt: float) -> Tensor:
    normal = torch.randn(count, 3, generator=gen, dtype=F64) * tilt
    normal[:, 2] = 1.0
    return unit_vectors(normal, dim=1)


def _keep_above(normal: Tensor, light: Tensor, view: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    keep = ((normal * light).sum(1) > MIN_COSINE) & ((normal * view).sum(1) > MIN_COSINE)
    keep &= (light[:, 2] > 0) & (view[:, 2] > 0)
    return normal[keep], light[keep], view[keep]


def near_mirror(
    count: int, roughness: float, *, tilt: float = NORMAL_TILT, seed: int = 0, round32: bool = True
) -> tuple[Tensor, ...]:
    """``(normal, light, view)``, each (N, 3) float64 with N <= count, around the mirror direction.

    The half vector is ``atan(alpha t)`` away from the normal, ``t`` log-uniform in [1e-3, 10]
    (from practically the mirror direction to ten lobe widths), in a random azimuth; normals are
    random with tangential parts of standard deviation ``tilt`` (0: exactly +z), views random
    over the upper hemisphere. With ``round32`` every vector is rounded to float32 values.
    """
    gen = torch.Generator().manual_seed(seed)
    normal = _random_normals(count, gen, tilt)
    view = torch.randn(count, 3, generator=gen, dtype=F64)
    view[:, 2] = view[:, 2].abs() + 0.3
    view = unit_vectors(view, dim=1)
    spread = torch.exp(math.log(1e-3) + math.log(1e4) * torch.rand(count, generator=gen, dtype=F64))
    theta = torch.atan(_alpha(roughness) * spread)
    phi = 2 * math.pi * torch.rand(count, generator=gen, dtype=F64)
    helper = torch.tensor([1.0, 0.0, 0.0], dtype=F64).expand_as(normal)
    tangent = unit_vectors(torch.linalg.cross(helper, normal, dim=1), dim=1)
    bitangent = torch.linalg.cross(normal, tangent, dim=1)
    half = (
        torch.sin(theta)[:, None] * (torch.cos(phi)[:, None] * tangent + torch.sin(phi)[:, None] * bitangent)
        + torch.cos(theta)[:, None] * normal
    )
    light = 2 * (view * half).sum(1, keepdim=True) * half - view
    vectors = _keep_above(normal, light, view)
    return _as_float32_values(*vectors) if round32 else vectors


def random_directions(count: int, *, seed: int = 0, round32: bool = True) -> tuple[Tensor, ...]:
    """``(normal, light, view)`` like :func:`near_mirror` but with light and view independent."""
    gen = torch.Generator().manual_seed(seed)
    normal = _random_normals(count, gen, NORMAL_TILT)
    light, view = (torch.randn(count, 3, generator=gen, dtype=F64) for _ in range(2))
    light[:, 2], view[:, 2] = light[:, 2].abs(), view[:, 2].abs()
    vectors = _keep_above(normal, unit_vectors(light, dim=1), unit_vectors(view, dim=1))
    return _as_float32_values(*vectors) if round32 else vectors


def _field(vectors: Tensor, dtype: torch.dtype) -> Tensor:
    """(N, 3) -> (1, 3, N, 1) of ``dtype``: N texels in one column."""
    return vectors.T.reshape(1, 3, -1, 1).to(dtype)


def brdf_terms(
    normal: Tensor,
    light: Tensor,
    view: Tensor,
    roughness: float,
    dtype: torch.dtype,
    *,
    autocast: bool = False,
) -> dict[str, Tensor]:
    """``D``, ``V``, ``F`` and the renderer's specular ``D V F (n.l)`` of a dielectric, evaluated in
    ``dtype`` (under CPU bf16 autocast with ``autocast``), each (N,) float64."""
    n, lt, v = (_field(x, dtype) for x in (normal, light, view))
    shape = (1, 1, n.shape[2], 1)
    alpha = torch.full(shape, _alpha(roughness), dtype=dtype)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        n_dot_h, sin2_theta_h, v_dot_h = half_angle(n, lt, v)
        n_dot_l, n_dot_v = (n * lt).sum(1, keepdim=True), (n * v).sum(1, keepdim=True)
        terms = {
            "D": ggx_distribution(n_dot_h, alpha, sin2_theta_h),
            "V": smith_ggx_correlated_visibility(n_dot_v, n_dot_l, alpha),
            "F": schlick_fresnel(torch.full(shape, DIELECTRIC_F0, dtype=dtype), v_dot_h),
        }
        _, specular = cook_torrance(
            torch.full((1, 3, shape[2], 1), 0.5, dtype=dtype),
            torch.full(shape, roughness, dtype=dtype),
            torch.zeros(shape, dtype=dtype),
            n,
            lt,
            v,
        )
    terms["DVF n.l"] = specular[:, 0]
    return {name: t.double().flatten() for name, t in terms.items()}


def reference_specular(normal: Tensor, light: Tensor, view: Tensor, roughness: float) -> np.ndarray:
    """The documented specular lobe times ``n.l`` of a dielectric, in 80-bit floats, (N,).

    Written independently of the renderer: explicit half vector, textbook formulas.
    """
    n, lt, v = (x.numpy().astype(np.longdouble) for x in (normal, light, view))
    half = lt + v
    half /= np.sqrt((half * half).sum(1, keepdims=True))
    n_dot_h = (n * half).sum(1)
    sin2 = (np.cross(n, half) ** 2).sum(1)
    n_dot_l, n_dot_v, v_dot_h = (n * lt).sum(1), (n * v).sum(1), (v * half).sum(1)
    a2 = np.longdouble(_alpha(roughness)) ** 2
    distribution = a2 / (np.longdouble(math.pi) * (a2 * n_dot_h**2 + sin2) ** 2)
    lambda_v = n_dot_l * np.sqrt(n_dot_v**2 * (1 - a2) + a2)
    lambda_l = n_dot_v * np.sqrt(n_dot_l**2 * (1 - a2) + a2)
    fresnel = DIELECTRIC_F0 + (1 - DIELECTRIC_F0) * (1 - v_dot_h) ** 5
    return distribution * (0.5 / (lambda_v + lambda_l)) * fresnel * n_dot_l


def relative_error(value: Tensor, reference: Tensor) -> Tensor:
    return (value - reference).abs() / reference.abs()


def one_ulp_nudge(vectors: Tensor, seed: int) -> Tensor:
    """Each float32 component moved by -1, 0 or +1 ulp at random (held in float64): what rounding
    a direction to float32 can do to it."""
    single = vectors.float()
    step = torch.randint(-1, 2, single.shape, generator=torch.Generator().manual_seed(seed))
    up = torch.nextafter(single, torch.full_like(single, 2.0))
    down = torch.nextafter(single, torch.full_like(single, -2.0))
    return torch.where(step > 0, up, torch.where(step < 0, down, single)).double()


# --- full renders -------------------------------------------------------------------------------

#: The highlight scene: camera above the sample, a point light at the mirror image of the camera
#: about the normal through HIGHLIGHT_AT, so the highlight sits there.
EYE = (0.3, -0.2, 3.0)
HIGHLIGHT_AT = (0.1, 0.05)


def highlight_maps(size: int, roughness: float) -> dict[str, Tensor]:
    """A grey dielectric of uniform roughness with gentle bumps (normals up to ~6 degrees off)."""
    ys, xs = torch.meshgrid(
        torch.linspace(0, 2 * math.pi, size), torch.linspace(0, 2 * math.pi, size), indexing="ij"
    )
    height = (torch.sin(3 * xs) * torch.cos(2 * ys) + 0.5 * torch.sin(5 * ys + 1.0))[None, None]
    return {
        "albedo": torch.full((1, 3, size, size), 0.5),
        "roughness": torch.full((1, 1, size, size), roughness),
        "metallic": torch.zeros(1, 1, size, size),
        "normal": height_to_normal(height, strength=0.5 * size / (2 * math.pi) / 4),
    }


def highlight_render(
    roughness: float, dtype: torch.dtype, *, size: int = 64, autocast: bool = False, bf16_maps: bool = False
) -> Tensor:
    """Linear radiance (1, 3, size, size) float64 of :func:`highlight_maps` rendered in ``dtype``.

    ``autocast``: rendered under CPU bf16 autocast. ``bf16_maps``: the maps rounded to bfloat16
    first, as a network run under autocast would hand them to a rendering loss.
    """
    maps = highlight_maps(size, roughness)
    if bf16_maps:
        maps = {k: v.bfloat16() for k, v in maps.items()}
    else:
        maps = {k: v.to(dtype) for k, v in maps.items()}
    eye = torch.tensor(EYE)
    aim = torch.tensor([*HIGHLIGHT_AT, 0.0])
    to_eye = eye - aim
    light = aim + to_eye * torch.tensor([-1.0, -1.0, 1.0])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        radiance = render_radiance(maps, AlignedCamera(eye=eye), [PointLight(light, 10.0)])
    return radiance.double()


def highlight_errors(radiance: Tensor, reference: Tensor) -> tuple[Tensor, Tensor]:
    """Relative errors of every pixel, and of the highlight's pixels: those brighter than the
    image's median by at least 1 % of the peak's excess over it."""
    error = relative_error(radiance, reference).flatten()
    excess = reference.flatten() - reference.median()
    return error, error[excess >= 0.01 * excess.max()]


def main() -> None:
    torch.set_num_threads(1)
    print("BRDF near the mirror direction, float32 vs float64 (median / max relative error):")
    print("| roughness | D | V | F | D V F n.l | D V F n.l, random directions | bf16 autocast, D V F n.l |")
    print("|---|---|---|---|---|---|---|")
    for roughness in ROUGHNESSES:
        vectors = near_mirror(20000, roughness)
        reference = brdf_terms(*vectors, roughness, F64)
        single = brdf_terms(*vectors, roughness, torch.float32)
        cells = [relative_error(single[k], reference[k]) for k in ("D", "V", "F", "DVF n.l")]
        rand = random_directions(20000)
        cells.append(
            relative_error(
                brdf_terms(*rand, roughness, torch.float32)["DVF n.l"],
                brdf_terms(*rand, roughness, F64)["DVF n.l"],
            )
        )
        cells.append(
            relative_error(
                brdf_terms(*vectors, roughness, torch.float32, autocast=True)["DVF n.l"], reference["DVF n.l"]
            )
        )
        row = " | ".join(f"{e.median():.1e} / {e.max():.1e}" for e in cells)
        print(f"| {roughness} | {row} |")

    print("\nfloat32 with flat normals (n = +z), and one float32 ulp of the light direction in float64,")
    print("D V F n.l near the mirror direction (median / max relative error):")
    for roughness in ROUGHNESSES:
        flat = near_mirror(20000, roughness, tilt=0.0)
        flat_error = relative_error(
            brdf_terms(*flat, roughness, torch.float32)["DVF n.l"],
            brdf_terms(*flat, roughness, F64)["DVF n.l"],
        )
        normal, light, view = near_mirror(20000, roughness)
        double = brdf_terms(normal, light, view, roughness, F64)["DVF n.l"]
        nudged = brdf_terms(normal, one_ulp_nudge(light, seed=1), view, roughness, F64)["DVF n.l"]
        ulp_error = relative_error(nudged, double)
        print(
            f"  roughness {roughness}: flat normals {flat_error.median():.1e} / {flat_error.max():.1e}; "
            f"one ulp of l {ulp_error.median():.1e} / {ulp_error.max():.1e}"
        )

    print("\nfloat64 vs an 80-bit reference, D V F n.l (median / max relative error):")
    for roughness in ROUGHNESSES:
        for name, vectors in (
            ("near the mirror", near_mirror(20000, roughness, round32=False)),
            ("random", random_directions(20000, round32=False)),
        ):
            got = brdf_terms(*vectors, roughness, F64)["DVF n.l"].numpy().astype(np.longdouble)
            expected = reference_specular(*vectors, roughness)
            error = np.abs(got - expected) / expected
            print(
                f"  roughness {roughness}, {name}: {float(np.median(error)):.1e} / {float(error.max()):.1e}"
            )

    print("\nFull render of a bumpy dielectric highlight, 64 x 64, vs float64 (median / max relative error")
    print("over the highlight's pixels; max over all pixels):")
    for roughness in (MIN_ROUGHNESS, 0.05, 0.2, 0.5):
        reference = highlight_render(roughness, F64)
        for name, kwargs in (
            ("float32", {"dtype": torch.float32}),
            ("float32 under bf16 autocast", {"dtype": torch.float32, "autocast": True}),
            ("bf16 maps (as autocast outputs them)", {"dtype": torch.float32, "bf16_maps": True}),
        ):
            every, highlight = highlight_errors(highlight_render(roughness, **kwargs), reference)
            print(
                f"  roughness {roughness}, {name}: {highlight.median():.1e} / {highlight.max():.1e} "
                f"({highlight.numel()} px); all pixels {every.max():.1e}"
            )


if __name__ == "__main__":
    main()
