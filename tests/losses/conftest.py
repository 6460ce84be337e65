"""Fixtures of the loss tests: random map dicts and a random-init VGG16 weights file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.vgg import cfgs, make_layers

Maps = dict[str, Tensor]


def random_maps(
    batch: int = 2,
    size: int = 8,
    *,
    dtype: torch.dtype = torch.float32,
    low: float = 0.05,
    high: float = 0.95,
    tilt: float = 0.5,
    generator: torch.Generator | None = None,
) -> Maps:
    """Maps in the ranges of neuropbr/maps.py: values in [low, high], unit normals tilted by ~``tilt``."""

    def uniform(channels: int) -> Tensor:
        return low + (high - low) * torch.rand(batch, channels, size, size, generator=generator, dtype=dtype)

    offset = tilt * torch.randn(batch, 3, size, size, generator=generator, dtype=dtype)
    normal = F.normalize(offset + torch.tensor([0.0, 0.0, 1.0], dtype=dtype).view(1, 3, 1, 1), dim=1)
    return {"albedo": uniform(3), "roughness": uniform(1), "metallic": uniform(1), "normal": normal}


@pytest.fixture
def make_maps() -> Callable[..., Maps]:
    return random_maps


@pytest.fixture(scope="session")
def vgg_weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-init VGG16 weights saved like the real files: ``features.pth`` (what the error
    message tells users to make) and ``full.pth`` (a torchvision ``vgg16()`` state dict)."""
    folder = tmp_path_factory.mktemp("vgg16")
    features = make_layers(cfgs["D"]).state_dict()
    torch.save(features, folder / "features.pth")
    full = {f"features.{key}": value for key, value in features.items()}
    full["classifier.6.bias"] = torch.zeros(1000)  # a full state dict also holds the classifier
    torch.save(full, folder / "full.pth")
    return folder
