"""Writers of small material libraries in the public naming conventions, from procedural materials.

Imported by name (``from library_helpers import ...``): pytest puts tests/data on sys.path.
Every library is written from :func:`neuropbr.render.materials.generate_material`, so a test can
compare what the reader decodes with the exact maps that were written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from neuropbr.data.io import encode_normal, save_image
from neuropbr.render.materials import generate_material

#: Value tolerances after 8- and 16-bit quantisation (normals are renormalised after decoding).
TOL_8 = 0.5 / 255 + 1e-6
TOL_16 = 0.5 / 65535 + 1e-6
NORMAL_TOL_8 = 0.006
NORMAL_TOL_16 = 1e-4


@dataclass
class WrittenMaterial:
    """A material written into a library: its expected name, family and the maps written."""

    name: str
    family: str | None
    maps: dict[str, Tensor]
    tolerance: dict[str, float]


def material_maps(seed: int, size: int = 32, family: str | None = None) -> dict[str, Tensor]:
    """Procedural maps plus an AO map and a height map (both in [0, 1])."""
    maps = dict(generate_material(seed, size, family).maps)
    gen = torch.Generator().manual_seed(seed)
    maps["ao"] = 0.5 + 0.5 * torch.rand(1, size, size, generator=gen)
    maps["height"] = torch.rand(1, size, size, generator=gen)
    return maps


def save_tiff(path: Path, image: Tensor, bit_depth: int = 8) -> None:
    """(C, H, W) in [0, 1] as a TIFF: 8-bit L/RGB or 16-bit grayscale."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = image.clamp(0, 1).permute(1, 2, 0).numpy()
    if bit_depth == 16:
        assert arr.shape[2] == 1, "Pillow writes 16-bit TIFFs in grayscale only"
        Image.fromarray(np.round(arr[..., 0] * 65535).astype(np.uint16)).save(path)
    else:
        data = np.round(arr * 255).astype(np.uint8)
        Image.fromarray(data[..., 0] if data.shape[2] == 1 else data).save(path)


def write_project_layout(root: Path, seeds: list[int], size: int = 32) -> list[WrittenMaterial]:
    """This project's dataset root: ``output/<material>/{albedo,...}.png`` + render_params families."""
    written, params = [], {}
    (root / "input").mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        material = generate_material(seed, size)
        name = f"material_{seed:04d}"
        for kind in ("albedo", "roughness", "metallic"):
            save_image(root / "output" / name / f"{kind}.png", material.maps[kind])
        save_image(root / "output" / name / "normal.png", encode_normal(material.maps["normal"]))
        params[name] = {"family": material.family, "params": {}}
        tol = {"albedo": TOL_8, "roughness": TOL_8, "metallic": TOL_8, "normal": NORMAL_TOL_8}
        written.append(WrittenMaterial(name, material.family, dict(material.maps), tol))
    (root / "input" / "render_params.json").write_text(json.dumps({"materials": params}))
    return written


def write_ambientcg(root: Path, seed: int, family: str, name: str, size: int = 32) -> WrittenMaterial:
    """``<family>/<name>_1K-PNG/<name>_1K-PNG_{Color,Roughness,Metalness,NormalDX,...}.png``."""
    maps = material_maps(seed, size)
    folder = root / family / f"{name}_1K-PNG"
    stem = f"{name}_1K-PNG"
    save_image(folder / f"{stem}_Color.png", maps["albedo"])
    save_image(folder / f"{stem}_Roughness.png", maps["roughness"], bit_depth=16)
    save_image(folder / f"{stem}_Metalness.png", maps["metallic"])
    save_image(folder / f"{stem}_NormalDX.png", encode_normal(maps["normal"], "directx"), bit_depth=16)
    save_image(folder / f"{stem}_Displacement.png", maps["height"], bit_depth=16)
    save_image(folder / f"{stem}_AmbientOcclusion.png", maps["ao"])
    tol = {"albedo": TOL_8, "roughness": TOL_16, "metallic": TOL_8, "normal": NORMAL_TOL_16}
    return WrittenMaterial(f"{family}/{name}_1K-PNG", family, maps, {**tol, "height": TOL_16, "ao": TOL_8})


