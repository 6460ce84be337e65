"""Lights: point, directional and environment (a procedural sky or an equirectangular HDR map).

Every light shades a :class:`~neuropbr.render.brdf.Surface` seen from per-pixel positions and view
directions, for any batch B and on any device. Parameters broadcast over the batch: a tensor of
shape (3,) is one light for every batch element, (B, 3) one light per element and (B, K, 3) K
lights per element.

Environment lighting is a deterministic quadrature: the upper hemisphere is cut into K cells
around fixed spherical-Fibonacci directions, each cell's radiance is integrated exactly over the
texels of the map that fall in it, and the cell is shaded as one directional light from its
radiance-weighted mean direction, with an angular spread that widens the specular lobe (a cone
of the cell's measured angular radius). The light below the horizon never reaches the opaque
sample and is dropped.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch
import torch.nn.functional as F
from torch import Tensor

from neuropbr.render.brdf import Surface, no_autocast, shade_many
from neuropbr.render.hdr import equirect_directions
from neuropbr.utils.tensors import unit_vectors

#: Largest equirectangular map integrated into environment cells; larger maps (HDR photos) are
#: area-averaged down first. 64 x 128 texels resolve about 3 degrees.
_MAX_ENV_HEIGHT = 64


def _lights(x: Tensor | float, name: str) -> Tensor:
    """A light parameter as (B|1, K|1, 3).

    ``()`` (grey) -> (1, 1, 3); ``(3,)`` -> (1, 1, 3); ``(B, 3)`` or ``(B, 1)`` -> (B, 1, 3);
    ``(B, K, 3)`` or ``(B, K, 1)`` kept. A trailing 1 means grey (repeated over RGB).
    """
    t = x if isinstance(x, Tensor) and x.is_floating_point() else torch.as_tensor(x, dtype=torch.float32)
    shape = tuple(t.shape)
    if t.ndim == 0:
        t = t.reshape(1, 1, 1)
    elif t.ndim == 1 and shape[0] == 3:
        t = t.reshape(1, 1, 3)
    elif t.ndim == 2:
        t = t.unsqueeze(1)
    if t.ndim != 3 or t.shape[-1] not in (1, 3):
        raise ValueError(f"{name}: expected (), (3,), (B, 3) or (B, K, 3), got {shape}")
    return t.expand(*t.shape[:-1], 3)


def _broadcast(a: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Two (B, K, 3) parameters expanded to their common shape."""
    shape = torch.broadcast_shapes(a.shape, b.shape)
    return a.expand(shape), b.expand(shape)


class Light(ABC):
    """A light that shades surfaces."""

    @abstractmethod
    def illuminate(self, surface: Surface, positions: Tensor, view_dir: Tensor) -> Tensor:
        """Linear radiance the surface reflects towards the viewer under this light.

        Args:
            surface: per-pixel BRDF terms, (B, C, H, W) each.
            positions: (B|1, 3, H, W) world positions of the shaded points.
            view_dir: (B|1, 3, H, W) or (B|1, 3, 1, 1) unit vectors towards the camera.

        Returns:
            (B, 3, H, W) linear radiance.
        """

    @abstractmethod
    def irradiance(self, point: Tensor) -> Tensor:
        """Irradiance on an upward-facing (+z) patch at ``point`` (3,): (B, 3) linear RGB.

        Used to set light levels (e.g. to expose every view alike), not for shading.
        """


