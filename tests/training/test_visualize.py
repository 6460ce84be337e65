"""Validation image grids: labelled columns, the error colour scale, and MLflow's stepped images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuropbr.maps import PBR_CHANNELS, PBR_MAPS
from neuropbr.training.visualize import _INFERNO, column_labels, write_validation_images

TILE = 48


def _maps(n: int) -> dict[str, torch.Tensor]:
    maps = {name: torch.rand(n, PBR_CHANNELS[name], TILE, TILE) for name in PBR_MAPS}
    maps["normal"] = torch.nn.functional.normalize(maps["normal"] * 2 - 1, dim=1)
    return maps


@pytest.fixture
def grids(tmp_path: Path) -> dict[str, Path]:
    return write_validation_images(tmp_path, 3, torch.rand(2, 3, 3, TILE, TILE), _maps(2), _maps(2))


def _header_has_text(image: np.ndarray, columns: int) -> list[bool]:
    """Per column, whether the header above the first tile row holds label pixels (bright text on
    the dark header)."""
    first_tile_row = int(np.argmax(image.max(axis=(1, 2)) == 0))  # make_grid's black padding row
    header = image[:first_tile_row]
    return [
        bool((header[:, 2 + i * (TILE + 2) : 2 + i * (TILE + 2) + TILE] > 200).any()) for i in range(columns)
    ]


def test_every_column_is_labelled(grids: dict[str, Path]) -> None:
    assert set(grids) == {"input_views", "comparison", "error_heatmaps"}
    for name, columns in (("input_views", 3), ("comparison", 8), ("error_heatmaps", 4)):
        image = np.asarray(Image.open(grids[name]).convert("RGB"))
        grid_height = 2 + 2 * (TILE + 2)  # two samples, one row each
        assert image.shape[0] > grid_height and image.shape[1] == 2 + columns * (TILE + 2)
        assert all(_header_has_text(image, columns)), name
    assert column_labels("comparison")[:5] == [
        ("albedo", "prediction"),
        ("roughness", "prediction"),
        ("metallic", "prediction"),
        ("normal", "prediction"),
        ("albedo", "target"),
    ]
    assert column_labels("error_heatmaps")[3] == ("normal", "angle")


def test_error_heatmaps_show_the_colour_scale(grids: dict[str, Path]) -> None:
    image = np.asarray(Image.open(grids["error_heatmaps"]).convert("RGB")).astype(int)
    expected_low, expected_high = (_INFERNO[0] * 255).round().int(), (_INFERNO[-1] * 255).round().int()
    # The bar's row: its first pixel is the scale's "no error" colour, its last the maximum's.
    rows = [
        y
        for y in range(image.shape[0])
        if np.abs(image[y, 2] - expected_low.numpy()).max() <= 2
        and np.abs(image[y, -3] - expected_high.numpy()).max() <= 2
    ]
    assert rows, "no colour bar from the lowest to the highest error colour"
    assert rows[0] > 2 + 2 * (TILE + 2)  # below the heatmaps


def test_bad_grid_kind_names_it() -> None:
    with pytest.raises(ValueError, match="kind='views'"):
        column_labels("views")
