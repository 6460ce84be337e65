"""Geometry of the flat material sample: texel positions and per-texel light/view vectors.

The sample is the square [-size, size]^2 of the z = 0 plane. Texel (i, j) of an H x W map sits at
``x = size * (-1 + (2j + 1) / W)`` and ``y = size * (1 - (2i + 1) / H)`` (row 0 is the top edge,
+y points up the image, matching the OpenGL normal-map convention).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from neuropbr.utils.tensors import unit_vectors


def texel_positions(
    height: int, width: int, *, size: float = 1.0, device: torch.device | str | None = None
) -> Tensor:
    """World positions of the texel centres, (1, 3, H, W) float32 with z = 0."""
    ys = size * (1.0 - (2.0 * torch.arange(height, device=device, dtype=torch.float32) + 1.0) / height)
    xs = size * (-1.0 + (2.0 * torch.arange(width, device=device, dtype=torch.float32) + 1.0) / width)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y, torch.zeros_like(grid_x)], dim=0).unsqueeze(0)


def directions_to(points: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Unit vectors and squared distances from texel ``positions`` to ``points``.

    Args:
        points: (B, 3) world positions (a light or a camera).
        positions: (1 or B, 3, H, W) texel positions.

    Returns:
        ``(directions (B, 3, H, W), squared_distance (B, 1, H, W))``.
    """
    offset = points.float()[:, :, None, None] - positions
    dist2 = (offset * offset).sum(dim=1, keepdim=True).clamp(min=1e-8)
    return offset * torch.rsqrt(dist2), dist2


def point_light(light_position: Tensor, light_intensity: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
    """Per-texel direction to a point light and the radiance arriving there (inverse square).

    Args:
        light_position: (B, 3) world position.
        light_intensity: (B, 3) or (B, 1) radiant intensity (linear RGB).
        positions: (1 or B, 3, H, W) texel positions.

    Returns:
        ``(light_dir (B, 3, H, W), radiance (B, 3 or 1, H, W))``.
    """
    direction, dist2 = directions_to(light_position, positions)
    return direction, light_intensity.float()[:, :, None, None] / dist2


def directional_light(direction: Tensor, irradiance: Tensor) -> tuple[Tensor, Tensor]:
    """A light at infinity: (B, 3) direction towards the light, (B, 3 or 1) radiance scale.

    Returns broadcastable ``(light_dir (B, 3, 1, 1), radiance (B, C, 1, 1))``.
    """
    return unit_vectors(direction.float())[:, :, None, None], irradiance.float()[:, :, None, None]


def height_to_normal(height: Tensor, strength: float = 1.0, *, wrap: bool = True) -> Tensor:
    """Tangent-space unit normals of a height field, OpenGL convention (+y up the image).

    Central differences in texel units: ``n = unit_vectors(-strength * dh/dx, -strength * dh/dy, 1)``
    with +x to the right and +y towards row 0. ``wrap=True`` treats the field as tileable
    (periodic differences), so a tileable height gives a tileable normal map.

    Args:
        height: (B, 1, H, W) height in texels' units times ``1 / strength``.
        strength: bump scale.

    Returns:
        (B, 3, H, W) unit normals.
    """
    if wrap:
        right, left = torch.roll(height, -1, dims=-1), torch.roll(height, 1, dims=-1)
        below, above = torch.roll(height, -1, dims=-2), torch.roll(height, 1, dims=-2)
    else:
        padded = F.pad(height, (1, 1, 1, 1), mode="replicate")
        right, left = padded[..., 1:-1, 2:], padded[..., 1:-1, :-2]
        below, above = padded[..., 2:, 1:-1], padded[..., :-2, 1:-1]
    dh_dx = (right - left) * 0.5
    dh_dy = (above - below) * 0.5  # +y points up the image, i.e. towards row 0
    normal = torch.cat([-strength * dh_dx, -strength * dh_dy, torch.ones_like(height)], dim=1)
    return unit_vectors(normal)
