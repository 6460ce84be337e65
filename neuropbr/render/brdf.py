"""Metallic-roughness Cook-Torrance BRDF (GGX, height-correlated Smith, Schlick), batched.

The model, with ``F(c) = F0 + (1 - F0) (1 - c)^5`` and ``F0 = lerp(0.04, albedo_linear, metallic)``::

    f(l, v) = D(h) V(l, v) F(v.h)                                   GGX D (alpha = roughness^2),
            + (1 - metallic) albedo_linear / pi                     height-correlated Smith V
              * (1 - F(n.l)) (1 - F(n.v)) / (1 - F0)

The Lambert lobe is scaled by the Fresnel transmission into the surface along ``l`` and out of it
along ``v`` (Shirley et al. 1997; ``(1 - F0)`` normalises the pair so that at normal incidence it
is the usual ``1 - F0``). The common shortcut ``(1 - F(v.h))`` is reciprocal too but reflects more
light than it receives at oblique views (1.001 at 45 degrees, 1.2 at 75 degrees for a white
dielectric in a white furnace); this form never does (``tests/render/test_brdf.py``).

Conventions (docs/architecture.md, "What flows between the parts"): maps are ``(B, C, H, W)``;
albedo is sRGB-encoded and is linearised here; roughness is perceptual; normals are unit vectors
in the tangent space of a flat sample lying in the z = 0 plane, whose tangent frame is the world
frame (T = +x to the right, B = +y up the image, N = +z towards the viewer), so tangent-space
normals are world-space normals.
Shading runs in float32 for float16/bfloat16 inputs (with autocast off, see below) and in float64
for float64 inputs (so ``torch.autograd.gradcheck`` works).

Speed: the per-light work is written on scalar fields plus one cross product. With
``u = l + v = 2 (v.h) h``, the lobes need only ``n.u = n.l + n.v`` and ``|n x u|^2`` (``|u|^2`` is
the sum of their squares, so ``v.h = |u| / 2``), and ``F(v.h) = F0 (1 - w) + w``
(``w = (1 - v.h)^5``) splits the colour out of the lobes. One light then costs a few dozen
single-channel ops, and many lights (:func:`shade_many`) are combined with one batched matrix
product (used only while float32 matmuls run at full precision, not TF32 or bf16).

Precision: the textbook GGX denominator ``1 + (n.h)^2 (alpha^2 - 1)`` cancels near the mirror
direction, where it equals ``alpha^2`` (down to 8e-7 at ``MIN_ROUGHNESS``) while float32 resolves
``(n.h)^2`` near 1 only to 1e-7. Here it is ``alpha^2 (n.u)^2 + |n x u|^2`` over ``|u|^2``: positive
terms only, ``|n x u|^2`` from a cross product. V, F and the diffuse lobe have no cancellation.
Relative error, median / max, measured by ``tests/render/brdf_precision.py`` (bounds in
``test_brdf_precision.py``); the textbook form in brackets::

    roughness                         0.03             0.05            0.2             0.5
    D V F (n.l) near the mirror,      1.2e-6 / 1.1e-4  5e-7 / 3.8e-5   2e-7 / 2.3e-6   1e-7 / 7e-7
      float32 vs float64              [5.8e-2 / 6.5]   [6.9e-3 / 0.5]  [5e-5 / 4e-3]   [2e-6 / 9e-5]
    float64 vs an 80-bit reference    max 1.3e-13      4.8e-14         3.3e-15         2.1e-15
                                      [7.7e-8]         [6.7e-9]        [3.6e-11]       [6.9e-13]
    render of a bumpy dielectric      max 1.1e-5       6.3e-6          1.2e-6          4.9e-7
      highlight, float32 vs float64   [2.6e-2]         [1.3e-2]        [3.3e-4]

(directions near the mirror: half vectors 1e-3 to 10 lobe widths off normals tilted like a bumpy
normal map; random directions stay within 3e-6 in float32.) What remains in float32 at roughness
0.03 is the rounding of ``l + v`` to float32: moving ``l`` by one float32 ulp changes the BRDF by
up to 1e-3. With flat normals (``n = +z``) the cross product is exact and float32 stays under 1e-6.

Under autocast (bf16 or fp16), :func:`shade`, :func:`shade_many`, ``render_radiance`` (camera,
lights and shading) and ``EnvironmentLight.from_equirect`` run with autocast off
(:func:`no_autocast`), so float32 maps render exactly as in float32; before, bf16 matmuls made
renders under directional or environment lights off by up to 130 % and tilted cameras by 790 %.
Maps that are themselves bfloat16 (a network's output under autocast) carry their own
quantisation: the highlight above is then off by 47 % at roughness 0.03, 8 % median / 32 % max
at 0.05, 5 % max at 0.2 and 0.3 % at 0.5, whatever the renderer does.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor

from neuropbr.render.color import srgb_to_linear
from neuropbr.utils.tensors import unit_vectors

#: Smallest perceptual roughness used in shading. A perfect mirror (alpha = 0) makes the GGX
#: lobe a Dirac delta: point lights would then never be seen in it, and its gradient explodes.
MIN_ROUGHNESS = 0.03
#: Reflectance at normal incidence of dielectrics (IOR 1.5).
DIELECTRIC_F0 = 0.04
_EPS = 1e-6
#: Floor of the GGX denominator ``a2 (n.u)^2 + |n x u|^2``, reached only when ``l = -v`` (where the
#: light is below the surface and the lobe is zeroed anyway). Its square stays a normal float32,
#: so the backward pass of the division never divides 0 by 0.
_TINY = 1e-18


def shading_dtype(x: Tensor) -> Tensor:
    """``x`` in the dtype shading runs in: float64 stays float64, anything else becomes float32."""
    return x if x.dtype == torch.float64 else x.float()


def dot(a: Tensor, b: Tensor) -> Tensor:
    """Dot product over the channel dim of ``(B, 3, H, W)``-like tensors, keeping the dim."""
    return (a * b).sum(dim=1, keepdim=True)


def ggx_distribution(n_dot_h: Tensor, alpha: Tensor, sin2_theta_h: Tensor | None = None) -> Tensor:
    """GGX / Trowbridge-Reitz normal distribution ``D(h)``; integrates to 1 over projected area.

    ``D = alpha^2 / (pi (alpha^2 (n.h)^2 + sin^2)^2)`` with ``sin^2 = 1 - (n.h)^2 = |n x h|^2``.
    Near the mirror direction of a smooth material ``1 - (n.h)^2`` is a difference of nearly
    equal numbers, as small as ``alpha^2`` (8e-7 at ``MIN_ROUGHNESS``): in float32 it keeps
    almost no correct digits. Pass ``sin2_theta_h`` computed from the vectors (see
    :func:`half_angle`) to avoid that; without it the textbook ``1 + (n.h)^2 (alpha^2 - 1)`` is used.
    """
    a2 = alpha * alpha
    cos2 = n_dot_h * n_dot_h
    if sin2_theta_h is None:
        denom = cos2 * (a2 - 1.0) + 1.0
    else:
        denom = torch.addcmul(sin2_theta_h, cos2, a2)
    return a2 / (math.pi * denom * denom).clamp(min=1e-12)


def half_angle(normal: Tensor, light_dir: Tensor, view_dir: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(n.h, |n x h|^2, v.h)`` of the half vector ``h = (l + v) / |l + v|``, each (B, 1, H, W).

    Computed as the shading does, from ``u = l + v``: its part along the normal,
    ``n.u = n.l + n.v``, and across it, ``|n x u|^2`` (a cross product, so ``|n x h|^2`` has no
    cancellation near the mirror direction), with ``|u|^2 = (n.u)^2 + |n x u|^2`` for unit ``n``.

    Args:
        normal, light_dir, view_dir: unit vectors, broadcastable to (B, 3, H, W).
    """
    n_dot_u = dot(normal, light_dir) + dot(normal, view_dir)
    across = _cross_sq(normal, light_dir + view_dir, dim=1)
    u_sq = torch.addcmul(across, n_dot_u, n_dot_u)
    inv_u_sq = 1.0 / u_sq.clamp(min=_TINY)
    return n_dot_u * inv_u_sq.sqrt(), across * inv_u_sq, 0.5 * u_sq.sqrt()


