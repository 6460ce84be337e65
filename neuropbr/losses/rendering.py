"""Differentiable rendering loss: compare prediction and target as they look under light.

Maps that differ in ways the per-pixel terms weigh poorly (a roughness error that moves a
highlight, a normal error that only shows at grazing light) differ clearly once rendered. Both
map sets are shaded with :func:`neuropbr.render.brdf.shade` under the same K light/view
configurations and compared as L1 between ``log(render + eps)``: the log keeps highlights from
swamping the diffuse parts of the image, and ``eps`` keeps it finite in shadow.

Geometry follows :mod:`neuropbr.render.geometry`: the sample is the square [-1, 1]^2 of the
z = 0 plane, point lights and cameras sit above it. Per call half of the configurations are
*diffuse-style* (light and camera independently on the upper hemisphere) and half *specular*
(camera at the mirror image of the light about +z through a random point of the sample, so the
highlight lands on the sample); an odd K gives the extra one to the diffuse half.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import torch
from torch import Tensor, nn

from neuropbr.losses.reconstruction import map_pair
from neuropbr.maps import PBR_MAPS
from neuropbr.render.brdf import shade
from neuropbr.render.geometry import directions_to, point_light, texel_positions

#: Distance of lights and cameras from the point they face, in sample half-widths.
DISTANCE_RANGE = (2.0, 4.0)
#: Lowest cos(zenith angle) of diffuse-style lights and cameras (about 78 degrees from +z).
DIFFUSE_MIN_COS = 0.2
#: Lowest cos(zenith angle) of specular lights (about 66 degrees): mirror pairs any lower see
#: mostly Fresnel glare.
SPECULAR_MIN_COS = 0.4
#: Specular pairs face a point drawn uniformly in [-SPECULAR_AIM, SPECULAR_AIM]^2.
SPECULAR_AIM = 0.5


class RenderConfigs(NamedTuple):
    """K light/camera configurations per sample.

    Attributes:
        light_position: (K, B, 3) world positions of point lights.
        light_intensity: (K, B, 1) white radiant intensity.
        camera_position: (K, B, 3) world positions of the cameras.
    """

    light_position: Tensor
    light_intensity: Tensor
    camera_position: Tensor

    @property
    def num_configs(self) -> int:
        return self.light_position.shape[0]

    def to(self, device: torch.device | str) -> RenderConfigs:
        """The same configurations on ``device``."""
        return RenderConfigs(*(t.to(device) for t in self))


def _uniform(
    shape: tuple[int, ...], low: float, high: float, device: torch.device, generator: torch.Generator | None
) -> Tensor:
    return low + (high - low) * torch.rand(shape, device=device, generator=generator)


def _hemisphere_directions(
    count: int, min_cos: float, device: torch.device, generator: torch.Generator | None
) -> Tensor:
    """(count, 3) unit vectors uniform in solid angle over the cap ``z >= min_cos``."""
    cos_theta = _uniform((count,), min_cos, 1.0, device, generator)
    phi = _uniform((count,), 0.0, 2.0 * math.pi, device, generator)
    sin_theta = (1.0 - cos_theta.square()).sqrt()
    return torch.stack([sin_theta * phi.cos(), sin_theta * phi.sin(), cos_theta], dim=-1)


def sample_render_configs(
    num_configs: int,
    batch_size: int,
    device: torch.device | str = "cpu",
    generator: torch.Generator | None = None,
) -> RenderConfigs:
    """Draw ``num_configs`` light/camera configurations for each of ``batch_size`` samples.

    Lights are white with intensity ``pi * d^2`` (``d`` its distance to the point it faces), so
    a white Lambertian texel facing the light reflects radiance ~1 whatever the distance.

    Args:
        num_configs: K >= 1; ``K - K // 2`` diffuse-style, ``K // 2`` specular.
        batch_size: B.
        device: where to draw. With ``generator=None`` this uses the global RNG of that device
            (so a checkpointed RNG state reproduces the draws).
        generator: optional generator on ``device``.

    Returns:
        :class:`RenderConfigs` with (K, B, ...) float32 tensors on ``device``.
    """
    if num_configs < 1:
        raise ValueError(f"loss.render_num_configs must be >= 1, got {num_configs}")
    device = torch.device(device)
    num_specular = num_configs // 2
    num_diffuse = num_configs - num_specular

    # Diffuse-style: light and camera independently over the sample centre.
    count = num_diffuse * batch_size
    light_dir = _hemisphere_directions(count, DIFFUSE_MIN_COS, device, generator)
    camera_dir = _hemisphere_directions(count, DIFFUSE_MIN_COS, device, generator)
    light_dist = _uniform((count, 1), *DISTANCE_RANGE, device, generator)
    camera_dist = _uniform((count, 1), *DISTANCE_RANGE, device, generator)
    diffuse_light = light_dir * light_dist
    diffuse_camera = camera_dir * camera_dist

    # Specular: camera at the light's mirror image about the +z axis through an aim point, at the
    # same distance, so the mirror direction of the light hits the camera at the aim point.
    count = num_specular * batch_size
    spec_dir = _hemisphere_directions(count, SPECULAR_MIN_COS, device, generator)
    spec_dist = _uniform((count, 1), *DISTANCE_RANGE, device, generator)
    aim_xy = _uniform((count, 2), -SPECULAR_AIM, SPECULAR_AIM, device, generator)
    aim = torch.cat([aim_xy, torch.zeros(count, 1, device=device)], dim=-1)
    mirror = spec_dir * torch.tensor([-1.0, -1.0, 1.0], device=device)
    specular_light = aim + spec_dir * spec_dist
    specular_camera = aim + mirror * spec_dist

    light_position = torch.cat([diffuse_light, specular_light]).view(num_configs, batch_size, 3)
    camera_position = torch.cat([diffuse_camera, specular_camera]).view(num_configs, batch_size, 3)
    light_dist = torch.cat([light_dist, spec_dist]).view(num_configs, batch_size, 1)
    return RenderConfigs(light_position, math.pi * light_dist.square(), camera_position)


def render_maps(maps: Mapping[str, Tensor], configs: RenderConfigs) -> Tensor:
    """Linear radiance of the sample under each configuration.

    Args:
        maps: the four maps, each (B, C, H, W) (ranges of neuropbr/maps.py).
        configs: (K, B, ...) configurations.

    Returns:
        (K, B, 3, H, W) linear radiance (>= 0), float32 (float64 for float64 maps).
    """
    height, width = maps["albedo"].shape[-2:]
    positions = texel_positions(height, width, device=maps["albedo"].device)  # (1, 3, H, W)
    renders = []
    for k in range(configs.num_configs):
        light_dir, radiance = point_light(configs.light_position[k], configs.light_intensity[k], positions)
        view_dir, _ = directions_to(configs.camera_position[k], positions)
        renders.append(shade(dict(maps), light_dir, view_dir, radiance))  # (B, 3, H, W)
    # Clamped because maps slightly outside their range (e.g. metallic > 1) could shade negative.
    return torch.stack(renders).clamp(min=0.0)


def rendering_loss(
    pred: Mapping[str, Tensor],
    target: Mapping[str, Tensor],
    configs: RenderConfigs,
    eps: float = 0.01,
) -> Tensor:
    """Mean ``|log(render(pred) + eps) - log(render(target) + eps)|`` over the configurations.

    Args:
        pred: predicted maps, each (B, C, H, W).
        target: target maps of the same shapes.
        configs: (K, B, ...) light/camera configurations, shared by both renders.
        eps: > 0, radiance added before the log (keeps shadows finite and down-weights them).

    Returns:
        Scalar (float32; float64 for float64 maps); 0 for identical maps.
    """
    pairs = {name: map_pair(pred, target, name) for name in PBR_MAPS}
    pred_render = render_maps({name: p for name, (p, _) in pairs.items()}, configs)
    with torch.no_grad():
        target_render = render_maps({name: t for name, (_, t) in pairs.items()}, configs)
    return ((pred_render + eps).log() - (target_render + eps).log()).abs().mean()


class RenderingLoss(nn.Module):
    """:func:`rendering_loss` under freshly drawn configurations on every call.

    In training mode the K configurations come from the global RNG of the maps' device (a
    resumed run that restores the RNG state draws the same ones). In eval mode they come from a
    private generator seeded with ``eval_seed`` on each call, so a validation loss is the same
    number every epoch and validation does not advance the training RNG.

    Args:
        num_configs: K light/view configurations per call (``loss.render_num_configs``), >= 1.
        eps: ``loss.render_eps``, > 0.
        eval_seed: seed of the eval-mode configurations.
    """

    def __init__(self, num_configs: int = 4, eps: float = 0.01, eval_seed: int = 0) -> None:
        super().__init__()
        if num_configs < 1:
            raise ValueError(f"loss.render_num_configs must be >= 1, got {num_configs}")
        if not eps > 0:
            raise ValueError(f"loss.render_eps must be > 0, got {eps}")
        self.num_configs = num_configs
        self.eps = eps
        self.eval_seed = eval_seed

    def forward(self, pred: Mapping[str, Tensor], target: Mapping[str, Tensor]) -> Tensor:
        """Scalar rendering loss of two map dicts, each map (B, C, H, W)."""
        albedo, _ = map_pair(pred, target, "albedo")
        batch_size, device = albedo.shape[0], albedo.device
        if self.training:
            configs = sample_render_configs(self.num_configs, batch_size, device)
        else:
            generator = torch.Generator().manual_seed(self.eval_seed)
            configs = sample_render_configs(self.num_configs, batch_size, "cpu", generator).to(device)
        return rendering_loss(pred, target, configs, self.eps)

    def extra_repr(self) -> str:
        return f"num_configs={self.num_configs}, eps={self.eps}"
