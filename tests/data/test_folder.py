"""The folder data module: the original renderer's layout, conventions, on_error, loaders."""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from folder_datasets import WrittenDataset, corrupt_middle, train_set, truncate, val_set
from omegaconf import DictConfig
from PIL import Image

from neuropbr.build import build_datamodule
from neuropbr.config import AugmentConfig, FolderDataConfig
from neuropbr.data.folder import FolderDataModule
from neuropbr.data.index import DatasetError
from neuropbr.data.sampling import EpochSampler
from neuropbr.data.transforms import Augmentation


def _module(root: Path, **kwargs: Any) -> FolderDataModule:
    settings: dict[str, Any] = {"resolution": 16, "num_workers": 0, "val_ratio": 0.25, "batch_size": 2}
    settings.update(kwargs)
    return FolderDataModule(root=str(root), **settings)


def _all_samples(dm: FolderDataModule) -> list[dict]:
    return [ds[i] for ds in (train_set(dm), val_set(dm)) for i in range(len(ds))]


def test_original_renderer_layout_loads_with_renders_both(original_dataset: WrittenDataset) -> None:
    dm = _module(original_dataset.root, renders="both", resolution=32)
    dm.setup()
    samples = _all_samples(dm)
    assert sorted(s["sample"] for s in samples) == sorted(original_dataset.ids())
    assert {s["sample"].split("/")[0] for s in samples} == {"clean", "dirty"}
    for s in samples:
        assert s["views"].shape == (3, 3, 32, 32) and s["views"].dtype == torch.float32
        assert 0.0 <= s["views"].min() and s["views"].max() <= 1.0
        assert {k: tuple(v.shape) for k, v in s["maps"].items()} == {
            "albedo": (3, 32, 32), "roughness": (1, 32, 32), "metallic": (1, 32, 32), "normal": (3, 32, 32),
        }  # fmt: skip
        for name in ("albedo", "roughness", "metallic"):
            assert 0.0 <= s["maps"][name].min() and s["maps"][name].max() <= 1.0
        torch.testing.assert_close(s["maps"]["normal"].norm(dim=0), torch.ones(32, 32))
        assert s["material"] == original_dataset.metadata[s["sample"].split("/")[1]]
    summary = dm.summary()
    assert (summary["clean"], summary["dirty"], summary["usable"], summary["skipped"]) == (4, 4, 8, 0)
    assert summary["train_samples"] + summary["val_samples"] == 8


def test_rgba_views_drop_alpha_and_16bit_roughness_keeps_precision(original_dataset: WrittenDataset) -> None:
    dm = _module(original_dataset.root, renders="both", val_ratio=0.0)  # native 16 px: no resampling
    dm.setup()
    sample = train_set(dm)[0]
    view = np.asarray(Image.open(original_dataset.view("clean", "sample_0", 0)))
    torch.testing.assert_close(
        sample["views"][0], torch.from_numpy(view[..., :3] / 255.0).permute(2, 0, 1).float()
    )
    rough = np.asarray(Image.open(original_dataset.map(sample["material"], "roughness"))).astype(np.float64)
    torch.testing.assert_close(sample["maps"]["roughness"][0], torch.from_numpy(rough / 65535.0).float())


def test_padded_names_and_single_render_folders_load(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=4, layout="dirty")
    dm = _module(ds.root, renders="dirty")
    dm.setup()
    assert [e.id for e in dm.index] == [f"dirty/sample_{i:04d}" for i in range(4)]
    with pytest.raises(DatasetError, match=r"no input/clean/ folder \(data.renders=clean\)"):
        _module(ds.root, renders="clean", on_error="skip").setup()


def test_directx_convention_flips_green(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=2, num_materials=1)
    loaded = {}
    for convention in ("opengl", "directx"):
        dm = _module(ds.root, normal_convention=convention, val_ratio=0.0)
        dm.setup()
        loaded[convention] = train_set(dm)[0]["maps"]["normal"]
    torch.testing.assert_close(loaded["directx"][1], -loaded["opengl"][1])
    torch.testing.assert_close(loaded["directx"][[0, 2]], loaded["opengl"][[0, 2]])


def _break(ds: WrittenDataset) -> dict[str, Path]:
    """A corrupted view, a truncated view, a missing map; returns ``{sample: path}`` broken."""
    corrupt_middle(ds.view("clean", "sample_0", 1))
    truncate(ds.view("dirty", "sample_3", 2))
    ds.map("mat_c", "metallic").unlink()  # material of samples 2 and 6
    return {
        "clean/sample_0": ds.view("clean", "sample_0", 1),
        "dirty/sample_3": ds.view("dirty", "sample_3", 2),
        "clean/sample_2": ds.map("mat_c", "metallic"),
        "clean/sample_6": ds.map("mat_c", "metallic"),
    }


def test_on_error_raise_lists_every_problem_in_one_error(original_dataset: WrittenDataset) -> None:
    broken = _break(original_dataset)
    with pytest.raises(DatasetError) as err:
        _module(original_dataset.root, renders="both").setup()
    message = str(err.value)
    assert "3 problem(s) (sample | path | problem)" in message
    for path in set(broken.values()):
        assert str(path) in message
    assert "CRC mismatch" in message and "truncated" in message and "missing map 'metallic'" in message
    assert "data.on_error=skip" in message  # says what to do


