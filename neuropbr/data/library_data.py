"""``data=library``: train on a material library, rendering samples on the fly (nothing written).

Like ``data=synthetic``, but the materials are a library's (:mod:`neuropbr.data.library`): sample
``k`` of material ``M`` is the same crop, cameras, lights and dirt as ``python -m neuropbr.synth
materials=...`` writes for it with the same seed and settings (:mod:`neuropbr.data.library_scene`).
The dataset holds ``samples_per_material`` samples per material; the per-epoch sample seed only
drives augmentation and, with ``renders=both``, which render is served.

Decoding a texture set (often 2K-4K PNGs) costs far more than rendering a crop, so decoded
textures are cached: shrunk once to the side the smallest crop needs, kept in memory (the last
``memory_cache`` materials of each process) and, with ``cache=true`` (default), on disk as
float16 ``.npy`` arrays read through ``np.load(mmap_mode="r")`` (loader workers share them
through the page cache; only the crop's box is read). The disk cache is keyed on every source
file's path, size and modification time.

The split is by material, or by family (``data.split=family``) where the library's folders,
names or metadata give one (see :mod:`neuropbr.data.library`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import Dataset

from neuropbr.data.cache import DEFAULT_CACHE_FOLDER, user_cache_root
from neuropbr.data.datamodule import PBRDataModule, SampleKey, unpack_key
from neuropbr.data.library import (
    LibraryMaterial,
    families_of,
    load_material,
    require_materials,
    scan_library,
)
from neuropbr.data.library_scene import LibraryScene, find_hdris
from neuropbr.data.split import split_samples
from neuropbr.utils.choices import choice
from neuropbr.utils.files import atomic_write
from neuropbr.utils.seeding import derive_seed

log = logging.getLogger(__name__)

Augment = Callable[[Tensor, dict[str, Tensor], int], tuple[Tensor, dict[str, Tensor]]]
_CACHE_VERSION = 1
_KINDS = ("albedo", "roughness", "metallic", "normal")
_CHANNELS = {"albedo": 3, "roughness": 1, "metallic": 1, "normal": 3}


class TextureCache:
    """Decoded library textures (see the module docstring).

    Args:
        max_side: textures are shrunk so their shorter side is at most this.
        directory: disk cache folder, or None for memory only.
        memory_items: materials kept decoded per process.
    """

    def __init__(self, max_side: int, directory: Path | None = None, memory_items: int = 8) -> None:
        self.max_side = max_side
        self.directory = directory
        self.memory_items = memory_items
        self._memory: OrderedDict[str, dict[str, Tensor]] = OrderedDict()

    def _file(self, material: LibraryMaterial) -> Path:
        assert self.directory is not None
        sources = [
            [str(s.path), s.path.stat().st_size, s.path.stat().st_mtime_ns, s.channel, s.invert, s.convention,
             s.colour_space, kind]
            for kind, s in sorted(material.sources.items())
        ]  # fmt: skip
        key = json.dumps([_CACHE_VERSION, self.max_side, sources, sorted(material.defaults.items())])
        return (
            self.directory / f"{material.slug}-{hashlib.blake2b(key.encode(), digest_size=8).hexdigest()}.npy"
        )

    def get(self, material: LibraryMaterial) -> dict[str, Tensor]:
        """The material's four maps, (C, H, W) each (float16 views of the disk cache, or float32)."""
        hit = self._memory.get(material.name)
        if hit is not None:
            self._memory.move_to_end(material.name)
            return hit
        maps = self._load(material)
        self._memory[material.name] = maps
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)
        return maps

    def _load(self, material: LibraryMaterial) -> dict[str, Tensor]:
        if self.directory is None:
            decoded = load_material(material, max_side=self.max_side)
            return {kind: decoded[kind] for kind in _KINDS}
        path = self._file(material)
        if not path.is_file():
            decoded = load_material(material, max_side=self.max_side)
            stacked = torch.cat([decoded[kind] for kind in _KINDS]).to(torch.float16).numpy()
            with atomic_write(path) as handle:
                np.save(handle, stacked)
        array = np.load(path, mmap_mode="r")
        with warnings.catch_warnings():  # read-only memory map: the crop only reads from it
            warnings.simplefilter("ignore", UserWarning)
            stacked_t = torch.from_numpy(array)
        out, start = {}, 0
        for kind in _KINDS:
            out[kind] = stacked_t[start : start + _CHANNELS[kind]]
            start += _CHANNELS[kind]
        return out

    def __getstate__(self) -> dict[str, Any]:
        # Loader workers start with an empty memory cache (memory maps are not pickled).
        return {**self.__dict__, "_memory": OrderedDict()}


