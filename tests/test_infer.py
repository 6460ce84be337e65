"""Inference from a checkpoint: sizes, ranges, files, batch mode, errors, loading, tiling and seams.

One tiny model (``experiment=smoke``, ViT fusion, EMA on) is trained once for the module; the
tiling tests use a fully convolutional tiny generator instead (see ``conv_model``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf
from PIL import Image

from neuropbr.build import build_generator
from neuropbr.config import config_dir, register_configs
from neuropbr.infer import infer
from neuropbr.inference import (
    MAX_AUTO_TILE,
    LoadedGenerator,
    SampleViews,
    activation_bytes_per_pixel,
    auto_tile_size,
    blend_window,
    load_generator,
    output_folders,
    predict_resized,
    predict_tiled,
    read_views,
    render_preview,
    seam_ratio,
    tile_borders,
    tile_memory_budget,
    tile_starts,
    tiled_forward,
    unsquash_normals,
)
from neuropbr.maps import PBR_MAPS
from neuropbr.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

MAP_FILES = [f"{name}.png" for name in PBR_MAPS]


def _compose_train(*overrides: str) -> DictConfig:
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=smoke", "tracking=none", *overrides])
    GlobalHydra.instance().clear()
    return cfg


@pytest.fixture(scope="module")
def checkpoint(train_tiny: Callable[..., Path]) -> Path:
    """A tiny model trained for one epoch (3 views, 64 px, ViT fusion, EMA weights)."""
    return train_tiny("trainer.ema_decay=0.9")


@pytest.fixture(scope="module")
def model(checkpoint: Path) -> LoadedGenerator:
    return load_generator(checkpoint)


def _write_views(folder: Path, width: int, height: int, count: int = 3, seed: int = 0) -> list[Path]:
    """``count`` smooth random RGB views of ``width`` x ``height`` (aligned: one pattern, per-view gain)."""
    rng = np.random.default_rng(seed)
    base = rng.random((height // 4 + 1, width // 4 + 1, 3))
    base = np.asarray(Image.fromarray((base * 255).astype(np.uint8)).resize((width, height), Image.BILINEAR))
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(np.clip(base * (0.7 + 0.15 * i), 0, 255).astype(np.uint8)).save(path)
        paths.append(path)
    return paths


@pytest.fixture
def infer_cfg(
    compose_cfg: Callable[..., DictConfig], checkpoint: Path, tmp_path: Path
) -> Callable[..., DictConfig]:
    def make(*overrides: str) -> DictConfig:
        return compose_cfg(
            f"checkpoint={checkpoint}",
            f"out={tmp_path / 'maps'}",
            "device=cpu",
            *overrides,
            config_name="infer",
        )

    return make


def _as_list(paths: list[Path]) -> str:
    return "[" + ",".join(str(p) for p in paths) + "]"


def _read_png16_rgb(path: Path) -> np.ndarray:
    """Decode a 48-bit RGB PNG written with filter type 0 (what ``save_image`` writes): (H, W, 3) uint16."""
    data = path.read_bytes()
    offset, chunks = 8, {}
    while offset < len(data):
        length, tag = struct.unpack(">I4s", data[offset : offset + 8])
        chunks.setdefault(tag, b"")
        chunks[tag] += data[offset + 8 : offset + 8 + length]
        offset += 12 + length
    width, height, depth, colour = struct.unpack(">IIBB", chunks[b"IHDR"][:10])
    assert (depth, colour) == (16, 2)
    raw = zlib.decompress(chunks[b"IDAT"])
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, 1 + width * 6)
    assert (rows[:, 0] == 0).all()  # filter type None on every row
    return rows[:, 1:].copy().view(">u2").reshape(height, width, 3).astype(np.uint16)


# --- sizes, ranges, files -----------------------------------------------------------------------


def test_views_of_another_size_give_four_maps_of_that_size_in_range(
    infer_cfg: Callable[..., DictConfig], model: LoadedGenerator, tmp_path: Path
) -> None:
    views = _write_views(tmp_path / "views", width=80, height=48)  # training size is 64 x 64
    (out,) = infer(infer_cfg(f"views={_as_list(views)}"))
    assert sorted(p.name for p in out.iterdir()) == sorted(MAP_FILES)
    for name in MAP_FILES:
        with Image.open(out / name) as img:
            assert img.size == (80, 48)
            assert img.mode == ("L" if name in ("roughness.png", "metallic.png") else "RGB")
    with Image.open(out / "normal.png") as img:
        encoded = np.asarray(img, dtype=np.float32) / 255.0
    lengths = np.linalg.norm(encoded * 2.0 - 1.0, axis=-1)
    assert np.abs(lengths - 1.0).max() < 0.02  # unit normals up to 8-bit quantisation

    maps = predict_resized(model, read_views(views, 3))
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "albedo": (3, 48, 80),
        "roughness": (1, 48, 80),
        "metallic": (1, 48, 80),
        "normal": (3, 48, 80),
    }
    for name in ("albedo", "roughness", "metallic"):
        assert 0.0 <= maps[name].min() and maps[name].max() <= 1.0
    torch.testing.assert_close(maps["normal"].norm(dim=0), torch.ones(48, 80), atol=1e-5, rtol=0)


def test_requested_size_and_16_bit_pngs_round_trip(
    infer_cfg: Callable[..., DictConfig], model: LoadedGenerator, tmp_path: Path
) -> None:
    views = _write_views(tmp_path / "views", width=80, height=48)
    (out,) = infer(infer_cfg(f"views={_as_list(views)}", "size=[40,96]", "bit_depth=16"))
    expected = predict_resized(model, read_views(views, 3), (96, 40))
    with Image.open(out / "roughness.png") as img:
        assert img.size == (40, 96) and img.mode.startswith("I;16")
        roughness = np.asarray(img).astype(np.float64) / 65535.0
    np.testing.assert_allclose(roughness, expected["roughness"][0].double().numpy(), atol=0.51 / 65535)
    normal_rgb = _read_png16_rgb(out / "normal.png").astype(np.float64) / 65535.0  # (96, 40, 3)
    encoded = ((expected["normal"].double() + 1.0) / 2.0).permute(1, 2, 0).numpy()
    np.testing.assert_allclose(normal_rgb, encoded, atol=0.51 / 65535)
    assert np.abs(np.linalg.norm(normal_rgb * 2.0 - 1.0, axis=-1) - 1.0).max() < 1e-4


def test_tiled_inference_writes_maps_of_the_view_size(
    infer_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    views = _write_views(tmp_path / "views", width=100, height=72)  # 2 x 2 tiles of 64 px
    (out,) = infer(infer_cfg(f"views={_as_list(views)}", "tiled=true", "tile_overlap=0.5", "preview=true"))
    for name in [*MAP_FILES, "preview.png"]:
        with Image.open(out / name) as img:
            assert img.size == (100, 72)


def test_preview_is_a_lit_render_in_range(model: LoadedGenerator, tmp_path: Path) -> None:
    maps = predict_resized(model, read_views(_write_views(tmp_path, 64, 64), 3))
    image = render_preview(maps, max_size=32)
    assert image.shape == (3, 32, 32)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image.std() > 1e-3  # a point light falls off across the sample: not a flat image


def _write_dataset(root: Path) -> None:
    """Two samples in clean/ (one 64 px, one 80 x 48) and one in dirty/ sharing a name."""
    _write_views(root / "input" / "clean" / "sample_0000", 64, 64, seed=1)
    _write_views(root / "input" / "clean" / "sample_0001", 80, 48, seed=2)
    _write_views(root / "input" / "dirty" / "sample_0000", 64, 64, seed=3)


def test_batch_mode_writes_one_folder_per_sample(
    infer_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    _write_dataset(tmp_path / "data")
    folders = infer(infer_cfg(f"input_dir={tmp_path / 'data'}"))
    assert [f.name for f in folders] == ["sample_0000", "sample_0001"]
    with Image.open(folders[1] / "albedo.png") as img:
        assert img.size == (80, 48)
    both = infer(infer_cfg(f"input_dir={tmp_path / 'data'}", f"out={tmp_path / 'both'}", "renders=both"))
    assert [f.relative_to(tmp_path / "both").as_posix() for f in both] == [
        "clean/sample_0000",
        "clean/sample_0001",
        "dirty/sample_0000",
    ]
    assert all(sorted(p.name for p in f.iterdir()) == sorted(MAP_FILES) for f in both)


def _write_metadata(root: Path, mapping: dict[str, str]) -> None:
    (root / "input" / "render_metadata.json").write_text(json.dumps(mapping))


def test_batch_mode_names_folders_by_material_from_the_metadata(
    infer_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    root = tmp_path / "data"
    _write_dataset(root)
    _write_metadata(root, {"sample_0000": "brick", "sample_0001": "oak"})
    folders = infer(infer_cfg(f"input_dir={root}"))  # naming=auto: one sample per material
    assert [f.relative_to(tmp_path / "maps").as_posix() for f in folders] == ["brick", "oak"]
    assert all(sorted(p.name for p in f.iterdir()) == sorted(MAP_FILES) for f in folders)
    with Image.open(tmp_path / "maps" / "oak" / "albedo.png") as img:  # sample_0001's own size
        assert img.size == (80, 48)
    by_sample = infer(infer_cfg(f"input_dir={root}", f"out={tmp_path / 'by_sample'}", "naming=sample"))
    assert [f.name for f in by_sample] == ["sample_0000", "sample_0001"]
    both = infer(infer_cfg(f"input_dir={root}", f"out={tmp_path / 'both'}", "renders=both"))
    assert [f.relative_to(tmp_path / "both").as_posix() for f in both] == [
        "clean/brick",
        "clean/oak",
        "dirty/brick",
    ]


def _samples(*names: str, variant: str = "clean") -> list[SampleViews]:
    return [SampleViews(name, variant, ()) for name in names]


def test_several_samples_of_a_material_get_a_folder_each_under_it(tmp_path: Path) -> None:
    (tmp_path / "input").mkdir()
    _write_metadata(tmp_path, {"s0": "brick", "s1": "brick", "s2": "oak"})
    assert [p.as_posix() for p in output_folders(_samples("s0", "s1", "s2"), tmp_path)] == [
        "brick/s0",
        "brick/s1",
        "oak/s2",
    ]
    # One sample per material among those inferred: the flat layout.
    assert [p.as_posix() for p in output_folders(_samples("s0", "s2"), tmp_path, "material")] == [
        "brick",
        "oak",
    ]
    # renders=both: a sample in clean/ and in dirty/ is one material seen twice, in two folders.
    both = _samples("s0", "s2") + _samples("s0", variant="dirty")
    assert [p.as_posix() for p in output_folders(both, tmp_path, renders="both")] == [
        "clean/brick",
        "clean/oak",
        "dirty/brick",
    ]


def test_material_naming_needs_metadata_listing_every_sample(tmp_path: Path) -> None:
    samples = _samples("s0", "s1")
    with pytest.raises(
        ValueError, match=r"naming=material: .*render_metadata\.json is missing .*naming=sample"
    ):
        output_folders(samples, tmp_path, "material")
    assert [p.as_posix() for p in output_folders(samples, tmp_path, "auto")] == ["s0", "s1"]
    (tmp_path / "input").mkdir()
    _write_metadata(tmp_path, {"s0": "brick"})
    with pytest.raises(
        ValueError, match=r"naming=material: 1 sample\(s\) are not in .*render_metadata\.json: s1"
    ):
        output_folders(samples, tmp_path, "material")
    assert [p.as_posix() for p in output_folders(samples, tmp_path, "auto")] == ["s0", "s1"]
    (tmp_path / "input" / "render_metadata.json").write_text("{not json")
    with pytest.raises(
        ValueError, match=r"(?s)render_metadata\.json \| metadata file is not valid JSON.*naming=sample"
    ):
        output_folders(samples, tmp_path, "auto")
    _write_metadata(tmp_path, {"s0": "../escape", "s1": "oak"})
    with pytest.raises(ValueError, match=r"invalid material name '\.\./escape' for 's0'"):
        output_folders(samples, tmp_path, "material")


def test_naming_is_a_choice_checked_at_compose_time(infer_cfg: Callable[..., DictConfig]) -> None:
    with pytest.raises(ConfigCompositionException, match="naming"):
        infer_cfg("naming=folder")


def test_cli_writes_maps_and_nothing_else(checkpoint: Path, tmp_path: Path) -> None:
    views = _write_views(tmp_path / "views", width=72, height=56)
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "neuropbr.infer",
            f"checkpoint={checkpoint}",
            f"views={_as_list(views)}",
            f"out={tmp_path / 'maps'}",
            "preview=true",
            "device=cpu",
        ],
        cwd=cwd,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote albedo.png, roughness.png, metallic.png, normal.png and preview.png" in proc.stdout
    assert sorted(p.name for p in (tmp_path / "maps").iterdir()) == sorted([*MAP_FILES, "preview.png"])
    assert list(cwd.iterdir()) == []  # no outputs/, .hydra/ or log file


# --- errors -------------------------------------------------------------------------------------


def test_wrong_view_count_names_the_key_and_both_counts(
    infer_cfg: Callable[..., DictConfig], tmp_path: Path
) -> None:
    views = _write_views(tmp_path / "views", 64, 64, count=2)
    with pytest.raises(
        ValueError, match=r"views: the checkpoint's model takes data.num_views=3 views, got 2"
    ):
        infer(infer_cfg(f"views={_as_list(views)}"))


def test_unreadable_views_are_all_listed(infer_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    views = _write_views(tmp_path / "views", 64, 64)
    data = views[1].read_bytes()
    views[1].write_bytes(data[: len(data) // 2])  # truncated PNG
    missing = tmp_path / "views" / "absent.png"
    with pytest.raises(ValueError, match=r"2 view\(s\) cannot be read") as info:
        infer(infer_cfg(f"views={_as_list([views[0], views[1], missing])}"))
    assert f"views[1]={views[1]}" in str(info.value) and f"views[2]={missing}: file not found" in str(
        info.value
    )


def test_views_of_different_sizes_are_refused(tmp_path: Path) -> None:
    paths = _write_views(tmp_path / "a", 64, 64, count=2) + _write_views(tmp_path / "b", 48, 64, count=1)
    with pytest.raises(ValueError, match=r"views: the views of one sample must have the same size"):
        read_views(paths, 3)


def test_views_and_input_dir_are_exclusive(infer_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"views / input_dir: give exactly one"):
        infer(infer_cfg())
    with pytest.raises(ValueError, match=r"size=\[0, 10\]: expected \[W, H\]"):
        infer(infer_cfg("views=[a.png,b.png,c.png]", "size=[0,10]"))


def test_batch_mode_lists_samples_missing_views(infer_cfg: Callable[..., DictConfig], tmp_path: Path) -> None:
    _write_dataset(tmp_path / "data")
    (tmp_path / "data" / "input" / "clean" / "sample_0001" / "2.png").unlink()
    with pytest.raises(ValueError, match=r"(?s)1 sample\(s\) lack views .*sample_0001: no view 2 "):
        infer(infer_cfg(f"input_dir={tmp_path / 'data'}"))
    with pytest.raises(ValueError, match=r"expected the dataset layout"):
        infer(infer_cfg(f"input_dir={tmp_path}"))


def test_checkpoint_errors_name_the_file_and_the_problem(checkpoint: Path, tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist"):
        load_generator(tmp_path / "nope.pth")
    state = load_checkpoint(checkpoint)

    no_config = tmp_path / "no_config.pth"
    save_checkpoint(no_config, {**state, "config": None})
    with pytest.raises(CheckpointError, match=r"holds no training config \(the 'config' entry is missing\)"):
        load_generator(no_config)

    # Weights of the smoke encoder under a config that builds a wider one: another architecture.
    other = tmp_path / "other.pth"
    config = OmegaConf.to_container(OmegaConf.create(state["config"]))
    config["encoder"]["channels"] = [8, 16, 32, 64]
    save_checkpoint(other, {**state, "config": config})
    with pytest.raises(
        CheckpointError, match=r"(?s)do not match .*shape mismatches \(\d+\): encoder.levels.3"
    ):
        load_generator(other)


# --- loading ------------------------------------------------------------------------------------


def test_ema_weights_are_preferred_and_optional(checkpoint: Path, tmp_path: Path) -> None:
    state = load_checkpoint(checkpoint)
    assert state["ema"] is not None
    key = "decoder.heads.albedo.weight"
    assert not torch.equal(state["ema"][key], state["generator"][key])

    ema = load_generator(checkpoint)
    assert ema.weights == "ema" and torch.equal(ema.generator.state_dict()[key], state["ema"][key])
    plain = load_generator(checkpoint, prefer_ema=False)
    assert plain.weights == "generator" and torch.equal(
        plain.generator.state_dict()[key], state["generator"][key]
    )
    without = tmp_path / "no_ema.pth"
    save_checkpoint(without, {**state, "ema": None})
    assert load_generator(without).weights == "generator"


def test_weights_of_a_compiled_model_load(checkpoint: Path, model: LoadedGenerator, tmp_path: Path) -> None:
    state = load_checkpoint(checkpoint)
    compiled = tmp_path / "compiled.pth"
    prefixed = {w: {f"_orig_mod.{k}": v for k, v in state[w].items()} for w in ("generator", "ema")}
    save_checkpoint(compiled, {**state, **prefixed})
    loaded = load_generator(compiled)
    views = torch.rand(2, 3, 3, 64, 64)
    with torch.no_grad():
        expected, got = model.generator(views), loaded.generator(views)
    for name in PBR_MAPS:
        torch.testing.assert_close(got[name], expected[name], atol=0, rtol=0)


def test_super_resolving_decoder_maps_come_out_at_the_requested_size(tmp_path: Path) -> None:
    cfg = _compose_train("decoder.sr_scale=2")
    path = tmp_path / "sr.pth"
    config = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    save_checkpoint(
        path, {"generator": build_generator(cfg).state_dict(), "epoch": 0, "step": 0, "config": config}
    )
    sr = load_generator(path)
    views = read_views(_write_views(tmp_path / "views", 80, 48), 3)
    assert predict_resized(sr, views)["albedo"].shape == (3, 48, 80)  # the views' size by default
    native = tiled_forward(sr, views, tile=64, overlap=0.25)  # 48 x 80: 1 x 2 tiles of 48 x 64
    assert native["normal"].shape == (3, 96, 160)
    torch.testing.assert_close(native["normal"].norm(dim=0), torch.ones(96, 160), atol=1e-5, rtol=0)


# --- tiling -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def conv_model(tmp_path_factory: pytest.TempPathFactory) -> LoadedGenerator:
    """A fully convolutional tiny generator (``fusion=mean``) with He-initialised convs.

    Untrained but far from constant: its outputs vary with the input at every scale, so the
    tiling tests compare real structure. Without a global component (the ViT fusion attends over
    the whole input) a whole-image forward is the ground truth tiles must reproduce.
    """
    torch.manual_seed(0)
    cfg = _compose_train("fusion=mean")
    generator = build_generator(cfg)
    for module in generator.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path = tmp_path_factory.mktemp("conv") / "conv.pth"
    config = OmegaConf.to_container(cfg, resolve=False, enum_to_str=True)
    save_checkpoint(
        path, {"generator": generator.state_dict(), "ema": None, "epoch": 0, "step": 0, "config": config}
    )
    return load_generator(path)


def _smooth_views(height: int, width: int, sigma: float = 4.0) -> torch.Tensor:
    """(3, 3, H, W) views of one stationary smooth random texture (Gaussian-blurred noise)."""
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(3, 1, height + 32, width + 32, generator=generator)
    kernel = torch.exp(-0.5 * (torch.arange(-16.0, 17.0) / sigma) ** 2)
    kernel = kernel / kernel.sum()
    smooth = F.conv2d(F.conv2d(noise, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))[:, 0]  # (3, H, W)
    texture = 0.5 + 0.25 * smooth / smooth.std()
    return torch.stack([(texture * gain).clamp(0, 1) for gain in (0.8, 0.9, 1.0)])


def _away_from(
    borders_y: list[int], borders_x: list[int], height: int, width: int, margin: int
) -> torch.Tensor:
    mask = torch.ones(height, width, dtype=torch.bool)
    for b in borders_y:
        mask[max(0, b - margin) : b + margin, :] = False
    for b in borders_x:
        mask[:, max(0, b - margin) : b + margin] = False
    return mask


@pytest.mark.parametrize("overlap", [0.25, 0.5])
def test_tiled_matches_whole_image_away_from_tile_borders(
    conv_model: LoadedGenerator, overlap: float
) -> None:
    """Stated tolerance, >= 8 px from any tile border: mean |tiled - whole| <= 0.005 for the
    [0, 1] maps and <= 0.015 per normal component; 99th percentile <= 0.05 / 0.15.

    Measured here: mean 0.0009-0.0028 ([0, 1] maps), 0.0030-0.0078 (normals); p99 0.006-0.018 /
    0.025-0.054. The residual is not a border effect (it is as large in tile centres): the tiny
    U-Net's receptive field (about +-50 px) is wider than the overlap, so every tile's zero padding
    reaches some of its pixels; the raised-cosine weights keep it small.
    """
    views = _smooth_views(192, 256)  # (V, 3, H, W), a multiple of 8 so the whole image runs too
    with torch.no_grad():
        whole = {k: v[0] for k, v in conv_model.generator(views[None]).items()}
    tiled = tiled_forward(conv_model, views, tile=64, overlap=overlap, batch_size=8)
    mask = _away_from(
        tile_borders(192, 64, overlap, 8), tile_borders(256, 64, overlap, 8), 192, 256, margin=8
    )
    assert mask.float().mean() > 0.2
    for name in PBR_MAPS:
        assert tiled[name].shape == whole[name].shape
        diff = (tiled[name] - whole[name]).abs()[:, mask].flatten()
        mean_tol, p99_tol = (0.015, 0.15) if name == "normal" else (0.005, 0.05)
        assert diff.mean() <= mean_tol, (name, float(diff.mean()))
        assert diff.quantile(0.99) <= p99_tol, (name, float(diff.quantile(0.99)))
    torch.testing.assert_close(tiled["normal"].norm(dim=0), torch.ones(192, 256), atol=1e-5, rtol=0)


def test_blended_tiles_leave_no_seams_and_hard_tiles_do(conv_model: LoadedGenerator) -> None:
    """Seam metric: mean |difference of neighbouring pixels| across tile borders / the same
    elsewhere (:func:`seam_ratio`), divided by that ratio of the whole-image prediction at the same
    borders, which removes what the content alone contributes (its gradients are not the same
    everywhere). 1 means tiling added nothing at the borders.

    Threshold 1.15 for blended tiles (measured 0.995-1.010): a step the eye picks out as a seam
    is much larger than the local pixel-to-pixel variation, as hard-edged tiles show here
    (overlap 0, so no blending: measured 2.6-5.2, asserted > 1.5).
    """
    height, width, tile = 192, 256, 64
    views = _smooth_views(height, width)
    with torch.no_grad():
        whole = {k: v[0] for k, v in conv_model.generator(views[None]).items()}
    for overlap, blended in ((0.25, True), (0.5, True), (0.0, False)):
        tiled = tiled_forward(conv_model, views, tile=tile, overlap=overlap, batch_size=8)
        by, bx = tile_borders(height, tile, overlap, 8), tile_borders(width, tile, overlap, 8)
        for name in PBR_MAPS:
            ratio = seam_ratio(tiled[name], by, bx) / seam_ratio(whole[name], by, bx)
            if blended:
                assert ratio < 1.15, (overlap, name, ratio)
            else:
                assert ratio > 1.5, (overlap, name, ratio)


def test_tiles_cover_the_image_on_the_pooling_grid() -> None:
    for length, tile, overlap in (
        (64, 64, 0.25),
        (100, 64, 0.25),
        (257, 64, 0.5),
        (1000, 256, 0.25),
        (130, 64, 0.0),
    ):
        starts = tile_starts(length, tile, overlap, align=8)
        assert starts[0] == 0 and starts[-1] + tile == max(length, tile)
        assert all(s % 8 == 0 for s in starts[:-1])
        gaps = [b - a for a, b in itertools.pairwise(starts)]
        assert all(0 < g <= tile * (1 - overlap) for g in gaps)  # at least the requested overlap
    window = blend_window(64)
    assert window.min() > 0 and window.max() <= 1
    # Raised-cosine windows at 50% overlap sum to 1: blending alone changes nothing.
    ramp = window.diagonal().sqrt()  # the 1D window (the 2D one is its outer product)
    torch.testing.assert_close(ramp[32:] + ramp[:32], torch.ones(32), atol=1e-6, rtol=0)


def test_automatic_tiles_of_a_convolutional_model_are_large_and_few(conv_model: LoadedGenerator) -> None:
    """A 3000 x 3000 photo: tiles of the training resolution (64 px) would be thousands; the
    automatic size is far larger, within the memory budget, and a few dozen tiles cover it."""
    multiple = conv_model.size_multiple
    tile, why = auto_tile_size(conv_model, 3000, 3000, batch_size=4)
    assert tile > conv_model.resolution and tile % multiple == 0 and 512 <= tile <= MAX_AUTO_TILE, why
    assert 4 * activation_bytes_per_pixel(conv_model) * tile**2 <= tile_memory_budget(conv_model.device)
    assert len(tile_starts(3000, tile, 0.25, multiple)) ** 2 <= 49
    assert len(tile_starts(3000, conv_model.resolution, 0.25, multiple)) ** 2 > 3000
    # A photo that fits in one tile is not tiled at all.
    assert auto_tile_size(conv_model, 200, 256)[0] == 256


def test_vit_fusion_tiles_at_its_training_resolution() -> None:
    """Its attention spans the tile, its positions count from the tile's corner: larger tiles
    would show it what it never saw in training."""
    cfg = _compose_train("data.resolution=32")  # the smoke model: ViT fusion
    vit = LoadedGenerator(build_generator(cfg).eval(), cfg, Path("vit.pth"), "generator", 0, 0, None)
    tile, why = auto_tile_size(vit, 3000, 3000)
    assert tile == 32 and "fusion=vit" in why


@pytest.mark.parametrize(("height", "width"), [(256, 256), (200, 256)])
def test_views_that_fit_one_tile_predict_as_the_untiled_model_with_a_progress_bar(
    conv_model: LoadedGenerator,
    height: int,
    width: int,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    views = _smooth_views(height, width)
    with torch.no_grad():
        whole = {k: v[0] for k, v in conv_model.generator(views[None]).items()}
    with caplog.at_level(logging.INFO, logger="neuropbr.inference"):
        tiled = predict_tiled(conv_model, views, progress=True)
    for name in PBR_MAPS:
        torch.testing.assert_close(tiled[name], whole[name], atol=1e-5, rtol=0)
    assert f"tile_size=null: {max(height, width)} px tiles (fully convolutional" in caplog.text
    assert f"tiled: 1 tile(s) (1 x 1) of {width}x{height} px" in caplog.text
    err = capsys.readouterr().err
    assert "tiles: 100%" in err and "1/1" in err
    predict_tiled(conv_model, views)  # progress=None: no bar when stderr is not a terminal
    assert "tiles:" not in capsys.readouterr().err


def test_many_tiles_show_their_progress(
    conv_model: LoadedGenerator, capsys: pytest.CaptureFixture[str]
) -> None:
    predict_tiled(conv_model, _smooth_views(128, 192), tile=64, overlap=0.5, progress=True)
    err = capsys.readouterr().err
    assert "tiles: 100%" in err and "15/15" in err  # 3 x 5 tiles of 64 px at 50 % overlap


def test_unsquashing_restores_the_slopes_of_a_non_square_photo() -> None:
    # A plane tilted along x and y, photographed 80 px wide and 48 px high. Squashed into a
    # square, x shrinks relative to y by sqrt(48/80) (about the geometric-mean scale, which a
    # uniform resize leaves alone): the x-slope looks steeper and the y-slope shallower.
    slope_x, slope_y, height, width = 0.3, -0.2, 48, 80
    rel_x, rel_y = (height / width) ** 0.5, (width / height) ** 0.5
    seen = torch.tensor([-slope_x / rel_x, -slope_y / rel_y, 1.0]).view(1, 3, 1, 1).expand(1, 3, 4, 4)
    truth = torch.nn.functional.normalize(torch.tensor([-slope_x, -slope_y, 1.0]), dim=0)
    restored = unsquash_normals(torch.nn.functional.normalize(seen, dim=1), height, width)
    torch.testing.assert_close(restored[0, :, 0, 0], truth)
    square = torch.nn.functional.normalize(seen, dim=1)
    torch.testing.assert_close(unsquash_normals(square, 64, 64), square)