def test_on_error_skip_skips_exactly_the_bad_samples_and_logs_them(
    original_dataset: WrittenDataset, caplog: pytest.LogCaptureFixture
) -> None:
    broken = _break(original_dataset)
    dm = _module(original_dataset.root, renders="both", on_error="skip")
    with caplog.at_level(logging.WARNING, logger="neuropbr.data"):
        dm.setup()
    assert sorted(e.id for e in dm.index) == sorted(set(original_dataset.ids()) - set(broken))
    assert dm.summary()["skipped"] == 4 and len(dm.problems) == 3
    for path in set(broken.values()):
        assert str(path) in caplog.text
    assert (
        "skipped 4 sample(s): clean/sample_0, clean/sample_2, dirty/sample_3, clean/sample_6" in caplog.text
    )


def test_on_error_skip_still_fails_when_nothing_is_left(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=2, num_materials=1)
    ds.map("mat_a", "albedo").unlink()
    with pytest.raises(DatasetError, match="nothing is left to train on"):
        _module(ds.root, on_error="skip").setup()


def test_a_file_broken_after_start_up_names_sample_and_path(
    make_dataset: Callable[..., WrittenDataset],
) -> None:
    ds = make_dataset(num_samples=2, num_materials=1)
    dm = _module(ds.root, val_ratio=0.0)
    dm.setup()
    ds.view("clean", "sample_0000", 1).write_bytes(b"gone")
    with pytest.raises(DatasetError, match=r"clean/sample_0000 \| .*sample_0000/1.png \| cannot decode"):
        train_set(dm)[0]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"renders": "all"}, "data.renders='all'"),
        ({"on_error": "ignore"}, "data.on_error='ignore'"),
        ({"normal_convention": "vulkan"}, "data.normal_convention='vulkan'"),
        ({"val_ratio": 1.5}, "data.val_ratio=1.5"),
        ({"resolution": 4}, "data.resolution=4"),
    ],
)
def test_bad_settings_fail_naming_the_key(tmp_path: Path, kwargs: dict, needle: str) -> None:
    with pytest.raises(ValueError, match=needle.replace("(", r"\(").replace(".", r"\.")):
        _module(tmp_path, **kwargs)


def test_schema_fields_are_the_constructor_kwargs() -> None:
    def fields(schema: type) -> set[str]:
        return {f.name for f in dataclasses.fields(schema)} - {"_target_"}

    build_time = {"map_resolution"}  # passed by neuropbr.build from decoder.sr_scale
    assert fields(FolderDataConfig) == set(inspect.signature(FolderDataModule).parameters) - build_time
    assert fields(AugmentConfig) == set(inspect.signature(Augmentation).parameters)


@pytest.mark.parametrize("cache", [False, True])
def test_super_resolution_targets_are_served_at_map_resolution(
    make_dataset: Callable[..., WrittenDataset], cache: bool
) -> None:
    dm = _module(make_dataset().root, resolution=16, map_resolution=32, cache=cache)
    dm.setup()
    sample = train_set(dm)[0]
    assert sample["views"].shape[-2:] == (16, 16)
    assert all(m.shape[-2:] == (32, 32) for m in sample["maps"].values())
    norms = sample["maps"]["normal"].norm(dim=0)
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-3)


def test_composed_config_builds_the_module(
    compose_cfg: Callable[..., DictConfig], original_dataset: WrittenDataset
) -> None:
    cfg = compose_cfg(
        "data=folder", f"data.root={original_dataset.root}", "data.renders=both", "data.resolution=16",
        "data.num_workers=0", "data.aligned=false", "data.augment.hue=0.05",
    )  # fmt: skip
    dm = build_datamodule(cfg)
    assert isinstance(dm, FolderDataModule) and dm.renders == "both" and dm.on_error == "raise"
    assert isinstance(dm.augment, Augmentation) and dm.augment.aligned is False and dm.augment.hue == 0.05
    dm.setup()
    assert len(dm.index) == 8


def _batches(root: Path, epoch: int) -> list[dict]:
    dm = _module(root, augment=Augmentation(), num_workers=2, persistent_workers=False, seed=5, val_ratio=0.0)
    dm.setup()
    loader = dm.train_dataloader()
    assert isinstance(loader.sampler, EpochSampler)
    loader.sampler.set_epoch(epoch)
    return list(loader)


def test_loader_with_workers_gives_identical_batches_across_runs(
    make_dataset: Callable[..., WrittenDataset],
) -> None:
    ds = make_dataset(num_samples=6, num_materials=3, size=16)
    first, second = _batches(ds.root, epoch=0), _batches(ds.root, epoch=0)
    assert len(first) == 3 and [b["sample"] for b in first] == [b["sample"] for b in second]
    for a, b in zip(first, second):
        assert a["views"].shape == (2, 3, 3, 16, 16)
        assert torch.equal(a["views"], b["views"])
        assert all(torch.equal(a["maps"][k], b["maps"][k]) for k in a["maps"])
    other_epoch = _batches(ds.root, epoch=1)
    assert [b["sample"] for b in other_epoch] != [b["sample"] for b in first] or not torch.equal(
        other_epoch[0]["views"], first[0]["views"]
    )


def test_validation_is_never_augmented(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=6, num_materials=3)
    dm = _module(ds.root, augment=Augmentation(), val_ratio=0.34)
    dm.setup()
    assert val_set(dm).augment is None and train_set(dm).augment is not None
    val = val_set(dm)
    assert torch.equal(val[(0, 1)]["views"], val[(0, 2)]["views"])


def test_a_mistyped_root_is_reported_not_created(tmp_path: Path) -> None:
    root = tmp_path / "no_such_dataset"
    with pytest.raises(DatasetError, match="dataset root does not exist"):
        _module(root, cache=True, on_error="skip").setup()
    assert not root.exists()
