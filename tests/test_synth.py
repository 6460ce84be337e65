"""``python -m neuropbr.synth``: the folder layout, clean and dirty renders, determinism, validation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neuropbr.data.check import check_dataset
from neuropbr.data.io import decode_normal, read_image, to_chw
from neuropbr.data.synthetic import SyntheticDataModule
from neuropbr.render.hdr import write_hdr
from neuropbr.render.lights import procedural_sky
from neuropbr.render.materials import FAMILIES
from neuropbr.synth import synthesize

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
TINY = ["num_materials=3", "samples_per_material=2", "data.num_views=2", "data.resolution=32", "seed=5"]


def _run(module: str, *overrides: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", module, *overrides],
        cwd=cwd,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, f"{module} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_cli_writes_the_folder_layout_with_clean_and_dirty_renders(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = _run("neuropbr.synth", f"out={out}", "num_workers=1", *TINY, cwd=tmp_path)
    assert "wrote 6 samples (3 materials, 2 views, clean + dirty, 32 px)" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["synth"]  # no outputs/ run dir
    assert sorted(p.name for p in out.iterdir()) == ["input", "output"]

    metadata = json.loads((out / "input" / "render_metadata.json").read_text())
    assert metadata == {f"sample_{i:04d}": f"material_{i // 2:04d}" for i in range(6)}
    params = json.loads((out / "input" / "render_params.json").read_text())
    assert params["generator"]["seed"] == 5 and set(params["samples"]) == set(metadata)
    assert {m["family"] for m in params["materials"].values()} <= set(FAMILIES)
    for sample, material in metadata.items():
        record = params["samples"][sample]
        assert record["material"] == material and len(record["views"]) == 2
        for view in record["views"]:
            assert view["camera"]["kind"] == "aligned" and view["lights"] and view["artifacts"]
        differs = []
        for index in range(2):
            clean = np.asarray(Image.open(out / "input" / "clean" / sample / f"{index}.png"))
            dirty = np.asarray(Image.open(out / "input" / "dirty" / sample / f"{index}.png"))
            assert clean.shape == dirty.shape == (32, 32, 3)
            differs.append(np.abs(clean.astype(int) - dirty.astype(int)).max() > 2)
        assert all(differs), f"{sample}: a dirty view equals its clean view"

    for material in set(metadata.values()):
        folder = out / "output" / material
        assert (
            Image.open(folder / "roughness.png").mode == "L"
            and Image.open(folder / "metallic.png").mode == "L"
        )
        rgb = to_chw(read_image(folder / "normal.png"), 3)
        raw = rgb * 2 - 1  # before any renormalisation: the file itself holds unit vectors
        assert ((raw.norm(dim=0) - 1).abs() < 0.02).all()
        torch.testing.assert_close(decode_normal(rgb).norm(dim=0), torch.ones(32, 32))

    scan = check_dataset(out, num_views=2, renders="both")
    assert scan.problems == [] and len(scan.entries) == 12


@pytest.mark.slow
def test_cli_output_is_byte_identical_for_any_worker_count(tmp_path: Path) -> None:
    _run("neuropbr.synth", f"out={tmp_path / 'one'}", "num_workers=1", *TINY, cwd=tmp_path)
    _run("neuropbr.synth", f"out={tmp_path / 'two'}", "num_workers=2", *TINY, cwd=tmp_path)
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys() and len(one) == 2 * 6 * 2 + 3 * 4 + 2
    assert [name for name in one if one[name] != two[name]] == []


@pytest.mark.slow
def test_check_cli_and_training_accept_the_output(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    _run("neuropbr.synth", f"out={out}", "num_workers=2", "camera=perspective", *TINY, cwd=tmp_path)
    _run("neuropbr.check", f"data.root={out}", "data.num_views=2", "data.renders=both", cwd=tmp_path)
    _run(
        "neuropbr.train", "data=folder", f"data.root={out}", "data.num_views=2", "data.resolution=32",
        "data.renders=dirty", "data.aligned=false", "data.val_ratio=0.34", "data.batch_size=2",
        "data.num_workers=0", "encoder=tiny", "fusion=tiny", "decoder=tiny", "discriminator=tiny",
        "tracking=none", "trainer.device=cpu", "trainer.max_epochs=1", "trainer.progress_bar=false",
        "scheduler.warmup_epochs=0", f"hydra.run.dir={tmp_path / 'run'}",
        cwd=tmp_path,
    )  # fmt: skip
    assert (tmp_path / "run" / "checkpoints" / "latest.pth").is_file()


def test_same_seed_writes_what_data_synthetic_serves(tmp_path: Path) -> None:
    synthesize(
        out=tmp_path, num_materials=2, resolution=16, num_views=2, seed=3, num_workers=1, progress=False
    )
    module = SyntheticDataModule(
        resolution=16, num_views=2, num_samples=2, val_ratio=0.0, seed=3, num_workers=0, renders="dirty"
    )
    module.setup()
    assert module.train_set is not None
    for index in range(2):
        sample = module.train_set[index]
        for view in range(2):
            on_disk = to_chw(read_image(tmp_path / "input" / "dirty" / sample["sample"] / f"{view}.png"), 3)
            assert (on_disk - sample["views"][view]).abs().max() <= 0.5 / 255 + 1e-6
        albedo = to_chw(read_image(tmp_path / "output" / sample["material"] / "albedo.png"), 3)
        assert (albedo - sample["maps"]["albedo"]).abs().max() <= 0.5 / 255 + 1e-6


def test_an_hdr_file_lights_the_scenes(tmp_path: Path) -> None:
    sky = procedural_sky(
        torch.tensor([0.3, 0.1, 1.0]), torch.tensor([0.2, 0.4, 1.0]), torch.ones(3), glow=3.0
    )[0]
    write_hdr(tmp_path / "sky.hdr", sky)
    out = tmp_path / "lit"
    synthesize(
        out=out,
        num_materials=2,
        resolution=16,
        num_views=3,
        hdr=str(tmp_path / "sky.hdr"),
        num_workers=1,
        progress=False,
    )
    params = json.loads((out / "input" / "render_params.json").read_text())
    kinds = {light["kind"] for s in params["samples"].values() for v in s["views"] for light in v["lights"]}
    assert "hdr" in kinds and "sky" not in kinds
    assert params["generator"]["hdr"] == str(tmp_path / "sky.hdr")


def test_refuses_to_mix_with_an_earlier_dataset(tmp_path: Path) -> None:
    settings = {"num_materials": 1, "resolution": 8, "num_views": 1, "num_workers": 1, "progress": False}
    synthesize(out=tmp_path, **settings)
    stale = tmp_path / "output" / "material_9999"
    stale.mkdir()
    with pytest.raises(FileExistsError, match="overwrite=true"):
        synthesize(out=tmp_path, **settings)
    synthesize(out=tmp_path, overwrite=True, **settings)
    assert not stale.exists() and (tmp_path / "output" / "material_0000" / "albedo.png").is_file()


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"num_materials": 0}, ValueError, r"num_materials=0: expected >= 1"),
        ({"num_views": 0}, ValueError, r"data\.num_views=0: expected >= 1"),
        ({"resolution": 4}, ValueError, r"data\.resolution=4: expected >= 8"),
        ({"artifact_strength": -1.0}, ValueError, r"artifact_strength=-1\.0: expected >= 0"),
        ({"num_workers": 0}, ValueError, r"num_workers=0: expected >= 1"),
        ({"camera": "fisheye"}, ValueError, r"camera='fisheye': expected one of"),
        ({"hdr": "missing.hdr"}, FileNotFoundError, r"hdr=missing\.hdr: no such file"),
    ],
)
def test_bad_settings_name_the_key(tmp_path: Path, overrides: dict, error: type, message: str) -> None:
    settings = {
        "out": tmp_path,
        "num_materials": 1,
        "resolution": 8,
        "num_views": 1,
        "progress": False,
        **overrides,
    }
    with pytest.raises(error, match=message):
        synthesize(**settings)
    assert not (tmp_path / "input").exists()
