"""Writers of tiny datasets in the folder layout (16-32 px random images), shared by tests/data.

Imported by name (``from folder_datasets import ...``): pytest puts tests/data on sys.path.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from neuropbr.data.cache import DecodedCache
from neuropbr.data.folder import FolderDataModule, FolderDataset
from neuropbr.data.io import encode_normal
from neuropbr.render.geometry import height_to_normal


@dataclass
class WrittenDataset:
    """What :func:`write_folder_dataset` wrote: the root, the metadata and the sample folders."""

    root: Path
    metadata: dict[str, str]
    variants: dict[str, list[str]] = field(default_factory=dict)

    def view(self, variant: str, sample: str, i: int) -> Path:
        return self.root / "input" / variant / sample / f"{i}.png"

    def map(self, material: str, name: str) -> Path:
        return self.root / "output" / material / f"{name}.png"

    def ids(self) -> list[str]:
        return [f"{v}/{s}" for v, samples in self.variants.items() for s in samples]


def random_normal_rgb(size: int, rng: np.random.Generator) -> np.ndarray:
    """(size, size, 3) uint8 encoding unit normals of a random smooth height field."""
    height = torch.from_numpy(rng.normal(size=(1, 1, size, size)).astype(np.float32))
    height = torch.nn.functional.avg_pool2d(height, 3, stride=1, padding=1, count_include_pad=False) * 3.0
    rgb = encode_normal(height_to_normal(height)[0])
    return np.round(rgb.permute(1, 2, 0).numpy() * 255.0).astype(np.uint8)


def write_folder_dataset(
    root: Path,
    *,
    num_samples: int = 6,
    num_materials: int = 3,
    num_views: int = 3,
    size: int = 16,
    map_size: int | None = None,
    names: str = "padded",
    layout: str = "clean",
    view_mode: str = "RGB",
    roughness_16bit: bool = False,
    seed: int = 0,
) -> WrittenDataset:
    """Write a dataset in the folder layout of docs/architecture.md.

    Args:
        root: dataset root (created).
        num_samples: sample folders; sample ``i`` uses material ``i % num_materials``.
        num_materials: materials under ``output/``.
        num_views: view files per sample (``0.png ..``).
        size: side of the views; ``map_size`` that of the maps (default: ``size``).
        names: ``padded`` (``sample_0000``) or ``plain`` (``sample_0``, the original renderer's).
        layout: ``clean`` or ``dirty`` (every sample there), ``both`` (every sample in both),
            ``alternate`` (even samples in clean/, odd ones in dirty/: the original renderer).
        view_mode: PIL mode of the view PNGs (``RGB`` or ``RGBA``).
        roughness_16bit: write roughness as a 16-bit grayscale PNG.
        seed: random content.

    Returns:
        The :class:`WrittenDataset`.
    """
    rng = np.random.default_rng(seed)
    map_size = map_size or size
    materials = [f"mat_{chr(ord('a') + m)}" for m in range(num_materials)]
    for material in materials:
        folder = root / "output" / material
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (map_size, map_size, 3), dtype=np.uint8)).save(
            folder / "albedo.png"
        )
        if roughness_16bit:
            rough = rng.integers(0, 65536, (map_size, map_size), dtype=np.uint16)
            Image.fromarray(rough).save(folder / "roughness.png")
        else:
            Image.fromarray(rng.integers(0, 256, (map_size, map_size), dtype=np.uint8)).save(
                folder / "roughness.png"
            )
        Image.fromarray(rng.integers(0, 256, (map_size, map_size), dtype=np.uint8)).save(
            folder / "metallic.png"
        )
        Image.fromarray(random_normal_rgb(map_size, rng)).save(folder / "normal.png")
    channels = len(view_mode)
    metadata: dict[str, str] = {}
    written = WrittenDataset(root, metadata, {"clean": [], "dirty": []})
    for i in range(num_samples):
        name = f"sample_{i}" if names == "plain" else f"sample_{i:04d}"
        metadata[name] = materials[i % num_materials]
        variants = {
            "clean": ["clean"],
            "dirty": ["dirty"],
            "both": ["clean", "dirty"],
            "alternate": ["clean" if i % 2 == 0 else "dirty"],
        }[layout]
        for variant in variants:
            folder = root / "input" / variant / name
            folder.mkdir(parents=True, exist_ok=True)
            for v in range(num_views):
                pixels = rng.integers(0, 256, (size, size, channels), dtype=np.uint8)
                if channels == 4:
                    pixels[..., 3] = 255
                Image.fromarray(pixels).save(folder / f"{v}.png")
            written.variants[variant].append(name)
    (root / "input").mkdir(parents=True, exist_ok=True)
    (root / "input" / "render_metadata.json").write_text(json.dumps(metadata, indent=2))
    return written


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file (a render interrupted mid-write)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def corrupt_middle(path: Path) -> None:
    """Overwrite bytes in the middle of a file (bit rot): a PNG's CRC no longer matches."""
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 8] = bytes(255 - b for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))


def write_png_with_bad_zlib(path: Path, size: int = 16) -> None:
    """A PNG whose chunks and CRCs are valid around a pixel stream that is not zlib data: only a
    full decode finds it."""

    def chunk(tag: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", zlib.crc32(tag + payload))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"junk" * 16) + chunk(b"IEND", b"")
    )


def train_set(dm: FolderDataModule) -> FolderDataset:
    """The module's training dataset (after ``setup()``)."""
    assert isinstance(dm.train_set, FolderDataset)
    return dm.train_set


def val_set(dm: FolderDataModule) -> FolderDataset:
    """The module's validation dataset (after ``setup()``)."""
    assert isinstance(dm.val_set, FolderDataset)
    return dm.val_set


def decoded_cache(dm: FolderDataModule) -> DecodedCache:
    """The module's decoded cache (``cache=True``, after ``setup()``)."""
    assert dm.decoded_cache is not None
    return dm.decoded_cache
