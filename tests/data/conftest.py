"""Fixtures writing tiny datasets in the folder layout (helpers in ``folder_datasets.py``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from folder_datasets import WrittenDataset, write_folder_dataset


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[..., WrittenDataset]:
    """``make_dataset(name="ds", **kwargs)`` writes :func:`write_folder_dataset` under ``tmp_path``."""

    def _make(name: str = "ds", **kwargs: object) -> WrittenDataset:
        return write_folder_dataset(tmp_path / name, **kwargs)  # type: ignore[arg-type]

    return _make


@pytest.fixture
def original_dataset(make_dataset: Callable[..., WrittenDataset]) -> WrittenDataset:
    """The original renderer's layout: plain names, RGBA renders, 16-bit roughness, samples split
    across clean/ and dirty/ (each sample in exactly one of them)."""
    return make_dataset(
        "original", num_samples=8, num_materials=4, names="plain", layout="alternate", view_mode="RGBA",
        roughness_16bit=True,
    )  # fmt: skip
