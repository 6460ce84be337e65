"""Training-time augmentation, deterministic from a per-sample seed.

Every random parameter is drawn from ``torch.Generator().manual_seed(seed)`` (never the global
RNG, never kornia's random modules), so a sample looks the same whichever loader worker builds it
and after a resume (the seed comes from :class:`~neuropbr.data.sampling.EpochSampler`).

- Photometric jitter (kornia.enhance), drawn per view, applied to the views only: the maps are
  the material and do not change with the lighting or the camera.
- Paired geometric transforms (horizontal flip, vertical flip, rotation by k * 90 degrees), the
  same for every view and every map, only when views are aligned with the maps (``aligned``).
  Normal maps are vector fields: besides moving the pixels, a horizontal flip negates n_x, a
  vertical flip negates n_y and a rotation rotates (n_x, n_y) by the same angle (+x right, +y up
  the image, OpenGL), so the result is the normal map of the transformed height field.
"""

from __future__ import annotations

import math

import kornia.enhance as ke
import torch
from torch import Tensor

from neuropbr.utils.checks import check_shape

#: Maps whose pixels are (x, y, z) directions: flips and turns also transform the vectors. ``light``
#: is the per-view key-light direction map of synthetic samples, (V, 3, H, W).
VECTOR_MAPS = ("normal", "light")


def flip_rot90(image: Tensor, *, hflip: bool, vflip: bool, k: int) -> Tensor:
    """Flip left-right, then top-bottom, then rotate counter-clockwise by ``k`` * 90 degrees.

    Args:
        image: (..., H, W) pixels (any channels and leading dimensions).
        hflip: mirror the columns.
        vflip: mirror the rows.
        k: quarter turns counter-clockwise as displayed (row 0 on top), any integer.

    Returns:
        (..., H, W) for even k, (..., W, H) for odd k.
    """
    if hflip:
        image = image.flip(-1)
    if vflip:
        image = image.flip(-2)
    k %= 4
    if k:
        # torch.rot90 turns from the row axis towards the column axis: counter-clockwise on screen.
        image = torch.rot90(image, k, dims=(-2, -1))
    return image.contiguous()


def transform_normals(normal: Tensor, *, hflip: bool, vflip: bool, k: int) -> Tensor:
    """Apply :func:`flip_rot90` to a normal map, moving the pixels AND transforming the vectors.

    With +x right and +y up the image (towards row 0), mirroring the columns negates n_x,
    mirroring the rows negates n_y, and a counter-clockwise quarter turn maps (n_x, n_y) to
    (-n_y, n_x); n_z is unchanged.

    Args:
        normal: (..., 3, H, W) unit normals in [-1, 1], OpenGL convention.
        hflip, vflip, k: as in :func:`flip_rot90`.

    Returns:
        (..., 3, H', W') unit normals of the transformed surface.
    """
    nx, ny, nz = normal.unbind(dim=-3)
    if hflip:
        nx = -nx
    if vflip:
        ny = -ny
    for _ in range(k % 4):
        nx, ny = -ny, nx
    return flip_rot90(torch.stack([nx, ny, nz], dim=-3), hflip=hflip, vflip=vflip, k=k)


class Augmentation:
    """Per-view photometric jitter and paired flips/rotations of views and maps.

    Args:
        enabled: False makes the augmentation the identity.
        photometric: per-view brightness, contrast, saturation and hue jitter on the views.
        brightness: additive brightness shift drawn from [-brightness, brightness].
        contrast: contrast factor (around the view's mean gray) drawn from [1 - c, 1 + c].
        saturation: saturation factor drawn from [1 - s, 1 + s].
        hue: hue shift drawn from [-hue, hue] turns of the hue circle (0.5 = 180 degrees).
        flips: random horizontal and vertical flips (paired; only when ``aligned``).
        rot90: random rotation by 0, 90, 180 or 270 degrees (paired; only when ``aligned``).
        aligned: views are rectified to the maps' texture space (``data.aligned``); geometric
            transforms of perspective views would break their relation to the maps, so they are
            skipped when False.
    """

    def __init__(
        self,
        *,
        enabled: bool = True,
        photometric: bool = True,
        brightness: float = 0.1,
        contrast: float = 0.1,
        saturation: float = 0.1,
        hue: float = 0.02,
        flips: bool = True,
        rot90: bool = True,
        aligned: bool = True,
    ) -> None:
        for key, value, high in (
            ("brightness", brightness, 1.0),
            ("contrast", contrast, 1.0),
            ("saturation", saturation, 1.0),
            ("hue", hue, 0.5),
        ):
            if not 0.0 <= value <= high:
                raise ValueError(f"data.augment.{key}={value}: expected a value in [0, {high}]")
        self.enabled = enabled
        self.photometric = photometric
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.hue = hue
        self.flips = flips
        self.rot90 = rot90
        self.aligned = aligned

    def __repr__(self) -> str:
        fields = ", ".join(f"{key}={value!r}" for key, value in vars(self).items())
        return f"{type(self).__name__}({fields})"

    def __call__(self, views: Tensor, maps: dict[str, Tensor], seed: int) -> tuple[Tensor, dict[str, Tensor]]:
        """Augment one sample.

        Args:
            views: (V, 3, H, W) in [0, 1].
            maps: ``{"albedo": (3, H, W), "roughness": (1, H, W), "metallic": (1, H, W),
                "normal": (3, H, W) unit vectors}``; ``"light"`` ((V, 3, H, W) directions) is
                transformed like the normals, other keys like albedo.
            seed: the sample seed; the same seed gives the same output.

        Returns:
            ``(views, maps)`` of the same shapes (H and W swap under odd rotations of non-square
            inputs).
        """
        check_shape(views, "V 3 H W", "views")
        if not self.enabled:
            return views, maps
        gen = torch.Generator().manual_seed(int(seed))
        # Draw every parameter in a fixed order, so switching one option off never changes the
        # others' draws for the same seed.
        hflip_draw, vflip_draw = torch.rand(2, generator=gen).tolist()
        k_draw = int(torch.randint(0, 4, (1,), generator=gen))
        jitter = torch.rand(4, views.shape[0], generator=gen) * 2.0 - 1.0  # (4, V) in [-1, 1]

        if self.aligned and (self.flips or self.rot90):
            hflip = self.flips and hflip_draw < 0.5
            vflip = self.flips and vflip_draw < 0.5
            k = k_draw if self.rot90 else 0
            views = flip_rot90(views, hflip=hflip, vflip=vflip, k=k)
            maps = {
                name: transform_normals(value, hflip=hflip, vflip=vflip, k=k)
                if name in VECTOR_MAPS
                else flip_rot90(value, hflip=hflip, vflip=vflip, k=k)
                for name, value in maps.items()
            }
        if self.photometric:
            views = self._jitter(views, jitter)
        return views, maps

    def _jitter(self, views: Tensor, jitter: Tensor) -> Tensor:
        """Per-view photometric jitter; ``jitter`` (4, V) in [-1, 1] scales each range."""
        views = views.float()
        if self.brightness > 0:
            views = ke.adjust_brightness(views, jitter[0] * self.brightness)
        if self.contrast > 0:
            views = ke.adjust_contrast_with_mean_subtraction(views, 1.0 + jitter[1] * self.contrast)
        if self.saturation > 0:
            views = ke.adjust_saturation(views, 1.0 + jitter[2] * self.saturation)
        if self.hue > 0:
            views = ke.adjust_hue(views, jitter[3] * (self.hue * 2.0 * math.pi))  # radians
        return views.clamp(0.0, 1.0)
