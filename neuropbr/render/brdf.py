"""Metallic-roughness Cook-Torrance BRDF (GGX, height-correlated Smith, Schlick), batched.

Conventions (DESIGN section 3): maps are ``(B, C, H, W)``; albedo is sRGB-encoded and is
linearised here; roughness is perceptual (``alpha = roughness ** 2``); normals are unit vectors
in the tangent space of a flat sample lying in the z = 0 plane, whose tangent frame is the world
frame (T = +x to the right, B = +y up the image, N = +z towards the viewer), so tangent-space
normals are world-space normals. All shading runs in float32 whatever the input dtype, so it is
safe under fp16/bf16 autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from neuropbr.render.color import srgb_to_linear

#: Smallest perceptual roughness used in shading. A perfect mirror (alpha = 0) makes the GGX
#: lobe a Dirac delta: point lights would then never be seen in it, and its gradient explodes.
MIN_ROUGHNESS = 0.03
#: Reflectance at normal incidence of dielectrics (IOR 1.5).
DIELECTRIC_F0 = 0.04
_EPS = 1e-6


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
    return f0 + (1.0 - f0) * (1.0 - v_dot_h).clamp(0.0, 1.0) ** 5


def base_reflectance(albedo_linear: Tensor, metallic: Tensor) -> Tensor:
    """``F0 = lerp(0.04, albedo_linear, metallic)``."""
    return DIELECTRIC_F0 + (albedo_linear - DIELECTRIC_F0) * metallic


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
    alpha = roughness.clamp(MIN_ROUGHNESS, 1.0) ** 2
    half = F.normalize(light_dir + view_dir, dim=1, eps=_EPS)
    n_dot_l_raw = dot(normal, light_dir)
    n_dot_v_raw = dot(normal, view_dir)
    visible = ((n_dot_l_raw > 0) & (n_dot_v_raw > 0)).to(albedo_linear.dtype)
    n_dot_l = n_dot_l_raw.clamp(min=_EPS)
    n_dot_v = n_dot_v_raw.clamp(min=_EPS)
    n_dot_h = dot(normal, half).clamp(0.0, 1.0)
    v_dot_h = dot(view_dir, half).clamp(0.0, 1.0)

    fresnel = schlick_fresnel(base_reflectance(albedo_linear, metallic), v_dot_h)
    specular = (
        ggx_distribution(n_dot_h, alpha) * smith_ggx_correlated_visibility(n_dot_v, n_dot_l, alpha) * fresnel
    )
    diffuse = (1.0 - fresnel) * (1.0 - metallic) * albedo_linear / math.pi
    return diffuse * n_dot_l * visible, specular * n_dot_l * visible


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
        (B, 3, H, W) float32 linear radiance.
    """
    albedo = srgb_to_linear(maps["albedo"].float())
    normal = F.normalize(maps["normal"].float(), dim=1, eps=_EPS)
    diffuse, specular = cook_torrance(
        albedo,
        maps["roughness"].float(),
        maps["metallic"].float(),
        normal,
        light_dir.float(),
        view_dir.float(),
    )
    return (diffuse + specular) * light_radiance.float()
