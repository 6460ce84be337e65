"""Photos of a finite material sample lying on a table, as a phone would take them.

:class:`~neuropbr.render.camera.PerspectiveCamera` sees the texture tiled over the whole plane
(what training views need). A *capture* instead shows one copy of the sample, the world square
that the texture's ``[-1, 1]^2`` covers, on a plain background of another material lit by the
same lights, and knows exactly where the sample's corners land in the photo. That is the input
:mod:`neuropbr.align` rectifies, with an exact ground truth: with ``tiling=1`` and ``offset=0``
the rectified sample equals an :class:`~neuropbr.render.camera.AlignedCamera` render from the
same eye under the same lights (same texel positions, normals, light and view directions).

Pixel coordinates here and in :mod:`neuropbr.align` are ``(x, y)``: x to the right, y down, the
centre of the top-left pixel at ``(0, 0)`` (kornia's ``warp_perspective`` convention).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

import torch
import torch.nn.functional as F
from torch import Tensor

from neuropbr.render.brdf import Surface
from neuropbr.render.camera import AlignedCamera, PerspectiveCamera
from neuropbr.render.lights import Light, PointLight
from neuropbr.render.renderer import develop, shade_surface

#: The sample's corners in texture coordinates, in the order :mod:`neuropbr.align` writes them:
#: the texture's top-left (row 0 is +v, up), top-right, bottom-right, bottom-left.
TEXTURE_CORNERS = ((-1.0, 1.0), (1.0, 1.0), (1.0, -1.0), (-1.0, -1.0))


@dataclass(frozen=True)
class Capture:
    """A rendered photo of the sample and where its corners are.

    Attributes:
        image: (3, S, S) sRGB in [0, 1].
        corners: (4, 2) pixel coordinates of the sample's corners, in :data:`TEXTURE_CORNERS` order.
        mask: (1, S, S) share of each pixel covered by the sample, in [0, 1].
    """

    image: Tensor
    corners: Tensor
    mask: Tensor


def plane_to_image(camera: PerspectiveCamera, resolution: int) -> Tensor:
    """Homography from world points ``(x, y)`` of the z = 0 plane to the camera's pixels.

    Args:
        camera: the camera.
        resolution: side of its square image.

    Returns:
        (B|1, 3, 3) float64 matrices ``H`` with ``(x_px, y_px, 1) ~ H (x, y, 1)``.
    """
    rotation = camera.rotation.double()  # camera-to-world, (B|1, 3, 3)
    eye = camera.eye.double()  # (B|1, 3)
    to_camera = rotation.transpose(1, 2)  # world-to-camera
    # camera-frame coordinates of (x, y, 0): x * r1 + y * r2 - R^T eye
    extrinsic = torch.stack(
        [to_camera[:, :, 0], to_camera[:, :, 1], -(to_camera @ eye[:, :, None])[:, :, 0]], dim=2
    )
    # Camera frame: x right, y up, looking down -z; pixel centres of the square image sit at
    # ndc = -1 + (2 i + 1) / S, so x_px = S / 2 (ndc_x + 1) - 1/2 and y_px = S / 2 (1 - ndc_y) - 1/2.
    focal = resolution / (2.0 * torch.tan(camera.fov.double() / 2))  # (B|1,)
    centre = (resolution - 1) / 2.0
    intrinsic = torch.zeros(focal.shape[0], 3, 3, dtype=torch.float64)
    intrinsic[:, 0, 0] = focal
    intrinsic[:, 1, 1] = -focal
    intrinsic[:, 0, 2] = centre
    intrinsic[:, 1, 2] = centre
    intrinsic[:, 2, 2] = 1.0
    flip_depth = torch.diag(torch.tensor([1.0, 1.0, -1.0], dtype=torch.float64))  # depth = -z_cam
    return intrinsic @ flip_depth @ extrinsic


def sample_corners(camera: PerspectiveCamera, resolution: int) -> Tensor:
    """Pixel coordinates of the sample's corners, (B|1, 4, 2), in :data:`TEXTURE_CORNERS` order.

    The sample is the world square the texture's ``[-1, 1]^2`` covers once: ``(uv - offset) /
    tiling``.
    """
    uv = torch.tensor(TEXTURE_CORNERS, dtype=torch.float64)  # (4, 2)
    tiling = camera.tiling.double()[:, None, None]  # (B|1, 1, 1)
    world = (uv[None] - camera.offset.double()[:, None, :]) / tiling  # (B|1, 4, 2)
    homography = plane_to_image(camera, resolution)
    ones = torch.ones_like(world[..., :1])
    projected = torch.cat([world, ones], dim=-1) @ homography.transpose(1, 2)  # (B|1, 4, 3)
    return (projected[..., :2] / projected[..., 2:]).float()


def _constant_maps(albedo: Sequence[float], roughness: float) -> dict[str, Tensor]:
    return {
        "albedo": torch.tensor([float(c) for c in albedo]).view(1, 3, 1, 1).expand(1, 3, 4, 4),
        "roughness": torch.full((1, 1, 4, 4), float(roughness)),
        "metallic": torch.zeros(1, 1, 4, 4),
        "normal": torch.tensor([0.0, 0.0, 1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4),
    }


def render_capture(
    maps: dict[str, Tensor],
    camera: PerspectiveCamera,
    lights: Sequence[Light],
    *,
    resolution: int,
    background_albedo: Sequence[float] = (0.05, 0.05, 0.06),
    background_roughness: float = 0.9,
    exposure_ev: float = 0.0,
    supersample: int = 2,
) -> Capture:
    """Render a photo of the sample lying on a plain background.

    The sample and the background are shaded under the same lights, composited by the share of
    each sub-pixel inside the sample's square, averaged down by ``supersample`` in linear light
    (anti-aliased outline), then exposed, tone-mapped (ACES) and sRGB-encoded.

    Args:
        maps: the sample's maps, (C, R, R) each (albedo sRGB, unit normals).
        camera: one perspective camera (batch 1); its ``tiling`` and ``offset`` place the sample.
        lights: at least one light.
        resolution: side S of the square photo.
        background_albedo: sRGB albedo of the table (a dark matte one by default).
        background_roughness: its roughness.
        exposure_ev: exposure in stops.
        supersample: sub-pixels per pixel side.

    Returns:
        The :class:`Capture`.
    """
    if camera.rotation.shape[0] != 1:
        raise ValueError(f"render_capture: expected one camera, got a batch of {camera.rotation.shape[0]}")
    if supersample < 1:
        raise ValueError(f"render_capture: supersample={supersample}, expected >= 1")
    size = resolution * supersample
    sample = shade_surface(
        Surface.from_maps({k: v[None] for k, v in maps.items()}), camera, lights, resolution=size
    )
    table = _constant_maps(background_albedo, background_roughness)
    background = shade_surface(Surface.from_maps(table), camera, lights, resolution=size)
    positions = camera.observe(table, size).positions  # (1, 3, size, size) world points
    uv = positions[:, :2] * camera.tiling[:, None, None, None] + camera.offset[:, :, None, None]
    inside = (uv.abs() <= 1.0).all(dim=1, keepdim=True).float()  # (1, 1, size, size)
    radiance = inside * sample + (1.0 - inside) * background
    if supersample > 1:
        radiance = F.avg_pool2d(radiance, supersample)
        inside = F.avg_pool2d(inside, supersample)
    image = develop(radiance, exposure_ev=exposure_ev)[0]
    return Capture(image=image, corners=sample_corners(camera, resolution)[0], mask=inside[0])


@dataclass(frozen=True)
class CaptureSetup:
    """One handheld shot: where the phone is, where the lamp is, how it is exposed."""

    camera: PerspectiveCamera
    light: PointLight
    exposure_ev: float = 0.0


def lamp(position: Sequence[float], irradiance: float = 0.7 * math.pi) -> PointLight:
    """A white point light at ``position`` giving ``irradiance`` on the sample's centre."""
    pos = torch.tensor([float(p) for p in position])
    dist2 = float((pos * pos).sum())
    cosine = float(pos[2]) / math.sqrt(dist2)
    return PointLight(pos, irradiance * dist2 / cosine)


