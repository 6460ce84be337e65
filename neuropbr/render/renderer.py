"""Render PBR maps into images: camera -> per-pixel surface -> lights -> exposure and tone map.

>>> import torch
>>> from neuropbr.render import AlignedCamera, PointLight, render
>>> maps = {"albedo": torch.full((1, 3, 8, 8), 0.5), "roughness": torch.full((1, 1, 8, 8), 0.5),
...         "metallic": torch.zeros(1, 1, 8, 8), "normal": torch.tensor([0.0, 0, 1]).view(1, 3, 1, 1).expand(1, 3, 8, 8)}
>>> image = render(maps, AlignedCamera(eye=torch.tensor([0.0, 0, 3])), [PointLight(torch.tensor([0.0, 0, 2]), 4.0)])
>>> tuple(image.shape), bool(image.min() >= 0), bool(image.max() <= 1)
((1, 3, 8, 8), True, True)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from neuropbr.render.brdf import Surface, no_autocast
from neuropbr.render.camera import Camera
from neuropbr.render.color import apply_exposure, linear_to_srgb, tonemap
from neuropbr.render.lights import Light


def render_radiance(
    maps: dict[str, Tensor], camera: Camera, lights: Sequence[Light], *, resolution: int | None = None
) -> Tensor:
    """Linear radiance reaching each pixel: the sum of every light's reflection.

    Args:
        maps: texture-space PBR maps, (B, C, H, W) each (albedo sRGB, normals unit vectors).
        camera: what each pixel sees (see :mod:`neuropbr.render.camera`).
        lights: at least one light; parameters broadcast over B.
        resolution: side of the square image (default: the maps' height).

    Returns:
        (B, 3, H, W) linear radiance (float32; float64 for float64 maps), differentiable with
        respect to the maps and the light and camera parameters.
    """
    return shade_surface(Surface.from_maps(maps), camera, lights, resolution=resolution)


def shade_surface(
    surface: Surface, camera: Camera, lights: Sequence[Light], *, resolution: int | None = None
) -> Tensor:
    """:func:`render_radiance` from texture-space BRDF terms (``Surface.from_maps(maps)``).

    The terms are what a camera resamples, so albedo is filtered in linear light; several views of
    one material can share them (aligned views then do no per-view work before shading).

    Returns:
        (B, 3, H, W) linear radiance.
    """
    if not lights:
        raise ValueError("render: lights is empty; pass at least one light")
    # Autocast off: a camera's ray rotation and the lights' matmuls in bf16 would move highlights.
    with no_autocast(surface.normal):
        view = camera.observe(surface.terms(), resolution)
        seen = Surface(**view.maps)
        radiance = lights[0].illuminate(seen, view.positions, view.view_dir)
        for light in lights[1:]:
            radiance = radiance + light.illuminate(seen, view.positions, view.view_dir)
    return radiance


def develop(radiance: Tensor, *, exposure_ev: float | Tensor = 0.0, tonemap_kind: str = "aces") -> Tensor:
    """Turn linear radiance into a displayable image: exposure, tone map, sRGB encoding.

    Args:
        radiance: (B, 3, H, W) linear radiance.
        exposure_ev: exposure in stops, scalar or broadcastable (e.g. (B, 1, 1, 1)).
        tonemap_kind: one of :data:`neuropbr.render.color.TONEMAPS`.

    Returns:
        (B, 3, H, W) sRGB-encoded image in [0, 1].
    """
    return linear_to_srgb(tonemap(apply_exposure(radiance, exposure_ev), tonemap_kind))


def render(
    maps: dict[str, Tensor],
    camera: Camera,
    lights: Sequence[Light],
    *,
    exposure_ev: float | Tensor = 0.0,
    tonemap_kind: str = "aces",
    resolution: int | None = None,
) -> Tensor:
    """:func:`render_radiance` followed by :func:`develop`: (B, 3, H, W) sRGB in [0, 1]."""
    return develop(
        render_radiance(maps, camera, lights, resolution=resolution),
        exposure_ev=exposure_ev,
        tonemap_kind=tonemap_kind,
    )


def exposure_for(irradiance: Tensor, target: float = 0.8) -> Tensor:
    """Exposure (EV) at which a white Lambertian patch under ``irradiance`` shows radiance ``target``.

    Args:
        irradiance: (B, 3) irradiance on the patch (e.g. ``sum(light.irradiance(point))``).
        target: linear radiance of a white diffuse patch after exposure.

    Returns:
        (B,) exposure in stops.
    """
    luminance = irradiance @ torch.tensor(
        [0.2126, 0.7152, 0.0722], dtype=irradiance.dtype, device=irradiance.device
    )
    white = luminance.clamp(min=1e-8) / torch.pi  # radiance of a white Lambertian patch
    return torch.log2(target / white)