def _cross_sq(a: Tensor, b: Tensor, dim: int) -> Tensor:
    """``|a x b|^2`` over the 3-vector dim ``dim`` (kept as size 1), broadcasting ``a`` and ``b``.

    Accurate to a few ulps of ``|a| |b|`` even when ``a`` and ``b`` are nearly parallel, where
    ``|a|^2 |b|^2 - (a.b)^2`` would cancel. Spelt out: ``torch.linalg.cross`` is ~10x slower on CPU.
    """
    ax, ay, az = a.unbind(dim)
    bx, by, bz = b.unbind(dim)
    cx = torch.addcmul(ay * bz, az, by, value=-1.0)
    cy = torch.addcmul(az * bx, ax, bz, value=-1.0)
    cz = torch.addcmul(ax * by, ay, bx, value=-1.0)
    return torch.addcmul(torch.addcmul(cx * cx, cy, cy), cz, cz).unsqueeze(dim)


def smith_ggx_correlated_visibility(n_dot_v: Tensor, n_dot_l: Tensor, alpha: Tensor) -> Tensor:
    """Height-correlated Smith visibility ``V = G2 / (4 (n.l) (n.v))`` (Heitz 2014)."""
    a2 = alpha * alpha
    lambda_v = n_dot_l * torch.sqrt(n_dot_v * n_dot_v * (1.0 - a2) + a2)
    lambda_l = n_dot_v * torch.sqrt(n_dot_l * n_dot_l * (1.0 - a2) + a2)
    return 0.5 / (lambda_v + lambda_l).clamp(min=1e-7)


