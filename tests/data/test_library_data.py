"""``data=library`` (on-the-fly library renders, cached textures, material/family split) and ``data=mix``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from library_helpers import write_ambientcg, write_polyhaven
from omegaconf import DictConfig

from neuropbr.build import build_datamodule
from neuropbr.data.io import read_image, to_chw
from neuropbr.data.library_data import LibraryDataModule
from neuropbr.synth_library import synthesize_library

SMALL = {"resolution": 16, "num_views": 2, "num_workers": 0, "batch_size": 2}


def _library(root: Path) -> Path:
    write_ambientcg(root, 1, "Metal", "Metal001")
    write_ambientcg(root, 2, "Metal", "Metal002")
    write_ambientcg(root, 3, "Wood", "Wood001")
    write_ambientcg(root, 4, "Wood", "Wood002")
    return root


def test_serves_what_the_synth_cli_writes(tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    out = tmp_path / "data"
    synthesize_library(out=out, materials=library, samples_per_material=2, seed=7, resolution=16, num_views=2,
                       num_workers=1, progress=False)  # fmt: skip
    module = LibraryDataModule(materials=str(library), samples_per_material=2, seed=7, val_ratio=0.0,
                               renders="dirty", cache=False, augment=None, **SMALL)  # fmt: skip
    module.setup()
    assert module.train_set is not None and len(module.train_set) == 8
    for position in range(len(module.train_set)):
        sample = module.train_set[position]
        for view in range(2):
            on_disk = to_chw(read_image(out / "input" / "dirty" / sample["sample"] / f"{view}.png"), 3)
            assert (on_disk - sample["views"][view]).abs().max() <= 0.5 / 255 + 1e-6
        albedo = to_chw(read_image(out / "output" / sample["sample"] / "albedo.png"), 3)
        assert (albedo - sample["maps"]["albedo"]).abs().max() <= 0.5 / 255 + 1e-6


def test_split_by_material_and_by_family(tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    for split, key in (("material", "material"), ("family", "family")):
        module = LibraryDataModule(materials=str(library), samples_per_material=3, val_ratio=0.4, split=split,
                                   cache=False, **SMALL)  # fmt: skip
        module.setup()
        family = {m.name: m.family for m in module.materials}
        train = {module.train_set[i]["material"] for i in range(len(module.train_set))}  # type: ignore[arg-type]
        val = {module.val_set[i]["material"] for i in range(len(module.val_set))}  # type: ignore[arg-type]
        assert train and val
        group = (lambda m: m) if key == "material" else family.__getitem__
        assert not {group(m) for m in train} & {group(m) for m in val}, (split, train, val)


def test_disk_cache_is_built_once_and_serves_the_same_samples(tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    kwargs = {"materials": str(library), "samples_per_material": 1, "val_ratio": 0.0, **SMALL}
    memory = LibraryDataModule(cache=False, **kwargs)
    cached = LibraryDataModule(cache=True, cache_dir=str(tmp_path / "cache"), **kwargs)
    memory.setup()
    cached.setup()
    first = [cached.train_set[i] for i in range(4)]  # type: ignore[index]
    files = sorted((tmp_path / "cache").rglob("*.npy"))
    assert len(files) == 4
    stamps = [f.stat().st_mtime_ns for f in files]
    again = LibraryDataModule(cache=True, cache_dir=str(tmp_path / "cache"), **kwargs)
    again.setup()
    for i in range(4):
        reference = memory.train_set[i]  # type: ignore[index]
        for sample in (first[i], again.train_set[i]):  # type: ignore[index]
            for name, value in reference["maps"].items():
                assert (sample["maps"][name].float() - value).abs().max() < 2e-3, name  # float16 textures
    assert [f.stat().st_mtime_ns for f in files] == stamps


def test_library_config_composes_and_builds(compose_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    cfg = compose_cfg("data=library", f"data.materials={library}", "data.resolution=16", "data.num_views=2",
                      "data.samples_per_material=2", "data.split=family", "data.num_workers=0")  # fmt: skip
    module = build_datamodule(cfg)
    assert isinstance(module, LibraryDataModule)
    module.setup()
    batch = next(iter(module.train_dataloader()))
    assert batch["views"].shape[1:] == (2, 3, 16, 16) and batch["maps"]["normal"].shape[1:] == (3, 16, 16)
    with pytest.raises(Exception, match="crop_rotation"):
        compose_cfg("data=library", f"data.materials={library}", "data.crop_rotation=sideways")


def test_views_and_maps_are_finite_with_perspective_cameras(tmp_path: Path) -> None:
    write_polyhaven(tmp_path / "lib", 5, "rock_face_03", size=64)
    module = LibraryDataModule(materials=str(tmp_path / "lib"), samples_per_material=2, camera="perspective",
                               aligned=False, val_ratio=0.0, cache=False, **SMALL)  # fmt: skip
    module.setup()
    sample = module.train_set[(1, 3)]  # type: ignore[index]
    assert torch.isfinite(sample["views"]).all() and sample["views"].shape == (2, 3, 16, 16)
    with pytest.raises(ValueError, match=r"data\.camera=perspective with data\.aligned=true"):
        LibraryDataModule(materials=str(tmp_path / "lib"), camera="perspective", **SMALL)
