"""Image grids logged during validation: input views, prediction vs target, error heatmaps."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torchvision.utils import make_grid, save_image

from neuropbr.models.contracts import PBR_MAPS
from neuropbr.utils.tensors import unit_vectors

# A few stops of the "inferno" colour map: dark = no error, bright yellow = large error.
_INFERNO = torch.tensor(
    [
        [0.001, 0.000, 0.014],
        [0.258, 0.039, 0.406],
        [0.578, 0.148, 0.404],
        [0.865, 0.317, 0.226],
        [0.988, 0.645, 0.040],
        [0.988, 0.998, 0.645],
    ]
)


def colormap(values: Tensor) -> Tensor:
    """(N, 1, H, W) in [0, 1] -> (N, 3, H, W) inferno colours (piecewise-linear)."""
    stops = _INFERNO.to(values.device)
    # NaN (a diverged prediction) shows as the maximum error instead of breaking the lookup.
    pos = values.nan_to_num(nan=1.0).clamp(0, 1).squeeze(1) * (len(stops) - 1)  # (N, H, W)
    low = pos.floor().long().clamp(max=len(stops) - 2)
    frac = (pos - low).unsqueeze(-1)
    rgb = stops[low] * (1 - frac) + stops[low + 1] * frac  # (N, H, W, 3)
    return rgb.permute(0, 3, 1, 2)


def displayable(name: str, value: Tensor) -> Tensor:
    """A map as an RGB image in [0, 1]: normals encoded (n + 1) / 2, grey maps repeated."""
    if name == "normal":
        value = (value + 1) * 0.5
    if value.shape[1] == 1:
        value = value.expand(-1, 3, -1, -1)
    return value.float().clamp(0, 1)


def views_grid(views: Tensor) -> Tensor:
    """(N, V, 3, H, W) -> one image: a row of V views per sample."""
    v = views.shape[1]
    return make_grid(views.flatten(0, 1).float().clamp(0, 1), nrow=v, padding=2)


def comparison_grid(pred: dict[str, Tensor], target: dict[str, Tensor]) -> Tensor:
    """Per sample a row: albedo, roughness, metallic, normal predicted, then the same targets."""
    tiles = []
    n = target["albedo"].shape[0]
    size = target["albedo"].shape[-2:]
    for i in range(n):
        for source in (pred, target):
            for name in PBR_MAPS:
                tile = displayable(name, source[name][i : i + 1])
                if tile.shape[-2:] != size:  # super-resolved predictions: show at the target size
                    tile = torch.nn.functional.interpolate(tile, size=size, mode="area")
                tiles.append(tile)
    return make_grid(torch.cat(tiles), nrow=2 * len(PBR_MAPS), padding=2)


def error_grid(pred: dict[str, Tensor], target: dict[str, Tensor]) -> Tensor:
    """Per sample a row of absolute-error heatmaps, one per map (normals: angular error / 90 deg)."""
    tiles = []
    for name in PBR_MAPS:
        p, t = pred[name].float(), target[name].float()
        if p.shape[-2:] != t.shape[-2:]:
            p = torch.nn.functional.interpolate(p, size=t.shape[-2:], mode="area")
        if name == "normal":
            cos = (unit_vectors(p) * t).sum(1, keepdim=True).clamp(-1, 1)
            err = torch.rad2deg(torch.acos(cos)) / 90.0
        else:
            err = (p - t).abs().mean(1, keepdim=True)
        tiles.append(colormap(err))
    stacked = torch.stack(tiles, dim=1).flatten(0, 1)  # (N * 4, 3, H, W), row-major per sample
    return make_grid(stacked, nrow=len(PBR_MAPS), padding=2)


def write_validation_images(
    directory: Path, epoch: int, views: Tensor, pred: dict[str, Tensor], target: dict[str, Tensor]
) -> dict[str, Path]:
    """Write the grids as ``epoch_XXXX_<name>.png``; returns ``{name: path}`` with the guide's
    names (``input_views``, ``comparison``) and ``error_heatmaps``."""
    directory.mkdir(parents=True, exist_ok=True)
    grids = {
        "input_views": views_grid(views),
        "comparison": comparison_grid(pred, target),
        "error_heatmaps": error_grid(pred, target),
    }
    written = {}
    for name, image in grids.items():
        written[name] = directory / f"epoch_{epoch:04d}_{name}.png"
        save_image(image, written[name])
    return written
