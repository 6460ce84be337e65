"""Material libraries: naming conventions read back exactly, choices reported, bad input listed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from library_helpers import (
    TOL_8,
    WrittenMaterial,
    material_maps,
    write_ambientcg,
    write_custom_layout,
    write_flat_folder,
    write_polyhaven,
    write_project_layout,
)

from neuropbr.data.io import encode_normal, save_image
from neuropbr.data.library import (
    LibraryError,
    format_library_report,
    load_material,
    parse_file_name,
    require_materials,
    scan_library,
)


def _assert_read_back(root: Path, written: list[WrittenMaterial], **scan_kwargs: object) -> None:
    scan = scan_library(root, **scan_kwargs)  # type: ignore[arg-type]
    assert scan.problems == [], format_library_report(scan)
    found = scan.by_name()
    assert sorted(found) == sorted(w.name for w in written)
    for expected in written:
        material = found[expected.name]
        assert material.family == expected.family, material.choices
        maps = load_material(material)
        for kind, tol in expected.tolerance.items():
            error = (maps[kind] - expected.maps[kind]).abs().max().item()
            assert error <= tol, f"{expected.name} {kind}: max error {error} > {tol}"
        assert maps["normal"].norm(dim=0).sub(1).abs().max() < 1e-5


def test_project_layout_with_families_from_render_params(tmp_path: Path) -> None:
    written = write_project_layout(tmp_path, seeds=[0, 1, 2])
    _assert_read_back(tmp_path, written)
    # Pointed at output/ itself there is no metadata: the family comes from the name prefix.
    scan = scan_library(tmp_path / "output")
    assert {m.family for m in scan.materials} == {"material"}


def test_ambientcg_naming_16_bit_and_directx_normals(tmp_path: Path) -> None:
    written = [
        write_ambientcg(tmp_path, 3, "Metal", "Metal042"),
        write_ambientcg(tmp_path, 4, "Bricks", "Bricks076C"),
    ]
    _assert_read_back(tmp_path, written)
    material = scan_library(tmp_path).by_name()["Metal/Metal042_1K-PNG"]
    assert any("DirectX normal, green flipped" in c for c in material.choices)
    assert material.sources["normal"].convention == "directx"
    # The file really is DirectX: read as OpenGL, its green channel is the negated n_y.
    maps = load_material(material)
    assert maps["normal"][1].abs().max() > 0.05


def test_polyhaven_naming_with_packed_arm_and_16_bit_tiff(tmp_path: Path) -> None:
    written = [write_polyhaven(tmp_path, 5, "brick_wall_001"), write_polyhaven(tmp_path, 6, "rock_face_03")]
    _assert_read_back(tmp_path, written)
    material = scan_library(tmp_path).by_name()["brick_wall_001"]
    assert (material.sources["roughness"].channel, material.sources["metallic"].channel) == (1, 2)
    assert material.sources["ao"].channel == 0 and material.family == "brick_wall"


def test_several_materials_in_one_folder_tiff_and_glossiness(tmp_path: Path) -> None:
    written = write_flat_folder(tmp_path, seeds=[7, 8, 9])
    _assert_read_back(tmp_path, written)
    glossy = scan_library(tmp_path).by_name()["Plastics/plastic_008"]
    assert glossy.sources["roughness"].invert and glossy.defaults == {"metallic": 0.0}
    assert any("glossiness, inverted" in c for c in glossy.choices)
    assert any("metallic: no map, constant 0" in c for c in glossy.choices)


def test_layout_file_maps_any_naming(tmp_path: Path) -> None:
    written = write_custom_layout(tmp_path, seed=10)
    written.family = None
    _assert_read_back(tmp_path, [written])
    scan = scan_library(tmp_path)
    assert scan.layout == tmp_path / "layout.yaml"
    assert any("stored linear, converted" in c for c in scan.materials[0].choices)


def test_missing_roughness_uses_the_stated_constant(tmp_path: Path) -> None:
    maps = material_maps(11)
    save_image(tmp_path / "wall" / "wall_albedo.png", maps["albedo"])
    save_image(tmp_path / "wall" / "wall_normal.png", encode_normal(maps["normal"]))
    material = scan_library(tmp_path, roughness_default=0.7).materials[0]
    loaded = load_material(material)
    assert torch.equal(loaded["roughness"], torch.full((1, 32, 32), 0.7))
    assert torch.equal(loaded["metallic"], torch.zeros(1, 32, 32))
    report = format_library_report(scan_library(tmp_path, roughness_default=0.7))
    assert "roughness: no map, constant 0.7" in report and "roughness constant in 1" in report


def test_file_name_parsing() -> None:
    assert parse_file_name("Bricks076C_1K-PNG_NormalDX.png")[0] == "Bricks076C"
    assert parse_file_name("metal_plate_01_rough_4k.jpg")[0] == "metal_plate_01"
    stem, term, resolution = parse_file_name("rock_nor_gl_2k.exr.png")
    assert (stem, term.kind, term.convention, resolution) == ("rock", "normal", "opengl", 2)
    assert parse_file_name("Wood_BaseColor.tif")[1].kind == "albedo"
    assert parse_file_name("notes.png") is None


def test_mixed_sizes_are_resized_and_other_aspects_refused(tmp_path: Path) -> None:
    maps = material_maps(12, size=32)
    half = {
        k: torch.nn.functional.interpolate(v[None], size=(16, 16), mode="area")[0] for k, v in maps.items()
    }
    save_image(tmp_path / "a" / "a_Color.png", maps["albedo"])
    save_image(tmp_path / "a" / "a_Roughness.png", half["roughness"])
    save_image(tmp_path / "b" / "b_Color.png", maps["albedo"])
    save_image(tmp_path / "b" / "b_Roughness.png", maps["roughness"][:, :16, :])
    scan = scan_library(tmp_path)
    assert [m.name for m in scan.materials] == ["a"]
    assert any("is 16x16, resized to 32x32" in c for c in scan.materials[0].choices)
    assert load_material(scan.materials[0])["roughness"].shape == (1, 32, 32)
    [problem] = scan.problems
    assert problem.sample == "b" and problem.path == tmp_path / "b" / "b_Roughness.png"
    assert "another aspect ratio" in problem.problem


def test_bad_input_is_listed_with_paths(tmp_path: Path) -> None:
    maps = material_maps(13)
    save_image(tmp_path / "no_albedo" / "x_Roughness.png", maps["roughness"])
    save_image(tmp_path / "broken" / "y_Color.png", maps["albedo"])
    truncated = tmp_path / "broken" / "y_Roughness.png"
    save_image(truncated, maps["roughness"])
    truncated.write_bytes(truncated.read_bytes()[:40])
    save_image(tmp_path / "good" / "z_Color.png", maps["albedo"])
    (tmp_path / "nothing_here").mkdir()
    scan = scan_library(tmp_path)
    problems = {p.sample: p for p in scan.problems}
    assert set(problems) == {"no_albedo", "broken"} and [m.name for m in scan.materials] == ["good"]
    assert (
        problems["no_albedo"].path == tmp_path / "no_albedo" and "no albedo" in problems["no_albedo"].problem
    )
    assert problems["broken"].path == truncated and "unreadable roughness map" in problems["broken"].problem
    assert (tmp_path / "nothing_here", "empty folder (no PNG/JPEG/TIFF file)") in scan.ignored
    with pytest.raises(LibraryError, match=r"no_albedo \| .*no_albedo \| no albedo"):
        require_materials(scan)
    assert [m.name for m in require_materials(scan, on_error="skip")] == ["good"]


def test_an_empty_library_is_fatal(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    scan = scan_library(tmp_path)
    assert scan.fatal and "empty library" in scan.problems[0].problem
    with pytest.raises(LibraryError, match="empty library"):
        require_materials(scan, on_error="skip")


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ("maps: {albedo: 'tex_[c.png'}\n", r"maps\.albedo: pattern 'tex_\[c\.png': unclosed '\['"),
        ("maps: {albedo: 'sub/tex.png'}\n", r"maps\.albedo: .*no '/' allowed"),
        ("maps: {albedo: '{name}.png'}\n", r"unknown placeholder"),
        ("maps: {roughness: '*_r.png'}\n", r"maps\.albedo: missing"),
        ("maps: {albedo: '*_c.png', shine: '*_s.png'}\n", r"maps\.shine: unknown map"),
        ("maps: {albedo: {pattern: '*_c.png', channel: x}}\n", r"channel 'x'"),
        ("maps: {albedo: '*_c.png'}\nnormal_convention: vulkan\n", r"normal_convention: 'vulkan'"),
        ("maps: [oops\n", r"file: not valid YAML"),
    ],
)
def test_bad_layout_files_name_the_key(tmp_path: Path, layout: str, message: str) -> None:
    save_image(tmp_path / "m" / "tex_c.png", material_maps(14)["albedo"])
    (tmp_path / "layout.yaml").write_text(layout)
    scan = scan_library(tmp_path)
    assert scan.fatal and scan.materials == []
    text = "\n".join(str(p) for p in scan.problems)
    assert str(tmp_path / "layout.yaml") in text
    assert any(re.search(message, str(p)) for p in scan.problems), text


def test_layout_with_material_placeholder_finds_several_per_folder(tmp_path: Path) -> None:
    for seed, name in ((15, "oak"), (16, "pine")):
        maps = material_maps(seed)
        save_image(tmp_path / "woods" / f"{name}.col.png", maps["albedo"])
        save_image(tmp_path / "woods" / f"{name}.rgh.png", maps["roughness"])
    layout = tmp_path / "elsewhere.yaml"
    layout.write_text("maps:\n  albedo: '{material}.col.png'\n  roughness: '{material}.rgh.png'\n")
    scan = scan_library(tmp_path, layout=layout)
    assert scan.problems == [] and [m.name for m in scan.materials] == ["woods/oak", "woods/pine"]
    assert {m.family for m in scan.materials} == {"woods"}
    loaded = load_material(scan.by_name()["woods/pine"])
    assert (loaded["roughness"] - material_maps(16)["roughness"]).abs().max() <= TOL_8


def test_check_cli_lists_every_choice_and_problem(tmp_path: Path) -> None:
    write_ambientcg(tmp_path / "lib", 17, "Metal", "Metal001")
    save_image(tmp_path / "lib" / "loose" / "q_Roughness.png", material_maps(17)["roughness"])
    result = subprocess.run(
        [sys.executable, "-m", "neuropbr.check", f"library={tmp_path / 'lib'}"],
        cwd=tmp_path, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 1, result.stderr
    out = result.stdout
    assert "materials: usable 1, refused 1" in out
    assert "Metal/Metal001_1K-PNG" in out and "DirectX normal, green flipped to OpenGL" in out
    assert "family: Metal (from the parent folder)" in out
    assert f"loose | {tmp_path / 'lib' / 'loose'} | no albedo" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lib"]  # writes nothing
