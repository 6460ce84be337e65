"""Cameras: which surface point, which map values and which view direction each pixel sees.

Two kinds (docs/architecture.md, "What flows between the parts", "Views"):

- :class:`AlignedCamera`: views rectified to texture space, pixel (i, j) sees texel (i, j). This is
  exactly what a pinhole camera whose image plane is parallel to the sample records (a plane
  parallel to the image plane is imaged through a scale and a shift), so the only trace of the
  camera is the per-texel view direction towards its eye; ``eye=None`` is the orthographic limit.
- :class:`PerspectiveCamera`: a pinhole camera tilted by up to ~40 degrees, turned in-plane and
  looking at the texture tiled over the whole z = 0 plane: per-pixel ray/plane intersection ->
  world point -> wrapped texture coordinate -> bilinear lookup of the maps.

The texture is mapped onto the plane with a uniform scale and a shift only, so the tangent frame
stays the world frame and tangent-space normals need no rotation.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from neuropbr.render.geometry import directions_to, texel_positions
from neuropbr.utils.tensors import unit_vectors

#: Rays steeper than this (degrees from the zenith) are refused: they would meet the plane far
#: away or never.
MAX_RAY_ANGLE_DEG = 85.0


@dataclass(frozen=True)
class SurfaceView:
    """What a camera's pixels see.

    Attributes:
        maps: the PBR maps at each pixel, (B, C, H, W) each, normals unit length.
        positions: (B|1, 3, H, W) world positions of the surface points.
        view_dir: (B|1, 3, H, W) or (B|1, 3, 1, 1) unit vectors from the points to the camera.
    """

    maps: dict[str, Tensor]
    positions: Tensor
    view_dir: Tensor


class Camera(ABC):
    """Maps PBR maps in texture space to what the pixels of a view see."""

    @abstractmethod
    def observe(self, maps: dict[str, Tensor], resolution: int | None = None) -> SurfaceView:
        """The surface seen by each pixel.

        Args:
            maps: texture-space tensors, (B, C, H, W) each: PBR maps or BRDF terms (see
                :meth:`~neuropbr.render.brdf.Surface.terms`); the ``normal`` entry is
                renormalised after resampling.
            resolution: side of the square view (default: the maps' height).

        Returns:
            The per-pixel maps, positions and view directions.
        """

    @property
    @abstractmethod
    def eye(self) -> Tensor | None:
        """(B|1, 3) world position of the camera, or None for an orthographic camera."""


def _batch_param(value: Tensor | float | tuple[float, ...], name: str, width: int = 1) -> Tensor:
    """A camera parameter as a float32 (B|1,) tensor (width 1) or (B|1, width) tensor."""
    t = torch.as_tensor(value, dtype=torch.float32)
    if width == 1:
        if t.ndim > 1:
            raise ValueError(f"{name}: expected a scalar or (B,), got {tuple(t.shape)}")
        return t.reshape(-1)
    if t.shape[-1:] != (width,) or t.ndim > 2:
        raise ValueError(f"{name}: expected ({width},) or (B, {width}), got {tuple(t.shape)}")
    return t.reshape(-1, width)


def _resize_maps(maps: dict[str, Tensor], size: int) -> dict[str, Tensor]:
    """Maps resampled to ``size`` x ``size`` (area when shrinking, bilinear when enlarging);
    ``maps`` itself when they already have that size."""
    if all(value.shape[-2:] == (size, size) for value in maps.values()):
        return maps
    out = {}
    for name, value in maps.items():
        if value.shape[-2:] == (size, size):
            out[name] = value
            continue
        if value.shape[-1] > size:
            out[name] = F.interpolate(value, size=(size, size), mode="area")
        else:
            out[name] = F.interpolate(value, size=(size, size), mode="bilinear", align_corners=False)
    if "normal" in out:
        out["normal"] = unit_vectors(out["normal"])
    return out


class AlignedCamera(Camera):
    """A fronto-parallel camera whose views are rectified to texture space.

    Args:
        eye: (3,) or (B, 3) camera position above the sample (z > 0), or None for an
            orthographic camera looking straight down (view direction +z everywhere).
    """

    def __init__(self, eye: Tensor | None = None) -> None:
        if eye is not None:
            eye = _batch_param(eye, "AlignedCamera.eye", width=3)
            if bool((eye[:, 2] <= 0).any()):
                raise ValueError(f"AlignedCamera.eye: expected z > 0 (above the sample), got {eye.tolist()}")
        self._eye = eye

    @property
    def eye(self) -> Tensor | None:
        return self._eye

    def observe(self, maps: dict[str, Tensor], resolution: int | None = None) -> SurfaceView:
        """The surface seen by each pixel; ``view.maps is maps`` unless they had to be resized."""
        if resolution is not None:
            maps = _resize_maps(maps, resolution)
        first = next(iter(maps.values()))
        height, width = first.shape[-2:]
        device = first.device
        positions = texel_positions(height, width, device=device)  # (1, 3, H, W)
        if self._eye is None:
            view_dir = torch.tensor([0.0, 0.0, 1.0], device=device).view(1, 3, 1, 1)
        else:
            view_dir, _ = directions_to(self._eye.to(device), positions)  # (B, 3, H, W)
        return SurfaceView(maps=maps, positions=positions, view_dir=view_dir)


def _rotation_z(angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([c, -s, zero, s, c, zero, zero, zero, one], dim=-1).reshape(-1, 3, 3)


def _rotation_x(angle: Tensor) -> Tensor:
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    return torch.stack([one, zero, zero, zero, c, -s, zero, s, c], dim=-1).reshape(-1, 3, 3)


class PerspectiveCamera(Camera):
    """A pinhole camera looking at the (infinitely tiled) sample from above.

    The camera starts above the origin at ``distance``, looking down -z with its image x along
    +x and image y along +y; it is turned by ``roll_deg`` about its optical axis (in-plane
    rotation), tilted by ``tilt_deg`` away from the zenith, and swung by ``azimuth_deg`` about +z,
    always looking at the origin. The world point (x, y, 0) has texture coordinate
    ``tiling * (x, y) + offset`` wrapped into [-1, 1)^2 (the sample's square), so ``tiling=2``
    repeats the texture twice across that square.

    With tilt 0, roll 0, tiling 1, offset 0 and the default field of view, pixel (i, j) sees
    texel (i, j) exactly, from the eye at (0, 0, distance): the view equals an
    :class:`AlignedCamera` with that eye.

    Args:
        tilt_deg: angle between the optical axis and the plane's normal, scalar or (B,).
        azimuth_deg: direction of the tilt around +z.
        roll_deg: rotation of the image about the optical axis.
        distance: from the eye to the origin, in world units (the sample is 2 wide).
        fov_deg: full field of view of the square image; default ``2 atan(1 / distance)``,
            which frames the sample's square at tilt 0.
        tiling: texture repeats per sample square (> 0).
        offset: (2,) or (B, 2) shift of the texture coordinates.
        prefilter: average the maps down when a pixel covers two or more texels (one level per
            view, chosen at the image centre), so tilted and tiled views do not alias.
    """

    def __init__(
        self,
        *,
        tilt_deg: Tensor | float = 0.0,
        azimuth_deg: Tensor | float = 0.0,
        roll_deg: Tensor | float = 0.0,
        distance: Tensor | float = 3.0,
        fov_deg: Tensor | float | None = None,
        tiling: Tensor | float = 1.0,
        offset: Tensor | tuple[float, float] = (0.0, 0.0),
        prefilter: bool = True,
    ) -> None:
        self.tilt = torch.deg2rad(_batch_param(tilt_deg, "PerspectiveCamera.tilt_deg"))
        self.azimuth = torch.deg2rad(_batch_param(azimuth_deg, "PerspectiveCamera.azimuth_deg"))
        self.roll = torch.deg2rad(_batch_param(roll_deg, "PerspectiveCamera.roll_deg"))
        self.distance = _batch_param(distance, "PerspectiveCamera.distance")
        if fov_deg is None:
            self.fov = 2.0 * torch.atan(1.0 / self.distance.clamp(min=1e-6))
        else:
            self.fov = torch.deg2rad(_batch_param(fov_deg, "PerspectiveCamera.fov_deg"))
        self.tiling = _batch_param(tiling, "PerspectiveCamera.tiling")
        self.offset = _batch_param(offset, "PerspectiveCamera.offset", width=2)
        self.prefilter = prefilter
        if bool((self.distance <= 0).any()):
            raise ValueError(f"PerspectiveCamera.distance={self.distance.tolist()}: expected > 0")
        if bool((self.tiling <= 0).any()):
            raise ValueError(f"PerspectiveCamera.tiling={self.tiling.tolist()}: expected > 0")
        if bool(((self.fov <= 0) | (self.fov >= math.radians(150))).any()):
            raise ValueError(
                f"PerspectiveCamera.fov_deg={torch.rad2deg(self.fov).tolist()}: expected in (0, 150)"
            )
        # The steepest ray leaves through an image corner.
        corner = torch.atan(math.sqrt(2.0) * torch.tan(self.fov / 2))
        if bool((self.tilt < 0).any()) or bool(
            (torch.rad2deg(self.tilt + corner) >= MAX_RAY_ANGLE_DEG).any()
        ):
            raise ValueError(
                f"PerspectiveCamera.tilt_deg={torch.rad2deg(self.tilt).tolist()} with "
                f"fov_deg={torch.rad2deg(self.fov).tolist()}: expected tilt >= 0 and tilt + "
                f"atan(sqrt(2) tan(fov / 2)) < {MAX_RAY_ANGLE_DEG} deg, so every pixel's ray meets the plane"
            )
        # camera-to-world rotation: swing (azimuth) . tilt . in-plane roll
        self.rotation = (
            _rotation_z(self.azimuth) @ _rotation_x(self.tilt) @ _rotation_z(self.roll)
        )  # (B|1, 3, 3)

    @property
    def eye(self) -> Tensor:
        return self.rotation[:, :, 2] * self.distance[:, None]  # R @ (0, 0, d)

    def footprint(self, map_size: int, resolution: int) -> Tensor:
        """Texels per pixel at the image centre, (B|1,): > 1 means the maps are minified."""
        pixel = 2.0 * self.distance * torch.tan(self.fov / 2) / resolution  # world units across one pixel
        stretch = torch.rsqrt(torch.cos(self.tilt))  # geometric mean of 1 and 1 / cos(tilt)
        return pixel * stretch * self.tiling * map_size / 2.0

    def observe(self, maps: dict[str, Tensor], resolution: int | None = None) -> SurfaceView:
        first = next(iter(maps.values()))
        map_size = first.shape[-1]
        size = resolution or first.shape[-2]
        device = first.device
        batch = max(first.shape[0], self.rotation.shape[0])

        # Rays through pixel centres, camera frame: x right, y up, looking down -z.
        ndc = -1.0 + (2.0 * torch.arange(size, dtype=torch.float32, device=device) + 1.0) / size
        ys, xs = torch.meshgrid(-ndc, ndc, indexing="ij")  # row 0 at the top
        half = torch.tan(self.fov / 2).to(device)[:, None, None]
        rays = torch.stack([xs * half, ys * half, -torch.ones_like(xs * half)], dim=1)  # (B|1, 3, H, W)
        rotation = self.rotation.to(device)
        rays = torch.einsum("bij,bjhw->bihw", rotation, rays)  # world frame
        eye = self.eye.to(device)[:, :, None, None]  # (B|1, 3, 1, 1)
        hit = -eye[:, 2:3] / rays[:, 2:3]  # ray length to z = 0 (rays all point down: checked in __init__)
        positions = eye + hit * rays
        positions = torch.cat([positions[:, :2], torch.zeros_like(positions[:, 2:])], dim=1)
        view_dir = unit_vectors(-rays)

        # Texture lookup: wrap into [-1, 1) and sample a copy padded by one texel on each side
        # (circularly), so bilinear taps at the borders blend with the opposite edge.
        uv = (
            positions[:, :2] * self.tiling.to(device)[:, None, None, None]
            + self.offset.to(device)[:, :, None, None]
        )
        uv = torch.remainder(uv + 1.0, 2.0) - 1.0
        grid = torch.stack([uv[:, 0], -uv[:, 1]], dim=-1).expand(batch, -1, -1, -1)  # (B, H, W, 2); +y is up
        levels = self._levels(map_size, size, batch)
        seen = {name: _lookup(value.expand(batch, -1, -1, -1), grid, levels) for name, value in maps.items()}
        if "normal" in seen:
            seen["normal"] = unit_vectors(seen["normal"])
        return SurfaceView(maps=seen, positions=positions, view_dir=view_dir)

    def _levels(self, map_size: int, resolution: int, batch: int) -> list[int]:
        """Integer mip level per batch element: maps are averaged down by ``2 ** level``."""
        if not self.prefilter:
            return [0] * batch
        footprint = self.footprint(map_size, resolution).expand(batch)
        return [math.floor(math.log2(f)) if f >= 2.0 else 0 for f in footprint.tolist()]


def _lookup(value: Tensor, grid: Tensor, levels: list[int]) -> Tensor:
    """Sample (B, C, h, w) at ``grid`` (B, H, W, 2), each batch element from its mip level."""
    if len(set(levels)) == 1:
        return _sample_wrapped(_average_down(value, levels[0]), grid)
    return torch.cat(
        [
            _sample_wrapped(_average_down(value[b : b + 1], level), grid[b : b + 1])
            for b, level in enumerate(levels)
        ]
    )


def _average_down(value: Tensor, level: int) -> Tensor:
    """Box-average (B, C, H, W) by ``2 ** level`` (at least 1 texel left)."""
    if level <= 0:
        return value
    factor = 2**level
    size = (max(1, value.shape[-2] // factor), max(1, value.shape[-1] // factor))
    if value.shape[-2] % factor == 0 and value.shape[-1] % factor == 0:
        return F.avg_pool2d(value, factor)
    return F.interpolate(value, size=size, mode="area")


def _sample_wrapped(value: Tensor, grid: Tensor) -> Tensor:
    """Bilinear lookup of a tileable (B, C, h, w) map at ``grid`` (B, H, W, 2) in [-1, 1).

    ``grid`` uses ``align_corners=False`` coordinates of the unpadded map.
    """
    height, width = value.shape[-2:]
    padded = F.pad(value, (1, 1, 1, 1), mode="circular")
    scale = torch.tensor([width / (width + 2.0), height / (height + 2.0)], device=grid.device)
    return F.grid_sample(padded, grid * scale, mode="bilinear", padding_mode="border", align_corners=False)