class PointLight(Light):
    """Isotropic point lights with inverse-square falloff.

    Args:
        position: world position(s), (3,), (B, 3) or (B, K, 3).
        intensity: radiant intensity, linear RGB (or grey), broadcastable to ``position``.
    """

    def __init__(self, position: Tensor, intensity: Tensor | float) -> None:
        self.position, self.intensity = _broadcast(
            _lights(position, "PointLight.position"), _lights(intensity, "PointLight.intensity")
        )

    def illuminate(self, surface: Surface, positions: Tensor, view_dir: Tensor) -> Tensor:
        dtype = surface.normal.dtype
        light_pos = self.position.to(positions.device, dtype)[:, :, :, None, None]  # (B, K, 3, 1, 1)
        offset = light_pos - positions.to(dtype).unsqueeze(1)  # (B, K, 3, H, W)
        inv_dist = torch.rsqrt((offset * offset).sum(dim=2).clamp(min=1e-8))  # (B, K, H, W)
        directions = offset * inv_dist.unsqueeze(2)
        intensity = self.intensity.to(positions.device, dtype)
        return shade_many(surface, directions, intensity, view_dir, falloff=inv_dist * inv_dist)

    def irradiance(self, point: Tensor) -> Tensor:
        offset = self.position - point.to(self.position)
        dist2 = (offset * offset).sum(-1, keepdim=True).clamp(min=1e-8)  # (B, K, 1)
        cosine = (offset[..., 2:3] * torch.rsqrt(dist2)).clamp(min=0.0)
        return (self.intensity * cosine / dist2).sum(dim=1)


class DirectionalLight(Light):
    """Lights at infinity (the sun).

    Args:
        direction: direction(s) towards the light, (3,), (B, 3) or (B, K, 3); normalised here.
        irradiance: irradiance on a patch facing the light, linear RGB (or grey).
    """

    def __init__(self, direction: Tensor, irradiance: Tensor | float) -> None:
        self.direction, self.color = _broadcast(
            unit_vectors(_lights(direction, "DirectionalLight.direction"), dim=-1),
            _lights(irradiance, "DirectionalLight.irradiance"),
        )

    def illuminate(self, surface: Surface, positions: Tensor, view_dir: Tensor) -> Tensor:
        device = positions.device
        directions = self.direction.to(device)[..., None, None]  # (B, K, 3, 1, 1)
        return shade_many(surface, directions, self.color.to(device), view_dir)

    def irradiance(self, point: Tensor) -> Tensor:
        return (self.color * self.direction[..., 2:3].clamp(min=0.0)).sum(dim=1)


def hemisphere_directions(count: int) -> Tensor:
    """``count`` spherical-Fibonacci directions evenly covering the upper hemisphere: (K, 3).

    Equal-area by construction (``z`` uniform in (0, 1]), deterministic, first one near the zenith.
    """
    if count < 1:
        raise ValueError(f"hemisphere_directions: count={count}, expected >= 1")
    k = torch.arange(count, dtype=torch.float64)
    z = 1.0 - (k + 0.5) / count
    radius = torch.sqrt((1.0 - z * z).clamp(min=0.0))
    phi = k * math.pi * (3.0 - math.sqrt(5.0))  # golden angle
    return torch.stack([radius * torch.cos(phi), radius * torch.sin(phi), z], dim=-1).float()