def library_cache_dir(root: Path, cache_dir: str | None) -> Path:
    """``<root>/.neuropbr_cache/library``, or under ``cache_dir`` / the user cache when not writable."""
    if cache_dir is None:
        candidate = root / DEFAULT_CACHE_FOLDER / "library"
        try:
            candidate.mkdir(parents=True, exist_ok=True)
            probe = candidate / ".write_probe"
            probe.touch()
            probe.unlink()
            return candidate
        except OSError:
            pass
    base = Path(cache_dir).expanduser() if cache_dir else user_cache_root()
    digest = hashlib.blake2b(str(root.resolve()).encode(), digest_size=6).hexdigest()
    folder = base / f"{root.name}-{digest}" / "library"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class LibraryDataset(Dataset):
    """Samples of library materials rendered on demand.

    Args:
        scene: draws and renders samples.
        materials: the library's usable materials.
        samples: ``(material index, sample index k)`` of every sample served.
        cache: decoded textures.
        renders: ``clean``, ``dirty`` or ``both`` (one of the two per sample seed).
        augment: ``augment(views, maps, sample_seed)`` or None.
        view_resolution: side of the views when smaller than the scene's (maps keep theirs).
    """

    def __init__(
        self,
        scene: LibraryScene,
        materials: Sequence[LibraryMaterial],
        samples: Sequence[tuple[int, int]],
        *,
        cache: TextureCache,
        renders: str = "clean",
        augment: Augment | None = None,
        view_resolution: int | None = None,
    ) -> None:
        self.scene = scene
        self.materials = list(materials)
        self.samples = list(samples)
        self.cache = cache
        self.renders = renders
        self.augment = augment
        self.view_resolution = view_resolution

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: SampleKey) -> dict[str, Any]:
        position, sample_seed = unpack_key(key)
        material_index, k = self.samples[position]
        material = self.materials[material_index]
        variant = self.renders
        if variant == "both":
            variant = "dirty" if derive_seed(sample_seed, "renders") % 2 else "clean"
        spec = self.scene.spec(material, k)
        with torch.no_grad():  # not inference_mode: the tensors may meet autograd in the training step
            maps, renders = self.scene.render(self.cache.get(material), spec, variants=(variant,))
        views = renders[variant]
        if self.view_resolution is not None and views.shape[-1] != self.view_resolution:
            views = F.interpolate(views, size=(self.view_resolution,) * 2, mode="area")
        if self.augment is not None:
            views, maps = self.augment(views, maps, sample_seed)
        return {
            "views": views,
            "maps": maps,
            "sample": f"{material.slug}__{k:04d}",
            "material": material.name,
        }


