"""Rotated square crops of texture maps, with the normal vectors rotated along.

A crop is a square window of a texture, turned by ``angle_deg`` counter-clockwise as displayed
(row 0 on top), resampled to ``resolution`` x ``resolution`` pixels: the output shows the texture
turned by that angle. Moving the pixels is not enough for a normal map: its vectors live in the
texture's tangent frame (+x right, +y up the image, OpenGL), so their (x, y) components turn by the
same angle, and the result is the normal map of the turned height field. A 90-degree crop of a
whole square texture equals :func:`neuropbr.data.transforms.transform_normals` with ``k=1``.

Crops are described in fractions of the texture (centre in [0, 1]^2, side as a share of the
shorter side), so one description picks the same window whatever size the texture was decoded at.
Minifying crops are box-filtered first (by the power of two that leaves 1-2 texels per pixel) so
they do not alias, like a mip level.
"""

from __future__ import annotations

import math
import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from neuropbr.utils.tensors import unit_vectors


def rotated_extent(angle_deg: float) -> float:
    """Width of the axis-aligned box around a unit square turned by ``angle_deg``."""
    angle = math.radians(angle_deg)
    return abs(math.cos(angle)) + abs(math.sin(angle))


def draw_crop(
    rng: random.Random,
    size: tuple[int, int],
    resolution: int,
    *,
    scale: tuple[float, float] = (0.25, 1.0),
    rotate: bool = True,
    context: float = 1.0,
) -> dict[str, Any]:
    """A random crop of a texture of ``size`` = (width, height) texels.

    The side is a log-uniform share ``scale`` of the largest turned square whose ``context``
    times larger surround still fits in the texture, but never fewer texels than ``resolution``
    pixels unless the texture itself is that small (crops are not magnified needlessly).

    Returns:
        ``{"centre": [x, y] in [0, 1], "side": share of the shorter side, "angle_deg"}``.
    """
    low, high = scale
    if not 0.0 < low <= high <= 1.0:
        raise ValueError(f"crop scale={list(scale)}: expected 0 < low <= high <= 1")
    width, height = size
    short = min(width, height)
    angle = rng.uniform(0.0, 360.0) if rotate else 0.0
    extent = rotated_extent(angle) * context
    largest = 1.0 / extent  # share of the shorter side
    share = largest * math.exp(rng.uniform(math.log(low), math.log(high)))
    share = min(largest, max(share, resolution / short))  # at least one texel per pixel when possible
    half_box = 0.5 * share * extent * short  # texels from the centre to the surround's box edge
    centre = [
        rng.uniform(half_box, width - half_box) / width if width > 2 * half_box else 0.5,
        rng.uniform(half_box, height - half_box) / height if height > 2 * half_box else 0.5,
    ]
    return {"centre": [round(c, 6) for c in centre], "side": round(share, 6), "angle_deg": round(angle, 4)}


def crop_maps(
    maps: dict[str, Tensor], crop: dict[str, Any], resolution: int, *, scale_side: float = 1.0
) -> dict[str, Tensor]:
    """Resample a turned square window of every map to ``resolution`` pixels.

    Args:
        maps: (C, H, W) each, one size; ``normal`` holds unit vectors (OpenGL).
        crop: from :func:`draw_crop`.
        resolution: side of the output.
        scale_side: multiply the crop's side (same centre and angle), e.g. for a larger surround.

    Returns:
        ``{name: (C, resolution, resolution)}``; normals turned with the window and renormalised.
    """
    first = next(iter(maps.values()))
    height, width = first.shape[-2:]
    side = crop["side"] * min(width, height) * scale_side  # texels
    angle = math.radians(crop["angle_deg"])
    cos, sin = math.cos(angle), math.sin(angle)
    centre_x, centre_y = crop["centre"][0] * width, crop["centre"][1] * height

    # Only the box around the window is filtered and sampled (+2 texels for the bilinear taps).
    half_box = 0.5 * side * (abs(cos) + abs(sin)) + 2.0
    x0, x1 = max(0, math.floor(centre_x - half_box)), min(width, math.ceil(centre_x + half_box))
    y0, y1 = max(0, math.floor(centre_y - half_box)), min(height, math.ceil(centre_y + half_box))
    level = max(0, math.floor(math.log2(side / resolution))) if side >= 2 * resolution else 0
    factor = 2**level
    # Align the box to the filter so the averaged texels are the same wherever the crop lies.
    x0, y0 = x0 - x0 % factor, y0 - y0 % factor
    x1, y1 = min(width, x1 + (-x1) % factor), min(height, y1 + (-y1) % factor)

    # Output pixel centres in [-1, 1] (u right, v down); sample at centre + R(angle) (u, v) side / 2
    # in row-down texel coordinates, which shows the texture turned counter-clockwise on screen.
    steps = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2.0 - 1.0
    v, u = torch.meshgrid(steps, steps, indexing="ij")
    x = centre_x + 0.5 * side * (cos * u - sin * v)
    y = centre_y + 0.5 * side * (sin * u + cos * v)
    region_w, region_h = (x1 - x0) / factor, (y1 - y0) / factor
    grid = torch.stack(
        [((x - x0) / factor) / region_w * 2.0 - 1.0, ((y - y0) / factor) / region_h * 2.0 - 1.0], dim=-1
    )[None]
    out = {}
    for name, value in maps.items():
        region = value[:, y0:y1, x0:x1].float()[None]
        if factor > 1:
            region = F.avg_pool2d(region, factor, ceil_mode=True)
        sampled = F.grid_sample(region, grid, mode="bilinear", padding_mode="border", align_corners=False)[0]
        if name == "normal":
            nx, ny, nz = sampled.unbind(0)
            # (n_x, n_y) are +y up: a counter-clockwise turn is the usual rotation matrix.
            sampled = unit_vectors(torch.stack([cos * nx - sin * ny, sin * nx + cos * ny, nz]), dim=0)
        out[name] = sampled.contiguous()
    return out