class EnvironmentLight(Light):
    """Distant light from the whole upper hemisphere, as K directional cells with a spread.

    Build it with :meth:`from_equirect` (any environment map, e.g. :func:`procedural_sky` or
    :func:`neuropbr.render.hdr.read_hdr`).

    Args:
        directions: (B|1, K, 3) unit directions of the cells' light.
        colors: (B|1, K, 3) irradiance each cell delivers normal to its direction (the integral
            of radiance times solid angle over the cell, times its mean resultant length).
        spread: (B|1, K) angular radius of each cell's light in radians.
    """

    def __init__(self, directions: Tensor, colors: Tensor, spread: Tensor) -> None:
        self.direction = directions
        self.color = colors
        self.spread = spread

    @classmethod
    def from_equirect(
        cls, image: Tensor, *, num_samples: int = 8, rotation_deg: Tensor | float = 0.0
    ) -> EnvironmentLight:
        """Integrate a z-up equirectangular radiance map (see :func:`equirect_directions`) into cells.

        Args:
            image: (3, He, We) or (B, 3, He, We) linear radiance.
            num_samples: K, the number of cells (directional lights) over the upper hemisphere.
            rotation_deg: rotation of the environment about +z, scalar or (B,).

        Returns:
            The environment light. The irradiance it delivers to any plane whose horizon does
            not cut a cell is exact (the map's cosine-weighted integral); only a cell split by
            a tilted plane's horizon is approximated (counted by its mean direction).
        """
        if image.ndim == 3:
            image = image.unsqueeze(0)
        if image.ndim != 4 or image.shape[1] != 3:
            raise ValueError(f"environment map: expected (B, 3, He, We), got {tuple(image.shape)}")
        # Autocast off: its bf16 matmuls would move cell directions by ~1 degree and colours by ~3 %.
        with no_autocast(image):
            return cls._integrate(image.float(), num_samples, rotation_deg)

    @classmethod
    def _integrate(cls, image: Tensor, num_samples: int, rotation_deg: Tensor | float) -> EnvironmentLight:
        """:meth:`from_equirect` on a float32 (B, 3, He, We) map, autocast off."""
        if image.shape[-2] > _MAX_ENV_HEIGHT:
            scale = _MAX_ENV_HEIGHT / image.shape[-2]
            size = (_MAX_ENV_HEIGHT, max(1, round(image.shape[-1] * scale)))
            image = F.interpolate(image, size=size, mode="area")
        batch, _, height, width = image.shape
        device = image.device
        texel_dirs, solid_angle = equirect_directions(height, width, upper_only=True, device=device)
        keep = solid_angle.flatten() > 0
        texel_dirs = texel_dirs.reshape(-1, 3)[keep]  # (N, 3)
        solid_angle = solid_angle.flatten()[keep]  # (N,)
        radiance = image.flatten(2)[:, :, keep].transpose(1, 2)  # (B, N, 3)

        # Rotating the environment by +psi moves the radiance of texel t to direction R(psi) t.
        psi = torch.deg2rad(torch.as_tensor(rotation_deg, dtype=torch.float32, device=device)).reshape(-1)
        cos, sin = torch.cos(psi)[:, None], torch.sin(psi)[:, None]
        x, y, z = texel_dirs.unbind(-1)
        rotated = torch.stack(
            [cos * x - sin * y, sin * x + cos * y, z.expand_as(cos * x)], dim=-1
        )  # (B|1, N, 3)

        batch = max(batch, psi.shape[0])  # one map turned several ways, or one map per element
        radiance = radiance.expand(batch, -1, -1)
        centres = hemisphere_directions(num_samples).to(device)  # (K, 3)
        cell = F.one_hot((rotated @ centres.T).argmax(dim=-1), num_samples).float()  # (B|1, N, K)
        cell = cell.expand(batch, -1, -1)
        weighted = radiance * solid_angle[:, None]  # (B, N, 3): radiance x solid angle
        luminance = weighted @ torch.tensor([0.2126, 0.7152, 0.0722], device=device)  # (B, N)
        total = torch.einsum("bnk,bn->bk", cell, luminance)
        lit = total > 1e-12
        moment = torch.einsum("bnk,bn,bnd->bkd", cell, luminance, rotated.expand(batch, -1, -1))
        # Mean resultant length of the cell's light: 1 for a point, less the more it spreads.
        mean_length = torch.where(lit, moment.norm(dim=-1) / total.clamp(min=1e-12), 1.0)  # (B, K)
        directions = torch.where(lit[..., None], unit_vectors(moment, dim=-1), centres.expand(batch, -1, -1))
        # Any plane whose horizon does not cut the cell receives irradiance n . (integral of L l dw)
        # = |moment| (n . direction): the cell's energy times its mean resultant length.
        colors = torch.einsum("bnk,bnc->bkc", cell, weighted) * mean_length[..., None]
        # A uniform cone of half-angle s has mean resultant length (1 + cos s) / 2; a texel is a
        # small cone itself (radius sqrt(solid angle / pi)), which matters when one holds a sun.
        spread = torch.acos((2.0 * mean_length - 1.0).clamp(-1.0, 1.0))
        texel_radius2 = torch.einsum("bnk,bn,n->bk", cell, luminance, solid_angle / math.pi) / total.clamp(
            min=1e-12
        )
        cell_area = torch.einsum("bnk,n->bk", cell, solid_angle)
        spread = torch.where(
            lit, torch.sqrt(spread * spread + texel_radius2), torch.sqrt(cell_area / math.pi)
        )
        return cls(directions, colors, spread)

    def illuminate(self, surface: Surface, positions: Tensor, view_dir: Tensor) -> Tensor:
        device = positions.device
        return shade_many(
            surface,
            self.direction.to(device)[..., None, None],
            self.color.to(device),
            view_dir,
            spread=self.spread.to(device)[..., None, None],
        )

    def irradiance(self, point: Tensor) -> Tensor:
        return (self.color * self.direction[..., 2:3].clamp(min=0.0)).sum(dim=1)

    def scaled(self, factor: Tensor | float) -> EnvironmentLight:
        """The same environment with its radiance multiplied by ``factor`` (scalar, (B,) or (B, 3))."""
        f = torch.as_tensor(factor, dtype=self.color.dtype, device=self.color.device)
        f = f.reshape(-1, 1, 1) if f.ndim <= 1 else f.reshape(f.shape[0], 1, -1)
        return EnvironmentLight(self.direction, self.color * f, self.spread)