class LibraryDataModule(PBRDataModule):
    """``data=library``: a material library rendered on the fly (see the module docstring).

    Args:
        materials: the library folder.
        samples_per_material: samples (crops, scenes) per material in the dataset.
        camera: ``aligned`` or ``perspective`` (then ``aligned`` must be false).
        artifact_strength: scale of the dirty artifacts.
        hdri: a ``.hdr`` file or folder of them; ``hdri_probability`` of the samples use one.
        crop_scale: ``[low, high]`` crop side as a share of the largest crop that fits.
        crop_rotation: turn crops by a random angle.
        layout: a mapping file other than ``<materials>/layout.yaml``.
        roughness_default: constant for materials without roughness (null: layout's, else 0.5).
        on_error: ``raise`` on any library problem, or ``skip`` refused materials.
        cache: keep decoded textures on disk (memory-mapped) as well as in memory.
        cache_dir: where (default ``<materials>/.neuropbr_cache/library``).
        memory_cache: decoded materials kept in memory per process.
        split, val_families: ``material`` or ``family`` (see :mod:`neuropbr.data.split`).
        Others: see :class:`~neuropbr.data.synthetic.SyntheticDataModule`.
    """

    def __init__(
        self,
        *,
        materials: str,
        resolution: int = 256,
        num_views: int = 3,
        renders: str = "clean",
        val_ratio: float = 0.1,
        batch_size: int = 4,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        aligned: bool = True,
        augment: Augment | None = None,
        seed: int = 42,
        samples_per_material: int = 8,
        camera: str = "aligned",
        artifact_strength: float = 1.0,
        hdri: str | None = None,
        hdri_probability: float = 0.5,
        crop_scale: Sequence[float] = (0.25, 1.0),
        crop_rotation: bool = True,
        layout: str | None = None,
        roughness_default: float | None = None,
        on_error: str = "raise",
        cache: bool = True,
        cache_dir: str | None = None,
        memory_cache: int = 8,
        split: str = "material",
        val_families: Sequence[str] | None = None,
        map_resolution: int | None = None,
    ) -> None:
        super().__init__(
            resolution=resolution, map_resolution=map_resolution, num_views=num_views, batch_size=batch_size,
            num_workers=num_workers, pin_memory=pin_memory, persistent_workers=persistent_workers, seed=seed,
        )  # fmt: skip
        renders, on_error, camera, split = choice(renders), choice(on_error), choice(camera), choice(split)
        for key, value, ok, expected in (
            ("renders", renders, renders in ("clean", "dirty", "both"), "clean, dirty or both"),
            ("on_error", on_error, on_error in ("raise", "skip"), "raise or skip"),
            ("samples_per_material", samples_per_material, samples_per_material >= 1, ">= 1"),
            ("val_ratio", val_ratio, 0.0 <= val_ratio < 1.0, "a value in [0, 1)"),
            ("memory_cache", memory_cache, memory_cache >= 1, ">= 1"),
        ):
            if not ok:
                raise ValueError(f"data.{key}={value!r}: expected {expected}")
        if camera == "perspective" and aligned:
            raise ValueError(
                "data.camera=perspective with data.aligned=true: perspective views are not aligned with the maps; "
                "set data.aligned=false"
            )
        self.root = Path(materials).expanduser()
        self.scene = LibraryScene(
            resolution=self.map_resolution, num_views=num_views, camera=camera, artifact_strength=artifact_strength,
            seed=seed, crop_scale=tuple(crop_scale), rotate=crop_rotation, hdris=find_hdris(hdri),
            hdri_probability=hdri_probability,
        )  # fmt: skip
        self.renders = renders
        self.val_ratio = val_ratio
        self.aligned = aligned
        self.augment = augment
        self.samples_per_material = samples_per_material
        self.layout = layout
        self.roughness_default = roughness_default
        self.on_error = on_error
        self.cache = cache
        self.cache_dir = cache_dir
        self.memory_cache = memory_cache
        self.split = split
        self.val_families = list(val_families) if val_families is not None else None
        self.materials: list[LibraryMaterial] = []

    def setup(self) -> None:
        """Scan the library, split by material or family, build the datasets.

        Raises:
            LibraryError: the library has problems (``on_error=raise``) or nothing usable.
        """
        scan = scan_library(self.root, layout=self.layout, roughness_default=self.roughness_default)
        self.materials = require_materials(scan, self.on_error)
        family_of = families_of(self.materials)
        samples = [(m, k) for m in range(len(self.materials)) for k in range(self.samples_per_material)]
        names = [self.materials[m].name for m, _ in samples]
        families = [family_of[name] for name in names]
        train_idx, val_idx = split_samples(
            self.split, names, families, self.val_ratio, self.seed, self.val_families
        )
        directory = library_cache_dir(self.root, self.cache_dir) if self.cache else None
        cache = TextureCache(self.scene.texture_side(), directory, self.memory_cache)

        def dataset(indices: list[int], augment: Augment | None) -> LibraryDataset:
            return LibraryDataset(
                self.scene, self.materials, [samples[i] for i in indices], cache=cache, renders=self.renders,
                augment=augment, view_resolution=self.resolution,
            )  # fmt: skip

        self.train_set = dataset(train_idx, self.augment)
        self.val_set = dataset(val_idx, None)
        log.info(
            "library data %s: %d materials (%d families) x %d samples, %s split: train %d / val %d samples; "
            "%s camera, %d views at %d px, %d HDR map(s), textures cached %s",
            self.root, len(self.materials), len(set(family_of.values())), self.samples_per_material, self.split,
            len(train_idx), len(val_idx), self.scene.camera, self.num_views, self.resolution, len(self.scene.hdris),
            f"in memory and in {directory}" if directory else "in memory",
        )  # fmt: skip
