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

Conventions (DESIGN section 3): maps are ``(B, C, H, W)``; albedo is sRGB-encoded and is
linearised here; roughness is perceptual; normals are unit vectors in the tangent space of a flat
sample lying in the z = 0 plane, whose tangent frame is the world frame (T = +x to the right,
B = +y up the image, N = +z towards the viewer), so tangent-space normals are world-space normals.
Shading runs in float32 for float16/bfloat16 inputs (safe under autocast) and in float64 for
float64 inputs (so ``torch.autograd.gradcheck`` works).

Speed: the per-light work is written on scalar fields only. With unit ``l`` and ``v``,
``|l + v|^2 = 2 + 2 v.l``, so ``n.h`` and ``v.h`` follow from ``n.l``, ``n.v`` and ``v.l`` without
forming the half vector, and ``F(v.h) = F0 (1 - w) + w`` (``w = (1 - v.h)^5``) splits the colour
out of the lobes. One light then costs a few dozen single-channel ops, and many lights
(:func:`shade_many`) are combined with one batched matrix product.
"""

from __future__ import annotations

import math
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


def shading_dtype(x: Tensor) -> Tensor:
    """``x`` in the dtype shading runs in: float64 stays float64, anything else becomes float32."""
    return x if x.dtype == torch.float64 else x.float()


def dot(a: Tensor, b: Tensor) -> Tensor:
    """Dot product over the channel dim of ``(B, 3, H, W)``-like tensors, keeping the dim."""
    return (a * b).sum(dim=1, keepdim=True)


def ggx_distribution(n_dot_h: Tensor, alpha: Tensor) -> Tensor:
    """GGX / Trowbridge-Reitz normal distribution ``D(h)``; integrates to 1 over projected area."""
    a2 = alpha * alpha
    denom = n_dot_h * n_dot_h * (a2 - 1.0) + 1.0
    return a2 / (math.pi * denom * denom).clamp(min=1e-12)


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
    v_dot_l: Tensor,
    spread: Tensor | None = None,
    scale: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor]:
    """Scalar factors ``(kd, ks, kw)`` of the BRDF times ``n.l``, per light and texel.

    ``diffuse = surface.diffuse * _view_transmission(n.v) * kd`` and
    ``specular = surface.f0 * ks + kw``. Inputs broadcast
    against ``(B, K, H, W)`` (K lights; K = 1 for a single light); ``n_dot_l``, ``n_dot_v`` are
    the raw (unclamped) cosines of unit vectors. Texels facing away from the viewer are NOT
    zeroed here (the mask is per texel, so callers apply it once to the sum over lights).

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
    # For unit l and v: |l + v| = sqrt(2 + 2 v.l), so v.h = sqrt((1 + v.l) / 2) and
    # n.h = (n.l + n.v) / |l + v| = (n.l + n.v) / (2 v.h). l = -v (grazing both ways) has no h.
    v_dot_h = ((v_dot_l * 0.5 + 0.5).clamp(min=_EPS)).sqrt()
    n_dot_h = ((n_dot_l + n_dot_v) * torch.div(0.5, v_dot_h)).clamp(0.0, 1.0)
    a2 = surface.alpha * surface.alpha  # (B, 1, H, W)
    a2_d = a2 if spread is None else a2 + spread * spread * 0.5
    # GGX D = a2 / (pi ((n.h)^2 (a2 - 1) + 1)^2), cf. ggx_distribution. With n.h <= 1 the bracket
    # is >= a2 >= MIN_ROUGHNESS^4 > 0, so no guard is needed.
    denom = torch.addcmul(torch.ones_like(a2_d), n_dot_h * n_dot_h, a2_d - 1.0)
    distribution = (a2_d * (1.0 / math.pi)) / (denom * denom)
    # Height-correlated Smith V = 0.5 / (n.l sqrt(n.v^2 (1 - a2) + a2) + n.v sqrt(n.l^2 (1 - a2) + a2)),
    # cf. smith_ggx_correlated_visibility; the n.v root is per texel, and the denominator is
    # >= n.v alpha > 0.
    root_v = torch.sqrt(torch.addcmul(a2, n_dot_v * n_dot_v, 1.0 - a2))
    root_l = torch.sqrt(torch.addcmul(a2, n_dot_l_pos * n_dot_l_pos, 1.0 - a2))
    visibility = torch.div(0.5, torch.addcmul(n_dot_v * root_l, n_dot_l_pos, root_v))
    specular = distribution * visibility * common
    # Schlick's F = f0 + (1 - f0) w with w = (1 - v.h)^5 (v.h is in (0, 1] here: no clamp needed).
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
    surface = Surface.from_linear(albedo_linear, roughness, metallic, normal)
    n_dot_v = dot(normal, view_dir)
    kd, ks, kw = _lobes(surface, dot(normal, light_dir), n_dot_v, dot(view_dir, light_dir))
    facing = _facing(n_dot_v)
    return surface.diffuse * kd * (_view_transmission(n_dot_v) * facing), (surface.f0 * ks + kw) * facing


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
    surface = Surface.from_maps(maps)
    dtype = surface.normal.dtype
    light_dir, view_dir = light_dir.to(dtype), view_dir.to(dtype)
    n_dot_v = dot(surface.normal, view_dir)
    kd, ks, kw = _lobes(surface, dot(surface.normal, light_dir), n_dot_v, dot(view_dir, light_dir))
    diffuse = surface.diffuse * _view_transmission(n_dot_v)
    return (diffuse * kd + surface.f0 * ks + kw) * (light_radiance.to(dtype) * _facing(n_dot_v))


def _dot_lights(field: Tensor, directions: Tensor) -> Tensor:
    """``field . directions`` for K lights: (B|1, 3, h, w) x (B|1, K, 3, h', w') -> (B, K, H, W).

    Lights at infinity (h' = w' = 1) go through one batched matmul instead of K elementwise passes.
    """
    if directions.shape[-2:] == (1, 1) and field.shape[-2:] != (1, 1):
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
    v_dot_l = _dot_lights(view_dir, directions)  # (B|1, K, h|1, W|1)
    kd, ks, kw = _lobes(surface, n_dot_l, n_dot_v, v_dot_l, spread=spread, scale=falloff)
    colors = colors.expand(kd.shape[0], -1, -1)

    def tint(k: Tensor) -> Tensor:  # (B, K, h, W) x (B, K, 3) -> (B, 3, h, W), summed over lights
        return torch.einsum("bkhw,bkc->bchw", k, colors)

    diffuse = surface.diffuse * _view_transmission(n_dot_v)
    return (diffuse * tint(kd) + surface.f0 * tint(ks) + tint(kw)) * _facing(n_dot_v)
