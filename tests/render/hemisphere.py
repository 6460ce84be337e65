"""Numerical integration of the BRDF over the hemisphere of light directions (test helper).

Independent of the renderer's light code: it evaluates ``cook_torrance`` at many light directions
for one texel and sums with quadrature weights. The diffuse lobe is smooth and is integrated on a
uniform (cos theta, phi) grid; the specular lobe can be arbitrarily sharp, so it is integrated over
half vectors with a grid that follows the GGX lobe (theta_h = atan(alpha tan psi), psi uniform), using
``d omega_l = 4 (v.h) d omega_h`` for the reflected light direction ``l = 2 (v.h) h - v``.
"""

from __future__ import annotations

import math

import torch

from neuropbr.render.brdf import MIN_ROUGHNESS, cook_torrance


def _midpoints(n: int, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * (torch.arange(n, dtype=torch.float64) + 0.5) / n


def _evaluate(
    light: torch.Tensor, view: torch.Tensor, albedo_linear: float, roughness: float, metallic: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """cook_torrance for N light directions (N, 3) and one view (3,): (diffuse, specular), (N,) each (RGB mean)."""
    n = light.shape[0]
    shape = (1, 1, n, 1)
    diffuse, specular = cook_torrance(
        torch.full((1, 3, n, 1), albedo_linear, dtype=torch.float64),
        torch.full(shape, roughness, dtype=torch.float64),
        torch.full(shape, metallic, dtype=torch.float64),
        torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).view(1, 3, 1, 1).expand(1, 3, n, 1),
        light.T.reshape(1, 3, n, 1),
        view.view(1, 3, 1, 1),
    )
    return diffuse.mean(dim=1).flatten(), specular.mean(dim=1).flatten()


def directional_albedo(
    view_angle_deg: float, *, albedo_linear: float, roughness: float, metallic: float, steps: int = 400
) -> tuple[float, float]:
    """Reflected fraction of a uniform white environment: integral of f (n.l) over the hemisphere.

    Returns:
        ``(diffuse, specular)`` parts; their sum is the reflected energy (<= 1 for a passive BRDF).
    """
    theta_v = math.radians(view_angle_deg)
    view = torch.tensor([math.sin(theta_v), 0.0, math.cos(theta_v)], dtype=torch.float64)

    # Diffuse: uniform in cos(theta) and phi, d omega = d(cos theta) d phi.
    mu, phi = torch.meshgrid(
        _midpoints(steps, 0.0, 1.0), _midpoints(2 * steps, 0.0, 2 * math.pi), indexing="ij"
    )
    sin = torch.sqrt(1 - mu * mu)
    light = torch.stack([sin * torch.cos(phi), sin * torch.sin(phi), mu], dim=-1).reshape(-1, 3)
    diffuse, _ = _evaluate(light, view, albedo_linear, roughness, metallic)
    diffuse_total = float(diffuse.sum() * (1.0 / steps) * (2 * math.pi / (2 * steps)))

    # Specular: half vectors h(theta_h, phi_h), theta_h = atan(alpha tan psi).
    alpha = max(roughness, MIN_ROUGHNESS) ** 2
    psi, phi = torch.meshgrid(
        _midpoints(4 * steps, 0.0, math.pi / 2), _midpoints(2 * steps, 0.0, 2 * math.pi), indexing="ij"
    )
    theta_h = torch.atan(alpha * torch.tan(psi))
    dtheta = alpha / torch.cos(psi) ** 2 / (1 + (alpha * torch.tan(psi)) ** 2)  # d theta_h / d psi
    half = torch.stack(
        [torch.sin(theta_h) * torch.cos(phi), torch.sin(theta_h) * torch.sin(phi), torch.cos(theta_h)], dim=-1
    ).reshape(-1, 3)
    v_dot_h = half @ view
    light = 2 * v_dot_h[:, None] * half - view
    _, specular = _evaluate(light, view, albedo_linear, roughness, metallic)
    weight = (4 * v_dot_h).clamp(min=0) * (torch.sin(theta_h) * dtheta).flatten()
    specular_total = float(
        (specular * weight).sum() * (math.pi / 2 / (4 * steps)) * (2 * math.pi / (2 * steps))
    )
    return diffuse_total, specular_total