class _Pose(TypedDict):
    """:class:`PerspectiveCamera` keywords of one handheld shot."""

    tilt_deg: float
    azimuth_deg: float
    roll_deg: float
    distance: float
    fov_deg: float


def handheld_setups(widen: float = 1.0) -> list[CaptureSetup]:
    """Three shots of one sample as a person with a phone takes them (fixed, for tests and demos).

    The phone is tilted 12-30 degrees from straight down, from three sides, turned 8-40 degrees in
    its own plane, at slightly different distances, with the sample filling about a third of the
    frame; a lamp stands on a different side each time and the exposure differs by +-0.3 EV.

    Args:
        widen: scales the fields of view (1.3: the sample fills less of the frame, room to crop
            the square photos to 4:3).
    """
    shots: list[tuple[_Pose, tuple[float, float, float], float]] = [
        (
            {"tilt_deg": 12.0, "azimuth_deg": 30.0, "roll_deg": 8.0, "distance": 3.2, "fov_deg": 58.0},
            (1.0, 1.0, 2.5),
            0.0,
        ),
        (
            {"tilt_deg": 30.0, "azimuth_deg": 120.0, "roll_deg": -25.0, "distance": 3.0, "fov_deg": 62.0},
            (-1.5, 0.5, 2.0),
            0.3,
        ),
        (
            {"tilt_deg": 25.0, "azimuth_deg": 250.0, "roll_deg": 40.0, "distance": 3.4, "fov_deg": 56.0},
            (0.3, -1.2, 3.0),
            -0.3,
        ),
    ]
    return [
        CaptureSetup(PerspectiveCamera(**(camera | {"fov_deg": camera["fov_deg"] * widen})), lamp(light), ev)
        for camera, light, ev in shots
    ]