def schlick_fresnel(f0: Tensor, v_dot_h: Tensor) -> Tensor:
    """Schlick's Fresnel approximation ``F0 + (1 - F0) (1 - v.h)^5``."""
    return f0 + (1.0 - f0) * _schlick_weight(v_dot_h)


def _schlick_weight(cosine: Tensor) -> Tensor:
    """Schlick's weight ``(1 - cos)^5``, cos clamped to [0, 1]."""
    return _fifth_power((1.0 - cosine).clamp(0.0, 1.0))


def _fifth_power(x: Tensor) -> Tensor:
    """``x^5`` with multiplications (a generic ``pow`` is ~10x slower on CPU)."""
    x2 = x * x
    return x2 * x2 * x


def base_reflectance(albedo_linear: Tensor, metallic: Tensor) -> Tensor:
    """``F0 = lerp(0.04, albedo_linear, metallic)``."""
    return DIELECTRIC_F0 + (albedo_linear - DIELECTRIC_F0) * metallic


@dataclass(frozen=True)
class Surface:
    """The light-independent per-texel terms of the BRDF, computed once and shared by all lights.

    Attributes:
        normal: (B, 3, H, W) unit normals.
        alpha: (B, 1, H, W) GGX alpha, ``clamp(roughness, MIN_ROUGHNESS, 1) ** 2``.
        f0: (B, 3, H, W) reflectance at normal incidence.
        diffuse: (B, 3, H, W) ``(1 - f0) (1 - metallic) albedo_linear / pi``: the Lambert lobe
            with its Fresnel transmission ``(1 - F(n.l)) (1 - F(n.v)) / (1 - f0)`` written as
            ``(1 - f0) (1 - w_l) (1 - w_v)``; the ``w`` parts depend on the light and view and are
            applied when shading.
    """

    normal: Tensor
    alpha: Tensor
    f0: Tensor
    diffuse: Tensor

    @classmethod
    def from_linear(
        cls, albedo_linear: Tensor, roughness: Tensor, metallic: Tensor, normal: Tensor
    ) -> Surface:
        """Terms from a linear albedo (B, 3, H, W), roughness and metallic (B, 1, H, W) and unit
        normals (B, 3, H, W)."""
        f0 = base_reflectance(albedo_linear, metallic)
        diffuse = (1.0 - f0) * (1.0 - metallic) * albedo_linear * (1.0 / math.pi)
        rough = roughness.clamp(MIN_ROUGHNESS, 1.0)
        alpha = rough * rough
        return cls(normal=normal, alpha=alpha, f0=f0, diffuse=diffuse)

    def terms(self) -> dict[str, Tensor]:
        """The terms as a dict of (B, C, H, W) tensors (cameras resample them like maps)."""
        return {"normal": self.normal, "alpha": self.alpha, "f0": self.f0, "diffuse": self.diffuse}

    @classmethod
    def from_maps(cls, maps: dict[str, Tensor]) -> Surface:
        """Terms from PBR maps as served by datasets: sRGB albedo (linearised here) and normals
        (renormalised here), each (B, C, H, W)."""
        return cls.from_linear(
            srgb_to_linear(shading_dtype(maps["albedo"])),
            shading_dtype(maps["roughness"]),
            shading_dtype(maps["metallic"]),
            unit_vectors(shading_dtype(maps["normal"])),
        )