def write_polyhaven(root: Path, seed: int, name: str, size: int = 32) -> WrittenMaterial:
    """``<name>/<name>_{diff,arm,nor_gl,disp}_2k.*``: packed AO/roughness/metallic, 16-bit TIFF height."""
    maps = material_maps(seed, size)
    folder = root / name
    save_image(folder / f"{name}_diff_2k.png", maps["albedo"])
    save_image(folder / f"{name}_arm_2k.png", torch.cat([maps["ao"], maps["roughness"], maps["metallic"]]))
    save_image(folder / f"{name}_nor_gl_2k.png", encode_normal(maps["normal"]))
    save_tiff(folder / f"{name}_disp_2k.tif", maps["height"], bit_depth=16)
    tol = {"albedo": TOL_8, "roughness": TOL_8, "metallic": TOL_8, "normal": NORMAL_TOL_8}
    family = "_".join(
        t for t in name.split("_") if t.isalpha()
    )  # the name prefix: brick_wall_001 -> brick_wall
    return WrittenMaterial(name, family, maps, {**tol, "ao": TOL_8, "height": TOL_16})


def write_flat_folder(root: Path, seeds: list[int], size: int = 32) -> list[WrittenMaterial]:
    """Several materials in one folder: ``<Name>_BaseColor.tif`` (TIFF) and ``<name>_basecolor.png``
    with glossiness and no metallic map."""
    folder = root / "Plastics"
    written = []
    for i, seed in enumerate(seeds):
        maps = material_maps(seed, size, family="plastic")
        if i % 2 == 0:
            name = f"Plastic{seed:03d}"
            save_tiff(folder / f"{name}_BaseColor.tif", maps["albedo"])
            save_tiff(folder / f"{name}_Roughness.tif", maps["roughness"], bit_depth=16)
            save_tiff(folder / f"{name}_Metallic.tif", maps["metallic"])
            save_tiff(folder / f"{name}_Normal.tif", encode_normal(maps["normal"]))
            tol = {"albedo": TOL_8, "roughness": TOL_16, "metallic": TOL_8, "normal": NORMAL_TOL_8}
        else:
            name = f"plastic_{seed:03d}"
            save_image(folder / f"{name}_basecolor.png", maps["albedo"])
            save_image(folder / f"{name}_glossiness.png", 1.0 - maps["roughness"], bit_depth=16)
            save_image(folder / f"{name}_normal.png", encode_normal(maps["normal"]))
            maps["metallic"] = torch.zeros_like(maps["metallic"])
            tol = {"albedo": TOL_8, "roughness": TOL_16, "metallic": 0.0, "normal": NORMAL_TOL_8}
        written.append(WrittenMaterial(f"Plastics/{name}", "Plastics", maps, tol))
    return written


def write_custom_layout(root: Path, seed: int, size: int = 32) -> WrittenMaterial:
    """A naming no convention knows, described by ``layout.yaml``: gloss, ORM metallic, DX normal,
    linear albedo."""
    maps = material_maps(seed, size)
    folder = root / "scan_a"
    from neuropbr.render.color import srgb_to_linear

    save_image(folder / "tex_c.png", srgb_to_linear(maps["albedo"]), bit_depth=16)
    save_image(folder / "tex_g.png", 1.0 - maps["roughness"], bit_depth=16)
    save_image(
        folder / "tex_orm.png", torch.cat([maps["ao"], maps["roughness"], maps["metallic"]]), bit_depth=16
    )
    save_image(folder / "tex_n.png", encode_normal(maps["normal"], "directx"), bit_depth=16)
    (root / "layout.yaml").write_text(
        "maps:\n"
        "  albedo: 'tex_c.png'\n"
        "  roughness: {pattern: 'tex_g.*', invert: true}\n"
        "  metallic: {pattern: 'tex_orm.png', channel: b}\n"
        "  ao: {pattern: 'tex_orm.png', channel: r}\n"
        "  normal: 'tex_n.png'\n"
        "normal_convention: directx\n"
        "colour_space: {albedo: linear}\n"
        "family: none\n"
    )
    tol = {"albedo": 2e-4, "roughness": TOL_16, "metallic": TOL_16, "normal": NORMAL_TOL_16, "ao": TOL_16}
    return WrittenMaterial("scan_a", None, maps, tol)