def procedural_sky(
    sun_direction: Tensor,
    zenith: Tensor,
    horizon: Tensor,
    *,
    ground: Tensor | None = None,
    glow: Tensor | float = 0.0,
    glow_width_deg: float = 15.0,
    height: int = 32,
    width: int = 64,
) -> Tensor:
    """A clear-sky radiance map: zenith-to-horizon gradient plus a glow around the sun.

    The sun disc itself is not in the map: add it as a :class:`DirectionalLight` so its shadows
    and highlights stay sharp.

    Args:
        sun_direction: (B, 3) or (3,) direction towards the sun (normalised here).
        zenith: (B, 3) or (3,) linear radiance straight up.
        horizon: (B, 3) or (3,) linear radiance at the horizon.
        ground: (B, 3) or (3,) radiance below the horizon (default: 30 % of the horizon).
        glow: (B, 3), (3,) or scalar radiance added at the sun, falling off with the angle to it.
        glow_width_deg: angular scale of the glow's exponential falloff.
        height, width: size of the equirectangular map.

    Returns:
        (B, 3, height, width) linear radiance, z-up equirectangular (see :func:`equirect_directions`).
    """
    sun = unit_vectors(_lights(sun_direction, "sun_direction")[:, 0], dim=-1)  # (B, 3)
    zenith = _lights(zenith, "zenith")[:, 0]
    horizon = _lights(horizon, "horizon")[:, 0]
    ground = 0.3 * horizon if ground is None else _lights(ground, "ground")[:, 0]
    glow = _lights(glow, "glow")[:, 0]
    dirs, _ = equirect_directions(height, width, device=sun.device)  # (He, We, 3)
    up = dirs[..., 2].clamp(min=0.0)[None, None]  # (1, 1, He, We)
    # Skies are brightest at the horizon and darken quickly with elevation (sqrt profile).
    blend = up.sqrt()
    sky = horizon[:, :, None, None] * (1.0 - blend) + zenith[:, :, None, None] * blend
    # An elementwise dot, not a matmul: autocast or TF32 would round a matmul to ~3 digits.
    angle = torch.acos((dirs * sun[:, None, None]).sum(-1).clamp(-1.0, 1.0))  # (B, He, We)
    sky = sky + glow[:, :, None, None] * torch.exp(-angle / math.radians(glow_width_deg)).unsqueeze(1)
    below = (dirs[..., 2] < 0)[None, None]
    return torch.where(below, ground[:, :, None, None].expand_as(sky), sky)
