"""Image grids logged during validation: input views, prediction vs target, error heatmaps.

Each grid is written as a PNG with its labels drawn on it (Pillow): a header naming every column
(``view 1`` ..., ``albedo`` / ``prediction`` ..., ``albedo`` / ``|error|`` ...) and, under the
error heatmaps, the colour scale (0 to 1 of |prediction - target|, or 0 to 90 degrees of normal
angle), so an image read in MLflow's image slider says what it shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

from neuropbr.maps import PBR_MAPS
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
    """Per sample a row of absolute-error heatmaps, one per map (normals: angular error / 90 deg);
    the colour scale is :func:`colormap` over [0, 1] (:data:`ERROR_SCALE` says what 1 means)."""
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


#: What the top of the error colour scale means, per map.
ERROR_SCALE = {"albedo": "1", "roughness": "1", "metallic": "1", "normal": "90 deg"}
_PADDING = 2  # make_grid's padding around every tile
_TEXT = (235, 235, 235)


def column_labels(kind: str, num_views: int = 0) -> list[tuple[str, str]]:
    """Two-line labels of a grid's columns: ``input_views``, ``comparison`` or ``error_heatmaps``."""
    if kind == "input_views":
        return [(f"view {i + 1}", "") for i in range(num_views)]
    if kind == "comparison":
        return [(name, role) for role in ("prediction", "target") for name in PBR_MAPS]
    if kind == "error_heatmaps":
        return [(name, "angle" if name == "normal" else "|error|") for name in PBR_MAPS]
    raise ValueError(f"kind={kind!r}: expected input_views, comparison or error_heatmaps")


def labelled_image(
    grid: Tensor, labels: Sequence[tuple[str, str]], tile_width: int, colour_scale: bool = False
) -> Image.Image:
    """A ``make_grid`` image with a header naming its columns (and the error colour scale below).

    Args:
        grid: (3, H, W) in [0, 1], tiles of ``tile_width`` with make_grid's padding of 2.
        labels: two lines per column.
        tile_width: width of one tile in pixels.
        colour_scale: add the heatmaps' colour bar, from 0 (no error) to the top of :data:`ERROR_SCALE`.
    """
    body = Image.fromarray(_to_uint8(grid))
    font = _font(max(8, min(14, tile_width // 5)))
    draw_probe = ImageDraw.Draw(body)
    line = int(font.getbbox("Ag")[3]) + 2
    footer = 3 * line + 10 if colour_scale else 0
    canvas = Image.new("RGB", (body.width, 2 * line + 4 + body.height + footer), (20, 20, 20))
    draw = ImageDraw.Draw(canvas)
    for index, lines in enumerate(labels):
        centre = _PADDING + index * (tile_width + _PADDING) + tile_width / 2
        for row, text in enumerate(lines):
            text = _fit(draw_probe, text, font, tile_width + _PADDING)
            draw.text((centre, 2 + row * line), text, font=font, fill=_TEXT, anchor="ma")
    top = 2 * line + 4
    canvas.paste(body, (0, top))
    if colour_scale:
        _draw_colour_scale(canvas, draw, font, top + body.height + 4, line)
    return canvas


def _draw_colour_scale(
    canvas: Image.Image,
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    top: int,
    line: int,
) -> None:
    width = max(canvas.width - 2 * _PADDING, 2)
    ramp = colormap(torch.linspace(0, 1, width).view(1, 1, 1, width)).squeeze(0)  # (3, 1, W)
    bar = Image.fromarray(_to_uint8(ramp.expand(3, line, width)))
    canvas.paste(bar, (_PADDING, top))
    below = top + line + 2
    draw.text((_PADDING, below), "0", font=font, fill=_TEXT)
    draw.text((canvas.width - _PADDING, below), "1 | 90 deg", font=font, fill=_TEXT, anchor="ra")
    caption = "error scale: |prediction - target| (maps in [0, 1]); normal: angle"
    draw.text((_PADDING, below + line), _fit(draw, caption, font, canvas.width), font=font, fill=_TEXT)


def _fit(
    draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, width: float
) -> str:
    """``text``, cut (with a trailing '.') until it fits ``width`` pixels."""
    while len(text) > 1 and draw.textlength(text, font=font) > width:
        text = text[:-2] + "."
    return text


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def _to_uint8(image: Tensor) -> np.ndarray:
    array = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    return (array * 255.0 + 0.5).astype(np.uint8)


def write_validation_images(
    directory: Path, epoch: int, views: Tensor, pred: dict[str, Tensor], target: dict[str, Tensor]
) -> dict[str, Path]:
    """Write the labelled grids as ``epoch_XXXX_<name>.png``; returns ``{name: path}`` with the
    guide's names (``input_views``, ``comparison``) and ``error_heatmaps``."""
    directory.mkdir(parents=True, exist_ok=True)
    grids = {
        "input_views": (views_grid(views), views.shape[-1], column_labels("input_views", views.shape[1])),
        "comparison": (
            comparison_grid(pred, target),
            target["albedo"].shape[-1],
            column_labels("comparison"),
        ),
        "error_heatmaps": (
            error_grid(pred, target),
            target["albedo"].shape[-1],
            column_labels("error_heatmaps"),
        ),
    }
    written = {}
    for name, (grid, tile_width, labels) in grids.items():
        written[name] = directory / f"epoch_{epoch:04d}_{name}.png"
        labelled_image(grid, labels, tile_width, colour_scale=name == "error_heatmaps").save(written[name])
    return written
