"""Decoded cache: equal to PNG loading within uint8 quantisation, invalidation, workers, kills."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from folder_datasets import WrittenDataset, decoded_cache, train_set, write_png_with_bad_zlib
from PIL import Image
from torch.utils.data import DataLoader

import neuropbr.data.cache as cache_module
import neuropbr.data.io as io_module
from neuropbr.data.folder import FolderDataModule
from neuropbr.data.index import DatasetError

QUANTUM = 1.0 / 255.0


def _module(root: Path, **kwargs: Any) -> FolderDataModule:
    settings: dict[str, Any] = {"resolution": 16, "num_workers": 0, "val_ratio": 0.0, "renders": "both"}
    settings.update(kwargs)
    return FolderDataModule(root=str(root), **settings)


def _set_up(root: Path, **kwargs: object) -> FolderDataModule:
    dm = _module(root, **kwargs)
    dm.setup()
    return dm


def _cache_files(dm: FolderDataModule) -> dict[str, int]:
    return {
        str(p.relative_to(decoded_cache(dm).directory)): p.stat().st_mtime_ns
        for p in decoded_cache(dm).directory.rglob("*.npy")
    }


def _assert_close_to_png(cached: dict, png: dict) -> None:
    # Quantising to uint8 moves a value by at most half a step.
    torch.testing.assert_close(cached["views"], png["views"], atol=0.5 * QUANTUM + 1e-6, rtol=0)
    for name in ("albedo", "roughness", "metallic"):
        torch.testing.assert_close(cached["maps"][name], png["maps"][name], atol=0.5 * QUANTUM + 1e-6, rtol=0)
    # Normals: half a step per encoded component, then renormalised.
    torch.testing.assert_close(cached["maps"]["normal"], png["maps"]["normal"], atol=2 * QUANTUM, rtol=0)
    torch.testing.assert_close(
        cached["maps"]["normal"].norm(dim=0), torch.ones_like(png["maps"]["roughness"][0])
    )


@pytest.mark.parametrize("resolution", [16, 24])
def test_cache_equals_png_loading_within_quantisation(
    original_dataset: WrittenDataset, resolution: int
) -> None:
    png = _set_up(original_dataset.root, resolution=resolution)
    cached = _set_up(original_dataset.root, resolution=resolution, cache=True)
    assert (
        decoded_cache(cached).directory
        == original_dataset.root / ".neuropbr_cache" / f"r{resolution}_v3_both_opengl"
    )
    assert len(train_set(cached)) == len(train_set(png)) == 8
    for i in range(8):
        _assert_close_to_png(train_set(cached)[i], train_set(png)[i])
    array = np.load(decoded_cache(cached).views_file(cached.index[0]), mmap_mode="r")
    assert (
        isinstance(array, np.memmap)
        and array.dtype == np.uint8
        and array.shape == (3, 3, resolution, resolution)
    )


def test_directx_normals_are_converted_before_caching(make_dataset: Callable[..., WrittenDataset]) -> None:
    ds = make_dataset(num_samples=2, num_materials=1)
    png = _set_up(ds.root, normal_convention="directx")
    cached = _set_up(ds.root, normal_convention="directx", cache=True)
    _assert_close_to_png(train_set(cached)[0], train_set(png)[0])


def test_second_setup_reuses_the_cache_and_skips_integrity_reads(
    original_dataset: WrittenDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _cache_files(_set_up(original_dataset.root, cache=True))
    reads: list[Path] = []
    real_check = io_module._check_png_chunks

    def counting_check(path: Path) -> None:
        reads.append(path)
        real_check(path)

    monkeypatch.setattr(io_module, "_check_png_chunks", counting_check)
    after = _cache_files(_set_up(original_dataset.root, cache=True))
    assert after == before  # nothing rewritten
    assert reads == []  # every source was proven whole by the decode that built the cache


def test_touching_a_source_rebuilds_only_its_array(original_dataset: WrittenDataset) -> None:
    first = _set_up(original_dataset.root, cache=True)
    before = _cache_files(first)
    view = original_dataset.view("dirty", "sample_3", 1)
    Image.fromarray(np.full((16, 16, 4), 255, np.uint8)).save(view)  # new content, new mtime
    os.utime(view, ns=(view.stat().st_atime_ns, view.stat().st_mtime_ns + 10_000_000))
    second = _set_up(original_dataset.root, cache=True)
    after = _cache_files(second)
    changed = {name for name in after if after[name] != before[name]}
    assert changed == {"views/dirty/sample_3.npy"}
    index = [e.id for e in second.index].index("dirty/sample_3")
    assert torch.all(train_set(second)[index]["views"][1] == 1.0)

    # A touch alone (same bytes, new mtime) also invalidates: the manifest keys on size + mtime.
    material = original_dataset.metadata["sample_0"]
    albedo = original_dataset.map(material, "albedo")
    os.utime(albedo, ns=(albedo.stat().st_atime_ns, albedo.stat().st_mtime_ns + 10_000_000))
    third = _cache_files(_set_up(original_dataset.root, cache=True))
    assert {name for name in third if third[name] != after[name]} == {f"maps/{material}.npy"}


def test_changing_the_resolution_builds_a_new_set_and_a_stale_manifest_discards_all(
    make_dataset: Callable[..., WrittenDataset],
) -> None:
    ds = make_dataset(num_samples=2, num_materials=1)
    small = _set_up(ds.root, cache=True, resolution=16)
    large = _set_up(ds.root, cache=True, resolution=32)
    assert train_set(large)[0]["views"].shape == (3, 3, 32, 32)
    assert decoded_cache(small).directory != decoded_cache(large).directory
    # A manifest that records another resolution (e.g. a set folder copied by hand) is discarded.
    manifest = decoded_cache(small).directory / "manifest.json"
    manifest.write_text(manifest.read_text().replace('"resolution": 16', '"resolution": 64'))
    before = _cache_files(small)
    rebuilt = _set_up(ds.root, cache=True, resolution=16)
    after = _cache_files(rebuilt)
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    _assert_close_to_png(train_set(rebuilt)[0], train_set(_set_up(ds.root, resolution=16))[0])


def test_cache_works_with_loader_workers(original_dataset: WrittenDataset) -> None:
    dm = _set_up(original_dataset.root, cache=True)
    png = _set_up(original_dataset.root)
    loader = DataLoader(train_set(dm), batch_size=4, num_workers=2)
    batches = list(loader)
    assert [s for b in batches for s in b["sample"]] == [e.id for e in dm.index]
    for i, sample in enumerate(b for batch in batches for b in _unbatch(batch)):
        _assert_close_to_png(sample, train_set(png)[i])


def _unbatch(batch: dict) -> list[dict]:
    size = batch["views"].shape[0]
    return [
        {"views": batch["views"][i], "maps": {k: v[i] for k, v in batch["maps"].items()}} for i in range(size)
    ]


def test_a_killed_build_is_completed_by_the_next_one(original_dataset: WrittenDataset) -> None:
    # Kill the builder (os._exit: no cleanup, like SIGKILL) in the middle of writing its 3rd array.
    script = textwrap.dedent(
        f"""
        import os
        import neuropbr.data.cache as cache
        from neuropbr.data.folder import FolderDataModule

        calls = 0
        real_save = cache._save_array

        def dying_save(path, array):
            global calls
            calls += 1
            if calls == 3:
                with cache.atomic_write(path) as handle:
                    handle.write(b"half an array")
                    os._exit(9)
            real_save(path, array)

        cache._save_array = dying_save
        FolderDataModule(root={str(original_dataset.root)!r}, resolution=16, renders="both", val_ratio=0.0,
                         num_workers=0, cache=True).setup()
        """
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 9, proc.stderr
    cache_root = original_dataset.root / ".neuropbr_cache"
    assert list(cache_root.rglob(".*.tmp")), "the kill should leave a temporary file behind"
    finished = list(cache_root.rglob("*.npy"))
    # 8 view arrays + 4 map arrays are needed; the build died part-way (how many other threads
    # finished before the kill varies).
    assert len(finished) < 12
    for path in finished:  # only whole arrays ever get their final name
        assert np.load(path, mmap_mode="r").dtype == np.uint8

    dm = _set_up(original_dataset.root, cache=True)
    assert not list(cache_root.rglob(".*.tmp"))
    png = _set_up(original_dataset.root)
    for i in range(len(train_set(dm))):
        _assert_close_to_png(train_set(dm)[i], train_set(png)[i])


def test_read_only_root_falls_back_to_the_user_cache(
    make_dataset: Callable[..., WrittenDataset], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ds = make_dataset(num_samples=2, num_materials=1)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setattr(cache_module, "_is_writable", lambda folder: False)
    dm = _set_up(ds.root, cache=True)
    directory = decoded_cache(dm).directory
    assert directory.is_relative_to(tmp_path / "xdg" / "neuropbr")
    assert directory.parent.name.startswith("ds-") and directory.name == "r16_v3_both_opengl"
    assert not (ds.root / ".neuropbr_cache").exists()
    explicit = _set_up(ds.root, cache=True, cache_dir=str(tmp_path / "mine"))
    assert decoded_cache(explicit).directory.is_relative_to(tmp_path / "mine")


def test_a_file_only_a_full_decode_rejects_is_found_by_the_cache_build(
    make_dataset: Callable[..., WrittenDataset],
) -> None:
    ds = make_dataset(num_samples=4, num_materials=2)
    bad = ds.view("clean", "sample_0001", 0)
    write_png_with_bad_zlib(bad)
    assert len(_set_up(ds.root).index) == 4  # structure and CRCs are fine: start-up alone passes
    with pytest.raises(DatasetError, match=r"clean/sample_0001 \| .*sample_0001/0.png \| cannot decode"):
        _set_up(ds.root, cache=True)
    dm = _set_up(ds.root, cache=True, on_error="skip")
    assert [e.id for e in dm.index] == ["clean/sample_0000", "clean/sample_0002", "clean/sample_0003"]