def _lobes(
    surface: Surface,
    n_dot_l: Tensor,
    n_dot_v: Tensor,
    across_sq: Tensor,
    spread: Tensor | None = None,
    scale: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Scalar factors ``(kd, ks, kw)`` of the BRDF times ``n.l``, per light and texel.

    ``diffuse = surface.diffuse * _view_transmission(n.v) * kd`` and
    ``specular = surface.f0 * ks + kw``. Inputs broadcast
    against ``(B, K, H, W)`` (K lights; K = 1 for a single light); ``n_dot_l``, ``n_dot_v`` are
    the raw (unclamped) cosines of unit vectors and ``across_sq`` is ``|n x (l + v)|^2`` (see
    :func:`_cross_sq`). Texels facing away from the viewer are NOT zeroed here (the mask is per
    texel, so callers apply it once to the sum over lights).

    This is the hot loop of every render: it is written to minimise full-size passes, with
    per-texel terms (shape (B, 1, H, W)) computed once and shared by the K lights.

    Args:
        spread: angular radius (radians) of each light seen from the surface, broadcastable to
            (B, K, 1, 1). Widens the GGX lobe of ``D`` by ``alpha^2 += spread^2 / 8`` (a Gaussian
            approximation of convolving the lobe with a cone of that radius; the half vector
            moves half as far as the light). None for point and directional lights.
        scale: per-texel factor multiplied in (e.g. the inverse-square falloff).
    """
    # Below the horizon the cosine is 0, which zeroes both lobes.
    n_dot_l_pos = n_dot_l.clamp(min=0.0)
    common = n_dot_l_pos if scale is None else n_dot_l_pos * scale
    n_dot_v = n_dot_v.clamp(min=_EPS)
    # u = l + v = 2 (v.h) h, split into its part along n, n.u = n.l + n.v, and across it,
    # |n x u|^2 (from the vectors); |u|^2 = (n.u)^2 + |n x u|^2 is then a sum of positive terms.
    along_sq = (n_dot_l + n_dot_v).square()
    u_sq = along_sq + across_sq
    # v.h = |u| / 2. l = -v (grazing both ways) has no h.
    v_dot_h = (u_sq * 0.25).clamp(min=_EPS).sqrt()
    a2 = surface.alpha * surface.alpha  # (B, 1, H, W)
    a2_d = a2 if spread is None else a2 + spread * spread * 0.5
    # GGX D = a2 / (pi (a2 (n.h)^2 + |n x h|^2)^2) = a2 / pi (|u|^2 / (a2 (n.u)^2 + |n x u|^2))^2,
    # cf. ggx_distribution. The textbook 1 + (n.h)^2 (a2 - 1) cancels near the mirror direction
    # (in float32 it is off by ~1e-7 against a2 >= 8e-7); this denominator adds positive terms.
    lobe = u_sq / torch.addcmul(across_sq, along_sq, a2_d).clamp(min=_TINY)
    distribution = (a2_d * (1.0 / math.pi)) * lobe * lobe
    # Height-correlated Smith V = 0.5 / (n.l sqrt(n.v^2 (1 - a2) + a2) + n.v sqrt(n.l^2 (1 - a2) + a2)),
    # cf. smith_ggx_correlated_visibility; the n.v root is per texel, and the denominator is
    # >= n.v alpha > 0. A sum of positive terms: no cancellation.
    root_v = torch.sqrt(torch.addcmul(a2, n_dot_v * n_dot_v, 1.0 - a2))
    root_l = torch.sqrt(torch.addcmul(a2, n_dot_l_pos * n_dot_l_pos, 1.0 - a2))
    visibility = torch.div(0.5, torch.addcmul(n_dot_v * root_l, n_dot_l_pos, root_v))
    specular = distribution * visibility * common
    # Schlick's F = f0 + (1 - f0) w with w = (1 - v.h)^5; v.h is in (0, 1] up to rounding. Where
    # 1 - v.h cancels (l near v), w's error is 5 (1 - v.h)^4 times v.h's rounding: negligible
    # next to f0, so no rewrite is needed.
    grazing = specular * _fifth_power(1.0 - v_dot_h)
    # Diffuse: light crosses the interface twice, in along l and out along v, each time losing
    # Schlick's reflectance at that angle: (1 - F(n.l)) (1 - F(n.v)) / (1 - f0) = (1 - f0) (1 - w_l)
    # (1 - w_v). Symmetric in l and v (reciprocal), and with Lambert underneath it never reflects
    # more than it receives; (1 - f0) is in surface.diffuse, (1 - w_v) in _view_transmission.
    transmit_l = 1.0 - _fifth_power(1.0 - n_dot_l_pos)
    return transmit_l * common, specular - grazing, grazing


def _facing(n_dot_v: Tensor) -> Tensor:
    """1 where the viewer is above the surface, else 0: (B, 1, H, W)."""
    return (n_dot_v > 0).to(n_dot_v.dtype)


def _view_transmission(n_dot_v: Tensor) -> Tensor:
    """``1 - w(n.v)``: the diffuse lobe's Fresnel loss on the way out, per texel: (B, 1, H, W)."""
    return 1.0 - _schlick_weight(n_dot_v)


def cook_torrance(
    albedo_linear: Tensor,
    roughness: Tensor,
    metallic: Tensor,
    normal: Tensor,
    light_dir: Tensor,
    view_dir: Tensor,
) -> tuple[Tensor, Tensor]:
    """Evaluate the BRDF times the cosine term, split into diffuse and specular parts.

    Args:
        albedo_linear: (B, 3, H, W) linear base colour.
        roughness: (B, 1, H, W) perceptual roughness in [0, 1].
        metallic: (B, 1, H, W) in [0, 1].
        normal: (B, 3, H, W) unit normals.
        light_dir: unit vectors towards the light, broadcastable to (B, 3, H, W).
        view_dir: unit vectors towards the camera, broadcastable to (B, 3, H, W).

    Returns:
        ``(diffuse, specular)``, each (B, 3, H, W): ``f_d * (n.l)`` and ``f_s * (n.l)``.
        Zero where the light or the viewer is below the surface.
    """
    with no_autocast(normal):
        surface = Surface.from_linear(albedo_linear, roughness, metallic, normal)
        n_dot_v = dot(normal, view_dir)
        across_sq = _cross_sq(normal, light_dir + view_dir, dim=1)
        kd, ks, kw = _lobes(surface, dot(normal, light_dir), n_dot_v, across_sq)
        facing = _facing(n_dot_v)
        diffuse = surface.diffuse * kd * (_view_transmission(n_dot_v) * facing)
        return diffuse, (surface.f0 * ks + kw) * facing


def shade(
    maps: dict[str, Tensor],
    light_dir: Tensor,
    view_dir: Tensor,
    light_radiance: Tensor,
) -> Tensor:
    """Outgoing linear radiance of a PBR material lit by one light.

    Args:
        maps: ``{"albedo" (sRGB), "roughness", "metallic", "normal"}``, each (B, C, H, W).
        light_dir: unit vectors towards the light, broadcastable to (B, 3, H, W).
        view_dir: unit vectors towards the camera, broadcastable to (B, 3, H, W).
        light_radiance: radiance arriving at each texel (falloff included), broadcastable to
            (B, 3, H, W).

    Returns:
        (B, 3, H, W) linear radiance (float32, float64 for float64 maps).
    """
    with no_autocast(maps["normal"]):
        surface = Surface.from_maps(maps)
        dtype = surface.normal.dtype
        light_dir, view_dir = light_dir.to(dtype), view_dir.to(dtype)
        n_dot_v = dot(surface.normal, view_dir)
        across_sq = _cross_sq(surface.normal, light_dir + view_dir, dim=1)
        kd, ks, kw = _lobes(surface, dot(surface.normal, light_dir), n_dot_v, across_sq)
        diffuse = surface.diffuse * _view_transmission(n_dot_v)
        return (diffuse * kd + surface.f0 * ks + kw) * (light_radiance.to(dtype) * _facing(n_dot_v))


def no_autocast(x: Tensor) -> AbstractContextManager[None]:
    """A context with autocast disabled on ``x``'s device (a no-op when it is not enabled).

    Rendering is float32 by design, but autocast would run its matmuls (lights at infinity, the
    colour of K lights, camera rays, environment cells) in 16 bits: under CPU bf16 autocast that
    made renders lit by directional or environment lights off by up to 130 %.
    """
    device_type = x.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.autocast(device_type=device_type, enabled=False)
    return nullcontext()


def _exact_matmul(dtype: torch.dtype) -> bool:
    """Whether matmuls of ``dtype`` run at full precision (float32 ones may be allowed TF32 or
    bf16 internally, which would cost n.l three decimal digits)."""
    if dtype == torch.float64:
        return True
    try:
        return torch.get_float32_matmul_precision() == "highest"
    except RuntimeError:  # precision set through torch's per-backend API: do not guess
        return False


def _dot_lights(field: Tensor, directions: Tensor) -> Tensor:
    """``field . directions`` for K lights: (B|1, 3, h, w) x (B|1, K, 3, h', w') -> (B, K, H, W).

    Lights at infinity (h' = w' = 1) go through one batched matmul instead of K elementwise passes
    when matmuls are exact (:func:`_exact_matmul`).
    """
    if directions.shape[-2:] == (1, 1) and field.shape[-2:] != (1, 1) and _exact_matmul(field.dtype):
        batch = max(field.shape[0], directions.shape[0])
        flat = field.expand(batch, -1, -1, -1)
        dirs = directions[..., 0, 0].expand(batch, -1, -1)  # (B, K, 3)
        return torch.einsum("bchw,bkc->bkhw", flat, dirs)
    return (field.unsqueeze(1) * directions).sum(dim=2)


#: Texels x lights per chunk in :func:`shade_many`: keeps each temporary under ~1 MB so the
#: few dozen elementwise passes per light run from cache instead of memory (~1.5x on CPU).
_CHUNK_ELEMENTS = 1 << 17


def _rows(x: Tensor, start: int, stop: int) -> Tensor:
    """Rows ``start:stop`` of a (..., H, W) tensor; broadcast (..., 1, 1) tensors pass through."""
    return x if x.shape[-2] == 1 else x[..., start:stop, :]


def shade_many(
    surface: Surface,
    directions: Tensor,
    colors: Tensor,
    view_dir: Tensor,
    *,
    falloff: Tensor | None = None,
    spread: Tensor | None = None,
) -> Tensor:
    """Outgoing linear radiance of a surface lit by K lights of one kind, summed.

    Each light's radiance at a texel is ``colors[b, k] * falloff[b, k, i, j]``.

    Args:
        surface: per-texel BRDF terms, (B, C, H, W) each (see :meth:`Surface.from_maps`).
        directions: (B|1, K, 3, H, W) or (B|1, K, 3, 1, 1) unit vectors towards the lights.
        colors: (B|1, K, 3) linear RGB radiance (point lights: intensity; directional lights and
            environment samples: irradiance normal to the light).
        view_dir: (B|1, 3, H, W) or (B|1, 3, 1, 1) unit vectors towards the camera.
        falloff: optional (B|1, K, H, W) per-texel scale (inverse-square distance).
        spread: optional (B|1, K, 1, 1) angular radius of each light in radians (see ``_lobes``).

    Returns:
        (B, 3, H, W) linear radiance.
    """
    with no_autocast(surface.normal):
        dtype = surface.normal.dtype
        directions, colors, view_dir = directions.to(dtype), colors.to(dtype), view_dir.to(dtype)
        height, width = surface.normal.shape[-2:]
        batch = max(surface.normal.shape[0], directions.shape[0])
        rows = max(1, _CHUNK_ELEMENTS // (batch * directions.shape[1] * width))
        chunks = []
        for start in range(0, height, rows):
            stop = min(start + rows, height)
            part = Surface(
                *(_rows(t, start, stop) for t in (surface.normal, surface.alpha, surface.f0, surface.diffuse))
            )
            chunks.append(
                _shade_many_rows(
                    part,
                    _rows(directions, start, stop),
                    colors,
                    _rows(view_dir, start, stop),
                    None if falloff is None else _rows(falloff, start, stop),
                    spread,
                )
            )
        return chunks[0] if len(chunks) == 1 else torch.cat(chunks, dim=-2)


def _shade_many_rows(
    surface: Surface,
    directions: Tensor,
    colors: Tensor,
    view_dir: Tensor,
    falloff: Tensor | None,
    spread: Tensor | None,
) -> Tensor:
    """:func:`shade_many` on one band of rows (same arguments)."""
    n_dot_l = _dot_lights(surface.normal, directions)  # (B, K, h, W)
    n_dot_v = dot(surface.normal, view_dir)  # (B, 1, h, W)
    # |n x (l + v)|^2: (B, K, h, W). The one per-light vector op: it keeps D accurate near the mirror.
    across_sq = _cross_sq(surface.normal.unsqueeze(1), directions + view_dir.unsqueeze(1), dim=2).squeeze(2)
    kd, ks, kw = _lobes(surface, n_dot_l, n_dot_v, across_sq, spread=spread, scale=falloff)
    colors = colors.expand(kd.shape[0], -1, -1)
    exact = _exact_matmul(kd.dtype)

    def tint(k: Tensor) -> Tensor:  # (B, K, h, W) x (B, K, 3) -> (B, 3, h, W), summed over lights
        if exact:
            return torch.einsum("bkhw,bkc->bchw", k, colors)
        return (k.unsqueeze(2) * colors[..., None, None]).sum(dim=1)

    diffuse = surface.diffuse * _view_transmission(n_dot_v)
    return (diffuse * tint(kd) + surface.f0 * tint(ks) + tint(kw)) * _facing(n_dot_v)