def render_captures(
    maps: dict[str, Tensor],
    setups: Sequence[CaptureSetup],
    *,
    resolution: int,
    noise: float = 0.01,
    seed: int = 0,
    background_albedo: Sequence[float] = (0.05, 0.05, 0.06),
) -> list[Capture]:
    """Render one :class:`Capture` per setup, with Gaussian sensor noise of std ``noise`` added.

    Args:
        maps: the sample's maps, (C, R, R) each.
        setups: the shots (e.g. :func:`handheld_setups`).
        resolution: side of the square photos.
        noise: standard deviation of the noise on the sRGB values (then clipped to [0, 1]).
        seed: the noise's seed.
        background_albedo: the table's sRGB albedo.
    """
    generator = torch.Generator().manual_seed(seed)
    captures = []
    for setup in setups:
        capture = render_capture(
            maps,
            setup.camera,
            [setup.light],
            resolution=resolution,
            background_albedo=background_albedo,
            exposure_ev=setup.exposure_ev,
        )
        noisy = capture.image + noise * torch.randn(capture.image.shape, generator=generator)
        captures.append(Capture(image=noisy.clamp(0.0, 1.0), corners=capture.corners, mask=capture.mask))
    return captures


def aligned_render(maps: dict[str, Tensor], setup: CaptureSetup, resolution: int) -> Tensor:
    """What a rectified capture should equal: the sample seen from the setup's eye, texel for texel.

    An :class:`~neuropbr.render.camera.AlignedCamera` at the same eye under the same light and
    exposure gives every texel the same position, view and light directions as the capture (for
    ``tiling=1``, ``offset=0``), so only resampling tells the two apart.

    Returns:
        (3, resolution, resolution) sRGB in [0, 1].
    """
    batch = {name: value[None] for name, value in maps.items()}
    camera = AlignedCamera(eye=setup.camera.eye)
    radiance = shade_surface(Surface.from_maps(batch), camera, [setup.light], resolution=resolution)
    return develop(radiance, exposure_ev=setup.exposure_ev)[0]
