"""Library rendering: turned crops with turned normals, the folder layout, appending, HDR folders."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from library_helpers import write_ambientcg, write_polyhaven

from neuropbr.data.folder import FolderDataModule
from neuropbr.data.io import encode_normal, read_image, save_image, to_chw
from neuropbr.data.library import LibraryError, load_material, scan_library
from neuropbr.data.library_scene import LibraryScene
from neuropbr.data.transforms import flip_rot90, transform_normals
from neuropbr.render.geometry import height_to_normal
from neuropbr.render.hdr import write_hdr
from neuropbr.render.lights import procedural_sky
from neuropbr.render.materials import generate_material
from neuropbr.render.texture_crop import crop_maps, draw_crop
from neuropbr.synth_library import synthesize_library

TINY = {"resolution": 16, "num_views": 2, "num_workers": 1, "progress": False}


def _library(root: Path, size: int = 48) -> Path:
    write_ambientcg(root, 1, "Metal", "Metal001", size=size)
    write_polyhaven(root, 2, "brick_wall_001", size=size)
    return root


def _angle_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.rad2deg(torch.acos((a * b).sum(0).clamp(-1.0, 1.0)))


@pytest.mark.parametrize("k", [1, 2, 3])
def test_quarter_turn_crops_equal_the_paired_augmentation(k: int) -> None:
    maps = generate_material(4, 32, "bricks").maps
    crop = crop_maps(maps, {"centre": [0.5, 0.5], "side": 1.0, "angle_deg": 90.0 * k}, 32)
    for name, value in maps.items():
        expected = (
            transform_normals(value, hflip=False, vflip=False, k=k)
            if name == "normal"
            else flip_rot90(value, hflip=False, vflip=False, k=k)
        )
        torch.testing.assert_close(crop[name], expected, atol=1e-5, rtol=0)


def test_any_turn_gives_the_normal_map_of_the_turned_height_field() -> None:
    """Crop a height field and its normal map with the same turn: the turned normals must be the
    normals of the turned height (the tangent frame follows the texture), not the old vectors."""
    size, out = 256, 64
    gen = torch.Generator().manual_seed(0)
    height = torch.nn.functional.avg_pool2d(torch.rand(1, 1, size, size, generator=gen), 9, 1, 4) * 40.0
    height = torch.nn.functional.avg_pool2d(height, 9, 1, 4, count_include_pad=False)
    normal = height_to_normal(height, wrap=False)[0]
    crop = {"centre": [0.5, 0.5], "side": out / size, "angle_deg": 37.0}
    turned = crop_maps({"normal": normal, "height": height[0]}, crop, out)
    from_height = height_to_normal(turned["height"][None], wrap=False)[0]
    inner = (slice(None), slice(2, -2), slice(2, -2))  # one-sided differences at the border
    error = _angle_deg(turned["normal"][inner], from_height[inner])
    # The same pixels with the vectors left as they were (a map not named "normal").
    unturned = _angle_deg(crop_maps({"n": normal}, crop, out)["n"][inner], from_height[inner])
    assert error.mean() < 1.0 and error.max() < 6.0, (error.mean(), error.max())
    assert error.mean() < 0.2 * unturned.mean(), (error.mean(), unturned.mean())  # 0.8 vs 6.8 degrees


def test_draw_crop_fits_the_texture_and_never_magnifies_needlessly() -> None:
    rng = random.Random(0)
    for _ in range(200):
        crop = draw_crop(rng, (300, 200), 64, scale=(0.1, 1.0), context=1.5)
        side = crop["side"] * 200
        extent = abs(math.cos(math.radians(crop["angle_deg"]))) + abs(
            math.sin(math.radians(crop["angle_deg"]))
        )
        half = 0.5 * side * 1.5 * extent
        x, y = crop["centre"][0] * 300, crop["centre"][1] * 200
        assert half - 1e-3 <= x <= 300 - half + 1e-3 and half - 1e-3 <= y <= 200 - half + 1e-3
        largest = 200 / (1.5 * extent)
        assert side >= 64 - 1e-3 or side == pytest.approx(largest, rel=1e-4)


def test_written_targets_are_the_library_maps_cropped_and_turned(tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    out = tmp_path / "data"
    summary = synthesize_library(out=out, materials=library, samples_per_material=2, seed=3, **TINY)
    assert summary["samples"] == 4 and summary["materials"] == 2
    metadata = json.loads((out / "input" / "render_metadata.json").read_text())
    params = json.loads((out / "input" / "render_params.json").read_text())
    assert set(metadata) == {
        f"{slug}__{k:04d}" for slug in ("Metal--Metal001_1K-PNG", "brick_wall_001") for k in (0, 1)
    }
    assert params["materials"]["brick_wall_001__0001"]["family"] == "brick_wall"
    scan = scan_library(library).by_name()
    scene = LibraryScene(resolution=16, num_views=2, seed=3)
    for sample, record in params["samples"].items():
        material = scan[record["source"]]
        texture = load_material(material, max_side=scene.texture_side())
        assert record == {
            "material": sample,
            "source": material.name,
            **scene.spec(material, record["index"]),
        }
        expected = crop_maps(
            {k: texture[k] for k in ("albedo", "roughness", "metallic", "normal")}, record["crop"], 16
        )
        folder = out / "output" / sample
        for kind in ("albedo", "roughness", "metallic"):
            on_disk = to_chw(read_image(folder / f"{kind}.png"), expected[kind].shape[0])
            assert (on_disk - expected[kind]).abs().max() <= 0.5 / 255 + 1e-6
        normal = to_chw(read_image(folder / "normal.png"), 3) * 2 - 1
        assert (normal - expected["normal"]).abs().max() <= 1.0 / 255 + 1e-6
        assert record["crop"]["angle_deg"] != 0.0
    module = FolderDataModule(
        root=str(out), resolution=16, num_views=2, renders="both", val_ratio=0.0, num_workers=0
    )
    module.setup()
    assert module.train_set is not None and len(module.train_set) == 8


def test_rerun_appends_samples_and_new_materials_without_redoing(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    write_ambientcg(library, 1, "Metal", "Metal001")
    out = tmp_path / "data"
    synthesize_library(out=out, materials=library, samples_per_material=1, **TINY)
    first = out / "output" / "Metal--Metal001_1K-PNG__0000" / "albedo.png"
    stamp = first.stat().st_mtime_ns
    write_polyhaven(library, 2, "rock_face_03")
    summary = synthesize_library(out=out, materials=library, samples_per_material=2, **TINY)
    assert (summary["rendered"], summary["samples"]) == (3, 4)
    assert first.stat().st_mtime_ns == stamp
    again = synthesize_library(out=out, materials=library, samples_per_material=2, **TINY)
    assert again["rendered"] == 0
    # A fresh dataset with K=2 holds the same bytes: appending changes nothing about samples.
    fresh = tmp_path / "fresh"
    synthesize_library(out=fresh, materials=library, samples_per_material=2, **TINY)
    for path in sorted(p for p in fresh.rglob("*.png")):
        assert path.read_bytes() == (out / path.relative_to(fresh)).read_bytes(), path
    with pytest.raises(FileExistsError, match=r"data\.resolution=24 \(was 16\)"):
        synthesize_library(out=out, materials=library, samples_per_material=2, **{**TINY, "resolution": 24})


def test_perspective_views_see_the_texture_around_the_crop(tmp_path: Path) -> None:
    library = _library(tmp_path / "lib", size=128)
    material = scan_library(library).by_name()["brick_wall_001"]
    scene = LibraryScene(resolution=24, num_views=2, camera="perspective", seed=1, artifact_strength=0.0)
    spec = scene.spec(material, 0)
    assert spec["crop"]["context"] > 1.0
    assert all(v["camera"]["tiling"] == pytest.approx(1.0 / spec["crop"]["context"]) for v in spec["views"])
    target, renders = scene.render(load_material(material), spec)
    assert target["albedo"].shape == (3, 24, 24) and renders["clean"].shape == (2, 3, 24, 24)
    assert torch.isfinite(renders["dirty"]).all()


def test_hdr_folder_lights_the_samples(tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    hdris = tmp_path / "hdris"
    for i, sun in enumerate(([0.3, 0.1, 1.0], [-0.5, 0.4, 0.6])):
        sky = procedural_sky(torch.tensor(sun), torch.tensor([0.2, 0.4, 1.0]), torch.ones(3), glow=3.0)[0]
        write_hdr(hdris / f"sky_{i}.hdr", sky)
    out = tmp_path / "data"
    synthesize_library(
        out=out, materials=library, samples_per_material=3, hdri=hdris, hdri_probability=1.0, **TINY
    )
    samples = json.loads((out / "input" / "render_params.json").read_text())["samples"]
    used = {Path(s["hdri"]).name for s in samples.values()}
    assert used == {"sky_0.hdr", "sky_1.hdr"}
    kinds = {light["kind"] for s in samples.values() for v in s["views"] for light in v["lights"]}
    assert "hdr" in kinds and "sky" not in kinds


def test_bad_settings_and_libraries_name_the_key(tmp_path: Path) -> None:
    library = _library(tmp_path / "lib")
    with pytest.raises(ValueError, match=r"num_samples_per_material=0"):
        synthesize_library(out=tmp_path / "o", materials=library, samples_per_material=0, **TINY)
    with pytest.raises(ValueError, match=r"crop_scale=\[0\.0, 1\.0\]"):
        synthesize_library(out=tmp_path / "o", materials=library, crop_scale=(0.0, 1.0), **TINY)
    with pytest.raises(FileNotFoundError, match=r"hdri=.*no \.hdr file"):
        synthesize_library(out=tmp_path / "o", materials=library, hdri=tmp_path, **TINY)
    save_image(tmp_path / "lib" / "bad" / "bad_Roughness.png", torch.rand(1, 8, 8))
    with pytest.raises(LibraryError, match=r"bad \| .* \| no albedo"):
        synthesize_library(out=tmp_path / "o", materials=library, **TINY)
    summary = synthesize_library(out=tmp_path / "o", materials=library, on_error="skip", **TINY)
    assert summary["materials"] == 2


def test_cli_renders_a_library_into_the_folder_layout(tmp_path: Path) -> None:
    library = tmp_path / "lib"
    write_ambientcg(library, 1, "Metal", "Metal001")
    save_image(library / "Wood" / "oak" / "oak_Color.png", generate_material(3, 32, "wood").maps["albedo"])
    save_image(
        library / "Wood" / "oak" / "oak_NormalGL.png",
        encode_normal(generate_material(3, 32, "wood").maps["normal"]),
    )
    out = tmp_path / "data"
    result = subprocess.run(
        [sys.executable, "-m", "neuropbr.synth", f"materials={library}", "hdri=null", f"out={out}",
         "num_samples_per_material=2", "data.resolution=16", "data.num_views=2", "num_workers=2"],
        cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "library: 4 samples of 2 materials" in result.stdout
    assert sorted(p.name for p in (out / "output").iterdir()) == [
        "Metal--Metal001_1K-PNG__0000", "Metal--Metal001_1K-PNG__0001", "Wood--oak__0000", "Wood--oak__0001",
    ]  # fmt: skip
